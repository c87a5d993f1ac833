"""Degenerate statistics and too-small inputs, stage by stage (issue 26), in process and fast.

An undefined statistic is written as NA with its reason and drawn as such; an input too small for
its setting stops with one error naming the config key and the value that would do.
"""
from __future__ import annotations


import matplotlib
import numpy as np
import pandas as pd
import pytest

from bioprune.errors import BiopruneError
from bioprune.hashing import in_subset
from bioprune.selection.strategies import budget_size, fraction_count, least_budget
from bioprune.ingest import IngestOptions, IngestStats, check_counts, ingest
from bioprune.influence.stability import (NA, acceptance, compare_scores, comparison_rows, plot_stability, read_stability,
                                undefined_why, write_stability)

from helpers import write_fasta

matplotlib.use("Agg")


def scoring(score, length, ids=None):
    return {"id": ids or [f"s{i}" for i in range(len(score))], "score": np.asarray(score, float),
            "length": np.asarray(length)}


def test_constant_lengths_give_one_stratum_and_an_na_length_correlation_with_its_reason():
    rng = np.random.default_rng(0)
    s = rng.random(50)
    a, b = scoring(s, np.full(50, 64)), scoring(s + rng.normal(0, 0.01, 50), np.full(50, 64))
    cmp = compare_scores(a, b, [0.1])
    assert list(cmp["decile_spearman"]) == ["[64,64]"]  # one length class, one stratum
    assert cmp["within_decile_spearman"] == pytest.approx(cmp["spearman"])  # that stratum is the pool
    assert cmp["why"] == {}  # every comparison statistic is defined
    assert undefined_why(s, np.full(50, 64), ("scores", "lengths")) == (
        "all 50 lengths equal 64 (every sequence cropped to corpus.max_length?)")
    assert undefined_why(np.ones(5), np.arange(5)) == "all 5 scores equal 1"
    assert undefined_why([1.0, 2.0], [2.0, 1.0]) == "2 sequences (Spearman needs at least 3)"
    assert undefined_why(s, s) == ""


def test_tied_scores_and_tiny_budgets_are_na_with_reasons_not_errors(tmp_path):
    a = scoring(np.ones(12), np.arange(12) + 20)
    b = scoring(np.arange(12.0), np.arange(12) + 20)
    cmp = compare_scores(a, b, [0.01, 0.5])
    assert np.isnan(cmp["spearman"]) and cmp["why"]["spearman"] == "all 12 scores equal 1"
    assert np.isnan(cmp["top_k_jaccard"][0.01])  # 0.01 x 12 = 0.12 sequences
    assert cmp["why"]["top_k_jaccard@0.01"] == "budget 0.01 of 12 sequences is 0.12 (< 1 sequence)"
    assert cmp["top_k_jaccard"][0.5] == pytest.approx(len({*range(6)} & {*range(6, 12)}) / 12)  # ties by position
    rows = comparison_rows("influence_seed", cmp)
    df = write_stability(str(tmp_path / "s.csv"), rows)
    assert len(df) == len(rows)
    raw = pd.read_csv(tmp_path / "s.csv", keep_default_na=False, dtype=str)
    spear = raw[(raw.statistic == "spearman") & (raw.stratum == "")].iloc[0]
    assert (spear.value, spear.note) == (NA, "all 12 scores equal 1")
    back = read_stability(str(tmp_path / "s.csv"))
    assert np.isnan(back.value[(back.statistic == "spearman") & (back.stratum == "")]).all()
    acc = acceptance(back).set_index("name")
    assert acc.loc["influence_seed spearman", "passed"] is None  # undefined: neither met nor missed
    assert acc.loc["influence_seed spearman", "note"] == "all 12 scores equal 1"


def test_an_undefined_value_without_a_reason_is_refused(tmp_path):
    row = dict(comparison="length", statistic="spearman_score_length", budget="", stratum="", value=float("nan"),
               note="")
    with pytest.raises(ValueError, match="without a reason"):
        write_stability(str(tmp_path / "s.csv"), [row])
    assert not (tmp_path / "s.csv").exists()


