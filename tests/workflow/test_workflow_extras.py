"""The tiny workflow with the cluster strategy and the nearest-neighbour row, then `snakemake --report`,
run the way a host workflow uses bioprune: as a Snakemake `module` with a rule prefix, from another
directory (so every shipped path must resolve through the workflow, every user path through the working
directory). The cluster selection is drawn from MMseqs2 representatives inside the workflow, the
benchmark summary holds its rows, and report.html embeds the benchmark table, the resolved config and
the leakage report."""
from __future__ import annotations

import base64
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

from test_slurm import copy_workflow

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
R = "results_extra"
pytestmark = [pytest.mark.slow, pytest.mark.requires_tool("mmseqs")]


HOST_SNAKEFILE = """configfile: "config/bioprune.yaml"


module bioprune:
    snakefile:
        "{snakefile}"
    config:
        config


use rule * from bioprune as bp_*
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A host workflow in its own directory that uses a copy of bioprune as a module (rule prefix bp_), run to
    completion with cluster + random + top_influence, one seed, no stability stage; then the report. Returns
    the host dir."""
    base = tmp_path_factory.mktemp("extras")
    wf = copy_workflow(base / "bioprune")
    host = base / "host"
    (host / "config").mkdir(parents=True)
    (host / "data").mkdir()
    shutil.copy2(wf / "tests/data/tiny_rna.fa.gz", host / "data/pool.fa.gz")
    config = yaml.safe_load((wf / "tests/config/tiny.yaml").read_text())
    config.update(results=R, seeds=[0], stability={"enabled": False})
    config["corpus"]["path"] = "data/pool.fa.gz"  # relative to the host's working directory
    config["selection"]["strategies"] = ["cluster", "random", "top_influence"]
    config["benchmark"]["nearest_neighbour"] = True
    (host / "config/bioprune.yaml").write_text(yaml.safe_dump(config))
    (host / "Snakefile").write_text(HOST_SNAKEFILE.format(snakefile=wf / "Snakefile"))
    for cmd in (["--cores", "2", "--max-threads", "1"], ["--cores", "1", "--report", "report.html"]):
        res = subprocess.run([SNAKEMAKE, *cmd], cwd=host, capture_output=True, text=True, timeout=900)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return host


def test_module_run_used_prefixed_rules_and_the_workflows_files(run):
    """Rules ran under the host's prefix, and the stage scripts imported the module's own bioprune copy."""
    logs = run / R / "logs"
    assert (logs / "leakage_gate.log").exists()
    log = (logs / "resolved_config.log").read_text()
    assert f"from {run.parent / 'bioprune' / 'bioprune'}" in log, log
    # Snakemake's job records name the rules that made each output: the host's prefixed names
    rules = {json.loads(p.read_text()).get("rule") for p in (run / ".snakemake/metadata").iterdir()}
    assert {"bp_select", "bp_pretrain", "bp_leakage_gate"} <= rules and "select" not in rules, rules


def mmseqs_representatives(wf: Path, tmp: Path) -> set[str]:
    """Representatives of the gated pool by our own `mmseqs easy-linclust` call, at the resolved config's settings."""
    from bioprune.ingest import read_shard

    cl = yaml.safe_load((wf / R / "config.resolved.yaml").read_text())["selection"]["cluster"]
    fasta = tmp / "pool.fa"
    with open(fasta, "w") as fh:
        for shard in sorted((wf / R / "shards").glob("*-of-*.h5")):
            ids, seqs, _ = read_shard(shard)
            fh.write("".join(f">{i}\n{s}\n" for i, s in zip(ids, seqs)))
    subprocess.run([shutil.which("mmseqs"), "easy-linclust", str(fasta), str(tmp / "clu"), str(tmp / "work"),
                    "--min-seq-id", str(cl["identity"]), "-c", str(cl["coverage"]), "--threads", "1", "-v", "1"],
                   check=True, capture_output=True)
    return {line.split("\t")[0] for line in open(tmp / "clu_cluster.tsv") if line.strip()}


