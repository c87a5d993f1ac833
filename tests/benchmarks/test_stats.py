"""Paired statistics of the benchmark table, aggregate's input checks, and the compute ledger."""
from __future__ import annotations

import math

import h5py
import numpy as np
import pandas as pd
import pytest

from bioprune.benchmarks.stats import paired_test, summarise, t_interval
from bioprune.errors import BiopruneError
from bioprune.report.ledger import ledger
from bioprune.report.tables import COLUMNS, aggregate

T975_2 = 4.302652729911275  # t(0.975, 2)


def test_paired_test_known_answer():
    n, m, lo, hi, p = paired_test([1.0, 2.0, 3.0])
    half = T975_2 * 1.0 / math.sqrt(3)  # sd of [1, 2, 3] is 1
    assert (n, m) == (3, 2.0) and lo == pytest.approx(2 - half) and hi == pytest.approx(2 + half)
    assert p == pytest.approx(0.07417990022744858)  # two-sided, t = 2 / (1 / sqrt 3) = 3.464 on 2 df


def test_one_value_has_no_interval():
    n, m, lo, hi = t_interval([5.0])
    assert (n, m) == (1, 5.0) and math.isnan(lo) and math.isnan(hi)
    assert math.isnan(paired_test([0.5])[4])


def test_paired_test_edge_cases_and_level():
    """Two pairs already give an interval (t on 1 df) and a p-value; identical differences give a point
    interval with p = 0 (p = 1 when all are 0); the level reaches the interval."""
    from scipy import stats

    n, m, lo, hi, p = paired_test([1.0, 3.0])
    half = stats.t.ppf(0.975, 1) * math.sqrt(2) / math.sqrt(2)  # sd of [1, 3] is sqrt 2
    assert (n, m) == (2, 2.0) and lo == pytest.approx(2 - half) and hi == pytest.approx(2 + half)
    assert p == pytest.approx(2 * stats.t.sf(2.0, 1))
    assert paired_test([0.5, 0.5, 0.5]) == (3, 0.5, 0.5, 0.5, 0.0)
    assert paired_test([0.0, 0.0]) == (2, 0.0, 0.0, 0.0, 1.0)
    lo90 = paired_test([1.0, 2.0, 3.0], 0.9)[2]
    assert lo90 == pytest.approx(2 - stats.t.ppf(0.95, 2) / math.sqrt(3)) and lo90 > paired_test([1.0, 2.0, 3.0])[2]


def metrics_frame() -> pd.DataFrame:
    """random seeds vary a lot between seeds; top_influence = random + [1, 2, 3] seed by seed."""
    rows = []
    base = {0: 10.0, 1: 20.0, 2: 40.0}
    for seed, v in base.items():
        rows.append(("random", 0.01, seed, "rna_type", "accuracy", v))
        rows.append(("top_influence", 0.01, seed, "rna_type", "accuracy", v + seed + 1))
        rows.append(("random_10x", 0.01, seed, "rna_type", "accuracy", v + 2 * (seed + 1)))
        rows.append(("random", 0.05, seed, "rna_type", "accuracy", 0.0))  # other budget: never paired with 0.01
    rows.append(("full", 1.0, 0, "rna_type", "accuracy", 99.0))
    rows.append(("rnafold", float("nan"), 0, "rna_ss", "bp_f1", 0.5))
    return pd.DataFrame(rows, columns=COLUMNS)


