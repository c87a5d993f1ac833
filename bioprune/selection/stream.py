"""Selection over a score column read block by block (an array or an HDF5 dataset): exact Top-k and
CCI in a few passes, memory O(k + block) whatever the pool size, also within groups (length strata).

The k-th largest score comes from a radix select on order-preserving integer keys of the float64
scores (16 bits per pass, a histogram of 65,536 counts; once the bucket holding the k-th largest
has at most COLLECT members they are gathered and finished with np.partition). Ties are broken by
position, as selections.top_k does, so both give the same indices. CCI then makes a min/max pass,
a histogram pass and a sampling pass that draws, per bin, the same ranks as
`rng.choice(members_of_bin, ...)` would (numpy's Generator.choice draws positions, then indexes).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from bioprune.errors import BiopruneError

BLOCK = 1 << 18
COLLECT = 1 << 16
DROPPED = -2  # bin of a score dropped as one of the highest
_SIGN = np.uint64(1 << 63)


class Column:
    """A 1-D numeric column (ndarray or h5py.Dataset) read as float64 blocks of `block` rows."""

    def __init__(self, data, name: str = "score", block: int = BLOCK):
        self.data, self.name, self.block = data, name, int(block)
        self.n = int(data.shape[0])

    def __len__(self) -> int:
        return self.n

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        for a in range(0, self.n, self.block):
            x = np.asarray(self.data[a:a + self.block], dtype=np.float64)
            if np.isnan(x).any():
                raise BiopruneError(f"{self.name}: NaN at position {a + int(np.flatnonzero(np.isnan(x))[0])}; "
                                    "re-run scoring")
            yield a, x

    def full(self) -> np.ndarray:
        return np.concatenate([x for _, x in self.blocks()]) if self.n else np.zeros(0)


def as_column(data, name: str = "score") -> Column:
    return data if isinstance(data, Column) else Column(data, name)


def _keys(x: np.ndarray) -> np.ndarray:
    """uint64 keys in the order of the float64 values x (no NaN): a refinement of it (-0.0 < 0.0), so
    the k-th largest key is a k-th largest value, and every later test compares values, not keys."""
    u = x.view(np.uint64)
    return np.where(u & _SIGN, ~u, u | _SIGN)


def _float_of_key(key) -> float:
    u = np.array([key], dtype=np.uint64)
    return float(np.where(u & _SIGN, u & ~_SIGN, ~u).view(np.float64)[0])


def group_ranks(g: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Rank of each element among the elements of its group (in position order), and group counts."""
    order = np.argsort(g, kind="stable")
    counts = np.bincount(g, minlength=n_groups)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    rank = np.empty(len(g), dtype=np.int64)
    rank[order] = np.arange(len(g)) - starts[g[order]]
    return rank, counts


class Grouped:
    """A score column split into groups (length strata, or one group): blocks() yields (start,
    scores, group of each score); every group-wise selection below reads it in a few passes."""

    def __init__(self, col: Column, n_groups: int = 1, groups_of=None):
        self.col, self.n_groups, self.groups_of = col, int(n_groups), groups_of

    def blocks(self) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        if self.groups_of is None:
            for a, x in self.col.blocks():
                yield a, x, np.zeros(len(x), dtype=np.int64)
        else:
            yield from self.groups_of()