def test_stability_figure_draws_an_na_as_a_grey_bar_labelled_with_its_reason(tmp_path, monkeypatch):
    rows = [dict(comparison="length", statistic="spearman_score_length", budget="", stratum="", value=float("nan"),
                 note="all 9 lengths equal 30"),
            dict(comparison="influence_seed", statistic="spearman", budget="", stratum="", value=0.97, note="")]
    write_stability(str(tmp_path / "s.csv"), rows)
    drawn = {}
    import matplotlib.pyplot as plt

    real_close = plt.close

    def keep(fig=None):  # read the artists before the figure is closed
        ax = fig.axes[0]
        drawn["bars"] = [(p.get_width(), matplotlib.colors.to_hex(p.get_facecolor())) for p in ax.patches]
        drawn["texts"] = [t.get_text() for t in ax.texts]
        drawn["ticks"] = [t.get_text() for t in ax.get_yticklabels()]
        real_close(fig)

    monkeypatch.setattr(plt, "close", keep)
    plot_stability(str(tmp_path / "s.csv"), str(tmp_path / "s.png"))
    by_label = dict(zip(drawn["ticks"], zip(drawn["bars"], drawn["texts"])))
    (width, color), text = by_label["influence_seed spearman"]
    assert width == pytest.approx(0.97) and color == matplotlib.colors.to_hex("tab:green") and text.startswith("0.97")
    (width, color), text = by_label["length spearman_score_length"]
    assert width == 0 and color == matplotlib.colors.to_hex("lightgrey") and text == "NA: all 9 lengths equal 30"


@pytest.mark.parametrize("n", [1, 2, 3, 7, 99, 100, 1234, 18081])
def test_least_budget_is_the_smallest_that_selects_one_sequence(n):
    text = least_budget(n)
    assert fraction_count(n, float(text)) == 1
    below = float(text) - 10 ** (np.floor(np.log10(float(text))) - 2)  # one unit less in the 3rd digit
    assert below <= 0 or fraction_count(n, below) == 0
    with pytest.raises(BiopruneError, match=rf"selection\.budgets: .* raise it to at least {text}$"):
        budget_size(n, float(text) / 3)


def test_ingest_with_no_survivor_names_each_filter_and_its_key_and_leaves_nothing(tmp_path):
    fa = write_fasta(tmp_path / "pool.fa", [("a", "ACGU"), ("b", "ACGUN" * 8), ("c", "ACGUACGUAC" * 30)])
    opts = IngestOptions(min_length=5, max_length=100, length_policy="drop", ambiguous="drop")
    shards = [str(tmp_path / "out" / "1-of-1.h5")]
    with pytest.raises(BiopruneError) as e:
        ingest(str(fa), shards, str(tmp_path / "out" / "holdout.h5"), opts)
    assert str(e.value) == (f"{fa}: 0 of 3 records kept: 1 shorter than corpus.min_length = 5; 1 longer than "
                            "corpus.max_length = 100 (corpus.length_policy = drop); 1 with ambiguity codes "
                            "(corpus.ambiguous = drop)")
    assert not list((tmp_path / "out").glob("*.h5"))


def test_an_all_held_out_pool_names_holdout_fraction():
    stats = IngestStats(records=3, kept=2, holdout=2, per_shard=[0, 0])
    with pytest.raises(BiopruneError, match=r"all 2 distinct sequences .* held-out split \(corpus.holdout_fraction"
                                            r" = 0.5\)"):
        check_counts(stats, IngestOptions(holdout_fraction=0.5))
    check_counts(IngestStats(records=3, kept=2, holdout=1, per_shard=[1, 0]), IngestOptions())  # one shard empty: fine