def test_cluster_strategy_selects_mmseqs_representatives(run, tmp_path):
    from bioprune.selection.strategies import read_selection

    reps = (run / R / "selection/cluster_representatives.txt").read_text().split()
    assert len(set(reps)) == len(reps) and set(reps) == mmseqs_representatives(run, tmp_path)
    chosen = read_selection(str(run / R / "selection/cluster_0.05_seed0.h5"))
    random_ = read_selection(str(run / R / "selection/random_0.05_seed0.h5"))
    assert len(set(chosen)) == len(chosen) == len(random_) > 0  # the same budget
    assert set(chosen) <= set(reps)
    with h5py.File(run / R / "selection/cluster_0.05_seed0.h5") as f:
        assert f.attrs["strategy"] == "cluster" and f.attrs["pool_size"] > len(reps)  # clustering merged some
    fasta = (run / R / "selection/cluster_0.05_seed0.fa").read_text()
    assert [line[1:] for line in fasta.splitlines() if line.startswith(">")] == chosen


def test_summary_has_cluster_and_nearest_neighbour_rows(run):
    s = pd.read_csv(run / R / "benchmark/summary.csv")
    expect = {("perplexity", "mlm_loss"), ("perplexity", "perplexity"), ("rna_type", "accuracy"),
              ("rna_type", "macro_f1"), ("training", "tokens_seen"), ("training", "unique_tokens"),
              ("training", "unique_sequences")}
    for strategy in ("cluster", "random", "full"):
        rows = s[s.strategy == strategy]
        assert set(zip(rows.task, rows.metric)) == expect, strategy
        assert all(math.isfinite(v) for v in rows.value), rows
    nn = s[s.strategy == "nearest_neighbour"]
    assert set(zip(nn.task, nn.metric)) == {("rna_type", "accuracy"), ("rna_type", "macro_f1")}
    assert nn.value.between(0, 1).all()
    assert s[s.strategy == "cluster"].budget.eq(0.05).all()
    tok = s[(s.task == "training") & (s.metric == "unique_sequences")].set_index("strategy").value
    assert tok["full"] > tok["random"] > 0  # the full pool holds more distinct sequences than a 5% coreset


def report_item(html: str, key: str) -> dict:
    """The report's JSON entry for one result file (its caption and its embedded data)."""
    needle = f'"{key}": {{"name"'
    if needle not in html:
        pytest.fail(f"report.html has no item {key}")
    return json.JSONDecoder().raw_decode(html, html.index(needle) + len(needle) - len('{"name"'))[0]


def embedded(item: dict) -> bytes:
    return base64.b64decode(item["data_uri"].split("base64,", 1)[1])


def test_report_embeds_table_config_and_leakage_report(run):
    html = (run / "report.html").read_text()
    table_caption = (run.parent / "bioprune/report/table.rst").read_text()
    table = report_item(html, f"{R}/benchmark/table.csv")
    assert "homology-transfer" in table_caption and "homology-transfer" in table["caption"]
    assert "random_10x" in table["caption"]
    assert embedded(table) == (run / R / "benchmark/table.csv").read_bytes()

    config = report_item(html, f"{R}/config.resolved.yaml")
    assert embedded(config) == (run / R / "config.resolved.yaml").read_bytes()
    assert yaml.safe_load(embedded(config))["selection"]["strategies"] == ["cluster", "random", "top_influence"]

    ledger = report_item(html, f"{R}/benchmark/ledger.csv")
    assert "Compute ledger" in ledger["caption"] and embedded(ledger) == (run / R / "benchmark/ledger.csv").read_bytes()
    arm = report_item(html, f"{R}/metrics/cluster_0.05_seed0.csv")  # one item per model, labelled
    assert arm["labels"] == {"strategy": "cluster", "budget": "0.05", "seed": "0"}
    assert arm["job_properties"]["rule"] == "bp_benchmark"

    leak = report_item(html, f"{R}/leakage/report.csv")
    assert "leakage gate" in leak["caption"]
    assert embedded(leak) == (run / R / "leakage/report.csv").read_bytes()


