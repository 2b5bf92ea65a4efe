"""Validation metrics of the guide: multi-label ranking and set prediction, numpy only.

All take ``scores`` (N, P) float (probabilities or logits; only the order matters for the
ranking metrics), ``labels`` (N, P) {0, 1} and, for recall@k, ``lengths`` (N,) int.
"""
from __future__ import annotations

import numpy as np


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """AP of one class: mean over positives of precision at their rank (ties broken
    pessimistically: a tied negative ranks first). NaN if the class has no positive."""
    positives = labels.sum()
    if positives == 0:
        return float("nan")
    order = np.lexsort((labels, -scores))  # by score descending, negatives first among ties
    hits = labels[order].astype(np.float64)
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / positives)


def mean_average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Macro mAP: AP averaged over the primitives that occur in ``labels``."""
    aps = [average_precision(scores[:, j], labels[:, j]) for j in range(labels.shape[1])]
    aps = [a for a in aps if not np.isnan(a)]
    return float(np.mean(aps)) if aps else float("nan")


def micro_f1(probs: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> float:
    pred = probs >= threshold
    true = labels.astype(bool)
    tp = np.sum(pred & true)
    denom = pred.sum() + true.sum()
    return float(2 * tp / denom) if denom else 1.0


def exact_set_accuracy(probs: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> float:
    """Share of records whose predicted set (prob >= threshold) is exactly the true set."""
    return float(np.mean(np.all((probs >= threshold) == labels.astype(bool), axis=1)))


def recall_at_k(scores: np.ndarray, labels: np.ndarray, lengths: np.ndarray, extra: int = 2) -> float:
    """Share of records whose true primitives all rank within the top k = length + extra."""
    # rank[i, j]: position of primitive j in record i's descending order (0 = best)
    rank = np.empty_like(scores, dtype=np.int64)
    order = np.argsort(-scores, axis=1, kind="stable")
    np.put_along_axis(rank, order, np.arange(scores.shape[1])[None, :].repeat(len(scores), 0), axis=1)
    k = (lengths + extra)[:, None]
    ok = np.all(~labels.astype(bool) | (rank < k), axis=1)
    return float(np.mean(ok))
