"""Local rules: an output cell as a function of the input cell's neighbourhood, fitted on
the train pairs (the search's fallback for same-shape tasks no program explains).

Many ARC tasks paint cells by what is around them (grow a border, extend a pattern, mark
cells next to a colour). A local rule is the lookup table ``neighbourhood -> colour``
read off the train pairs: the cell's colour and its 2 neighbours in its row (``row``) or
column (``column``), its 4 neighbours (``cross``) or its 8 (``square``), with a border
value outside the grid; smaller neighbourhoods generalise further and are tried first. It is accepted only when the train
pairs never give one neighbourhood two colours and it changes some cell; it applies to a
grid only when every neighbourhood there was seen in training (else NotApplicable), so
an unseen situation is never guessed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from tasks.arc_guide.dsl import NotApplicable

BORDER = 10  # the value of cells outside the grid
NEIGHBOURHOODS = ("row", "column", "cross", "square")  # tried in this order: smallest (most general) first
OFFSETS = {
    "row": ((0, 0), (0, -1), (0, 1)),
    "column": ((0, 0), (-1, 0), (1, 0)),
    "cross": ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)),
    "square": ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)),
}


def codes(grid: np.ndarray, neighbourhood: str) -> np.ndarray:
    """(rows * cols,) int64: each cell's neighbourhood as a base-11 number."""
    padded = np.pad(grid.astype(np.int64), 1, constant_values=BORDER)
    h, w = grid.shape
    out = np.zeros((h, w), dtype=np.int64)
    for dr, dc in OFFSETS[neighbourhood]:
        out = out * 11 + padded[1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w]
    return out.ravel()


@dataclass(frozen=True)
class LocalRule:
    """A fitted table: ``keys`` (sorted neighbourhood codes) -> ``colours``."""

    neighbourhood: str
    keys: np.ndarray  # (n,) int64, sorted
    colours: np.ndarray  # (n,) uint8

    @property
    def name(self) -> str:
        return f"local_rule({self.neighbourhood})"

    def apply(self, grid: np.ndarray) -> np.ndarray:
        """The grid with every cell looked up; NotApplicable if a neighbourhood is new."""
        c = codes(grid, self.neighbourhood)
        at = np.minimum(np.searchsorted(self.keys, c), len(self.keys) - 1)
        if not np.array_equal(self.keys[at], c):
            raise NotApplicable("a neighbourhood the train pairs never showed")
        return self.colours[at].reshape(grid.shape)


def fit_local_rule(inputs: Sequence[np.ndarray], targets: Sequence[np.ndarray],
                   neighbourhood: str) -> Optional[LocalRule]:
    """The rule that maps every input to its target, or None (shapes differ, a
    neighbourhood needs two colours, or the rule changes nothing)."""
    if any(i.shape != t.shape for i, t in zip(inputs, targets)):
        return None
    if all(np.array_equal(i, t) for i, t in zip(inputs, targets)):
        return None
    keys = np.concatenate([codes(i, neighbourhood) for i in inputs])
    colours = np.concatenate([t.ravel() for t in targets]).astype(np.int64)
    pairs = np.unique(keys * 16 + colours)  # distinct (neighbourhood, colour) pairs, sorted by key
    unique_keys = pairs // 16
    if len(np.unique(unique_keys)) != len(unique_keys):
        return None  # some neighbourhood has two colours
    return LocalRule(neighbourhood, unique_keys, (pairs % 16).astype(np.uint8))