def test_ledger_has_every_arm_with_time_and_flops(run):
    """Every arm's seconds are the sums of its benchmark files; FLOPs are 6 N T recomputed here from the run's
    files: pretraining = the model's parameters x the tokens its curves record; the influence arm's scoring =
    the reference's training + each sketch shard (tokens incl. BOS/EOS x mask draws) + the curvature fit
    (D_sub samples x the pool's mean tokens x mask draws); cluster and random have no scoring FLOPs."""
    from bioprune.report.ledger import n_params

    res = run / R
    led = pd.read_csv(res / "benchmark/ledger.csv")
    assert set(zip(led.strategy, led.seed)) == {("cluster", 0), ("random", 0), ("top_influence", 0), ("full", 0)}
    by = led.set_index("strategy")
    secs = lambda key: float(pd.read_csv(res / "benchmarks" / f"{key}.tsv", sep="\t")["s"].mean())  # noqa: E731
    for strategy, label in (("cluster", "cluster_0.05_seed0"), ("random", "random_0.05_seed0"),
                            ("top_influence", "top_influence_0.05_seed0"), ("full", "full_1_seed0")):
        model = res / "models" / label
        with h5py.File(model / "curves.h5") as f:
            tokens = float(f.attrs["tokens_seen"])
        assert by.loc[strategy, "pretrain_flops"] == pytest.approx(6 * n_params(str(model / "model.pt")) * tokens, rel=1e-5)
        assert by.loc[strategy, "pretrain_s"] == pytest.approx(secs(f"pretrain/{label}"), rel=1e-5)
    assert by.loc["random", "scoring_s"] == 0 and by.loc["random", "scoring_flops"] == 0
    bench = res / "benchmarks"
    clustering = sum(secs(str(p.relative_to(bench).with_suffix(""))) for p in sorted(bench.rglob("*.tsv"))
                     if p.relative_to(bench).parts[0].removesuffix(".tsv") == "cluster")
    assert by.loc["cluster", "scoring_s"] == pytest.approx(clustering, rel=1e-5) and clustering > 0  # charged
    assert by.loc["cluster", "scoring_flops"] == 0
    runs = sorted(p.name for p in (res / "sketches").iterdir() if p.is_dir())
    assert len(runs) == 1
    n_ref = n_params(str(res / "reference/seed0/model.pt"))
    with h5py.File(res / "reference/seed0/curves.h5") as f:
        want = 6 * n_ref * float(f.attrs["tokens_seen"])
    lengths = []
    for shard in sorted((res / "sketches" / runs[0]).glob("*.h5")):
        with h5py.File(shard) as f:
            length = f["length"][:].astype(float)
            want += 6 * n_ref * float((length + 2).sum()) * int(f.attrs.get("mask_draws", 1))
        lengths.append(length)
    with h5py.File(res / "curvature" / f"{runs[0]}.h5") as f:
        n_sub, draws = int(f.attrs["n_samples"]), int(f.attrs.get("mask_draws", 1))
    assert n_sub > 0
    want += 6 * n_ref * n_sub * (np.concatenate(lengths).mean() + 2) * draws
    assert by.loc["top_influence", "scoring_flops"] == pytest.approx(want, rel=1e-5)
    assert by.loc["top_influence", "total_flops_vs_full"] == pytest.approx(
        (by.loc["top_influence", "pretrain_flops"] + want) / by.loc["full", "pretrain_flops"], rel=1e-5)
    assert by.loc["full", "pretrain_flops_vs_full"] == pytest.approx(1.0)
    np.testing.assert_allclose(led.total_s, led.scoring_s + led.select_s + led.pretrain_s + led.benchmark_s,
                               rtol=1e-5)  # the CSV keeps 6 significant digits


def test_leakage_report_has_rows(run):
    rep = pd.read_csv(run / R / "leakage/report.csv")
    assert {"eval_set", "source", "pool_sequences", "removed", "eval_sequences", "eval_with_hit"} <= set(rep.columns)
    total = rep[(rep.eval_set == "all") & (rep.source == "all")]
    assert len(total) == 1 and len(rep) > 1
    excluded = (run / R / "leakage/excluded.txt").read_text().split()
    assert int(total.removed.iloc[0]) == len(excluded)
    with h5py.File(run / R / "selection/cluster_0.05_seed0.h5") as f:
        # selection draws from the gated pool
        assert int(total.pool_sequences.iloc[0]) - len(excluded) == f.attrs["pool_size"]


