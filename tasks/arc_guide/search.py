"""Best-first enumeration of DSL programs for one ARC task (DeepCoder-style guided search).

A program is a sequence of primitive names applied left to right to every train input.
Its cost is the sum over its steps of ``-log p(step)`` where ``p`` are per-primitive
probabilities (the guide's sigmoid outputs, or a fixed prior for the unguided baseline),
so cheaper programs use likelier primitives and are tried first; a priority queue holds
the frontier. Contracts of :func:`search`:

- The budget counts programs *evaluated*: one evaluation applies one program's last step
  to every train input (its prefix's grids are kept, so a program costs one step, not its
  length). The empty program (the inputs themselves) is the first evaluation.
- Duplicate intermediates are pruned: a program whose grids over all train inputs equal
  those of a program evaluated before (the same tuple of grids) is counted but never
  extended, because best-first order reached the same grids more cheaply already (when
  those grids solve the train pairs it may still be a further attempt: its test
  predictions can differ). A step that cannot apply (``NotApplicable``) on any input
  kills the program the same way.
- Programs that chain two dihedral steps or repeat an idempotent step are skipped without
  being evaluated (never counted): a shorter program gives the same grids.
- A program is accepted when it maps every train input to its output exactly, or, with
  ``colour_map=True``, after a colour mapping fitted from the train pairs (same shapes,
  each produced colour always becomes the same target colour). Given ``test_inputs``, it
  must also apply to every test input, and each further solution (up to ``attempts``)
  must predict test outputs that differ from the earlier solutions' (two attempts per
  test input, the ARC Prize rule). Accepted programs are not extended.
- With ``local_rules``, attempts that no program filled may go to a neighbourhood rule
  fitted on the train pairs (tasks.arc_guide.local_rules), the program then empty.
- The search stops at ``budget`` programs evaluated, at ``attempts`` solutions, or at
  ``deadline`` (a ``time.perf_counter()`` value), whichever comes first.
"""
from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from tasks.arc_guide.dsl import DIHEDRAL, IDEMPOTENT, N_COLOURS, PRIMITIVES, NotApplicable
from tasks.arc_guide.local_rules import NEIGHBOURHOODS, LocalRule, fit_local_rule
from tasks.arc_guide.templates import TEMPLATES, apply_any, run_steps, task_steps

NAMES = tuple(PRIMITIVES)  # the whole-grid primitives (DSL v1)
NAMES_V2 = NAMES + tuple(TEMPLATES)  # plus the object-level templates (their arguments come per task)
MIN_PROBABILITY = 1e-4  # floor of p: a primitive the guide rules out is delayed, never removed
STEP_COST = 0.05  # added per step: among equally likely programs, shorter ones go first

Pair = tuple[np.ndarray, np.ndarray]


# (program, finisher): None, a (10,) colour map, or a LocalRule fitted on the train pairs
Solution = tuple[tuple[str, ...], "Optional[np.ndarray | LocalRule]"]


@dataclass
class SearchResult:
    """What :func:`search` found: ``program`` is None when nothing was accepted in budget."""

    program: Optional[tuple[str, ...]]  # the first solution's program
    colour_map: "Optional[np.ndarray | LocalRule]"  # (10,) uint8 map (c -> colour_map[c]), a local rule, or None
    evaluated: int  # programs evaluated (the budget's unit) until the first solution, or in all
    pruned_duplicates: int = 0  # evaluated programs whose grids repeated an earlier program's
    trace: list[tuple[str, ...]] = field(default_factory=list)  # evaluation order, when asked for
    solutions: list[Solution] = field(default_factory=list)  # in the order found, at most ``attempts``
    evaluated_total: int = 0  # programs evaluated in all (the search for later attempts included)
    timed_out: bool = False  # stopped by the deadline


