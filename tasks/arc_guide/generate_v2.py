"""DSL v2 records: object-level templates (and whole-grid primitives) on ARC-like scenes.

Record ``i`` is a pure function of ``(seed, i)``, in the format of tasks.arc_guide.generate;
its ``primitives`` are the template and primitive names of the program (arguments, which
the search enumerates per task, are not labels). A draw is kept only when it passes the
filters re-arc and BARC use:
- every step applies to every pair, and the program is deterministic (it is numpy);
- no output equals its input, no output is a single colour, inputs are distinct;
- every step changes some pair's grid (no step is dead weight).
Labels are the shortest program found: each program obtained by deleting steps, and for
programs of 2+ steps every single step (whole-grid primitive or template step of the task),
is tried on all pairs. Quality: 1, times 0.5 when a shorter program was found (the label
is then that one), times 0.8 when the pairs use fewer than 3 colours.
"""
from __future__ import annotations

import itertools
from typing import Any, Sequence

import numpy as np

from tasks.arc_guide.dsl import PRIMITIVES, NotApplicable
from tasks.arc_guide.scenes import FAMILIES, scene, style
from tasks.arc_guide.generate import has_noop_step, reproduces
from tasks.arc_guide.templates import run_steps, task_steps, template_of

MAX_ATTEMPTS = 400
# templates that have something to do on each family's scenes
FAMILY_TEMPLATES = {
    "objects": ("crop_selected", "keep_selected", "remove_selected", "recolour_selected", "move_selected",
                "gravitate_objects", "box_objects", "outline_objects", "count_objects", "recolour_by_size",
                "fill_enclosed_with", "remove_colour", "keep_colour", "crop_colour"),
    "separated": ("overlay_parts", "select_part", "parts_to_cells"),
    "halves": ("overlay_parts",),
    "symmetric": ("complete_symmetry", "crop_hole"),
    "points": ("lines_from", "connect_same_colour"),
}
WHOLE_GRID = tuple(PRIMITIVES)
TEMPLATE_NAMES = tuple(sorted({t for names in FAMILY_TEMPLATES.values() for t in names}))
TEMPLATE_SHARE = 0.7  # a step is a template this often, else a whole-grid primitive

Pair = tuple[np.ndarray, np.ndarray]


def passes_filters(program: Sequence[str], pairs: Sequence[Pair]) -> bool:
    """The module docstring's filters (the program already applied to every pair)."""
    inputs = [i for i, _ in pairs]
    if len({i.tobytes() + bytes(i.shape) for i in inputs}) < len(inputs):
        return False
    if any(np.array_equal(i, o) or len(np.unique(o)) == 1 for i, o in pairs):
        return False
    return not has_noop_step(program, pairs)  # a dead step


def shortest_found(program: tuple[str, ...], pairs: Sequence[Pair], steps: Sequence[str]) -> tuple[str, ...]:
    """The shortest program found that reproduces ``pairs`` (module docstring)."""
    if len(program) >= 2:
        for step in steps:
            if reproduces((step,), pairs):
                return (step,)
    for length in range(1, len(program)):
        for kept in itertools.combinations(range(len(program)), length):
            shorter = tuple(program[k] for k in kept)
            if reproduces(shorter, pairs):
                return shorter
    return program


def _step_pool(inputs: Sequence[np.ndarray], rng: np.random.Generator) -> dict[str, list[str]]:
    """Template steps for these inputs: colours of the inputs plus one new colour."""
    new_colour = int(rng.integers(1, 10))
    probe = [(g, g) for g in inputs] + [(np.full((1, 1), new_colour, dtype=np.uint8),) * 2]
    return task_steps(probe)


def make_record_v2(seed: int, index: int, pairs: int = 3, max_length: int = 3) -> dict[str, Any]:
    """Record ``index`` of the DSL v2 dataset with this seed: a pure function of its arguments."""
    rng = np.random.default_rng([seed, index, 2])
    for _attempt in range(MAX_ATTEMPTS):
        # the first step's template uniformly (balanced labels), then a family it works on
        first = TEMPLATE_NAMES[int(rng.integers(0, len(TEMPLATE_NAMES)))]
        families = [f for f in FAMILIES if first in FAMILY_TEMPLATES[f]]
        family = families[int(rng.integers(0, len(families)))]
        look = style(rng, family)
        inputs = [scene(rng, family, look) for _ in range(pairs)]
        pool = _step_pool(inputs, rng)
        length = int(rng.integers(1, max_length + 1))
        program = []
        for k in range(length):
            if k == 0 or rng.random() < TEMPLATE_SHARE * 0.5:
                template = first if k == 0 else TEMPLATE_NAMES[int(rng.integers(0, len(TEMPLATE_NAMES)))]
                choices = pool[template]
                if not choices:
                    break
                program.append(choices[int(rng.integers(0, len(choices)))])
            else:
                program.append(WHOLE_GRID[int(rng.integers(0, len(WHOLE_GRID)))])
        if len(program) != length:
            continue
        try:
            outputs = [run_steps(program, g) for g in inputs]
        except NotApplicable:
            continue
        pair_list = list(zip(inputs, outputs))
        if not passes_filters(program, pair_list):
            continue
        steps = list(WHOLE_GRID) + [s for instances in pool.values() for s in instances]
        label = shortest_found(tuple(program), pair_list, steps)
        colours = len(np.unique(np.concatenate([g.ravel() for p in pair_list for g in p])))
        quality = (0.5 if len(label) < len(program) else 1.0) * (0.8 if colours < 3 else 1.0)
        return {
            "input": inputs[0].tolist(),
            "output": outputs[0].tolist(),
            "primitives": [template_of(step) for step in label],
            "quality": quality,
            "complexity": round(min(1.0, len(label) / max_length), 4),
            "task_id": f"synth2-{seed}-{index:07d}",
            "pairs": [{"input": i.tolist(), "output": o.tolist()} for i, o in pair_list],
            "program": list(label),
        }
    raise RuntimeError(f"record {index}: no program passed the filters in {MAX_ATTEMPTS} attempts")
