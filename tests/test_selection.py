"""Coreset selection: sizes, Top-I/CCI disjointness, the CCI allocation rule, seeds, budget errors."""
from __future__ import annotations

import numpy as np
import pytest

from bioprune.errors import BiopruneError
from bioprune.selections import budget_size, cci_allocation, cci_bins, select, select_cci


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
    cci = set(select("cci", sc, 0.1, 0, cci={"beta": 0.1, "bins": 50}))
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
    from bioprune.selections import mmseqs_representatives

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BiopruneError, match="apt-get install mmseqs2"):
        mmseqs_representatives(str(tmp_path / "x.fa"), str(tmp_path / "r.txt"), 0.5)


def test_mmseqs_clusters_near_duplicates(tmp_path):
    import shutil

    from bioprune.selections import mmseqs_representatives

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