def test_summarise_pairs_seeds_within_budget():
    tab = summarise(metrics_frame()).set_index(["strategy", "budget"])
    top = tab.loc[("top_influence", 0.01)]
    half = T975_2 / math.sqrt(3)
    assert top["n_pairs_random"] == 3 and top["diff_random"] == pytest.approx(2.0)
    assert top["diff_random_low"] == pytest.approx(2 - half) and top["diff_random_high"] == pytest.approx(2 + half)
    assert top["p_random"] == pytest.approx(0.0742, abs=1e-4)  # unpaired, seed variance would swamp it
    assert top["diff_random_10x"] == pytest.approx(-2.0) and top["n_pairs_random_10x"] == 3
    assert top["n"] == 3 and top["mean"] == pytest.approx(np.mean([11.0, 22.0, 43.0]))
    full = tab.loc[("full", 1.0)]
    assert full["mean"] == 99.0
    assert full["n"] == 1 and math.isnan(full["ci95_low"]) and math.isnan(full["ci95_high"])
    assert full["n_pairs_random"] == 0 and math.isnan(full["diff_random"])
    assert math.isnan(tab.loc[("random", 0.01), "diff_random"])  # no self-comparison
    assert tab.loc[("random", 0.01), "diff_random_10x"] == pytest.approx(-4.0)
    assert len(tab) == 6


def write(path, df) -> str:
    df.to_csv(path, index=False)
    return str(path)


def test_aggregate_writes_paired_columns(tmp_path):
    df = metrics_frame()
    files = [write(tmp_path / f"{s}.csv", g) for s, g in df.groupby("strategy")]
    aggregate(files, str(tmp_path / "summary.csv"), str(tmp_path / "table.csv"))
    tab = pd.read_csv(tmp_path / "table.csv")
    assert {"n", "ci95_low", "diff_random", "p_random", "diff_random_10x", "p_random_10x"} <= set(tab.columns)
    assert len(pd.read_csv(tmp_path / "summary.csv")) == len(df)
    # an undefined number is written NA (not an empty cell), and the row's note says why (issue 26)
    raw = pd.read_csv(tmp_path / "table.csv", keep_default_na=False, dtype=str).set_index(["strategy", "budget"])
    full = raw.loc[("full", "1.0")]
    assert (full.ci95_low, full.ci95_high) == ("NA", "NA") and full.note == "one seed: no interval"
    # three seeds and three pairs with random and random_10x; the full pool has one seed, so one pair
    assert raw.loc[("top_influence", "0.01"), "note"] == "one pair with full: no interval, p or mde"


def test_a_single_pair_and_a_missing_random_arm_are_noted():
    df = pd.DataFrame([("random", 0.01, 0, "t", "m", 1.0), ("cci", 0.01, 0, "t", "m", 2.0),
                       ("cci", 0.01, 1, "t", "m", 2.5), ("top_influence", 0.05, 0, "t", "m", 3.0),
                       ("top_influence", 0.05, 1, "t", "m", 3.5)], columns=COLUMNS)
    tab = summarise(df).set_index(["strategy", "budget"])
    assert tab.loc[("cci", 0.01), "note"] == "one pair with random: no interval, p or mde"
    assert tab.loc[("top_influence", 0.05), "note"] == (
        "no random arm at budget 0.05: add random to selection.strategies")
    assert tab.loc[("random", 0.01), "note"] == "one seed: no interval"


def test_aggregate_input_errors_name_the_file(tmp_path):
    good = write(tmp_path / "good.csv", metrics_frame().head(3))
    out = (str(tmp_path / "s.csv"), str(tmp_path / "t.csv"))
    with pytest.raises(BiopruneError, match="missing.csv: metrics file not found"):
        aggregate([good, str(tmp_path / "missing.csv")], *out)
    bad = write(tmp_path / "bad.csv", metrics_frame().drop(columns="metric"))
    with pytest.raises(BiopruneError, match="bad.csv: missing column.*metric"):
        aggregate([good, bad], *out)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(BiopruneError, match="empty.csv"):
        aggregate([str(tmp_path / "empty.csv")], *out)
    text = write(tmp_path / "text.csv", metrics_frame().head(1).assign(value="high"))
    with pytest.raises(BiopruneError, match="text.csv: column value"):
        aggregate([text], *out)
    with pytest.raises(BiopruneError, match="given twice"):
        aggregate([good, good], *out)


