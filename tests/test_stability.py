"""Stability statistics on constructed cases with known answers; the CSV, figure and stage."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bioprune.errors import BiopruneError
from bioprune.stability import (acceptance, compare_scores, composition, length_correlation, plot_stability,
                                run_stability, source_of, write_stability)


def scoring(score, length=None, ids=None):
    n = len(score)
    return {"id": ids or [f"s{i}" for i in range(n)], "score": np.asarray(score, float),
            "length": np.asarray(length if length is not None else np.arange(n) % 97 + 30)}


def test_identical_scores_agree_perfectly_and_reversed_disagree():
    rng = np.random.default_rng(0)
    a = scoring(rng.random(1000))
    same = compare_scores(a, a, [0.01, 0.1])
    assert same["spearman"] == pytest.approx(1.0) and same["within_decile_spearman"] == pytest.approx(1.0)
    assert same["top_k_jaccard"] == {0.01: 1.0, 0.1: 1.0}
    rev = compare_scores(a, {**a, "score": -a["score"]}, [0.01])
    assert rev["spearman"] == pytest.approx(-1.0) and rev["within_decile_spearman"] == pytest.approx(-1.0)
    assert rev["top_k_jaccard"][0.01] == 0.0


def test_scores_are_aligned_by_id_not_by_position():
    rng = np.random.default_rng(1)
    a = scoring(rng.random(200))
    perm = rng.permutation(200)
    b = {"id": [a["id"][i] for i in perm], "score": a["score"][perm], "length": a["length"][perm]}
    assert compare_scores(a, b, [0.05])["spearman"] == pytest.approx(1.0)


def test_known_jaccard():
    # 100 sequences, budget 0.05 -> k = 5; tops {0..4} vs {2..6}: |{2,3,4}| / |{0..6}| = 3/7
    a = scoring(np.arange(100, 0, -1))
    b_score = a["score"].copy()
    b_score[[0, 1]] = 0.5  # 0 and 1 fall to the bottom; 5 and 6 move into b's top 5
    j = compare_scores(a, scoring(b_score), [0.05])["top_k_jaccard"][0.05]
    assert j == pytest.approx(3 / 7)


def test_within_decile_spearman_ignores_agreement_that_comes_from_length():
    """Both scorings = length + independent noise, 10 distinct lengths: overall Spearman near 1, but
    within each length stratum the two are independent draws (mean Spearman near 0)."""
    rng = np.random.default_rng(2)
    length = rng.choice(np.arange(30, 330, 30), 4000)
    a = scoring(length + rng.normal(0, 1, 4000), length)
    b = scoring(length + rng.normal(0, 1, 4000), length)
    c = compare_scores(a, b, [0.005])
    assert c["spearman"] > 0.95 and abs(c["within_decile_spearman"]) < 0.1
    assert 5 <= len(c["decile_spearman"]) <= 10
    assert length_correlation(a) > 0.95
    assert length_correlation(scoring(-length.astype(float), length)) == pytest.approx(-1.0)


def test_source_rule_on_demo_ids():
    assert [source_of(i) for i in ("rrna_gb_AJ313019__172", "mircarta_hsa-13017-7852.1",
                                   "trna_hg19-eColitK-highConf-tRNAs_Homo_sapiens_tRNA-Gln-TTG-2-1",
                                   "rfam_5S_rRNA_X83208.1/1-119", "sp|P69905|HBA_HUMAN", "chr1:100-200",
                                   "A6MFK6")] == ["rrna", "mircarta", "trna", "rfam", "sp", "chr1", "other"]


def test_composition_counts_and_fractions():
    pool = [f"rrna_{i}" for i in range(6)] + [f"trna_{i}" for i in range(3)] + ["mircarta_0"]
    sel = ["rrna_0", "trna_1", "trna_2", "mircarta_0"]
    df = composition(sel, pool).set_index("source")
    assert df["n_selection"].to_dict() == {"mircarta": 1, "rrna": 1, "trna": 2}
    assert df["n_pool"].to_dict() == {"mircarta": 1, "rrna": 6, "trna": 3}
    assert df.loc["trna", "frac_selection"] == pytest.approx(0.5) and df.loc["trna", "frac_pool"] == pytest.approx(0.3)
    assert df.loc["mircarta", "enrichment"] == pytest.approx(0.25 / 0.1)
    with pytest.raises(BiopruneError, match="not in the scored pool"):
        composition(["rfam_x"], pool)


def _scores_h5(path, sc):
    from bioprune.h5io import atomic_h5, write_str

    with atomic_h5(path, "scores") as f:
        write_str(f, "id", sc["id"])
        f.create_dataset("score", data=sc["score"])
        f.create_dataset("length", data=sc["length"].astype(np.int32))
        f.create_dataset("grad_sqnorm", data=np.ones(len(sc["id"])))


def test_run_stability_writes_csv_figure_and_thresholds(tmp_path):
    from bioprune.selections import write_selection

    rng = np.random.default_rng(3)
    n = 400
    ids = [f"{'rrna' if i % 4 else 'trna'}_{i}" for i in range(n)]
    length = rng.integers(30, 300, n)
    base = rng.random(n)
    paths = {}
    for name, noise in (("primary", 0.0), ("inf", 0.001), ("ref", 0.5)):
        paths[name] = str(tmp_path / f"{name}.h5")
        _scores_h5(paths[name], scoring(base + rng.normal(0, noise, n) if noise else base, length, ids))
    chosen = [i for i in ids if i.startswith("trna")][:20]
    write_selection(str(tmp_path / "sel.h5"), str(tmp_path / "sel.fa"), chosen, {i: "ACGU" for i in chosen},
                    strategy="top_influence", budget=0.05)
    out_csv, out_png = tmp_path / "stability.csv", tmp_path / "stability.png"
    df = run_stability(paths["primary"], paths["inf"], paths["ref"], {"top_influence_0.05": str(tmp_path / "sel.h5")},
                       str(out_csv), str(out_png), [0.005, 0.05])
    back = pd.read_csv(out_csv, keep_default_na=False)
    assert list(back.columns) == ["comparison", "statistic", "budget", "stratum", "value", "note"]
    assert len(back) == len(df) and out_png.stat().st_size > 1000
    row = lambda c, s: float(back[(back.comparison == c) & (back.statistic == s) & (back.stratum == "")].value.iloc[0])  # noqa: E731
    assert row("influence_seed", "spearman") > 0.99 and row("reference_seed", "spearman") < 0.7
    comp = back[(back.comparison == "composition:top_influence_0.05") & (back.statistic == "count")]
    assert dict(zip(comp.stratum, comp.value.astype(float))) == {"rrna": 0.0, "trna": 20.0}
    pool = back[(back.comparison == "composition:pool") & (back.statistic == "fraction")]
    assert dict(zip(pool.stratum, pool.value.astype(float))) == {"rrna": 0.75, "trna": 0.25}
    acc = acceptance(back).set_index("name")
    assert bool(acc.loc["influence_seed spearman", "passed"]) and not bool(acc.loc["reference_seed spearman", "passed"])
    assert "influence_seed top_k_jaccard @0.005" in acc.index


def test_acceptance_uses_absolute_length_correlation(tmp_path):
    rows = [dict(comparison="length", statistic="spearman_score_length", budget="", stratum="", value=v)
            for v in (-0.5, -0.2, 0.31)]
    write_stability(str(tmp_path / "s.csv"), rows)
    acc = acceptance(pd.read_csv(tmp_path / "s.csv", keep_default_na=False))
    assert acc.passed.tolist() == [False, True, False]
    plot_stability(str(tmp_path / "s.csv"), str(tmp_path / "s.png"))
    assert (tmp_path / "s.png").stat().st_size > 1000