def kth_largest_by_group(src: Grouped, ks) -> np.ndarray:
    """thr[s] = the ks[s]-th largest score of group s, exactly (inf where ks[s] == 0)."""
    ks = np.asarray(ks, dtype=np.int64)
    if src.n_groups > MANY_GROUPS:  # categorical strata (clusters): n_groups x 2^16 histograms would not fit
        return _kth_largest_in_memory(src, ks)
    n_groups, todo = src.n_groups, ks > 0
    thr = np.full(n_groups, np.inf)
    prefix, need = np.zeros(n_groups, dtype=np.uint64), ks.copy()  # keys whose top bits equal prefix[s]
    for shift in (48, 32, 16, 0):
        if not todo.any():
            break
        hist = np.zeros(n_groups << 16, dtype=np.int64)
        for _, x, g in src.blocks():
            sel = todo[g]
            key, gs = _keys(x[sel]), g[sel]
            if shift < 48:
                same = (key >> np.uint64(shift + 16)) == prefix[gs]
                key, gs = key[same], gs[same]
            hist += np.bincount((gs << 16) + ((key >> np.uint64(shift)) & np.uint64(0xFFFF)).astype(np.int64),
                                minlength=n_groups << 16)
        hist = hist.reshape(n_groups, 1 << 16)
        collect = np.zeros(n_groups, dtype=bool)
        for s in np.flatnonzero(todo):
            h = hist[s]
            above = np.cumsum(h[::-1])[::-1] - h  # members in higher buckets
            d = int(np.flatnonzero((above < need[s]) & (above + h >= need[s]))[-1])
            prefix[s], need[s] = (prefix[s] << np.uint64(16)) | np.uint64(d), need[s] - above[d]
            if shift == 0:
                thr[s], todo[s] = _float_of_key(prefix[s]), False
            elif h[d] <= COLLECT:  # few enough: gather the bucket and finish in memory
                collect[s] = True
        if collect.any():
            members: dict[int, list] = {int(s): [] for s in np.flatnonzero(collect)}
            for _, x, g in src.blocks():
                sel = collect[g]
                xs, gs = x[sel], g[sel]
                hit = (_keys(xs) >> np.uint64(shift)) == prefix[gs]
                xs, gs = xs[hit], gs[hit]
                for s in np.unique(gs).tolist():
                    members[s].append(xs[gs == s])
            for s, parts in members.items():
                m = np.concatenate(parts)
                thr[s], todo[s] = np.partition(m, len(m) - need[s])[len(m) - need[s]], False
    return thr


MANY_GROUPS = 64  # beyond this many groups kth_largest_by_group sorts in memory (O(pool), no histograms)


def _kth_largest_in_memory(src: Grouped, ks: np.ndarray) -> np.ndarray:
    """kth_largest_by_group by one sort of (group, -score): for many small groups (source, cluster strata,
    whose labels are in memory anyway)."""
    parts = list(src.blocks())
    x = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0)
    g = np.concatenate([p[2] for p in parts]).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)
    order = np.lexsort((-x, g))
    starts = np.searchsorted(g[order], np.arange(src.n_groups), side="left")
    thr = np.full(src.n_groups, np.inf)
    todo = np.flatnonzero(ks > 0)
    thr[todo] = x[order[starts[todo] + ks[todo] - 1]]
    return thr


def kth_largest(col: Column, k: int) -> float:
    """The k-th largest value of the column (1 <= k <= n), exactly."""
    if not 1 <= k <= len(col):
        raise ValueError(f"k = {k} outside 1..{len(col)}")
    return float(kth_largest_by_group(Grouped(col), [k])[0])


