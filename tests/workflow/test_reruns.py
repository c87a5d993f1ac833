"""Incremental re-runs: on a completed tiny run, a config edit schedules exactly the stages it touches."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from test_slurm import copy_workflow

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
UPSTREAM = {"ingest_route", "ingest_gather", "ingest_holdout", "ingest_summary", "reference", "curvature", "sketch", "scores"}


def run(wf: Path, config: dict, *extra: str) -> subprocess.CompletedProcess:
    path = wf / "tests/config/edited.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run([SNAKEMAKE, "--profile", "profiles/local", "--cores", "2", "--configfile", str(path), *extra], cwd=wf,
                          capture_output=True, text=True, timeout=1200)


def scheduled(wf: Path, config: dict) -> dict[str, int]:
    """Rule -> job count of a dry-run with `config`."""
    res = run(wf, config, "-n")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout + res.stderr
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m.group(1) != "total"}


@pytest.fixture(scope="module")
def completed(tmp_path_factory):
    """A copied workflow with the tiny config run to completion (diag_fisher) and a projected variant."""
    wf = copy_workflow(tmp_path_factory.mktemp("rerun") / "wf")
    base = yaml.safe_load((wf / "tests/config/tiny.yaml").read_text())
    proj = yaml.safe_load((wf / "tests/config/tiny.yaml").read_text())
    proj["results"] = "results_proj"
    proj["influence"].update(estimator="projected", sketch_dim=64, damping=1e-3)
    proj["selection"]["strategies"] = ["top_influence"]
    proj["seeds"] = [0]
    for cfg in (base, proj):
        res = run(wf, cfg)
        assert res.returncode == 0, res.stderr[-3000:]
        assert scheduled(wf, cfg) == {}
    return wf, base, proj


def edited(cfg: dict, section: str, **values) -> dict:
    new = yaml.safe_load(yaml.safe_dump(cfg))
    node = new
    for key in section.split("."):
        node = node[key]
    node.update(values)
    return new


@pytest.mark.slow
def test_cci_beta_reruns_selection_and_after_only(completed):
    wf, base, _ = completed
    jobs = scheduled(wf, edited(base, "selection.cci", beta=0.2))
    assert jobs.get("select") == len(base["seeds"]) and "pretrain" in jobs and "benchmark" in jobs
    assert not UPSTREAM & set(jobs), jobs


@pytest.mark.slow
def test_learning_rate_reruns_pretraining_and_benchmarks_only(completed):
    wf, base, _ = completed
    jobs = scheduled(wf, edited(base, "pretrain", lr=0.003))
    assert jobs.get("pretrain") == jobs.get("benchmark") > 0
    assert not (UPSTREAM | {"select"}) & set(jobs), jobs


@pytest.mark.slow
def test_new_seed_and_budget_add_jobs_only(completed):
    wf, base, _ = completed
    more_seeds = yaml.safe_load(yaml.safe_dump(base))
    more_seeds["seeds"] = base["seeds"] + [7]
    jobs = scheduled(wf, more_seeds)
    n_strat = len(base["selection"]["strategies"])
    assert jobs.get("select") == n_strat and jobs.get("pretrain") == n_strat, jobs
    assert not UPSTREAM & set(jobs)
    more_budgets = edited(base, "selection", budgets=base["selection"]["budgets"] + [0.04])
    jobs = scheduled(wf, more_budgets)
    assert jobs.get("select") == n_strat * len(base["seeds"]) and not UPSTREAM & set(jobs), jobs


@pytest.mark.slow
def test_damping_keeps_ingest_reference_and_projected_sketches(completed):
    wf, base, proj = completed
    jobs = scheduled(wf, edited(base, "influence", damping=1e-4))
    assert {"ingest", "reference", "curvature"}.isdisjoint(jobs) and "scores" in jobs, jobs
    proj_damped = edited(proj, "influence", damping=1e-2, relative_damping=0)  # absolute damping in use
    jobs = scheduled(wf, proj_damped)
    # one merge per scoring run: the primary and the stability stage's two rescorings
    assert jobs.get("scores") == 3 and {"ingest", "reference", "curvature", "sketch"}.isdisjoint(jobs), jobs
    jobs = scheduled(wf, edited(proj, "influence", relative_damping=0.3))
    assert jobs.get("scores") == 3 and {"ingest", "reference", "curvature", "sketch"}.isdisjoint(jobs), jobs


@pytest.mark.slow
def test_shard_count_gives_new_paths(completed):
    wf, base, _ = completed
    res = run(wf, edited(base, "corpus", shards=3), "-n", "--printshellcmds")
    out = res.stdout + res.stderr
    assert res.returncode == 0
    assert "shards/1-of-3.h5" in out and "shards/3-of-3.h5" in out and "sketches/ref0_inf0/2-of-3.h5" in out
    assert "-of-2.h5" not in out, "stale shards of the old count are used"


def params_changed(wf: Path, config: dict) -> set[str]:
    """Outputs whose own params changed, from the check docs/CONFIGURATION.md recommends:
    `snakemake -n --rerun-triggers params` (jobs with reason 'Params have changed')."""
    res = run(wf, config, "-n", "--rerun-triggers", "params")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = set()
    for block in (res.stdout + res.stderr).split("\nrule ")[1:]:
        m = re.search(r"^\s+output: (.*)$", block, re.M)
        if m and re.search(r"^\s+reason: Params have changed", block, re.M):
            out |= {p.strip() for p in m.group(1).split(",")}
    return out


@pytest.mark.slow
def test_params_check_lists_nothing_for_a_no_op_edit_and_exactly_the_edited(completed):
    wf, base, _ = completed
    noop = yaml.safe_load(yaml.safe_dump(base))
    noop["influence"]["damping"] = 1e-8  # the default, now spelled out: same resolved config
    noop = dict(reversed(list(noop.items())))  # key order does not matter either
    assert params_changed(wf, noop) == set()
    got = params_changed(wf, edited(base, "selection.cci", beta=0.2))
    R = base["results"]
    want = {f"{R}/selection/cci_0.05_seed{s}.{ext}" for s in base["seeds"] for ext in ("h5", "fa", "tsv", "original.fa")}
    assert got == want | {f"{R}/config.resolved.yaml"}, got


@pytest.mark.slow
def test_rebuilt_eval_set_reruns_from_the_gate_not_ingest(completed):
    """Evaluation sets are inputs of the leakage gate, the probe splits and the benchmarks: a rebuilt
    set (new content; a bare touch keeps Snakemake's recorded checksum and re-runs nothing) re-runs
    from the gate onward, never ingest. Kept last: it leaves the run out of date."""
    import gzip

    wf, base, _ = completed
    path = wf / "resources/rna/type_eval.tsv.gz"
    lines = gzip.decompress(path.read_bytes()).decode().splitlines(keepends=True)
    path.write_bytes(gzip.compress("".join(lines[:-1]).encode()))
    jobs = scheduled(wf, base)
    assert jobs.get("leakage_gate") == 1 and jobs.get("probe_split") == 1 and "ingest" not in jobs, jobs
    assert jobs.get("benchmark") == len(base["seeds"]) * len(base["selection"]["strategies"]) + 1, jobs