def step_costs(probabilities: Sequence[float], names: Sequence[str] = NAMES) -> np.ndarray:
    """(P,) probabilities in ``names`` order -> (P,) step costs ``-log p + STEP_COST``."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), MIN_PROBABILITY, 1.0)
    if p.shape != (len(names),):
        raise ValueError(f"expected {len(names)} probabilities (one per primitive), got shape {p.shape}")
    return -np.log(p) + STEP_COST


def expand_steps(train: Sequence[Pair], probabilities: Sequence[float], templates: bool) -> tuple[list[str], np.ndarray]:
    """(step names, their costs), cheapest first (ties in vocabulary order). A whole-grid
    primitive is one step; a template's probability is shared by its n argument choices
    for this task (each costs ``log n`` more), so a template with many choices does not
    crowd out the others."""
    names = NAMES_V2 if templates else NAMES
    costs = step_costs(probabilities, names)
    steps, step_cost = list(NAMES), list(costs[: len(NAMES)])
    if templates:
        for k, (name, instances) in enumerate(task_steps(train).items(), start=len(NAMES)):
            steps += instances
            step_cost += [costs[k] + np.log(len(instances))] * len(instances)
    order = np.argsort(np.asarray(step_cost), kind="stable")
    return [steps[i] for i in order], np.asarray(step_cost)[order]


def grids_key(grids: Sequence[np.ndarray]) -> bytes:
    """A hashable identity of a tuple of grids (shapes included: 2x3 and 3x2 differ)."""
    return b"".join(g.shape[0].to_bytes(1, "little") + g.shape[1].to_bytes(1, "little") + g.tobytes() for g in grids)


def fit_colour_map(produced: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> Optional[np.ndarray]:
    """The colour mapping that turns every produced grid into its target, or None.

    Shapes must match pair by pair, and each colour that occurs in the produced grids must
    always land on one target colour. Colours never produced map to themselves.
    """
    if any(p.shape != t.shape for p, t in zip(produced, targets)):
        return None
    source = np.concatenate([p.ravel() for p in produced]).astype(np.int64)
    target = np.concatenate([t.ravel() for t in targets]).astype(np.int64)
    seen = np.bincount(source * N_COLOURS + target, minlength=N_COLOURS * N_COLOURS).reshape(N_COLOURS, N_COLOURS) > 0
    if (seen.sum(axis=1) > 1).any():  # some colour would need two targets
        return None
    mapping = np.arange(N_COLOURS, dtype=np.uint8)
    rows = np.flatnonzero(seen.any(axis=1))
    mapping[rows] = seen[rows].argmax(axis=1)
    return mapping


def _skipped(last: Optional[str], step: str) -> bool:
    """Two steps back to back that always have a shorter equivalent (see dsl.DIHEDRAL/IDEMPOTENT)."""
    return last is not None and ((last in DIHEDRAL and step in DIHEDRAL) or (last == step and step in IDEMPOTENT))


def _accept(
    grids: Sequence[np.ndarray], targets: Sequence[np.ndarray], colour_map: bool
) -> tuple[bool, Optional[np.ndarray]]:
    """(accepted, colour map or None): exact match first, else a fitted colour map."""
    if all(g.shape == t.shape and np.array_equal(g, t) for g, t in zip(grids, targets)):
        return True, None
    if colour_map:
        mapping = fit_colour_map(grids, targets)
        if mapping is not None:
            return True, mapping
    return False, None


def search(
    train: Sequence[Pair],
    probabilities: Sequence[float],
    budget: int,
    max_length: int = 4,
    colour_map: bool = True,
    keep_trace: bool = False,
    test_inputs: Optional[Sequence[np.ndarray]] = None,
    attempts: int = 1,
    deadline: Optional[float] = None,
    templates: bool = False,
    local_rules: bool = False,
) -> SearchResult:
    """Best-first search for up to ``attempts`` programs solving ``train``; see the module
    docstring. ``probabilities`` are in NAMES_V2 order with ``templates``, else NAMES order."""
    steps, costs = expand_steps(train, probabilities, templates)  # cheapest first
    inputs = [np.ascontiguousarray(i, dtype=np.uint8) for i, _ in train]
    targets = [np.ascontiguousarray(o, dtype=np.uint8) for _, o in train]
    result = SearchResult(None, None, 0)
    predicted: set[bytes] = set()  # test predictions of the solutions so far

    def consider(program: tuple[str, ...], grids: list[np.ndarray]) -> bool:
        """Record ``program`` if it is a new solution; True when the search is done."""
        ok, mapping = _accept(grids, targets, colour_map)
        return ok and _record(program, mapping, result, test_inputs, predicted, attempts)

    seen = {grids_key(inputs)}
    solved_keys: set[bytes] = set()  # train grids of the solutions
    result.evaluated_total = 1
    if keep_trace:
        result.trace.append(())
    done = consider((), inputs)
    if result.solutions:
        solved_keys.add(grids_key(inputs))
    # heap entries: (cost, tie-break counter, program, grids of the program's prefix)
    heap: list[tuple[float, int, tuple[str, ...], list[np.ndarray]]] = []
    counter = 0

    def push_children(program: tuple[str, ...], grids: list[np.ndarray], cost: float) -> None:
        nonlocal counter
        if len(program) >= max_length:
            return
        last = program[-1] if program else None
        for name, step_cost in zip(steps, costs):
            if not _skipped(last, name):
                counter += 1
                heapq.heappush(heap, (cost + step_cost, counter, program + (name,), grids))

    if not result.solutions:
        push_children((), inputs, 0.0)
    while heap and not done and result.evaluated_total < budget:
        if deadline is not None and (result.evaluated_total - 1) % 64 == 0 and time.perf_counter() > deadline:
            result.timed_out = True
            break
        cost, _, program, prefix_grids = heapq.heappop(heap)
        result.evaluated_total += 1
        if keep_trace:
            result.trace.append(program)
        try:
            grids = [apply_any(program[-1], g) for g in prefix_grids]
        except NotApplicable:
            continue
        key = grids_key(grids)
        if key in seen:
            result.pruned_duplicates += 1
            if key in solved_keys:  # same train grids as a solution, maybe another test prediction
                done = consider(program, grids)
            continue
        seen.add(key)
        found_before = len(result.solutions)
        done = consider(program, grids)
        if len(result.solutions) > found_before:
            solved_keys.add(key)
        else:
            push_children(program, grids, cost)
    if local_rules and not done:
        # fallback: a neighbourhood rule on the inputs themselves, for attempts no program filled
        for neighbourhood in NEIGHBOURHOODS:
            if done:
                break
            rule = fit_local_rule(inputs, targets, neighbourhood)
            if rule is not None:
                done = _record((), rule, result, test_inputs, predicted, attempts)
    if not result.solutions:
        result.evaluated = result.evaluated_total
    return result


def _record(program: tuple[str, ...], finisher: "Optional[np.ndarray | LocalRule]", result: SearchResult,
            test_inputs: Optional[Sequence[np.ndarray]], predicted: set[bytes], attempts: int) -> bool:
    """Add an accepted (program, finisher) to ``result`` when it applies to every test
    input and predicts differently from the solutions so far; True when the search has its
    attempts."""
    if test_inputs is not None:
        try:
            key = grids_key([apply_solution(program, finisher, g) for g in test_inputs])
        except NotApplicable:
            return False
        if key in predicted:
            return False
        predicted.add(key)
    if not result.solutions:
        result.program, result.colour_map, result.evaluated = program, finisher, result.evaluated_total
    result.solutions.append((program, finisher))
    return len(result.solutions) >= attempts


def apply_solution(program: Sequence[str], colour_map: "Optional[np.ndarray | LocalRule]", grid: np.ndarray) -> np.ndarray:
    """Run a found program (and its colour map or local rule) on one grid; raises NotApplicable."""
    out = run_steps(program, np.ascontiguousarray(grid, dtype=np.uint8))
    if isinstance(colour_map, LocalRule):
        return colour_map.apply(out)
    return colour_map[out] if colour_map is not None else out