def test_empty_dsub_names_the_subset_fraction_that_would_draw_one(tmp_path):
    from bioprune.influence.reference import ReferenceConfig, build_reference, empty_dsub

    ids = [f"s{i}" for i in range(4)]
    fa = write_fasta(tmp_path / "pool.fa", [(i, "ACGUACGUACGUACGUACGUA"[: 20 + k % 2]) for k, i in enumerate(ids)])
    shards = [str(tmp_path / "1-of-1.h5")]
    ingest(str(fa), shards, str(tmp_path / "holdout.h5"), IngestOptions(min_length=5, holdout_fraction=0.001))
    from bioprune.ingest import read_shard

    pool = read_shard(shards[0])[0]
    fraction = 1e-6
    assert not any(in_subset(i, fraction, 0) for i in pool)
    params = {"subset_fraction": fraction, "seed": 0, "layers": 1, "embed_dim": 8, "heads": 2, "epochs": 1,
              "batch_size": 4, "lr": 1e-3, "device": "cpu", "checkpoint": None}
    with pytest.raises(BiopruneError, match=r"reference: D_sub is empty: reference.subset_fraction = 1e-06 draws none "
                                            rf"of the {len(pool)} pool sequences .*raise reference.subset_fraction "
                                            r"to at least (\S+), or add sequences") as e:
        build_reference(shards, str(tmp_path / "m.pt"), str(tmp_path / "c.h5"), ReferenceConfig.from_params(params))
    least = float(str(e.value).split("at least ")[1].split(",")[0])
    assert sum(in_subset(i, least, 0) for i in pool) >= 1  # the suggested fraction does draw a sequence
    assert not (tmp_path / "m.pt").exists()
    empty = str(tmp_path / "empty.h5")
    from bioprune.leakage.gate import filter_shards

    (tmp_path / "all.txt").write_text("".join(f"{i}\n" for i in pool))
    filter_shards(shards, [empty], str(tmp_path / "all.txt"))
    assert "the pool is empty after ingest and the leakage gate" in str(empty_dsub("curvature", [empty], 0.3, 0))


@pytest.mark.requires_tool("mmseqs")
def test_leakage_gate_that_would_remove_the_whole_pool_stops_naming_max_identity(tmp_path):
    import gzip

    from bioprune.leakage.gate import GateConfig, run_gate

    rng = np.random.default_rng(3)
    seqs = ["".join(rng.choice(list("ACGU"), 120)) for _ in range(3)]
    pool = write_fasta(tmp_path / "pool.fa", [(f"p{k}", s) for k, s in enumerate(seqs)])
    ev = tmp_path / "type_eval.tsv.gz"
    with gzip.open(ev, "wt") as fh:
        fh.write("id\tlabel\tsequence\n" + "".join(f"e{k}\tx\t{s}\n" for k, s in enumerate(seqs)))
    out_ex, out_rep = tmp_path / "leakage" / "excluded.txt", tmp_path / "leakage" / "report.csv"
    with pytest.raises(BiopruneError, match=r"every one of the 3 pool sequences has a near-copy \(identity >= "
                                            r"leakage.max_identity = 0.9"):
        run_gate([str(pool)], [str(ev)], str(out_ex), str(out_rep),
                 GateConfig(molecule="rna", max_identity=0.9, min_coverage=0.8, threads=1))
    assert not out_ex.exists() and not out_rep.exists()
    # one pool sequence without a near-copy: the gate removes the other two and goes on
    extra = write_fasta(tmp_path / "pool2.fa", [(f"p{k}", s) for k, s in enumerate(seqs)]
                        + [("far", "".join(rng.choice(list("ACGU"), 120)))])
    run_gate([str(extra)], [str(ev)], str(out_ex), str(out_rep),
             GateConfig(molecule="rna", max_identity=0.9, min_coverage=0.8, threads=1))
    assert out_ex.read_text().split() == ["p0", "p1", "p2"]


