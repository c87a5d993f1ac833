"""Rank statistics of score vectors, shared by the score merge (score-length correlation) and the
stability report: Spearman's rho with the reason it is undefined, and the Jaccard index of two top sets."""
from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho; NaN when fewer than 3 values or either side is constant (see undefined_why)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if undefined_why(x, y):
        return float("nan")
    return float(spearmanr(x, y).statistic)


def undefined_why(x, y, names: tuple[str, str] = ("scores", "scores")) -> str:
    """Why Spearman(x, y) is undefined ('' when it is defined): fewer than 3 values, or a constant side."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3:
        return f"{len(x)} sequence{'' if len(x) == 1 else 's'} (Spearman needs at least 3)"
    for v, name in ((x, names[0]), (y, names[1])):
        if np.ptp(v) == 0:
            extra = " (every sequence cropped to corpus.max_length?)" if name == "lengths" else ""
            return f"all {len(v)} {name} equal {v[0]:g}{extra}"
    return ""


def jaccard(a, b) -> float:
    a, b = set(a), set(b)
    return len(a & b) / len(a | b) if a | b else float("nan")
