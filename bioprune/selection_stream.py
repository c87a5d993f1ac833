"""Selection over a score column read block by block (an array or an HDF5 dataset): exact Top-k and
CCI in a few passes, memory O(k + block) whatever the pool size.

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

from .errors import BiopruneError

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


def kth_largest(col: Column, k: int) -> float:
    """The k-th largest value of the column (1 <= k <= n), exactly."""
    if not 1 <= k <= len(col):
        raise ValueError(f"k = {k} outside 1..{len(col)}")
    prefix, need = 0, k  # keys whose top bits equal `prefix`; the need-th largest among them
    for shift in (48, 32, 16, 0):
        hist = np.zeros(1 << 16, dtype=np.int64)
        for _, x in col.blocks():
            key = _keys(x)
            if shift < 48:
                key = key[(key >> np.uint64(shift + 16)) == np.uint64(prefix)]
            hist += np.bincount(((key >> np.uint64(shift)) & np.uint64(0xFFFF)).astype(np.int64), minlength=1 << 16)
        above = np.cumsum(hist[::-1])[::-1] - hist  # members in higher buckets
        d = int(np.flatnonzero((above < need) & (above + hist >= need))[-1])
        prefix, need = (prefix << 16) | d, need - int(above[d])
        if shift and hist[d] <= COLLECT:
            members = [x[(_keys(x) >> np.uint64(shift)) == np.uint64(prefix)] for _, x in col.blocks()]
            members = np.concatenate(members)
            return float(np.partition(members, len(members) - need)[len(members) - need])
    u = np.array([prefix], dtype=np.uint64)
    return float(np.where(u & _SIGN, u & ~_SIGN, ~u).view(np.float64)[0])


@dataclass
class TopCut:
    """The k largest of a column as a streaming predicate: value > thr, or == thr among the first
    `ties` such positions (tie-break by position)."""

    thr: float
    ties: int
    seen: int = 0

    @classmethod
    def of(cls, col: Column, k: int) -> "TopCut":
        if k <= 0:
            return cls(np.inf, 0)
        thr = kth_largest(col, k)
        above = sum(int((x > thr).sum()) for _, x in col.blocks())
        return cls(thr, k - above)

    def mask(self, x: np.ndarray) -> np.ndarray:
        """Members of the top set in this block (blocks visited once each, in order)."""
        m = x > self.thr
        eq = np.flatnonzero(x == self.thr)
        take = eq[: max(0, self.ties - self.seen)]
        self.seen += len(eq)
        m[take] = True
        return m


def top_k_stream(col: Column, k: int) -> np.ndarray:
    """= selections.top_k(values, k): indices of the k largest, by value, ties by position."""
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    if k >= len(col):
        return np.argsort(-col.full(), kind="stable")
    cut = TopCut.of(col, k)
    idx, val, m = np.empty(k, dtype=np.int64), np.empty(k), 0  # exactly k members, filled in position order
    for a, x in col.blocks():
        hit = np.flatnonzero(cut.mask(x))
        idx[m:m + len(hit)], val[m:m + len(hit)] = hit + a, x[hit]
        m += len(hit)
    np.negative(val, out=val)
    return idx[np.argsort(val, kind="stable")]  # idx ascending, so a stable sort breaks ties by position


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
    """What the CCI passes need: the cut-off of the dropped top scores and the bins of the rest."""

    cut: TopCut
    binner: Binner | None

    @classmethod
    def of(cls, col: Column, n_drop: int, n_bins: int, edge: str) -> "CCIPlan":
        """Two set-up passes: the drop cut-off, then the extremes of the kept scores."""
        cut, lo, hi = TopCut.of(col, n_drop), np.inf, -np.inf
        for _, x in col.blocks():
            kept = ~cut.mask(x)
            lo = min(lo, float(np.min(x, where=kept, initial=np.inf)))
            hi = max(hi, float(np.max(x, where=kept, initial=-np.inf)))
        return cls(cut, Binner(lo, hi, n_bins, edge) if lo <= hi else None)

    def binned(self, col: Column) -> Iterator[tuple[int, np.ndarray]]:
        """(start, bins) per block: DROPPED for the dropped top scores, -1 outside every bin."""
        cut = TopCut(self.cut.thr, self.cut.ties)
        for a, x in col.blocks():
            if self.binner is None:
                yield a, np.full(len(x), DROPPED, dtype=np.int64)
            else:
                yield a, np.where(cut.mask(x), DROPPED, self.binner(x))


def cci_stream(col: Column, k: int, n_drop: int, n_bins: int, seed: int, edge: str = "inclusive",
               alloc_fn=None) -> tuple[np.ndarray, np.ndarray]:
    """Positions CCI chooses (sorted) and the bin sizes: a histogram pass, then per bin j the
    draws rng.choice(size_j, alloc_j) (bins in order) mapped to members by their rank in the bin."""
    plan = CCIPlan.of(col, n_drop, n_bins, edge)
    sizes = np.zeros(n_bins, dtype=np.int64)
    for _, b in plan.binned(col):
        sizes += np.bincount(b[b >= 0], minlength=n_bins)
    if sizes.sum() < k:
        return None, sizes
    alloc = alloc_fn(sizes, k)
    rng = np.random.default_rng(seed)
    offset = np.concatenate([[0], np.cumsum(sizes)])
    drawn = [offset[j] + rng.choice(int(sizes[j]), size=int(alloc[j]), replace=False) for j in range(n_bins) if alloc[j]]
    if not drawn:
        return np.zeros(0, dtype=np.int64), sizes
    wanted = np.sort(np.concatenate(drawn))
    seen = np.zeros(n_bins, dtype=np.int64)
    out = []
    for a, b in plan.binned(col):
        pos = np.flatnonzero(b >= 0)
        bb = b[pos]
        order = np.argsort(bb, kind="stable")
        counts = np.bincount(bb, minlength=n_bins)
        starts = np.concatenate([[0], np.cumsum(counts)])
        rank = np.empty(len(bb), dtype=np.int64)
        rank[order] = np.arange(len(bb)) - starts[bb[order]]
        g = offset[bb] + seen[bb] + rank  # place of each member in "bins in order, members by position"
        hit = np.searchsorted(wanted, g)
        hit = (hit < len(wanted)) & (wanted[np.minimum(hit, len(wanted) - 1)] == g)
        out.append(pos[hit] + a)
        seen += counts
    return np.concatenate(out), sizes
