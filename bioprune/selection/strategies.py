"""Coreset selection from self-influence scores: Top-I, CCI and baselines (random, 10x random, GraNd, clusters),
and the degenerate control (the lowest-complexity sequences: kmer_entropy).

Budgets are fractions of the scored pool: k = round-half-up(budget x N) (fraction_count), and every
strategy returns exactly k ids, in a deterministic order. CCI drops the same count of top scores
(round-half-up(beta x N)), so at budget = beta it is disjoint from Top-I for every N. Top-I and CCI
can run within strata (stratify_by): length = quantile strata of sequence length, source = the pool
source of each id, cluster = its MMseqs2 cluster (strata.LabelPlan); the budget split over strata in
proportion to the pool by largest remainder (proportional_split).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from bioprune.alphabets import kmer_codes
from bioprune.errors import BiopruneError
from bioprune.selection.io import mmseqs_representatives, read_selection, write_selection  # noqa: F401 (re-exported)
from bioprune.selection.stream import DROPPED, CCIPlan, Column, Grouped, as_column, check_cci, top_by_group, top_k_stream
from bioprune.selection.strata import LabelPlan, StrataPlan

log = logging.getLogger(__name__)
STRATEGIES = ("top_influence", "cci", "random", "random_10x", "grad_norm", "cluster", "degenerate")
STRATIFY = ("none", "length", "source", "cluster")
NUMERIC = ("score", "grad_sqnorm", "length")  # the columns select_indices reads block by block


@dataclass(frozen=True)
class CCIOptions:
    """selection.cci: drop the top `beta` of the pool, then sample evenly over `bins` score bins."""

    beta: float = 0.1
    bins: int = 50
    bin_edge: str = "inclusive"
    stratify_by: str = "none"


@dataclass(frozen=True)
class TopOptions:
    """selection.top_influence."""

    stratify_by: str = "none"


@dataclass(frozen=True)
class SelectionConfig:
    """selection_params(config, strategy) for one strategy, typed once in bioprune.stages (from_params)."""

    strategy: str
    cci: CCIOptions | None = None
    top_influence: TopOptions | None = None
    length_strata: int = 10
    source_map: str | None = None
    degenerate_k: int = 3

    @classmethod
    def from_params(cls, params: dict) -> "SelectionConfig":
        def opts(cls_, d):
            return None if d is None else cls_(**{k: v for k, v in d.items() if k in cls_.__dataclass_fields__})

        return cls(strategy=params["strategy"], cci=opts(CCIOptions, params.get("cci")),
                   top_influence=opts(TopOptions, params.get("top_influence")),
                   length_strata=int(params.get("length_strata", 10)), source_map=params.get("source_map"),
                   degenerate_k=int((params.get("degenerate") or {}).get("k", 3)))

    @property
    def stratify_by(self) -> str:
        """The strategy's stratify_by ('none' for strategies without one)."""
        opts = {"cci": self.cci, "top_influence": self.top_influence}.get(self.strategy)
        return opts.stratify_by if opts is not None else "none"


def fraction_count(n: int, fraction: float) -> int:
    """round-half-up(fraction x n) on the decimal value of `fraction` as written (0.005 x 1900 = 9.5 -> 10).

    Exact rational arithmetic: a float's binary error never moves a count by one. Both the budget k
    and CCI's cut-off use it, so Top-I at budget beta and CCI with selection.cci.beta = beta take and
    drop the same sequences for every pool size.
    """
    return int(math.floor(Fraction(repr(float(fraction))) * n + Fraction(1, 2)))


def least_budget(n: int) -> str:
    """The smallest budget (3 significant digits, as text) that selects at least one of n sequences
    (round half up: budget x n >= 0.5); random_10x takes ten times the same count."""
    need = 0.5 / n
    text = f"{need:.3g}"
    while fraction_count(n, float(text)) < 1:
        need *= 1.001
        text = f"{need:.3g}"
    return text


