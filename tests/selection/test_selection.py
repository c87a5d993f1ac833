"""Coreset selection: sizes, Top-I/CCI disjointness, the CCI allocation rule, seeds, budget errors."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bioprune.errors import BiopruneError
from bioprune.selection.strategies import (CCIOptions, TopOptions, budget_size, cci_allocation, cci_bins, fraction_count, length_strata,
                                 proportional_split, select, select_cci)


def pool(n=1000, seed=0):
    rng = np.random.default_rng(seed)
    return {"id": [f"s{i}" for i in range(n)], "score": rng.lognormal(0, 1.5, n), "grad_sqnorm": rng.random(n)}


@pytest.mark.parametrize("strategy", ["top_influence", "cci", "random", "grad_norm"])
def test_exact_sizes(strategy):
    assert len(set(select(strategy, pool(), 0.05, 0))) == 50


def test_random_10x_is_ten_times():
    assert len(set(select("random_10x", pool(), 0.05, 0))) == 500


def test_top_influence_takes_highest_scores():
    sc = pool()
    chosen = select("top_influence", sc, 0.01, 0)
    assert set(chosen) == {sc["id"][i] for i in np.argsort(sc["score"])[-10:]}
    g = select("grad_norm", sc, 0.01, 0)
    assert set(g) == {sc["id"][i] for i in np.argsort(sc["grad_sqnorm"])[-10:]}


def test_top_and_cci_disjoint_when_budget_is_beta_n():
    sc = pool()
    top = set(select("top_influence", sc, 0.1, 0))
    cci = set(select("cci", sc, 0.1, 0, cci=CCIOptions(beta=0.1, bins=50)))
    assert len(top) == len(cci) == 100 and not top & cci


def test_cci_allocation_on_hand_made_scores():
    # 3 bins of width 1 over [0, 3]: sizes 1, 2 and 7 after dropping nothing (beta = 0)
    scores = np.array([0.1, 1.2, 1.5, 2.1, 2.2, 2.3, 2.4, 2.5, 2.6, 3.0])
    kept, b = cci_bins(scores, beta=0.0, n_bins=3)
    assert np.bincount(b, minlength=3).tolist() == [1, 2, 7]
    # budget 6: smallest bin first: min(1, 6//3)=1, min(2, 5//2)=2, min(7, 3//1)=3
    assert cci_allocation(np.array([1, 2, 7]), 6).tolist() == [1, 2, 3]
    chosen = select_cci(scores, 6, beta=0.0, n_bins=3, seed=0)
    per_bin = np.bincount(b[np.searchsorted(kept, chosen)], minlength=3)
    assert per_bin.tolist() == [1, 2, 3]


def test_cci_official_edge_drops_the_extreme():
    scores = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    _, b_incl = cci_bins(scores, 0.0, 2, "inclusive")
    _, b_off = cci_bins(scores, 0.0, 2, "official")
    assert (b_incl >= 0).all()
    # negated scores: max(-s) = -1 (the lowest influence) falls above max*1.0001 and out of every bin
    assert b_off.tolist()[0] == -1 and (b_off[1:] >= 0).all()


def test_same_seed_same_ids_other_seed_differs():
    sc = pool()
    for s in ("random", "cci"):
        assert select(s, sc, 0.05, 7) == select(s, sc, 0.05, 7)
        assert select(s, sc, 0.05, 7) != select(s, sc, 0.05, 8)


@pytest.mark.parametrize("budget", [0, -0.1, 1.5])
def test_bad_budget_is_config_error(budget):
    with pytest.raises(BiopruneError, match="selection.budgets"):
        budget_size(1000, budget)


def test_budget_too_large_for_10x():
    with pytest.raises(BiopruneError, match="random_10x"):
        select("random_10x", pool(), 0.2, 0)


def test_unknown_strategy():
    with pytest.raises(BiopruneError, match="selection.strategies"):
        select("magic", pool(), 0.1, 0)


def test_cluster_needs_representatives_and_samples_from_them():
    sc = pool(100)
    reps = [f"s{i}" for i in range(0, 100, 2)]
    chosen = select("cluster", sc, 0.1, 0, representatives=reps)
    assert len(chosen) == 10 and set(chosen) <= set(reps)
    with pytest.raises(BiopruneError, match="representatives"):
        select("cluster", sc, 0.6, 0, representatives=reps)


def test_mmseqs_missing_says_how_to_install(tmp_path, monkeypatch):
    from bioprune.selection.strategies import mmseqs_representatives

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BiopruneError, match="apt-get install mmseqs2"):
        mmseqs_representatives(str(tmp_path / "x.fa"), str(tmp_path / "r.txt"), 0.5)


def test_mmseqs_clusters_near_duplicates(tmp_path):
    import shutil

    from bioprune.selection.strategies import mmseqs_representatives

    if shutil.which("mmseqs") is None:
        pytest.skip("mmseqs2 not installed (apt-get install mmseqs2, or `make sysdeps`)")
    rng = np.random.default_rng(0)
    base = ["".join(rng.choice(list("ACGU"), 120)) for _ in range(5)]
    recs = []
    for k, b in enumerate(base):  # 5 families of 4 near-identical copies (one substitution each)
        for c in range(4):
            s = list(b)
            s[10 + c] = "A" if s[10 + c] != "A" else "C"
            recs.append((f"f{k}_{c}", "".join(s)))
    fa = tmp_path / "x.fa"
    fa.write_text("".join(f">{i}\n{s}\n" for i, s in recs))
    n = mmseqs_representatives(str(fa), str(tmp_path / "reps.txt"), identity=0.9)
    reps = (tmp_path / "reps.txt").read_text().split()
    assert n == len(reps) == 5 and {r.split("_")[0] for r in reps} == {f"f{k}" for k in range(5)}


# --- budget rounding, CCI edges, length strata (issues 11 and 19) ---------------------------------

def test_budget_is_round_half_up_of_the_decimal_budget():
    # 0.005 x 1700 = 8.5 and x 1900 = 9.5: half-up gives 9 and 10 (banker's rounding: 8 and 10; floor: 8 and 9)
    assert [budget_size(n, 0.005) for n in (1699, 1700, 1900, 18800)] == [8, 9, 10, 94]
    assert fraction_count(995, 0.1) == 100 and fraction_count(994, 0.1) == 99


@pytest.mark.parametrize("opts", [{}, {"bin_edge": "official"}, {"stratify_by": "length"}])
def test_one_sequence_more_or_less_keeps_top_and_cci_disjoint_and_exact(opts):
    """At budget = beta, CCI drops exactly Top-I's set, for every pool size around a .5 boundary."""
    for n in range(993, 1008):
        sc = pool(n, seed=n)
        sc["length"] = np.random.default_rng(n).integers(30, 300, n)
        k = budget_size(n, 0.1)
        top_opts = {"stratify_by": opts.get("stratify_by", "none")}
        top = select("top_influence", sc, 0.1, 0, top_influence=TopOptions(**top_opts))
        cci = select("cci", sc, 0.1, 0, cci=CCIOptions(beta=0.1, bins=50, **opts))
        assert len(top) == len(set(top)) == len(cci) == len(set(cci)) == k
        assert not set(top) & set(cci), n


