"""Quantile strata of sequence length for length-stratified selection, from one pass over a length
column (selection_stream.Column): the strata of every sequence and the score column grouped by them."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import BiopruneError
from .selection_stream import Column, Grouped


@dataclass
class StrataPlan:
    """Quantile strata of length from one pass over the lengths (their distinct values and counts):
    inner edges np.unique(np.quantile(lengths, j / n_strata)), j = 1..n_strata-1, computed from the
    counts with numpy's own interpolation, so they equal the in-memory ones; strata 0..m-1."""

    inner: np.ndarray
    label: np.ndarray  # stratum of each raw label searchsorted(inner, length, "right")
    sizes: np.ndarray
    length: Column

    @classmethod
    def of(cls, length: Column, n_strata: int) -> "StrataPlan":
        vals, cnts = np.zeros(0), np.zeros(0, dtype=np.int64)
        for _, v in length.blocks():
            u, c = np.unique(v, return_counts=True)
            vals, inv = np.unique(np.concatenate([vals, u]), return_inverse=True)
            cnts = np.bincount(inv, weights=np.concatenate([cnts, c]), minlength=len(vals)).astype(np.int64)
        n = int(cnts.sum())
        inner = np.zeros(0)
        if n:
            v = (n - 1) * (np.arange(1, int(n_strata)) / n_strata)  # numpy's virtual index (method linear)
            lo = np.floor(v).astype(np.int64)
            cum = np.cumsum(cnts)
            a = vals[np.searchsorted(cum, lo, side="right")]
            b = vals[np.searchsorted(cum, np.minimum(lo + 1, n - 1), side="right")]
            inner = np.unique([np.quantile(np.array([x, y]), t) for x, y, t in zip(a, b, v - lo)])
        present = np.zeros(len(inner) + 1, dtype=bool)
        raw = np.searchsorted(inner, vals, side="right")
        present[raw] = True
        label = np.cumsum(present) - 1
        sizes = np.bincount(label[raw], weights=cnts, minlength=int(present.sum())).astype(np.int64)
        return cls(inner, label, sizes, length)

    def of_lengths(self, v: np.ndarray) -> np.ndarray:
        return self.label[np.searchsorted(self.inner, v, side="right")]

    def grouped(self, score: Column) -> Grouped:
        if len(score) != len(self.length):
            raise BiopruneError(f"{self.length.name}: {len(self.length)} lengths for {len(score)} scores")

        def blocks():
            for (a, x), (_, v) in zip(score.blocks(), self.length.blocks()):
                yield a, x, self.of_lengths(v)
        return Grouped(score, len(self.sizes), blocks)
