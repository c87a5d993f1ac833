"""Cluster parity (issue 30): in a dry run of every shipped SLURM profile, every job that requests a GPU
lands on the profile's GPU partition, and every GPU job declares gpu_mem_mb."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
SLURM_PROFILES = sorted(p.parent.name for p in (ROOT / "profiles").glob("*/config.yaml")
                        if yaml.safe_load(p.read_text()).get("executor") == "slurm")


def dry_run_resources(profile: str, results: Path) -> list[tuple[str, dict[str, str]]]:
    res = subprocess.run([SNAKEMAKE, "-n", "--profile", f"profiles/{profile}", "--configfile", "tests/config/tiny.yaml",
                          "--config", "device=auto", f"results={results}"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    jobs, rule = [], None
    for line in res.stdout.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):", line)
        if m:
            rule = m.group(1)
        m = re.match(r"^\s+resources: (.*)$", line)
        if m and rule:
            jobs.append((rule, dict(kv.split("=", 1) for kv in m.group(1).split(", ") if "=" in kv)))
            rule = None
    return jobs


def test_there_are_slurm_profiles():
    assert {"slurm", "slurm-noaccounting"} <= set(SLURM_PROFILES)


@pytest.mark.parametrize("profile", SLURM_PROFILES)
def test_every_gpu_job_goes_to_the_gpu_partition(tmp_path, profile):
    prof = yaml.safe_load((ROOT / "profiles" / profile / "config.yaml").read_text())
    cpu_partition = prof["default-resources"]["slurm_partition"]
    jobs = dry_run_resources(profile, tmp_path / "r")
    gpu_jobs = [(r, res) for r, res in jobs if int(res.get("gpu", 0)) > 0]
    assert {"reference", "sketch", "pretrain", "benchmark"} <= {r for r, _ in gpu_jobs}, gpu_jobs
    wrong = sorted({r for r, res in gpu_jobs if res.get("slurm_partition") in (None, cpu_partition)})
    assert not wrong, f"{profile}: GPU jobs on the CPU partition {cpu_partition!r}: {wrong}"
    no_mem = sorted({r for r, res in gpu_jobs if int(res.get("gpu_mem_mb", 0)) <= 0})
    assert not no_mem, f"{profile}: GPU jobs without gpu_mem_mb: {no_mem}"
    # and no CPU-only job is sent to the GPU partition
    gpu_partitions = {res["slurm_partition"] for _, res in gpu_jobs}
    assert not [r for r, res in jobs if int(res.get("gpu", 0)) == 0 and res.get("slurm_partition") in gpu_partitions]


def test_pretrain_runtime_comes_from_the_flops_model(tmp_path):
    from bioprune.config import resolve_config
    from bioprune.runtime import MAX_MIN, MIN_MIN, pretrain_runtime_min

    cfg = resolve_config([ROOT / "tests/config/tiny.yaml"], {"device": "auto"})
    small = pretrain_runtime_min(cfg, 0.05)
    assert MIN_MIN <= small < MAX_MIN
    big = resolve_config([ROOT / "tests/config/tiny.yaml"],
                         {"device": "auto", "pretrain": {"budget": "tokens", "tokens": 10**12, "layers": 12,
                                                         "embed_dim": 480, "heads": 20}})
    assert pretrain_runtime_min(big, 1.0) == MAX_MIN
    mid = resolve_config([ROOT / "tests/config/tiny.yaml"],
                         {"device": "auto", "pretrain": {"budget": "epochs", "epochs": 10, "layers": 6,
                                                         "embed_dim": 320, "heads": 20}})
    r = [pretrain_runtime_min(mid, f, residues=5e8) for f in (0.005, 0.05, 1.0)]
    assert r[0] <= r[1] < r[2]  # the full pool trains longer than a 5% subset under the epochs budget
    cpu = dict(mid, device="cpu")
    assert pretrain_runtime_min(cpu, 0.05, residues=5e8) > r[1]
    # in a dry run, the declared runtime is this estimate, far below the old flat 2,880 minutes
    jobs = dry_run_resources("slurm", tmp_path / "r")
    runtimes = {int(res["runtime"]) for r_, res in jobs if r_ == "pretrain"}
    assert runtimes and max(runtimes) < MAX_MIN
