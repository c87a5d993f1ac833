"""Oracle: bioprune.selection.strategies as it was before issue 14 (full argsort Top-I, CCI on sorted copies),
kept verbatim to check that the array/partial-selection implementation chooses exactly the same."""

from __future__ import annotations

import logging
import math
import shutil
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

from bioprune.errors import BiopruneError

log = logging.getLogger(__name__)
STRATEGIES = ("top_influence", "cci", "random", "random_10x", "grad_norm", "cluster")
STRATIFY = ("none", "length")


def fraction_count(n: int, fraction: float) -> int:
    """round-half-up(fraction x n) on the decimal value of `fraction` as written (0.005 x 1900 = 9.5 -> 10).

    Exact rational arithmetic: a float's binary error never moves a count by one. Both the budget k
    and CCI's cut-off use it, so Top-I at budget beta and CCI with selection.cci.beta = beta take and
    drop the same sequences for every pool size.
    """
    return int(math.floor(Fraction(repr(float(fraction))) * n + Fraction(1, 2)))


def budget_size(n: int, budget: float, strategy: str = "") -> int:
    """k = round-half-up(budget x n) sequences (x10 for random_10x); 0, above 1 or under one sequence is an error."""
    if not 0 < budget <= 1:
        raise BiopruneError(f"config key selection.budgets: {budget} must be in (0, 1]")
    k = fraction_count(n, budget)
    if strategy == "random_10x":
        k *= 10
    if k < 1:
        raise BiopruneError(f"config key selection.budgets: {budget} of a pool of {n} is less than one sequence")
    if k > n:
        raise BiopruneError(
            f"config key selection.budgets: {strategy or 'budget'} {budget} asks for {k} sequences "
            f"but the pool holds {n}"
        )
    return k