def browser_dom(html: Path) -> str:
    """The DOM of a page after its scripts ran, from a real headless browser (chromium)."""
    chromium = shutil.which("chromium")
    res = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                          "--virtual-time-budget=10000", "--dump-dom", html.resolve().as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "</html>" in res.stdout, res.stderr[-2000:]
    return res.stdout


def page_text(dom: str) -> str:
    """The visible text of a DOM, whitespace collapsed (scripts and styles dropped)."""
    from html.parser import HTMLParser

    class Text(HTMLParser):
        def __init__(self):
            super().__init__()
            self.parts, self.skip = [], 0

        def handle_starttag(self, tag, attrs):
            self.skip += tag in ("script", "style")

        def handle_endtag(self, tag):
            self.skip -= tag in ("script", "style") and self.skip > 0

        def handle_data(self, data):
            if not self.skip:
                self.parts.append(data)

    p = Text()
    p.feed(dom)
    return " ".join("".join(p.parts).split())


@pytest.mark.requires_tool("chromium")
def test_report_landing_page_states_the_verdict_in_a_browser(run):
    """Opened in headless chromium, report.html lands on the verdict: the sentence per task with its numbers
    (means and the paired difference with random), the leakage gate and the compute saved, before the method text; the menu lists 1. Verdict first, and that category holds
    the paired table, the ledger and the leakage summary as in-page HTML."""
    from bioprune.report.pages import num, signed

    text = page_text(browser_dom(run / "report.html"))
    assert "Verdict" in text, text[:2000]
    tab = pd.read_csv(run / R / "benchmark/table.csv")
    acc = tab[(tab.task == "rna_type") & (tab.metric == "accuracy")].set_index("strategy")
    # the verdict sentence for the probe task, with the numbers of table.csv, as rendered in the page
    sentence = (f"cluster at 0.05 scored {num(acc.loc['cluster', 'mean'])}, vs random {num(acc.loc['random', 'mean'])}: "
                f"{signed(acc.loc['cluster', 'diff_random'])} (one seed, no test)")
    assert sentence in text, text[:3000]
    assert "rna_type (accuracy in fraction of test sequences, higher is better, 1 seed)" in text, text[:3000]
    leak = pd.read_csv(run / R / "leakage/report.csv")
    total = leak[(leak.eval_set == "all") & (leak.source == "all")].iloc[0]
    assert f"Leakage gate: {num(total.removed)} of {num(total.pool_sequences)} pool sequences" in text
    assert "Compute (scoring + pretraining FLOPs" in text
    assert text.index(sentence) < text.index("bioprune scores every sequence")  # the verdict leads
    menu = [c for c in ("1. Verdict", "2. Benchmarks", "3. Influence", "4. Pretraining", "5. Leakage",
                        "6. Configuration") if c in text]
    assert menu[0] == "1. Verdict" and sorted(menu, key=text.index) == menu, menu

    html = (run / "report.html").read_text()
    page = report_item(html, f"{R}/report/verdict.html")
    assert page["mime_type"] == "text/html" and page["labels"] == {"table": "1 verdict and paired table (with power)"}
    assert "cluster" in page["caption"] and num(acc.loc["cluster", "mean"]) in page["caption"]  # the sentence
    body = embedded(page).decode()
    assert "random MDE" in body and "rna_type: accuracy" in body
    for name in ("ledger", "leakage"):
        item = report_item(html, f"{R}/report/{name}.html")
        assert item["mime_type"] == "text/html" and "<table>" in embedded(item).decode()
    categories = json.loads(html.split("var categories = ", 1)[1].split(";\n", 1)[0])
    first = sorted(categories)[0]
    assert first == "1. Verdict" and {p.rsplit("/", 1)[1] for ps in categories[first].values() for p in ps} == {
        "verdict.html", "ledger.html", "leakage.html"}