def test_ledger_charges_shared_scoring_to_influence_arms(tmp_path):
    def bench(name, seconds):
        p = tmp_path / f"{name.replace('/', '__')}.tsv"
        p.write_text("s\th:m:s\tmax_rss\n" + f"{seconds}\t0:00:01\t1.0\n")
        return str(p)

    tsvs = {"reference": bench("reference", 100), "sketch/1-of-2": bench("s1", 30), "sketch/2-of-2": bench("s2", 20),
            "scores": bench("scores", 5), "ingest": bench("ingest", 1000),
            "select/top_influence_0.01_seed0": bench("sel_t", 1), "pretrain/top_influence_0.01_seed0": bench("pt", 50),
            "select/random_0.01_seed0": bench("sel_r", 2), "pretrain/random_0.01_seed0": bench("pr", 40),
            "benchmark/random_0.01_seed0": bench("br", 7), "pretrain/full_1_seed0": bench("pf", 500)}
    led = ledger(tsvs, {"reference": 1e12, "pretrain/random_0.01_seed0": 3e12}).set_index("strategy")
    assert led.loc["top_influence", "scoring_s"] == 155 and led.loc["top_influence", "total_s"] == 206
    assert led.loc["random", "scoring_s"] == 0 and led.loc["random", "total_s"] == 49
    assert led.loc["full", "total_s"] == 500 and led.loc["full", "budget"] == 1.0
    assert led.loc["top_influence", "scoring_flops"] == 1e12 and led.loc["random", "pretrain_flops"] == 3e12
    # stratify_by cluster: the influence arm also needs the MMseqs2 clustering; random never does
    tsvs["cluster"] = bench("cluster", 12)
    assert ledger(tsvs).set_index("strategy").loc["top_influence", "scoring_s"] == 155
    strat = ledger(tsvs, cluster_strata=("top_influence",)).set_index("strategy")
    assert strat.loc["top_influence", "scoring_s"] == 167 and strat.loc["random", "scoring_s"] == 0
    with pytest.raises(BiopruneError, match="nope.tsv: benchmark file not found"):
        ledger({"reference": str(tmp_path / "nope.tsv")})
    (tmp_path / "other.tsv").write_text("seconds\tmax_rss\n1\t2\n")
    with pytest.raises(BiopruneError, match="other.tsv: missing column s"):
        ledger({"reference": str(tmp_path / "other.tsv")})


