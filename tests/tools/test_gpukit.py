"""The GPU kit (bioprune/tools/gpukit.py): arm priority, step sizing, the manifest check, and a built kit that
runs under a deadline. The whole rehearsal (wheels installed offline, bench, study) is `make
gpu-rehearsal`, which .ci/run runs after the tests."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from bioprune.tools import gpukit
from bioprune.errors import BiopruneError

STUDY = {"main_budget": 0.005, "budgets": [0.002, 0.005, 0.05], "strategies": ["top_influence", "cci"]}


def test_controls_run_first_for_every_seed_then_strategies_then_other_budgets():
    arms = gpukit.arm_order(STUDY, [0, 1, 2])
    assert arms[:9] == [(s, b, seed) for seed in (0, 1, 2) for s, b in
                        (("full", 1.0, ), ("random", 0.005), ("degenerate", 0.005))]
    assert arms[9:15] == [("top_influence", 0.005, s) for s in (0, 1, 2)] + [("cci", 0.005, s) for s in (0, 1, 2)]
    rest = arms[15:]
    assert {b for _, b, _ in rest} == {0.002, 0.05}
    assert rest[:3] == [("random", 0.002, s) for s in (0, 1, 2)]  # random first at each further budget
    assert len(arms) == len(set(arms)) == 3 * 3 + 6 + 2 * 4 * 3


def test_a_strategy_listed_twice_or_a_control_in_strategies_runs_once():
    arms = gpukit.arm_order({**STUDY, "strategies": ["random", "cci", "cci"]}, [0])
    assert len(arms) == len(set(arms))
    assert arms.count(("random", 0.005, 0)) == 1


def test_steps_come_from_measured_throughput_and_are_clamped():
    steps, how = gpukit.size_steps(1000.0, 10_000, 100.0, 30.0, 1, 10_000, "cpu")
    assert steps == 300 and "1000 tokens/s" in how  # 30 s x 1000 tokens/s / 100 tokens per step
    assert gpukit.size_steps(1000.0, 10_000, 100.0, 30.0, 1, 50, "cpu")[0] == 50
    assert gpukit.size_steps(1000.0, 10_000, 100.0, 0.01, 7, 50, "cpu")[0] == 7


def test_steps_without_a_measurement_use_the_flops_model():
    steps, how = gpukit.size_steps(None, 10_000, 100.0, 30.0, 1, 10**9, "cpu")
    rate = gpukit.CPU_FLOPS_FALLBACK / (6 * 10_000)  # tokens/s the FLOPs model allows
    assert steps == int(30.0 * rate / 100.0) and "FLOPs model" in how


def _mini_kit(tmp_path):
    kit = tmp_path / "kit"
    (kit / "data").mkdir(parents=True)
    (kit / "data" / "a.txt").write_text("abc")
    files = {"data/a.txt": {"bytes": 3, "sha256": gpukit._sha256(kit / "data" / "a.txt")}}
    (kit / "manifest.json").write_text(json.dumps({"files": files}))
    return kit


def test_verify_accepts_the_kit_and_names_a_changed_or_missing_file(tmp_path):
    kit = _mini_kit(tmp_path)
    assert gpukit.verify(kit)["files"]
    (kit / "data" / "a.txt").write_text("abd")  # same size, other bytes
    with pytest.raises(BiopruneError, match="a.txt: missing or changed"):
        gpukit.verify(kit)
    (kit / "data" / "a.txt").unlink()
    with pytest.raises(BiopruneError, match="a.txt"):
        gpukit.verify(kit)
    (kit / "manifest.json").unlink()
    with pytest.raises(BiopruneError, match="make gpu-kit"):
        gpukit.verify(kit)


@pytest.mark.requires_tool("mmseqs")
def test_built_kit_runs_and_a_deadline_skips_arms_it_cannot_finish(tmp_path, monkeypatch):
    monkeypatch.chdir(gpukit.Path(__file__).resolve().parents[2])
    kit = tmp_path / "kit"
    m = gpukit.build(str(kit), ["config.yaml", gpukit.STUDY_CONFIG], tiny=True, python_version=None, deadline_s=60,
                     wheels=False)
    assert m["total_mb"] < gpukit.MAX_KIT_MB and not (tmp_path / "kit.building").exists()
    for f in ("run.sh", "config.json", "plan.json", "data/shards/holdout.h5", "data/benchmark/splits/rna_type.tsv",
              "data/metrics/kmer_baseline.csv", "data/leakage/holdout_eval.h5", "resources/rna/type_eval.tsv.gz"):
        assert (kit / f).is_file(), f
    plan = json.loads((kit / "plan.json").read_text())
    plan["study"].update(bench_s=5, budgets=[0.005], seeds=[0], strategies=[], min_steps=2, max_steps=2)
    (kit / "plan.json").write_text(json.dumps(plan))
    manifest = json.loads((kit / "manifest.json").read_text())
    manifest["files"]["plan.json"] = {"bytes": (kit / "plan.json").stat().st_size, "sha256": gpukit._sha256(kit / "plan.json")}
    (kit / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "out"
    # a deadline that leaves room for scoring and one arm, not three: the rest are listed as skipped
    res = gpukit.run(str(kit), str(out), deadline_s=10_000, work=str(tmp_path / "work"))
    assert res["arms_run"] == 3 and not res["skipped"] and res["steps"] == 2
    arm_s = max(a[3] for a in res["arms"])
    summary = (out / "summary.csv").read_text()
    assert "kmer_baseline" in summary and "degenerate" in summary and "full" in summary
    assert {"bench.json", "summary.csv", "table.csv", "verdict.txt", "ledger.csv", "plan.json"} <= {p.name for p in out.iterdir()}
    shutil.rmtree(out)
    plan["study"]["reserve_s"] = 0
    (kit / "plan.json").write_text(json.dumps(plan))
    manifest["files"]["plan.json"] = {"bytes": (kit / "plan.json").stat().st_size, "sha256": gpukit._sha256(kit / "plan.json")}
    (kit / "manifest.json").write_text(json.dumps(manifest))
    short = gpukit.run(str(kit), str(out), deadline_s=0.5, work=str(tmp_path / "work"))
    assert short["arms_run"] == 0 and len(short["skipped"]) == 3 and arm_s > 0
    assert not (out / "summary.csv").exists() and (out / "plan.json").exists()
    # reference.ensemble 2: the kit scores with both members (the DAG's member seeds) and averages them
    from bioprune.influence.ensemble import member_seeds

    config = json.loads((kit / "config.json").read_text())
    config["reference"]["ensemble"] = 2
    (kit / "config.json").write_text(json.dumps(config))
    manifest["files"]["config.json"] = {"bytes": (kit / "config.json").stat().st_size,
                                        "sha256": gpukit._sha256(kit / "config.json")}
    (kit / "manifest.json").write_text(json.dumps(manifest))
    shutil.rmtree(out)
    work = tmp_path / "work"
    gpukit.run(str(kit), str(out), deadline_s=0.5, work=str(work))
    seeds = member_seeds(config["reference"]["seed"], 2)
    assert sorted(p.name for p in (work / "reference").iterdir()) == sorted(f"seed{m}" for m in seeds)
    inf = config["influence"]["seed"]
    assert (work / f"benchmarks/ensemble/ref{seeds[0]}_inf{inf}.tsv").is_file()
    from bioprune.influence.scores import read_scores

    ens = read_scores(str(work / "influence/scores.h5"))
    one = read_scores(str(work / f"influence/ref{seeds[0]}_inf{inf}.h5"))
    assert sorted(ens["id"]) == sorted(one["id"]) and not np.allclose(np.sort(ens["score"]), np.sort(one["score"]))


def test_run_sh_refuses_a_changed_kit(tmp_path):
    kit = _mini_kit(tmp_path)
    (kit / "wheels").mkdir()
    (kit / "run.sh").write_text(gpukit.RUN_SH.replace("__DEADLINE__", "60"))
    (kit / "data" / "a.txt").write_text("xyz")
    res = subprocess.run(["bash", str(kit / "run.sh"), str(tmp_path / "out")], capture_output=True, text=True,
                         env={"KIT_PYTHON": sys.executable, "PATH": "/usr/bin:/bin",
                              "PYTHONPATH": str(gpukit.Path(__file__).resolve().parents[2])})
    assert res.returncode == 2 and "a.txt: missing or changed" in res.stderr + res.stdout


def test_the_device_study_config_validates_and_its_model_has_at_least_30m_parameters(monkeypatch):
    from bioprune.config.resolve import resolve_config
    from bioprune.training.gpumem import esm2_params

    monkeypatch.chdir(gpukit.Path(__file__).resolve().parents[2])
    c = resolve_config(["config.yaml", gpukit.STUDY_CONFIG], {})
    assert esm2_params(c["pretrain"]["layers"], c["pretrain"]["embed_dim"]) >= 30e6
    assert len(gpukit.STUDY["budgets"]) >= 4 and len(gpukit.STUDY["seeds"]) >= 3
    assert all(0.001 <= b <= 0.1 for b in gpukit.STUDY["budgets"])