def test_cci_interior_edges_are_left_closed():
    """Scores sitting exactly on the interior edges of linspace(0.3, 1.0, 8) go to the bin above the edge."""
    edges = np.linspace(0.3, 1.0, 8)
    scores = np.concatenate([edges, edges[1:-1], [edges[3]] * 3])
    kept, b = cci_bins(scores, beta=0.0, n_bins=7)
    on_edge = b[np.searchsorted(kept, np.arange(8))]
    assert on_edge.tolist() == [0, 1, 2, 3, 4, 5, 6, 6]  # right-closed would give [0, 0, 1, 2, 3, 4, 5, 6]
    assert np.bincount(b, minlength=7).tolist() == [1, 2, 2, 5, 2, 2, 3]
    # the edge decides the allocation: bin 3 (5 members) is the only one that can give 3 of a budget of 9
    alloc = cci_allocation(np.bincount(b, minlength=7), 15)
    assert alloc.tolist() == [1, 2, 2, 3, 2, 2, 3]


def test_proportional_split_largest_remainder_and_capacity():
    assert proportional_split([5, 3, 2], 5).tolist() == [3, 1, 1]  # 2.5, 1.5, 1.0: the tie goes to stratum 0
    assert proportional_split([5, 3, 2], 5, capacity=[1, 3, 2]).tolist() == [1, 2, 2]  # leftover 2 re-split 3:2
    assert proportional_split([7, 7, 6], 10).tolist() == [4, 3, 3]
    with pytest.raises(BiopruneError, match="budget of 6"):
        proportional_split([5, 3], 6, capacity=[2, 3])