def test_dsub_of_one_and_a_shard_emptied_by_the_leakage_gate_still_score_every_sequence(tmp_path):
    """The reference trains on one sequence, the Fisher is fitted on it, and a shard the gate left
    empty gives an empty sketch; the merged scores hold every remaining pool sequence, all finite."""
    from bioprune.hashing import unit_hash
    from bioprune.leakage.gate import filter_shards
    from bioprune.influence.reference import ReferenceConfig, build_reference
    from bioprune.influence.scores import merge_scores, read_scores
    from bioprune.ingest import read_shard
    from bioprune.influence.sketches import InfluenceConfig, fit_diag_fisher, sketch_shard

    from helpers import random_rna

    fa = write_fasta(tmp_path / "pool.fa", random_rna(12, seed=5, lo=25, hi=40))
    shards = [str(tmp_path / f"{i}-of-2.h5") for i in (1, 2)]
    ingest(str(fa), shards, str(tmp_path / "holdout.h5"), IngestOptions(holdout_fraction=0.001, min_length=5))
    ids = [i for s in shards for i in read_shard(s)[0]]
    h = sorted(unit_hash(i, "dsub", 0) for i in ids)
    frac = (h[0] + h[1]) / 2  # exactly one sequence in D_sub
    (tmp_path / "ex.txt").write_text("".join(f"{i}\n" for i in read_shard(shards[1])[0] if not in_subset(i, frac, 0)))
    gated = [str(tmp_path / f"g{i}.h5") for i in (1, 2)]
    filter_shards(shards, gated, str(tmp_path / "ex.txt"))
    kept = [i for g in gated for i in read_shard(g)[0]]
    assert sum(in_subset(i, frac, 0) for i in kept) == 1 and [] in [read_shard(g)[0] for g in gated]
    params = {"subset_fraction": frac, "seed": 0, "layers": 1, "embed_dim": 8, "heads": 2, "epochs": 1,
              "batch_size": 4, "lr": 1e-3, "device": "cpu", "checkpoint": None}
    build_reference(gated, str(tmp_path / "m.pt"), str(tmp_path / "c.h5"), ReferenceConfig.from_params(params))
    cfg = InfluenceConfig(estimator="diag_fisher", params=["lm_head.dense.weight"], subset_fraction=frac,
                          subset_seed=0, seed=0, batch_size=4)
    fit_diag_fisher(gated, str(tmp_path / "m.pt"), str(tmp_path / "cv.h5"), cfg)
    for k, p in enumerate(gated):
        sketch_shard(p, str(tmp_path / "m.pt"), str(tmp_path / f"s{k}.h5"), cfg, str(tmp_path / "cv.h5"))
    merge_scores([str(tmp_path / f"s{k}.h5") for k in range(2)], str(tmp_path / "sc.h5"))
    sc = read_scores(str(tmp_path / "sc.h5"))
    assert sorted(sc["id"]) == sorted(kept) and np.isfinite(sc["score"]).all() and int(sc["in_subset"].sum()) == 1


@pytest.mark.parametrize("case", ["tied", "fewer_than_bins", "one_length"])
@pytest.mark.parametrize("strategy,stratify", [("top_influence", None), ("top_influence", "length"), ("cci", None),
                                               ("cci", "length"), ("random", None), ("grad_norm", None),
                                               ("random_10x", None)])
def test_selection_on_degenerate_scores_returns_exactly_the_budget(case, strategy, stratify):
    """All scores tied, fewer sequences than CCI bins or length strata, one length class: every strategy
    returns exactly k distinct positions (k = round-half-up(budget x n), x10 for random_10x)."""
    from bioprune.selection.strategies import CCIOptions, TopOptions, select_indices

    n = {"tied": 40, "fewer_than_bins": 12, "one_length": 40}[case]
    rng = np.random.default_rng(1)
    score = np.ones(n) if case == "tied" else rng.random(n)
    length = np.full(n, 64) if case == "one_length" else 20 + np.arange(n)
    sc = {"id": [f"s{i}" for i in range(n)], "score": score, "length": length, "grad_sqnorm": rng.random(n)}
    cci = {"beta": 0.1, "bins": 50, "bin_edge": "inclusive", **({"stratify_by": stratify} if stratify else {})}
    top = {"stratify_by": stratify} if stratify else None
    idx = np.asarray(select_indices(strategy, sc, n, 0.1, 0, CCIOptions(**cci), None,
                                    top_influence=TopOptions(**top) if top else None, length_strata=10))
    k = budget_size(n, 0.1, strategy)
    assert len(idx) == k == len(set(idx.tolist())) and ((0 <= idx) & (idx < n)).all()
