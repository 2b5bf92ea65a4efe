"""Best-first enumeration of DSL programs for one ARC task (DeepCoder-style guided search).

A program is a sequence of primitive names applied left to right to every train input.
Its cost is the sum over its steps of ``-sharpness * log p(step)`` where ``p`` are
per-primitive probabilities (the guide's sigmoid outputs, or a fixed prior for the unguided
baseline), so cheaper programs use likelier primitives and are tried first; a priority
queue holds the frontier. Contracts of :func:`search`:

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
- With ``templates`` (DSL v2), the steps also include the object-level templates (one step
  per argument choice) and the learners of tasks.arc_guide.fitting. A learner is always a
  program's last step: evaluating ``prefix + (learner,)`` fits it on the prefix's grids and
  the train outputs, and each candidate it yields is a solution (its candidates reproduce
  the train pairs by contract), up to ``attempts`` in all. Every hypothesis the learner
  checks is a program (the prefix plus that fitted step) and counts as one evaluation
  (tasks.arc_guide.fitting.Meter): a learner weighing thousands of feature subsets spends
  the budget that thousands of other programs would.
- With ``local_rules``, attempts that no program filled may go to a neighbourhood rule
  fitted on the train pairs (tasks.arc_guide.local_rules), the program then empty.
- The search stops at ``budget`` programs evaluated, at ``attempts`` solutions, or at
  ``deadline`` (a ``time.perf_counter()`` value), whichever comes first.
"""
from __future__ import annotations

import dataclasses
import heapq
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from tasks.arc_guide.dsl import DIHEDRAL, IDEMPOTENT, N_COLOURS, PRIMITIVES, NotApplicable
from tasks.arc_guide.fitting import LEARNERS, BudgetSpent, Fitted, Meter, learner
from tasks.arc_guide.local_rules import NEIGHBOURHOODS, LocalRule, fit_local_rule
from tasks.arc_guide.templates import TEMPLATES, apply_any, run_steps, task_steps, template_of

NAMES = tuple(PRIMITIVES)  # the whole-grid primitives (DSL v1)
# plus the object-level templates (their arguments come per task) and the learners (their
# parameters are fitted on the train pairs)
NAMES_V2 = NAMES + tuple(TEMPLATES) + tuple(LEARNERS)
MIN_PROBABILITY = 1e-4  # floor of p: a primitive the guide rules out is delayed, never removed
STEP_COST = 0.05  # added per step: among equally likely programs, shorter ones go first
# step costs are -log(p ** SHARPNESS): above 1 the likeliest names get a larger share of the
# budget before the others start (a learner's hypotheses are re-queued at base cost + log(1 +
# checked), so at 2 the top learner may check the square of the ratio more than the next).
# Chosen on one half of the ARC-AGI-1 training tasks and confirmed on the other (sha256 folds
# of the task ids, budget 20000, default guide): guided 85 -> 87 and 97 -> 99 solved from 1 to
# 2, unguided 81 -> 86 and 88 -> 100; 3 gave 87 on the first half, no better than 2.
SHARPNESS = 2.0
# learner -> {template: coverage}: templates whose rules the learner's hypothesis family
# covers in part, with the share of the template's one-step records in the built-in data
# (dataset v6) that the learner's own fit reproduces: compose_tiles' overlays (parts at
# separators or halves, combined by a truth table or stacked) fit 90 of 199 overlay_parts
# records; select_crop's regions picked by a property (cells between separators, objects,
# colour boxes, frame contents) 48/134 select_part, 173/207 crop_selected, 45/114 crop_colour.
# The guide is taught one name per record (the template, found first), so on an ARC overlay
# or crop it recognises it can rank the template first and the learner 30th, while what
# fits ARC's variants is often the learner's wider family. :func:`generalised_costs` gives
# such a learner at least coverage x the template's probability, in either mode (the
# built-in data's frequency prior already ranks these learners above those templates).
# Measured on ARC-AGI-1 training tasks, solved within 30/100/300/1000 programs (default
# guide, one run each): no rule 75/111/143/164; coverage as above 80/116/143/164 (unguided
# 64/116/141/158); a flat factor 0.25, 0.5 and 1 gave 80/116/144, 82/118/145 and 80/116/142
# (the coverage is read off the training data, not chosen on ARC); 100 held-out synthetic
# tasks at 20,000 programs: 75 solved without the rule, 74 with it.
GENERALISED_BY = {"compose_tiles": {"overlay_parts": 90 / 199},
                  "select_crop": {"select_part": 48 / 134, "crop_selected": 173 / 207, "crop_colour": 45 / 114}}

Pair = tuple[np.ndarray, np.ndarray]


# what follows a solution's program: nothing, a (10,) colour map, a LocalRule, or a learner's Fitted
Finisher = "Optional[np.ndarray | LocalRule | Fitted]"
# (program without its learner step, finisher)
Solution = tuple[tuple[str, ...], Finisher]


