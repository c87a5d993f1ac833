"""The tiny config runs to completion on a real single-node SLURM through profiles/slurm."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from slurm_cluster import LocalSlurm, unavailable_reason

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW_FILES = ["Snakefile", "config.yaml", "rules", "workflow_scripts", "schemas", "report", "envs", "profiles", "bioprune",
                  "tests/config", "tests/data", "resources"]


def copy_workflow(dest: Path) -> Path:
    """A private copy of the workflow, so the run's .snakemake and results never touch the checkout."""
    for name in WORKFLOW_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name)
        else:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


@pytest.mark.slurm
@pytest.mark.slow
def test_tiny_dag_through_slurm_profile(tmp_path):
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"local SLURM unavailable: {reason}")
    wf = copy_workflow(tmp_path / "wf")
    profile = yaml.safe_load((wf / "profiles/slurm/config.yaml").read_text())
    assert profile["executor"] == "slurm" and "slurm_partition" in profile["default-resources"]
    snakemake = str(Path(sys.executable).with_name("snakemake"))
    # device auto (no GPU on this machine, so the jobs compute on the CPU): the GPU rules declare gpu=1,
    # which the executor plugin must turn into a GPU request the cluster grants (fake GRES gpu:2)
    cmd = [snakemake, "--profile", "profiles/slurm", "--configfile", "tests/config/tiny.yaml", "--config", "device=auto",
           # this test cluster has no slurmdbd (accounting): status from squeue, no account
           "--slurm-status-command", "squeue", "--slurm-no-account", "--jobs", "4", "--retries", "0",
           # poll a test cluster quickly, and keep the per-job SLURM logs to check them
           "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "2",
           "--slurm-keep-successful-logs"]
    with LocalSlurm(tmp_path / "slurm") as cluster:
        res = subprocess.run(cmd, cwd=wf, capture_output=True, text=True, timeout=900)
        jobs = cluster.jobs()
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    summary = pd.read_csv(wf / "results_tiny/benchmark/summary.csv")
    assert set(summary["strategy"]) == {"top_influence", "cci", "random", "random_10x", "full", "nearest_neighbour",
                                        "kmer_baseline"}
    assert set(summary["task"]) == {"perplexity", "rna_type", "training"}
    assert summary["value"].notna().all()
    import numpy as np

    from bioprune.influence.scores import read_scores
    from bioprune.ingest import read_shard

    scores = read_scores(str(wf / "results_tiny/influence/scores.h5"))  # content, not existence
    pool = [i for p in sorted((wf / "results_tiny/shards").glob("*-of-2.h5")) for i in read_shard(p)[0]]
    assert sorted(scores["id"]) == sorted(pool) and len(pool) > 300 and np.isfinite(scores["score"]).all()
    assert "submitted with SLURM jobid" in out or "SLURM jobid" in out, "jobs did not go through sbatch"
    logs = list((wf / ".snakemake/slurm_logs").rglob("*.log"))
    assert any("rule_sketch" in str(p) for p in logs), [str(p) for p in logs][:5]
    # resources declared in the rules reach SLURM: GPU rules ask for one GPU, CPU rules for none, threads
    # become CPUs per task, and mem_mb the job's memory (the profile only names partitions)

    def gpu_of(j):
        return "gpu" in (j.get("TresPerJob") or "") + (j.get("TresPerNode") or "")  # e.g. TresPerJob=gres:gpu:1
    sketch = [j for j in jobs if "rule_sketch" in j.get("Comment", "")]
    assert sketch and all(gpu_of(j) and j["Partition"] == "gpu" for j in sketch), jobs[:2]
    select = [j for j in jobs if "rule_select" in j.get("Comment", "")]
    assert select and not any(gpu_of(j) for j in select)
    ref = [j for j in jobs if "rule_reference" in j.get("Comment", "")]
    assert ref and all(j["NumCPUs"] == "4" and j.get("MinMemoryNode", "") == "16000M" for j in ref), ref[:1]