def test_length_strata_are_quantiles_and_keep_equal_lengths_together():
    lengths = np.array([50] * 40 + list(range(60, 120)))
    s = length_strata(lengths, 10)
    assert len(set(s[:40])) == 1 and s.max() + 1 < 10  # 40 ties merge the first strata
    assert (np.diff(s[np.argsort(lengths, kind="stable")]) >= 0).all()  # ordered short to long
    u = length_strata(np.arange(100), 10)
    assert np.bincount(u).tolist() == [10] * 10


def _length_pool(n=600, seed=0):
    """Score rises with length, so unstratified Top-I takes only the longest sequences."""
    rng = np.random.default_rng(seed)
    length = rng.integers(30, 400, n)
    return {"id": [f"s{i}" for i in range(n)], "score": length + rng.normal(0, 20, n), "length": length,
            "grad_sqnorm": rng.random(n)}


def test_length_stratified_top_influence_takes_the_top_of_each_stratum():
    sc = _length_pool()
    strata = length_strata(sc["length"], 10)
    chosen = select("top_influence", sc, 0.1, 0, top_influence=TopOptions(stratify_by="length"), length_strata=10)
    pos = np.array([int(i[1:]) for i in chosen])
    expect = proportional_split(np.bincount(strata), 60)
    assert np.bincount(strata[pos], minlength=len(expect)).tolist() == expect.tolist()
    for s in range(len(expect)):
        members = np.flatnonzero(strata == s)
        assert set(pos[strata[pos] == s]) == set(members[np.argsort(-sc["score"][members])[: expect[s]]])
    plain = np.array([int(i[1:]) for i in select("top_influence", sc, 0.1, 0)])
    assert strata[plain].min() >= 5  # without strata the short half of the pool gets nothing


def test_length_stratified_cci_covers_each_stratum_in_proportion():
    sc = _length_pool()
    strata = length_strata(sc["length"], 5)
    cci = {"beta": 0.1, "bins": 5, "stratify_by": "length"}
    chosen = select("cci", sc, 0.2, 3, cci=CCIOptions(**cci), length_strata=5)
    pos = np.array([int(i[1:]) for i in chosen])
    assert np.bincount(strata[pos]).tolist() == proportional_split(np.bincount(strata), 120).tolist()
    top = {int(i[1:]) for i in select("top_influence", sc, 0.1, 0, top_influence=TopOptions(stratify_by="length"),
                                      length_strata=5)}
    assert not top & set(pos)  # dropped: what stratified Top-I at budget beta takes
    assert chosen == select("cci", sc, 0.2, 3, cci=CCIOptions(**cci), length_strata=5)
    assert chosen != select("cci", sc, 0.2, 4, cci=CCIOptions(**cci), length_strata=5)


def test_stratified_cci_redistributes_what_a_stratum_cannot_give():
    # strata of 4 (length 10) and 76 (length 100); beta 0.25 drops 20, split [1, 19]; the official edge
    # leaves one more out of each stratum's bins, so stratum 0 can give 2. Its share of k = 56 is
    # 56 * 4 / 80 = 2.8 -> 3 by largest remainder: capped at 2, the leftover goes to stratum 1.
    n = 80
    sc = {"id": [f"s{i}" for i in range(n)], "score": np.arange(n, dtype=float)[::-1].copy(),
          "length": np.array([10] * 4 + [100] * 76)}
    assert proportional_split([4, 76], 56).tolist() == [3, 53]
    chosen = select("cci", sc, 0.7, 0, cci=CCIOptions(beta=0.25, bins=4, bin_edge="official", stratify_by="length"),
                    length_strata=2)
    pos = np.array([int(i[1:]) for i in chosen])
    assert len(chosen) == len(set(chosen)) == budget_size(n, 0.7) == 56
    assert [(pos < 4).sum(), (pos >= 4).sum()] == [2, 54]