@dataclass
class SearchResult:
    """What :func:`search` found: ``program`` is None when nothing was accepted in budget."""

    program: Optional[tuple[str, ...]]  # the first solution's program
    colour_map: Finisher  # (10,) uint8 map (c -> colour_map[c]), a local rule, a learner's Fitted, or None
    evaluated: int  # programs evaluated (the budget's unit) until the first solution, or in all
    pruned_duplicates: int = 0  # evaluated programs whose grids repeated an earlier program's
    trace: list[tuple[str, ...]] = field(default_factory=list)  # evaluation order, when asked for
    solutions: list[Solution] = field(default_factory=list)  # in the order found, at most ``attempts``
    found_at: list[int] = field(default_factory=list)  # per solution: evaluated_total when it was found
    evaluated_total: int = 0  # programs evaluated in all (the search for later attempts included)
    timed_out: bool = False  # stopped by the deadline


def step_costs(probabilities: Sequence[float], names: Sequence[str] = NAMES,
               sharpness: float = SHARPNESS) -> np.ndarray:
    """(P,) probabilities in ``names`` order -> (P,) step costs ``-log p ** sharpness +
    STEP_COST`` (``p ** sharpness`` floored at MIN_PROBABILITY). Any positive sharpness keeps
    the order of the names; it sets how far apart their costs are."""
    if not sharpness > 0:
        raise ValueError(f"sharpness must be positive, got {sharpness}")
    p = np.asarray(probabilities, dtype=np.float64)
    if p.shape != (len(names),):
        raise ValueError(f"expected {len(names)} probabilities (one per primitive), got shape {p.shape}")
    return -np.log(np.clip(np.clip(p, 0.0, 1.0) ** sharpness, MIN_PROBABILITY, 1.0)) + STEP_COST


def generalised_costs(costs: np.ndarray, sharpness: float = SHARPNESS) -> np.ndarray:
    """(len(NAMES_V2),) step costs (``-sharpness * log p + STEP_COST``) -> a copy where each
    learner of GENERALISED_BY costs no more than a template it covers would at ``coverage x
    p(template)``: its probability is raised to that, never lowered."""
    out = np.array(costs, dtype=np.float64)
    index = {name: k for k, name in enumerate(NAMES_V2)}
    for learner_name, covered in GENERALISED_BY.items():
        implied = (out[index[t]] - sharpness * np.log(coverage) for t, coverage in covered.items())
        out[index[learner_name]] = min(out[index[learner_name]], *implied)
    return out


def expand_steps(train: Sequence[Pair], probabilities: Sequence[float], templates: bool,
                 sharpness: float = SHARPNESS) -> tuple[list[str], np.ndarray]:
    """(step names, their costs), cheapest first (ties in vocabulary order). A whole-grid
    primitive is one step; a template's probability is shared by its n argument choices
    for this task (each costs ``log n`` more), so a template with many choices does not
    crowd out the others. With ``templates``, a learner of GENERALISED_BY gets at least
    coverage x the probability of each template it covers (:func:`generalised_costs`)."""
    names = NAMES_V2 if templates else NAMES
    costs = step_costs(probabilities, names, sharpness)
    if templates:
        costs = generalised_costs(costs, sharpness)
    steps, step_cost = list(NAMES), list(costs[: len(NAMES)])
    if templates:
        for k, (name, instances) in enumerate(task_steps(train).items(), start=len(NAMES)):
            steps += instances
            step_cost += [costs[k] + np.log(len(instances))] * len(instances)
        steps += list(LEARNERS)
        step_cost += list(costs[len(NAMES) + len(TEMPLATES):])
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