def test_write_ledger_flops_from_checkpoints_curves_and_sketches(tmp_path):
    """FLOPs = 6 N T: T is the training tokens the curves record, or the pool's tokens x mask draws of a
    sketch; a coreset arm's pretraining FLOPs relative to the full-pool arm follow its tokens."""
    from bioprune.report.ledger import n_params, write_ledger
    from bioprune.models import build_model, save_checkpoint

    res = tmp_path / "results"

    def bench(key, seconds):
        p = res / "benchmarks" / f"{key}.tsv"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("s\th:m:s\n" + f"{seconds}\t0:00:01\n")
        return str(p)

    def run(folder, layers, tokens):
        folder.mkdir(parents=True)
        save_checkpoint(folder / "model.pt", build_model("rna", layers, 16, 2, seed=0), "rna")
        with h5py.File(folder / "curves.h5", "w") as f:
            f.attrs["tokens_seen"] = tokens
        return n_params(str(folder / "model.pt"))

    n_ref = run(res / "reference/seed0", 1, 1000)
    n_arm = run(res / "models/top_influence_0.01_seed0", 2, 500)
    run(res / "models/full_1_seed0", 2, 20000)
    (res / "sketches/ref0_inf0").mkdir(parents=True)
    with h5py.File(res / "sketches/ref0_inf0/1-of-2.h5", "w") as f:
        f.create_dataset("length", data=np.array([10, 20]))
        f.attrs["mask_draws"] = 2
    with h5py.File(res / "sketches/ref0_inf0/2-of-2.h5", "w") as f:  # a second shard adds its own tokens
        f.create_dataset("length", data=np.array([30]))
        f.attrs["mask_draws"] = 2
    (res / "curvature").mkdir()
    with h5py.File(res / "curvature/ref0_inf0.h5", "w") as f:  # D_sub of 4 samples, 3 mask draws each
        f.attrs["n_samples"] = 4
        f.attrs["mask_draws"] = 3
    tsvs = [bench("reference/seed0", 10), bench("curvature/ref0_inf0", 4), bench("sketch/ref0_inf0/1-of-2", 3),
            bench("sketch/ref0_inf0/2-of-2", 2), bench("scores/ref0_inf0", 1), bench("benchmark/nearest_neighbour", 9),
            bench("select/top_influence_0.01_seed0", 1), bench("pretrain/top_influence_0.01_seed0", 3),
            bench("benchmark/top_influence_0.01_seed0", 2), bench("pretrain/full_1_seed0", 30)]
    out = tmp_path / "ledger.csv"
    led = write_ledger(str(res), tsvs, str(out)).set_index("strategy")
    assert n_arm > n_ref > 0
    top = led.loc["top_influence"]
    assert top.pretrain_flops == pytest.approx(6 * n_arm * 500)
    # reference training + sketch (66 tokens x 2 draws) + curvature (4 samples x the pool's mean 22 tokens x 3 draws)
    assert top.scoring_flops == pytest.approx(6 * n_ref * 1000 + 6 * n_ref * (66 * 2) + 6 * n_ref * (4 * 22 * 3))
    assert top.pretrain_flops_vs_full == pytest.approx(500 / 20000)
    assert top.total_flops_vs_full == pytest.approx((top.pretrain_flops + top.scoring_flops) / (6 * n_arm * 20000))
    assert top.total_s == 10 + 4 + 5 + 1 + 1 + 3 + 2
    assert led.loc["full"].scoring_flops == 0 and out.read_text().startswith("strategy,budget,seed")
    assert led.seed.tolist() == [0, 0] and led.budget.tolist() == [1.0, 0.01]  # benchmark/nearest_neighbour: no arm
    # the CLI (`bioprune ledger --cluster-strata`): a cluster-stratified arm is also charged the clustering
    from bioprune.cli import main

    tsvs.append(bench("cluster", 6))
    cli_out = res / "benchmark" / "ledger.csv"  # the CLI reads the stage files under its parents[1]
    main(["ledger", "--benchmarks", *tsvs, "--out", str(cli_out), "--cluster-strata", "top_influence"])
    assert pd.read_csv(cli_out).set_index("strategy").loc["top_influence", "total_s"] == top.total_s + 6


# --- power: minimum detectable effects (mde_* columns) -------------------------------------------------

def test_mde_against_the_closed_form():
    from bioprune.benchmarks.stats import mde_closed_form, mde_paired, power_paired

    t975_2, t80_2 = T975_2, 1.0606601717798212  # t(0.975, 2), t(0.8, 2)
    assert mde_closed_form(2.0, 3) == pytest.approx((t975_2 + t80_2) * 2.0 / math.sqrt(3))
    for n in (2, 3, 5, 10):
        exact = mde_paired(1.0, n)
        assert power_paired(exact, 1.0, n) == pytest.approx(0.8, abs=1e-9)
        assert exact > mde_closed_form(1.0, n)  # the approximation is optimistic for few pairs
    for n in (30, 100):  # and converges to the exact value
        assert mde_paired(1.0, n) == pytest.approx(mde_closed_form(1.0, n), rel=1e-3)
    assert mde_paired(3.0, 5) == pytest.approx(3 * mde_paired(1.0, 5))  # linear in sd
    assert math.isnan(mde_paired(1.0, 1)) and mde_paired(0.0, 3) == 0.0


