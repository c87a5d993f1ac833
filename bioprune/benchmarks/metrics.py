"""Metric code: base-pair F1, per-residue accuracy, and mean with a 95% t-interval."""
from __future__ import annotations

import math

import numpy as np
from scipy import stats


def pair_f1(pred: set[tuple[int, int]], true: set[tuple[int, int]]) -> float:
    """F1 of predicted vs true base pairs (i < j). Both empty = 1; one empty = 0."""
    pred = {(min(i, j), max(i, j)) for i, j in pred}
    true = {(min(i, j), max(i, j)) for i, j in true}
    if not pred and not true:
        return 1.0
    tp = len(pred & true)
    if tp == 0:
        return 0.0
    p, r = tp / len(pred), tp / len(true)
    return 2 * p * r / (p + r)


def dotbracket_pairs(db: str) -> set[tuple[int, int]]:
    """Pairs of a plain dot-bracket string."""
    stack, out = [], set()
    for i, c in enumerate(db):
        if c == "(":
            stack.append(i)
        elif c == ")":
            out.add((stack.pop(), i))
    return out


def residue_accuracy(pred: np.ndarray, true: np.ndarray) -> float:
    """Fraction of positions with the right label (Q3 or Q8)."""
    pred, true = np.asarray(pred), np.asarray(true)
    if pred.shape != true.shape or pred.size == 0:
        raise ValueError("pred and true must be non-empty and of equal shape")
    return float((pred == true).mean())


SS3 = {"H": "H", "G": "H", "I": "H", "E": "E", "B": "E"}


def dssp_to_ss3(dssp8: str) -> str:
    """DSSP 8-state to 3-state: H,G,I -> H; E,B -> E; everything else -> C."""
    return "".join(SS3.get(c, "C") for c in dssp8)


def mean_ci(values, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and the two ends of a t confidence interval; one value gives a zero-width interval."""
    v = np.asarray([x for x in values if x == x], dtype=float)
    if v.size == 0:
        return (math.nan, math.nan, math.nan)
    m = float(v.mean())
    if v.size == 1:
        return (m, m, m)
    half = float(stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return (m, m - half, m + half)