def is_learner(step: str) -> bool:
    return step in LEARNERS


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
    sharpness: float = SHARPNESS,
) -> SearchResult:
    """Best-first search for up to ``attempts`` programs solving ``train``; see the module
    docstring. ``probabilities`` are in NAMES_V2 order with ``templates``, else NAMES order.
    The search with a smaller budget is a prefix of this one (the deadline aside): a solution
    found at ``found_at[k]`` programs evaluated is found as well with any budget of at least
    that many (a local rule, fitted when the search ends, is the exception: it is recorded at
    the end of whichever budget ran)."""
    steps, costs = expand_steps(train, probabilities, templates, sharpness)  # cheapest first
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
    # heap entries: (cost, tie-break counter, program, grids of the program's prefix or, for a
    # learner that paused, its LearnerRun, sibling cursor or None). An expanded program's
    # children go on the heap one at a time: popping a child pushes its next sibling (the
    # cursor: parent cost, the steps allowed after the parent, this child's place among them,
    # the first tie-break counter of the family). The heap pops exactly the entries, in exactly
    # the order, of pushing every child at once: siblings come in (cost, counter) order, as
    # steps are sorted cheapest first and each expansion reserves its block of counters. It
    # only holds one entry per expanded program instead of one per child (hundreds).
    heap: list[tuple[float, int, tuple[str, ...], "list[np.ndarray] | LearnerRun", Optional[tuple]]] = []
    counter = 0
    allowed_after: dict[Optional[str], list[int]] = {}  # last step -> indices of the steps that may follow

    def allowed(last: Optional[str]) -> list[int]:
        key = last if last in DIHEDRAL or last in IDEMPOTENT else None  # _skipped is False for the others
        if key not in allowed_after:
            allowed_after[key] = [k for k, name in enumerate(steps) if not _skipped(key, name)]
        return allowed_after[key]

    def push_child(parent: tuple[str, ...], grids: list[np.ndarray], cost: float, indices: list[int], i: int,
                   first: int) -> None:
        k = indices[i]
        heapq.heappush(heap, (cost + costs[k], first + i, parent + (steps[k],), grids, (cost, indices, i, first)))

    def push_children(program: tuple[str, ...], grids: list[np.ndarray], cost: float) -> None:
        nonlocal counter
        if len(program) >= max_length:
            return
        indices = allowed(program[-1] if program else None)
        if indices:
            push_child(program, grids, cost, indices, 0, counter + 1)
            counter += len(indices)

    if not result.solutions:
        push_children((), inputs, 0.0)
    while heap and not done and result.evaluated_total < budget:
        if deadline is not None and (result.evaluated_total - 1) % 64 == 0 and time.perf_counter() > deadline:
            result.timed_out = True
            break
        cost, _, program, prefix_grids, sibling = heapq.heappop(heap)
        if sibling is not None:
            parent_cost, indices, i, first = sibling
            if i + 1 < len(indices):
                push_child(program[:-1], prefix_grids, parent_cost, indices, i + 1, first)
        if keep_trace:
            result.trace.append(program)
        if is_learner(program[-1]):
            run = prefix_grids if isinstance(prefix_grids, LearnerRun) else LearnerRun(program, prefix_grids, targets, cost)
            result.evaluated_total += run.fresh()
            done, spent = run.advance(result, budget, deadline,
                                      lambda p, c: _record(p, c, result, test_inputs, predicted, attempts))
            if spent:
                result.timed_out = spent == "deadline"
                break
            if not done and not run.finished:
                counter += 1
                heapq.heappush(heap, (run.cost(), counter, program, run, None))
            continue
        result.evaluated_total += 1
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


class LearnerRun:
    """A learner fitted on one prefix's grids, advanced one stage at a time: it pauses
    between stages (``fit(..., pause=True)`` yields None there) and the search re-queues it at
    ``base cost + log(1 + hypotheses checked)``, behind the programs cheaper than that. A big
    family (thousands of feature subsets) then shares the budget with the programs it
    competes with instead of spending it at once, the way a template's probability is shared
    by its argument choices."""

    def __init__(self, program: tuple[str, ...], prefix_grids: list[np.ndarray], targets: list[np.ndarray],
                 base_cost: float):
        self.program = program
        self.base_cost = base_cost
        self.meter = Meter()
        self.stages = learner(program[-1])(prefix_grids, targets, meter=self.meter, pause=True)
        self.started = False
        self.finished = False

    def fresh(self) -> int:
        """1 the first time (the node counts as one program evaluated, like any step), then 0."""
        first, self.started = not self.started, True
        return int(first)

    def cost(self) -> float:
        return self.base_cost + math.log1p(self.meter.used)

    def advance(self, result: SearchResult, budget: int, deadline: Optional[float],
                record: Callable[[tuple[str, ...], Fitted], bool]) -> tuple[bool, Optional[str]]:
        """Run to the next pause, ``record``-ing each candidate (with the prefix) until it says
        the attempts are filled. Hypotheses go into ``result.evaluated_total`` as they are
        checked (a solution's count includes the work before it). Returns (attempts filled,
        "budget"/"deadline" when the learner ran out of either, else None)."""
        self.meter.limit = self.meter.used + max(0, budget - result.evaluated_total)
        self.meter.deadline = deadline
        counted = self.meter.used
        try:
            for candidate in self.stages:
                result.evaluated_total += self.meter.used - counted
                counted = self.meter.used
                if candidate is None:
                    return False, None  # a pause: back into the queue
                if record(self.program[:-1], dataclasses.replace(candidate, family=self.program[-1])):
                    self.finished = True
                    return True, None
        except BudgetSpent as spent:
            result.evaluated_total += self.meter.used - counted
            self.finished = True
            return False, str(spent)
        result.evaluated_total += self.meter.used - counted
        self.finished = True
        return False, None


def _record(program: tuple[str, ...], finisher: Finisher, result: SearchResult,
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
    result.found_at.append(result.evaluated_total)
    return len(result.solutions) >= attempts


def solution_names(program: Sequence[str], finisher: Finisher) -> list[str]:
    """The DSL v2 vocabulary names (search.NAMES_V2) a solution uses, in program order: each
    step's template (a whole-grid primitive is its own), then its learner's family. A colour
    map or a local rule adds no name: the guide does not rank them."""
    names = [template_of(step) for step in program]
    if isinstance(finisher, Fitted) and finisher.family:
        names.append(finisher.family)
    return names


def apply_solution(program: Sequence[str], finisher: Finisher, grid: np.ndarray) -> np.ndarray:
    """Run a found program (and its colour map, local rule or fitted learner step) on one
    grid; raises NotApplicable."""
    out = run_steps(program, np.ascontiguousarray(grid, dtype=np.uint8))
    if isinstance(finisher, (LocalRule, Fitted)):
        return finisher.apply(out)
    return finisher[out] if finisher is not None else out

