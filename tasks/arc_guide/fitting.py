"""Fitted steps: DSL steps whose parameters are read off a task's train pairs.

Most ARC tasks are not one fixed transform: "recolour each object by its size", "crop the
object that differs", "lay out copies of the input as the input's own cells say" all carry
parameters (which property, which colour for which size, which layout) that only the train
pairs tell. A *learner* reads them off: given the grids a program has produced so far for
every train input (``inputs``) and the train outputs (``targets``), it yields
:class:`Fitted` candidates that map every input exactly to its target, most plausible
first. The search (tasks.arc_guide.search) uses a learner as a program's last step; the
guide ranks learners by their family name like any other step.

Contract of a learner ``fit(inputs, targets, meter=None, pause=False) -> Iterator[Fitted]``:
- ``inputs`` and ``targets`` are equally long lists of (rows, cols) uint8 grids; it never
  mutates them. It yields nothing when it has no explanation of the pairs.
- Every yielded candidate reproduces every pair exactly (``apply(inputs[k]) == targets[k]``),
  applies to grids it has never seen, and raises ``NotApplicable`` when a grid falls
  outside what the pairs showed (an unseen situation is never guessed).
- Candidates come simplest (most general) first; a caller may stop reading at any point,
  so the learner does its work lazily and bounds its own effort (a few tenths of a second
  on a 30x30 task at most).
- It reads nothing but its arguments: the test pairs' outputs are never visible to it.
- It charges ``meter`` (a :class:`Meter`; None: unmetered) one unit per hypothesis it
  checks against the train pairs, before checking it: each hypothesis is a program (the
  prefix plus this fitted step), so the search's budget of programs evaluated covers the
  learners' own search too. ``Meter.charge`` raises :class:`BudgetSpent` when the search's
  budget or deadline is used up; the learner lets it propagate (its generator then ends).
- With ``pause=True`` it may yield None between stages of its own search (e.g. before its
  costly larger hypotheses): the search then puts it back in its queue behind cheaper
  programs (tasks.arc_guide.search.LearnerRun). Without it, it yields candidates only.

``LEARNERS`` is the registry: family name (what the guide ranks) -> ``"module:function"``,
imported on first use.
"""
from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence

import numpy as np

from tasks.arc_guide.dsl import NotApplicable, bounded

Grid = np.ndarray
Learner = Callable[..., Iterator["Fitted"]]  # fit(inputs, targets, meter=None)


class BudgetSpent(Exception):
    """The search's budget of programs evaluated, or its deadline, is used up."""


class Meter:
    """Counts the hypotheses a learner checks (``used``) and stops it at ``limit`` of them or
    at ``deadline`` (a ``time.perf_counter()`` value); either may be None (no bound)."""

    def __init__(self, limit: Optional[int] = None, deadline: Optional[float] = None):
        self.used = 0
        self.limit = limit
        self.deadline = deadline

    def charge(self, hypotheses: int = 1) -> None:
        """Count ``hypotheses`` about to be checked; BudgetSpent (and nothing counted past the
        limit) when they do not fit the budget or the deadline has passed."""
        if self.limit is not None and self.used + hypotheses > self.limit:
            self.used = self.limit
            raise BudgetSpent("budget")
        self.used += hypotheses
        if self.deadline is not None and time.perf_counter() > self.deadline:
            raise BudgetSpent("deadline")


@dataclass(frozen=True)
class Fitted:
    """One fitted hypothesis: ``name`` says what it is (shown in reports, e.g.
    ``cell_rule(colour,object_size)``); ``function`` maps a grid to its output and raises
    ``NotApplicable`` where the train pairs did not cover the grid. ``family`` is the
    learner that fitted it (a LEARNERS key, what the guide ranks), set by the search; ""
    when unknown."""

    name: str
    function: Callable[[Grid], Grid]
    family: str = ""

    def apply(self, grid: Grid) -> Grid:
        """The output for ``grid``; NotApplicable when undefined or outside ARC bounds."""
        return bounded(self.function(np.ascontiguousarray(grid, dtype=np.uint8)))


LEARNERS: dict[str, str] = {
    "cell_rule": "tasks.arc_guide.learn_cells:fit",
    "select_crop": "tasks.arc_guide.learn_crop:fit",
    "compose_tiles": "tasks.arc_guide.learn_tiles:fit",
    "complete_pattern": "tasks.arc_guide.learn_patterns:fit",
}


def learner(name: str) -> Learner:
    """The learner of family ``name`` (KeyError for an unknown name)."""
    module, _, function = LEARNERS[name].partition(":")
    return getattr(importlib.import_module(module), function)


def reproduces(candidate: Fitted, inputs: Sequence[Grid], targets: Sequence[Grid]) -> bool:
    """Whether ``candidate`` maps every input exactly to its target."""
    try:
        return all(np.array_equal(candidate.apply(i), t) for i, t in zip(inputs, targets))
    except NotApplicable:
        return False