@pytest.mark.parametrize("by", ["none", "length"])
def test_cci_at_full_room_takes_exactly_the_complement_of_top_i(by):
    """3 strata of 5, beta = 0.1: Top-I takes round-half-up(1.5) = 2, split [1, 1, 0] by largest
    remainder (rounding each stratum's 0.5 would drop 3). CCI asking for the other 13 must take
    everything Top-I at budget beta leaves, nothing it takes."""
    n = 15
    sc = {"id": [f"s{i}" for i in range(n)], "score": np.random.default_rng(5).random(n),
          "length": np.repeat([10, 20, 30], 5)}
    top = select("top_influence", sc, 0.1, 0, top_influence=TopOptions(stratify_by=by), length_strata=3)
    cci = select("cci", sc, 13 / 15, 0, cci=CCIOptions(beta=0.1, bins=3, stratify_by=by), length_strata=3)
    assert len(top) == 2 and sorted(top + cci) == sorted(sc["id"])


def test_stratify_by_errors_name_the_key():
    sc = pool()
    with pytest.raises(BiopruneError, match="selection.cci.stratify_by"):
        select("cci", sc, 0.05, 0, cci=CCIOptions(stratify_by="gc"))
    with pytest.raises(BiopruneError, match="selection.top_influence.stratify_by"):
        select("top_influence", sc, 0.05, 0, top_influence=TopOptions(stratify_by="lenght"))
    with pytest.raises(BiopruneError, match="length"):  # pool() has no length dataset
        select("top_influence", sc, 0.05, 0, top_influence=TopOptions(stratify_by="length"))


# --- property tests (hypothesis) ------------------------------------------------------------------

# hypothesis is a test requirement (pyproject [test] extra, like pytest): imported at the top of the module,
# so a missing install is a collection error, never a silently skipped module.


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=60), st.data())
def test_cci_allocation_sums_to_any_feasible_budget(sizes, data):
    k = data.draw(st.integers(0, sum(sizes)))
    alloc = cci_allocation(np.array(sizes), k)
    assert alloc.sum() == k and (alloc <= np.array(sizes)).all() and (alloc >= 0).all()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=2, max_size=300),
       st.integers(1, 60), st.floats(0, 0.5), st.data())
def test_cci_returns_exactly_k_for_any_scores(scores, n_bins, beta, data):
    scores = np.array(scores)
    kept, b = cci_bins(scores, beta, n_bins)
    room = int((b >= 0).sum())
    k = data.draw(st.integers(0, room))
    assert cci_allocation(np.bincount(b[b >= 0], minlength=n_bins), k).sum() == k
    chosen = select_cci(scores, k, beta, n_bins, seed=0)
    assert len(chosen) == len(set(chosen.tolist())) == k and set(chosen.tolist()) <= set(kept.tolist())


@settings(max_examples=100, deadline=None)
@given(st.integers(20, 400), st.integers(1, 12), st.integers(1, 60), st.integers(0, 2**16), st.sampled_from([
    ("top_influence", "none"), ("top_influence", "length"), ("cci", "none"), ("cci", "length")]))
def test_stratified_selections_return_exactly_k_distinct_ids(n, n_strata, length_span, seed, which):
    rng = np.random.default_rng(seed)
    sc = {"id": [f"s{i}" for i in range(n)], "score": rng.lognormal(0, 1, n),
          "length": rng.integers(30, 30 + length_span, n), "grad_sqnorm": rng.random(n)}
    budget = float(rng.choice([0.01, 0.05, 0.1, 0.3, 0.5]))
    if budget * n < 1:
        return
    strategy, by = which
    out = select(strategy, sc, budget, seed, cci=CCIOptions(beta=0.1, bins=20, stratify_by=by),
                 top_influence=TopOptions(stratify_by=by), length_strata=n_strata)
    assert len(out) == len(set(out)) == budget_size(n, budget)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=30), st.data())
def test_proportional_split_sums_to_k_within_capacity(sizes, data):
    cap = [data.draw(st.integers(0, s)) for s in sizes]
    k = data.draw(st.integers(0, sum(cap)))
    alloc = proportional_split(sizes, k, cap)
    assert alloc.sum() == k and (alloc <= np.array(cap)).all()
