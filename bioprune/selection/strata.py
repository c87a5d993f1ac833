"""Strata for stratified selection (selection.{top_influence,cci}.stratify_by).

length: quantile strata of sequence length, from one pass over a length column (selection_stream.Column):
the strata of every sequence and the score column grouped by them.
source, cluster: categorical strata from a label per scored sequence (LabelPlan): the pool source of its id
(the prefix before the first `_`, leakage.pool_source, or selection.source_map's id -> source table) or
its MMseqs2 cluster at selection.cluster.identity (the cluster rule's members table)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bioprune.errors import BiopruneError
from bioprune.selection.stream import Column, Grouped


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


@dataclass
class LabelPlan:
    """Categorical strata: `labels` = stratum 0..m-1 of every scored sequence (in the scores' order),
    `names` = the stratum names, `sizes` = members per stratum (all >= 1)."""

    labels: np.ndarray
    names: list[str]
    sizes: np.ndarray

    @classmethod
    def of(cls, keys: list[str]) -> "LabelPlan":
        """Strata numbered by sorted name (deterministic whatever the pool order)."""
        names, labels = np.unique(np.asarray(keys, dtype=object).astype(str), return_inverse=True)
        return cls(labels.astype(np.int64), [str(n) for n in names], np.bincount(labels, minlength=len(names)))

    def grouped(self, score: Column) -> Grouped:
        if len(score) != len(self.labels):
            raise BiopruneError(f"stratify_by: {len(self.labels)} stratum labels for {len(score)} scores")

        def blocks():
            for a, x in score.blocks():
                yield a, x, self.labels[a:a + len(x)]
        return Grouped(score, len(self.sizes), blocks)


def read_source_map(path: str) -> dict[str, str]:
    """selection.source_map: a TSV of `id<TAB>source` lines (lines starting with # skipped)."""
    from pathlib import Path

    if not Path(path).is_file():
        raise BiopruneError(f"config key selection.source_map: {path}: file not found")
    out = {}
    for n, line in enumerate(open(path), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.rstrip("\n").split("\t")
        if len(parts) < 2:
            raise BiopruneError(f"config key selection.source_map: {path} line {n}: expected id<TAB>source")
        out[parts[0]] = parts[1]
    return out


def source_labels(ids: list[str], source_map: str | None = None) -> list[str]:
    """The source of every id: selection.source_map's entry, or the id's prefix before the first `_`
    (leakage.pool_source: rrna, trna, mircarta, rfam in the RNA pool; `pool` for ids without one)."""
    from bioprune.leakage.gate import pool_source

    if not source_map:
        return [pool_source(i) for i in ids]
    table = read_source_map(source_map)
    missing = [i for i in ids if i not in table]
    if missing:
        raise BiopruneError(f"config key selection.source_map: {len(missing)} scored ids have no source in {source_map} "
                            f"(e.g. {', '.join(missing[:3])})")
    return [table[i] for i in ids]


def cluster_labels(ids: list[str], members: str) -> list[str]:
    """The MMseqs2 cluster (its representative's id) of every id, from the cluster rule's members table
    (`representative<TAB>member` lines, mmseqs easy-linclust's _cluster.tsv)."""
    rep = {}
    for line in open(members):
        if line.strip():
            r, m = line.rstrip("\n").split("\t")[:2]
            rep[m] = r
    missing = [i for i in ids if i not in rep]
    if missing:
        raise BiopruneError(f"config key selection.cluster: {len(missing)} scored ids are in no cluster of {members} "
                            f"(e.g. {', '.join(missing[:3])}); re-run the cluster rule")
    return [rep[i] for i in ids]
