"""Stability statistics on constructed cases with known answers; the CSV, figure and stage."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex

from bioprune.errors import BiopruneError
from bioprune.influence.stability import (acceptance, compare_scores, composition, length_correlation, plot_stability,
                                run_stability, source_of, write_stability)


@pytest.fixture
def drawn(monkeypatch):
    """The figures plot_stability draws (captured at plt.subplots), to read back what was plotted."""
    import matplotlib.pyplot as plt

    import bioprune.influence.stability as st

    figs, real = [], plt.subplots

    def subplots(*a, **kw):
        fig, axes = real(*a, **kw)
        figs.append((fig, axes))
        return fig, axes

    monkeypatch.setattr(st.plt, "subplots", subplots)
    yield figs
    for fig, _ in figs:
        plt.close(fig)


def bars(ax) -> list[dict]:
    """Horizontal bars of an axes, top to bottom as drawn: y, left, width and colour name."""
    from matplotlib.colors import to_hex

    out = [dict(y=round(p.get_y() + p.get_height() / 2, 6), left=p.get_x(), width=p.get_width(),
                color=to_hex(p.get_facecolor())) for p in ax.patches]
    return sorted(out, key=lambda b: (b["y"], b["left"]))


def threshold_lines(ax) -> np.ndarray:
    """(x, y centre) of the dashed target markers, one row each."""
    return np.array([(ln.get_xdata()[0], np.mean(ln.get_ydata())) for ln in ax.lines if ln.get_linestyle() == "--"])


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


def test_decile_statistics_use_each_sequences_own_length():
    """Ten lengths of 100 sequences each (so the ten deciles are the ten lengths), run b in another order:
    every decile's key is its length and its value the Spearman of the two runs over that length's ids,
    computed here by id; the top decile is there; within_decile_spearman is their mean."""
    from scipy.stats import spearmanr

    rng = np.random.default_rng(5)
    n = 1000
    length = np.repeat(np.arange(30, 330, 30), 100)
    rng.shuffle(length)
    a = scoring(rng.random(n), length)
    noise = rng.normal(0, 1, n) * length / 300  # agreement falls with length: every decile differs
    perm = rng.permutation(n)
    b = {"id": [a["id"][i] for i in perm], "score": (a["score"] + noise)[perm], "length": length[perm]}
    c = compare_scores(a, b, [0.1])
    want = {}
    for L in range(30, 330, 30):
        ids = [i for i, x in zip(a["id"], length) if x == L]
        sa = {i: s for i, s in zip(a["id"], a["score"])}
        sb = {i: s for i, s in zip(b["id"], b["score"])}
        want[f"[{L},{L}]"] = spearmanr([sa[i] for i in ids], [sb[i] for i in ids]).statistic
    assert list(c["decile_spearman"]) == list(want)  # ten deciles, short to long, the longest included
    for key, rho in want.items():
        assert c["decile_spearman"][key] == pytest.approx(rho, abs=1e-12), key
    assert c["within_decile_spearman"] == pytest.approx(np.mean(list(want.values())), abs=1e-12)
    assert c["n"] == n and len(set(np.round(list(want.values()), 6))) == 10


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


def test_run_stability_writes_csv_figure_and_thresholds(tmp_path, drawn):
    from bioprune.selection.strategies import write_selection

    rng = np.random.default_rng(3)
    n = 400
    ids = [f"{('trna', 'mircarta', 'rrna', 'rrna')[i % 4]}_{i}" for i in range(n)]
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
    assert len(back) == len(df) and out_png.read_bytes().startswith(b"\x89PNG")
    row = lambda c, s: float(back[(back.comparison == c) & (back.statistic == s) & (back.stratum == "")].value.iloc[0])  # noqa: E731
    assert row("influence_seed", "spearman") > 0.99 and row("reference_seed", "spearman") < 0.7
    comp = back[(back.comparison == "composition:top_influence_0.05") & (back.statistic == "count")]
    assert dict(zip(comp.stratum, comp.value.astype(float))) == {"mircarta": 0.0, "rrna": 0.0, "trna": 20.0}
    pool = back[(back.comparison == "composition:pool") & (back.statistic == "fraction")]
    assert dict(zip(pool.stratum, pool.value.astype(float))) == {"mircarta": 0.25, "rrna": 0.5, "trna": 0.25}
    acc = acceptance(back).set_index("name")
    assert bool(acc.loc["influence_seed spearman", "passed"]) and not bool(acc.loc["reference_seed spearman", "passed"])
    assert "influence_seed top_k_jaccard @0.005" in acc.index
    # the figure draws these numbers: one bar per target (value, green when met), the targets dashed
    (fig, (ax, bx)), = drawn
    left = bars(ax)
    assert [b["width"] for b in left] == pytest.approx([abs(v) if k == "absmax" else v for v, k in zip(acc.value, acc.kind)])
    assert [b["color"] for b in left] == [to_hex("tab:green" if p else "tab:red") for p in acc.passed]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(acc.index)
    np.testing.assert_allclose(threshold_lines(ax), [(t, y) for y, t in enumerate(acc.threshold)])
    # composition: per set (pool first), stacked bars of its source fractions, sources in name order
    right = bars(bx)
    assert [t.get_text() for t in bx.get_yticklabels()] == ["pool", "top_influence_0.05"]
    np.testing.assert_allclose([(b["y"], b["left"], b["width"]) for b in right],
                               [(0, 0.0, 0.25), (0, 0.25, 0.5), (0, 0.75, 0.25),
                                (1, 0.0, 0.0), (1, 0.0, 0.0), (1, 0.0, 1.0)])


def test_acceptance_uses_absolute_length_correlation(tmp_path, drawn):
    rows = [dict(comparison="length", statistic="spearman_score_length", budget="", stratum="", value=v)
            for v in (-0.5, -0.2, 0.31)]
    write_stability(str(tmp_path / "s.csv"), rows)
    acc = acceptance(pd.read_csv(tmp_path / "s.csv", keep_default_na=False))
    assert acc.passed.tolist() == [False, True, False]
    plot_stability(str(tmp_path / "s.csv"), str(tmp_path / "s.png"))
    assert (tmp_path / "s.png").read_bytes().startswith(b"\x89PNG")
    (fig, (ax, bx)), = drawn
    # |Spearman| drawn for the length target (0.5, 0.2, 0.31), red / green / red against 0.3
    assert [(b["width"], b["color"]) for b in bars(ax)] == [
        (pytest.approx(0.5), to_hex("tab:red")), (pytest.approx(0.2), to_hex("tab:green")),
        (pytest.approx(0.31), to_hex("tab:red"))]
    np.testing.assert_allclose(threshold_lines(ax), [(0.3, 0), (0.3, 1), (0.3, 2)])
    assert bars(bx) == []  # no composition rows