@dataclass
class TopCut:
    """The ks[s] largest scores of each group as a streaming predicate: score > thr[s], or == thr[s]
    among the first ties[s] such positions of the group (tie-break by position)."""

    thr: np.ndarray
    ties: np.ndarray
    seen: np.ndarray

    @classmethod
    def of(cls, src: Grouped, ks) -> "TopCut":
        ks = np.asarray(ks, dtype=np.int64)
        thr = kth_largest_by_group(src, ks)
        above = np.zeros(src.n_groups, dtype=np.int64)
        for _, x, g in src.blocks():
            above += np.bincount(g[x > thr[g]], minlength=src.n_groups)
        return cls(thr, ks - above, np.zeros(src.n_groups, dtype=np.int64))

    def fresh(self) -> "TopCut":
        return TopCut(self.thr, self.ties, np.zeros_like(self.seen))

    def mask(self, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        """Members of the top sets in this block (blocks visited once each, in order)."""
        t = self.thr[g]
        m = x > t
        eq = np.flatnonzero(x == t)
        ge = g[eq]
        rank, counts = group_ranks(ge, len(self.seen))
        m[eq[self.seen[ge] + rank < self.ties[ge]]] = True
        self.seen += counts
        return m


def top_by_group(src: Grouped, ks) -> np.ndarray:
    """The ks[s] highest scores of every group s, ordered by score (ties by position): with one
    group = the first k of a stable argsort of -values."""
    k = int(np.sum(ks))
    cut = TopCut.of(src, ks)
    idx, val, m = np.empty(k, dtype=np.int64), np.empty(k), 0  # exactly k members, filled in position order
    for a, x, g in src.blocks():
        hit = np.flatnonzero(cut.mask(x, g))
        idx[m:m + len(hit)], val[m:m + len(hit)] = hit + a, x[hit]
        m += len(hit)
    np.negative(val, out=val)
    return idx[np.argsort(val, kind="stable")]  # idx ascending, so a stable sort breaks ties by position


def top_k_stream(col: Column, k: int) -> np.ndarray:
    """Indices of the k largest, by value, ties by position (= the first k of a stable argsort of -values)."""
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    if k >= len(col):
        return np.argsort(-col.full(), kind="stable")
    return top_by_group(Grouped(col), [k])


class Binner:
    """CCI's equal-width bins over the kept scores [lo, hi] (see selections.cci_bins for the two edges)."""

    def __init__(self, lo: float, hi: float, n_bins: int, edge: str):
        self.n_bins, self.edge = n_bins, edge
        if edge == "official":
            self.lo, self.hi = -hi, -lo * 1.0001
            self.edges = np.linspace(self.lo, self.hi, n_bins + 1)
        else:
            self.lo, self.hi = lo, hi
            self.edges = np.linspace(lo, hi, n_bins + 1)[1:-1]

    def __call__(self, s: np.ndarray) -> np.ndarray:
        """Bin of each score (int64; -1 outside every bin)."""
        if self.edge == "official":
            signed = -s
            b = np.searchsorted(self.edges, signed, side="right") - 1
            b[(signed >= self.hi) | (b >= self.n_bins)] = -1
            return b
        if self.hi == self.lo:
            return np.zeros(len(s), dtype=np.int64)
        return np.searchsorted(self.edges, s, side="right")


def check_cci(beta: float, edge: str) -> None:
    if not 0 <= beta < 1:
        raise BiopruneError(f"config key selection.cci.beta: {beta} must be in [0, 1)")
    if edge not in ("inclusive", "official"):
        raise BiopruneError(f"config key selection.cci.bin_edge: {edge!r} is not inclusive or official")


@dataclass
class CCIPlan:
    """Per group s: the cut-off of its dropped top scores and the bins of the rest, numbered
    s * n_bins + j (flat bins: groups in order, bins in order)."""

    cut: TopCut
    binners: list
    n_bins: int

    @classmethod
    def of(cls, src: Grouped, n_drops, n_bins: int, edge: str) -> "CCIPlan":
        """Set-up passes: the drop cut-offs, then the extremes of each group's kept scores."""
        cut = TopCut.of(src, n_drops)
        lo, hi = np.full(src.n_groups, np.inf), np.full(src.n_groups, -np.inf)
        c = cut.fresh()
        for _, x, g in src.blocks():
            kept = ~c.mask(x, g)
            np.minimum.at(lo, g[kept], x[kept])
            np.maximum.at(hi, g[kept], x[kept])
        return cls(cut, [Binner(lo[s], hi[s], n_bins, edge) if lo[s] <= hi[s] else None
                         for s in range(src.n_groups)], n_bins)

    def binned(self, src: Grouped) -> Iterator[tuple[int, np.ndarray]]:
        """(start, flat bin) per block: DROPPED for the dropped top scores, -1 outside every bin."""
        cut = self.cut.fresh()
        for a, x, g in src.blocks():
            drop = cut.mask(x, g)
            out = np.full(len(x), DROPPED, dtype=np.int64)
            for s, binner in enumerate(self.binners):
                if binner is not None:
                    sel = np.flatnonzero(~drop) if len(self.binners) == 1 else np.flatnonzero((g == s) & ~drop)
                    b = binner(x[sel])
                    out[sel] = np.where(b >= 0, s * self.n_bins + b, -1)
            yield a, out

    def sizes(self, src: Grouped) -> np.ndarray:
        """Members of every flat bin (the histogram pass)."""
        n = len(self.binners) * self.n_bins
        sizes = np.zeros(n, dtype=np.int64)
        for _, b in self.binned(src):
            sizes += np.bincount(b[b >= 0], minlength=n)
        return sizes

    def pick(self, src: Grouped, sizes: np.ndarray, draws: dict) -> np.ndarray:
        """Sorted positions of the drawn members: draws[f] = ranks (in position order) of the
        members of flat bin f to take (the sampling pass)."""
        if not any(len(r) for r in draws.values()):
            return np.zeros(0, dtype=np.int64)
        offset = np.concatenate([[0], np.cumsum(sizes)])
        wanted = np.sort(np.concatenate([offset[f] + np.asarray(r, dtype=np.int64) for f, r in draws.items()]))
        seen = np.zeros(len(sizes), dtype=np.int64)
        out = []
        for a, b in self.binned(src):
            pos = np.flatnonzero(b >= 0)
            bb = b[pos]
            rank, counts = group_ranks(bb, len(sizes))
            key = offset[bb] + seen[bb] + rank  # place in "flat bins in order, members by position"
            at = np.minimum(np.searchsorted(wanted, key), len(wanted) - 1)
            out.append(pos[wanted[at] == key] + a)
            seen += counts
        return np.concatenate(out)