def budget_size(n: int, budget: float, strategy: str = "") -> int:
    """k = round-half-up(budget x n) sequences (x10 for random_10x); 0, above 1 or under one sequence is an error."""
    if not 0 < budget <= 1:
        raise BiopruneError(f"config key selection.budgets: {budget} must be in (0, 1]")
    k = fraction_count(n, budget)
    if strategy == "random_10x":
        k *= 10
    if k < 1:
        raise BiopruneError(f"config key selection.budgets: {budget} of a pool of {n} is less than one sequence"
                            + (f"; raise it to at least {least_budget(n)}" if n else
                               "; the scored pool is empty"))
    if k > n:
        raise BiopruneError(
            f"config key selection.budgets: {strategy or 'budget'} {budget} asks for {k} sequences "
            f"but the pool holds {n}"
        )
    return k


def top_k(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values, ordered by value, ties broken by position (= the first k of
    a stable argsort of -values), by partial selection (selection_stream.top_k_stream): no full sort."""
    return top_k_stream(as_column(np.asarray(values), "values"), k)


def cci_bin_all(scores: np.ndarray, beta: float, n_bins: int, edge: str = "inclusive",
                n_drop: int | None = None) -> np.ndarray:
    """Bin of every score (int32; DROPPED for the n_drop highest, -1 outside every bin): see cci_bins."""
    check_cci(beta, edge)
    src = Grouped(as_column(scores))
    plan = CCIPlan.of(src, [fraction_count(len(src.col), beta) if n_drop is None else n_drop], n_bins, edge)
    parts = [b.astype(np.int32) for _, b in plan.binned(src)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)


def cci_bins(scores: np.ndarray, beta: float, n_bins: int, edge: str = "inclusive",
             n_drop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Drop the highest scores (n_drop, default fraction_count(n, beta)); put the rest in equal-width bins.

    Returns (kept indices, bin of each kept index; -1 = outside every bin). `inclusive` (default):
    edges np.linspace(min, max, n_bins + 1) of the kept scores, bins LEFT-closed [e_j, e_j+1) (a
    score equal to an interior edge belongs to the bin above it) and the last bin closed, so the
    maximum is in it. `official` reproduces bio-coreset: the same left-closed bins on the NEGATED
    scores over [min, max*1.0001), an upper edge that leaves the most extreme retained sample out.
    """
    b = cci_bin_all(scores, beta, n_bins, edge, n_drop)
    kept = np.flatnonzero(b != DROPPED)
    return kept, b[kept].astype(np.int64)


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


def _cci_short(k: int, room: int, beta: float) -> BiopruneError:
    return BiopruneError(f"CCI: budget of {k} exceeds the {room} sequences left after dropping "
                         f"selection.cci.beta={beta}")


def select_cci(scores, k: int, beta: float, n_bins: int, seed: int, edge: str = "inclusive") -> np.ndarray:
    """Coverage-Centric Influence: stratified sampling over the influence-score distribution; exactly k
    sorted indices. `scores` is an array or a selection_stream.Column, read block by block (memory
    O(k), not O(pool)): set-up passes (drop cut-off, extremes), a histogram pass (bin sizes), then
    per bin j in order the draws rng.choice(size_j, alloc_j) of members by their rank in the bin,
    the same draws as rng.choice(members of bin j, alloc_j) on the in-memory index list."""
    col = as_column(scores)
    return _cci_in_groups(Grouped(col), np.array([len(col)]), k, beta, n_bins, edge,
                          lambda s: np.random.default_rng(seed))


def _cci_in_groups(src: Grouped, sizes: np.ndarray, k: int, beta: float, n_bins: int, edge: str,
                   rng_of) -> np.ndarray:
    """CCI within groups: drop each group's share of the top beta, bin the rest, split k over the
    groups in proportion to their sizes (capped by what their bins hold), then over each group's
    bins (cci_allocation), drawing group s's ranks from rng_of(s). One group = plain CCI."""
    check_cci(beta, edge)
    drop = proportional_split(sizes, fraction_count(int(sizes.sum()), beta))
    plan = CCIPlan.of(src, drop, n_bins, edge)
    bins = plan.sizes(src).reshape(len(sizes), n_bins)
    room = bins.sum(1)
    if room.sum() < k:
        raise _cci_short(k, int(room.sum()), beta)
    draws = {}
    for s, a in enumerate(proportional_split(sizes, k, room)):
        if a:
            rng, per = rng_of(s), cci_allocation(bins[s], int(a))
            draws.update({s * n_bins + j: rng.choice(int(bins[s, j]), size=int(per[j]), replace=False)
                          for j in range(n_bins) if per[j]})
    return plan.pick(src, bins.ravel(), draws)


def kmer_entropy(seqs: list[str], k: int, letters: str) -> np.ndarray:
    """Per sequence, the Shannon entropy in bits of its overlapping k-mers (those made of `letters`
    only): -sum_w p_w log2 p_w with p_w = count(w) / number of k-mers; 0 for a sequence with none."""
    if int(k) < 1:
        raise BiopruneError(f"config key selection.degenerate.k: {k} must be >= 1")
    out = np.zeros(len(seqs))
    for n, s in enumerate(seqs):
        codes = kmer_codes(s, int(k), letters)
        if len(codes):
            _, c = np.unique(codes, return_counts=True)
            p = c / c.sum()
            out[n] = float(-(p * np.log2(p)).sum()) + 0.0
    return out


def select_degenerate(complexity, k: int) -> np.ndarray:
    """The degenerate control: the k sequences of lowest complexity (ties by position), sorted."""
    c = np.asarray(complexity, dtype=float)
    return np.sort(np.argsort(c, kind="stable")[:k])


def length_strata(lengths, n_strata: int) -> np.ndarray:
    """Quantile strata of length, labelled 0..m-1 from short to long.

    Inner edges are np.quantile(lengths, j / n_strata), j = 1..n_strata-1; stratum j holds lengths
    in [q_j, q_j+1) (a length equal to an edge goes up). Repeated edges (many equal lengths)
    merge strata, so m <= n_strata; equal lengths always share a stratum. (StrataPlan computes the
    edges from the counts of distinct lengths, so a column of any size is read block by block.)
    """
    plan = _strata_plan(as_column(np.asarray(lengths), "length"), n_strata)
    return plan.of_lengths(np.asarray(lengths, dtype=float)).astype(np.int64)


def _strata_plan(length: Column, n_strata: int) -> StrataPlan:
    if int(n_strata) < 1:
        raise BiopruneError(f"config key selection.length_strata: {n_strata} must be >= 1")
    return StrataPlan.of(length, int(n_strata))


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


def _strata_of(scores: dict, n_strata: int, key: str) -> StrataPlan:
    if "length" not in scores:
        raise BiopruneError(f"config key {key}: length stratification needs the scores' length dataset")
    return _strata_plan(scores["length"], n_strata)


def select_top_stratified(src: Grouped, sizes: np.ndarray, k: int) -> np.ndarray:
    """Top-I within each stratum, k split in proportion to the strata sizes; ordered by score (stable)."""
    return top_by_group(src, proportional_split(sizes, k))


def select_cci_stratified(src: Grouped, sizes: np.ndarray, k: int, beta: float, n_bins: int, seed: int,
                          edge: str = "inclusive") -> np.ndarray:
    """CCI within each stratum: drop what length-stratified Top-I at budget beta would take there, bin
    the rest, and split k over strata in proportion to the pool (capped by what each stratum's bins
    hold; the leftover goes to strata with room). Stratum s draws from default_rng([seed, s])."""
    return _cci_in_groups(src, sizes, k, beta, n_bins, edge, lambda s: np.random.default_rng([seed, s]))


def _stratify_by(opts: CCIOptions | TopOptions, key: str) -> str:
    """The stratify_by value ('' for none)."""
    value = opts.stratify_by
    if value not in STRATIFY:
        raise BiopruneError(f"config key {key}: {value!r} is not one of {', '.join(STRATIFY)}")
    return "" if value == "none" else value


def _plan(by: str, scores: dict, length_strata: int, labels: LabelPlan | None, key: str):
    """Strata of `by`: length from the scores' lengths; source / cluster from `labels` (LabelPlan)."""
    if by == "length":
        return _strata_of(scores, length_strata, "selection.length_strata")
    if labels is None:
        raise BiopruneError(f"config key {key}: {by} stratification needs each sequence's {by} (strata labels)")
    return labels


def select(strategy: str, scores: dict, budget: float, seed: int, cci: CCIOptions | None = None,
           representatives: list[str] | None = None, *, top_influence: TopOptions | None = None,
           length_strata: int = 10, labels: LabelPlan | None = None) -> list[str]:
    """Ids chosen by `strategy` at `budget` (fraction of the pool) with `seed`; exactly budget_size() ids.

    `cci` = selection.cci (beta, bins, bin_edge, stratify_by); `top_influence` =
    selection.top_influence (stratify_by). stratify_by: length runs the strategy within
    `length_strata` quantile strata of length (selection.length_strata), the budget split in
    proportion to the pool by largest remainder; stratify_by: source / cluster runs it within the
    categorical strata `labels` (strata.LabelPlan, in the scores' order). Deterministic for a given seed.
    """
    ids = scores["id"]
    idx = select_indices(strategy, scores, len(ids), budget, seed, cci, representatives,
                         top_influence=top_influence, length_strata=length_strata, labels=labels)
    return [ids[i] for i in idx]


def select_indices(strategy: str, scores: dict, n: int, budget: float, seed: int, cci: CCIOptions | None = None,
                   representatives: list[str] | None = None, *, top_influence: TopOptions | None = None,
                   length_strata: int = 10, labels: LabelPlan | None = None) -> np.ndarray:
    """Positions (in the scores file) chosen by `strategy`, as select(): `scores` needs only the
    numeric columns the strategy reads (score, grad_sqnorm, length), plus `id` for cluster. A column
    may be an array, an h5py dataset or a selection_stream.Column: Top-I, GraNd and CCI, with or
    without length strata, read it block by block (memory O(k))."""
    k = budget_size(n, budget, strategy)
    scores = {key: as_column(v, key) if key in NUMERIC else v for key, v in scores.items()}
    rng = np.random.default_rng(seed)
    if strategy == "top_influence":
        key = "selection.top_influence.stratify_by"
        by = _stratify_by(top_influence or TopOptions(), key)
        if by:
            plan = _plan(by, scores, length_strata, labels, key)
            idx = select_top_stratified(plan.grouped(scores["score"]), plan.sizes, k)
        else:
            idx = top_k_stream(scores["score"], k)
    elif strategy == "grad_norm":
        idx = top_k_stream(scores["grad_sqnorm"], k)
    elif strategy in ("random", "random_10x"):
        idx = np.sort(rng.choice(n, size=k, replace=False))
    elif strategy == "cci":
        cci = cci or CCIOptions()
        args = (cci.beta, cci.bins, seed, cci.bin_edge)
        by = _stratify_by(cci, "selection.cci.stratify_by")
        if by:
            plan = _plan(by, scores, length_strata, labels, "selection.cci.stratify_by")
            idx = select_cci_stratified(plan.grouped(scores["score"]), plan.sizes, k, *args)
        else:
            idx = select_cci(scores["score"], k, *args)
    elif strategy == "degenerate":
        if "complexity" not in scores:
            raise BiopruneError("strategy degenerate needs each sequence's complexity (selection.degenerate)")
        idx = select_degenerate(scores["complexity"], k)
    elif strategy == "cluster":
        if representatives is None:
            raise BiopruneError("strategy cluster needs the MMseqs2 representatives file")
        pos = {i: j for j, i in enumerate(scores["id"])}
        reps = np.array(sorted(pos[r] for r in representatives if r in pos))
        if len(reps) < k:
            raise BiopruneError(f"cluster: only {len(reps)} cluster representatives for a budget of {k}; "
                                "raise selection.cluster.identity")
        idx = np.sort(rng.choice(reps, size=k, replace=False))
    else:
        raise BiopruneError(f"config key selection.strategies: unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    if len(idx) != k:  # every branch above returns k by construction; never hand back a silently short set
        raise BiopruneError(f"selection {strategy}: chose {len(idx)} sequences for a budget of {k}")
    return np.asarray(idx)