def top_k(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values, ties broken by position (stable)."""
    return np.argsort(-values, kind="stable")[:k]


def cci_bins(scores: np.ndarray, beta: float, n_bins: int, edge: str = "inclusive",
             n_drop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Drop the highest scores (n_drop, default fraction_count(n, beta)); put the rest in equal-width bins.

    Returns (kept indices, bin of each kept index; -1 = outside every bin). `inclusive` (default):
    edges np.linspace(min, max, n_bins + 1) of the kept scores, bins LEFT-closed [e_j, e_j+1) (a
    score equal to an interior edge belongs to the bin above it) and the last bin closed, so the
    maximum is in it. `official` reproduces bio-coreset: the same left-closed bins on the NEGATED
    scores over [min, max*1.0001), an upper edge that leaves the most extreme retained sample out.
    """
    if not 0 <= beta < 1:
        raise BiopruneError(f"config key selection.cci.beta: {beta} must be in [0, 1)")
    n = len(scores)
    order = np.argsort(-scores, kind="stable")
    kept = np.sort(order[fraction_count(n, beta) if n_drop is None else n_drop:])
    if not len(kept):
        return kept, np.zeros(0, dtype=int)
    if edge == "official":
        signed = -scores[kept]
        lo, hi = signed.min(), signed.max() * 1.0001
        edges = np.linspace(lo, hi, n_bins + 1)
        b = np.searchsorted(edges, signed, side="right") - 1
        b[(signed >= hi) | (b >= n_bins)] = -1
    elif edge == "inclusive":
        s = scores[kept]
        lo, hi = s.min(), s.max()
        if hi == lo:
            b = np.zeros(len(kept), dtype=int)
        else:
            b = np.searchsorted(np.linspace(lo, hi, n_bins + 1)[1:-1], s, side="right")
    else:
        raise BiopruneError(f"config key selection.cci.bin_edge: {edge!r} is not inclusive or official")
    return kept, b


def cci_allocation(bin_sizes: np.ndarray, k: int) -> np.ndarray:
    """CCS budget rule: visit bins smallest first, each takes min(size, remaining // bins left).

    Sums to exactly k whenever sum(bin_sizes) >= k (a capped bin leaves each later, larger bin
    at least its share), so no leftover needs redistributing.
    """
    alloc = np.zeros(len(bin_sizes), dtype=int)
    remaining = k
    order = np.argsort(bin_sizes, kind="stable")
    for left, b in zip(range(len(order), 0, -1), order):
        take = min(int(bin_sizes[b]), remaining // left)
        alloc[b] = take
        remaining -= take
    return alloc


def _cci_pick(kept: np.ndarray, b: np.ndarray, k: int, n_bins: int, rng: np.random.Generator) -> np.ndarray:
    alloc = cci_allocation(np.bincount(b[b >= 0], minlength=n_bins), k)
    chosen = [rng.choice(kept[b == j], size=alloc[j], replace=False) for j in range(n_bins) if alloc[j]]
    return np.sort(np.concatenate(chosen)) if chosen else np.array([], dtype=int)


def _cci_short(k: int, room: int, beta: float) -> BiopruneError:
    return BiopruneError(f"CCI: budget of {k} exceeds the {room} sequences left after dropping "
                         f"selection.cci.beta={beta}")


def select_cci(scores: np.ndarray, k: int, beta: float, n_bins: int, seed: int, edge: str = "inclusive") -> np.ndarray:
    """Coverage-Centric Influence: stratified sampling over the influence-score distribution; exactly k indices."""
    kept, b = cci_bins(scores, beta, n_bins, edge)
    if (b >= 0).sum() < k:
        raise _cci_short(k, int((b >= 0).sum()), beta)
    return _cci_pick(kept, b, k, n_bins, np.random.default_rng(seed))


def length_strata(lengths: np.ndarray, n_strata: int) -> np.ndarray:
    """Quantile strata of length, labelled 0..m-1 from short to long.

    Inner edges are np.quantile(lengths, j / n_strata), j = 1..n_strata-1; stratum j holds lengths
    in [q_j, q_j+1) (a length equal to an edge goes up). Repeated edges (many equal lengths)
    merge strata, so m <= n_strata; equal lengths always share a stratum.
    """
    if int(n_strata) < 1:
        raise BiopruneError(f"config key selection.length_strata: {n_strata} must be >= 1")
    lengths = np.asarray(lengths, dtype=float)
    inner = np.unique(np.quantile(lengths, np.arange(1, int(n_strata)) / n_strata)) if len(lengths) else []
    return np.unique(np.searchsorted(inner, lengths, side="right"), return_inverse=True)[1].reshape(-1)


def proportional_split(sizes: np.ndarray, k: int, capacity: np.ndarray | None = None) -> np.ndarray:
    """Split k over strata in proportion to `sizes` by largest remainder (ties: lower stratum first).

    Each stratum is capped at `capacity` (default: its size); what a capped stratum cannot take is
    split again, the same way, over the strata with room left. Sums to exactly k; an error when the
    capacities hold fewer than k.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    cap = sizes.copy() if capacity is None else np.minimum(np.asarray(capacity, dtype=np.int64), sizes)
    if cap.sum() < k:
        raise BiopruneError(f"selection: budget of {k} exceeds the {int(cap.sum())} sequences the strata can give")
    alloc = np.zeros(len(sizes), dtype=np.int64)
    remaining = int(k)
    while remaining > 0:
        w = np.where(alloc < cap, sizes, 0)
        total = int(w.sum())
        base = remaining * w // total
        rem = remaining * w - base * total
        extra = remaining - int(base.sum())
        order = np.lexsort((np.arange(len(w)), -rem))
        base[order[:extra]] += 1  # extra <= strata with rem > 0 (fractions sum to extra), so only open ones
        add = np.minimum(base, cap - alloc)
        alloc += add
        remaining -= int(add.sum())
    return alloc


def _strata_of(scores: dict, n_strata: int, key: str) -> np.ndarray:
    if "length" not in scores:
        raise BiopruneError(f"config key {key}: length stratification needs the scores' length dataset")
    return length_strata(np.asarray(scores["length"]), n_strata)


def select_top_stratified(score: np.ndarray, strata: np.ndarray, k: int) -> np.ndarray:
    """Top-I within each stratum, k split in proportion to the strata sizes; ordered by score (stable)."""
    sizes = np.bincount(strata)
    alloc = proportional_split(sizes, k)
    parts = [m[top_k(score[m], a)] for m, a in ((np.flatnonzero(strata == s), a) for s, a in enumerate(alloc)) if a]
    idx = np.sort(np.concatenate(parts))
    return idx[np.argsort(-score[idx], kind="stable")]


def select_cci_stratified(score: np.ndarray, strata: np.ndarray, k: int, beta: float, n_bins: int, seed: int,
                          edge: str = "inclusive") -> np.ndarray:
    """CCI within each stratum: drop what length-stratified Top-I at budget beta would take there, bin
    the rest, and split k over strata in proportion to the pool (capped by what each stratum's bins
    hold; the leftover goes to strata with room). Stratum s draws from default_rng([seed, s])."""
    sizes = np.bincount(strata)
    drop = proportional_split(sizes, fraction_count(len(score), beta))
    members = [np.flatnonzero(strata == s) for s in range(len(sizes))]
    binned = [cci_bins(score[m], beta, n_bins, edge, n_drop=int(d)) for m, d in zip(members, drop)]
    room = np.array([int((b >= 0).sum()) for _, b in binned])
    if room.sum() < k:
        raise _cci_short(k, int(room.sum()), beta)
    alloc = proportional_split(sizes, k, room)
    parts = [m[_cci_pick(kept, b, int(a), n_bins, np.random.default_rng([seed, s]))]
             for s, (m, (kept, b), a) in enumerate(zip(members, binned, alloc)) if a]
    return np.sort(np.concatenate(parts))


def _stratify_by(opts: dict, key: str) -> bool:
    value = opts.get("stratify_by", "none")
    if value not in STRATIFY:
        raise BiopruneError(f"config key {key}: {value!r} is not one of {', '.join(STRATIFY)}")
    return value == "length"


def select(strategy: str, scores: dict, budget: float, seed: int, cci: dict | None = None,
           representatives: list[str] | None = None, *, top_influence: dict | None = None,
           length_strata: int = 10) -> list[str]:
    """Ids chosen by `strategy` at `budget` (fraction of the pool) with `seed`; exactly budget_size() ids.

    `cci` = selection.cci (beta, bins, bin_edge, stratify_by); `top_influence` =
    selection.top_influence (stratify_by). stratify_by: length runs the strategy within
    `length_strata` quantile strata of length (selection.length_strata), the budget split in
    proportion to the pool by largest remainder. Deterministic for a given seed.
    """
    ids = scores["id"]
    n = len(ids)
    k = budget_size(n, budget, strategy)
    rng = np.random.default_rng(seed)
    if strategy == "top_influence":
        if _stratify_by(top_influence or {}, "selection.top_influence.stratify_by"):
            idx = select_top_stratified(scores["score"], _strata_of(scores, length_strata, "selection.length_strata"), k)
        else:
            idx = top_k(scores["score"], k)
    elif strategy == "grad_norm":
        idx = top_k(scores["grad_sqnorm"], k)
    elif strategy in ("random", "random_10x"):
        idx = np.sort(rng.choice(n, size=k, replace=False))
    elif strategy == "cci":
        cci = cci or {}
        args = (cci.get("beta", 0.1), cci.get("bins", 50), seed, cci.get("bin_edge", "inclusive"))
        if _stratify_by(cci, "selection.cci.stratify_by"):
            strata = _strata_of(scores, length_strata, "selection.length_strata")
            idx = select_cci_stratified(scores["score"], strata, k, *args)
        else:
            idx = select_cci(scores["score"], k, *args)
    elif strategy == "cluster":
        if representatives is None:
            raise BiopruneError("strategy cluster needs the MMseqs2 representatives file")
        pos = {i: j for j, i in enumerate(ids)}
        reps = np.array(sorted(pos[r] for r in representatives if r in pos))
        if len(reps) < k:
            raise BiopruneError(f"cluster: only {len(reps)} cluster representatives for a budget of {k}; "
                                "raise selection.cluster.identity")
        idx = np.sort(rng.choice(reps, size=k, replace=False))
    else:
        raise BiopruneError(f"config key selection.strategies: unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    if len(idx) != k:  # every branch above returns k by construction; never hand back a silently short set
        raise BiopruneError(f"selection {strategy}: chose {len(idx)} sequences for a budget of {k}")
    return [ids[i] for i in idx]