def simulated_studies(delta: float, sd: float, n: int, studies: int, rng) -> pd.DataFrame:
    """`studies` independent studies (one metric name each) of n seeds: random, and x = random + delta + noise."""
    rows = []
    for k in range(studies):
        base = rng.normal(10.0, 5.0, n)  # large seed-to-seed variance that pairing cancels
        x = base + delta + rng.normal(0.0, sd, n)
        for seed in range(n):
            rows.append(("random", 0.01, seed, "sim", f"m{k}", base[seed]))
            rows.append(("x", 0.01, seed, "sim", f"m{k}", x[seed]))
    return pd.DataFrame(rows, columns=COLUMNS)


def test_mde_column_predicts_the_detection_rate():
    """Plant a paired difference of the mde column's size in 400 simulated 3-seed studies: the paired
    test detects it (p < 0.05) in 80% of them, within 10 points; half of it and none are detected at
    the rates power_paired predicts."""
    from bioprune.benchmarks.stats import power_paired

    sd, n = 0.5, 3
    pilot = pd.DataFrame([("random", 0.01, s, "sim", "m", 0.0) for s in range(n)]
                         + [("x", 0.01, s, "sim", "m", d) for s, d in enumerate([-sd, 0.0, sd])], columns=COLUMNS)
    mde = float(summarise(pilot).set_index("strategy").loc["x", "mde_random"])  # paired sd exactly 0.5
    rng = np.random.default_rng(24)
    for planted, expected in ((mde, 0.8), (mde / 2, power_paired(mde / 2, sd, n)), (0.0, 0.05)):
        tab = summarise(simulated_studies(planted, sd, n, 400, rng))
        x = tab[tab.strategy == "x"]
        assert len(x) == 400 and (x["n_pairs_random"] == n).all()
        rate = float((x["p_random"] < 0.05).mean())
        assert abs(rate - expected) <= 0.10, (planted, rate, expected)


def test_full_pool_is_paired_across_budgets():
    df = metrics_frame()
    df = pd.concat([df, pd.DataFrame([("full", 1.0, s, "rna_type", "accuracy", 50.0 + s) for s in (1, 2)]
                                     + [("nearest_neighbour", float("nan"), 0, "rna_type", "accuracy", 0.8)],
                                     columns=COLUMNS)])
    tab = summarise(df).set_index(["strategy", "budget"])
    r = tab.loc[("random", 0.01)]
    # random 0.01 seeds 0, 1, 2 = 10, 20, 40; full seeds 0, 1, 2 = 99, 51, 52
    assert r["n_pairs_full"] == 3 and r["diff_full"] == pytest.approx(np.mean([10 - 99, 20 - 51, 40 - 52]))
    assert "mde_full" in tab.columns and "mde_random" in tab.columns
    assert math.isnan(tab.loc[("full", 1.0), "diff_full"])  # no self-comparison
    ref = summarise(df).query("strategy == 'nearest_neighbour'")
    assert (ref["n_pairs_full"] == 0).all()  # reference rows (no budget) are not paired with a model seed


def test_verdict_names_controls_and_detectable_effects():
    from bioprune.report.tables import verdict

    rows = []
    for seed, base in enumerate([3.70, 3.80, 3.75]):
        rows += [("random", 0.005, seed, "perplexity", "perplexity", base),
                 ("degenerate", 0.005, seed, "perplexity", "perplexity", base + 0.5 + 0.01 * seed),
                 ("cci", 0.005, seed, "perplexity", "perplexity", base + [0.02, -0.03, 0.01][seed]),
                 ("full", 1.0, seed, "perplexity", "perplexity", base - 0.2 - 0.01 * seed)]
    rows.append(("kmer_baseline", float("nan"), 0, "perplexity", "perplexity", 3.6))
    text = verdict(summarise(pd.DataFrame(rows, columns=COLUMNS)))
    assert "degenerate vs random at 0.005: worse by 0.510" in text and "-> separated" in text
    assert "full pool vs random at 0.005: better by 0.210" in text
    assert "full pool 3.540 vs kmer_baseline 3.600: the models beat counting k-mers" in text
    cci = next(line for line in text.splitlines() if line.strip().startswith("cci"))
    assert "no difference larger than" in cci and "indistinguishable" not in text
