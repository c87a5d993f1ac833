"""An offline kit for a 15-minute GPU lease: `make gpu-kit` builds it here, `gpukit/run.sh OUT` runs it there.

Build (this machine, CPU, network to PyPI): the wheels the device image lacks (fair-esm, biopython; built
for the device's Python 3.12 unless told otherwise), every study input that needs no GPU (ingest, leakage
gate, probe splits, the nearest-neighbour and k-mer baselines of the study pool), the resolved config, the
study plan and run.sh, with manifest.json listing each file's size and sha256.

Run (the device, no network): install the wheels offline into a temporary folder, print torch, CUDA and
the GPU, run `bioprune bench-sketch` at the 35M shape (L=512, bf16 autocast on CUDA), then the study:
reference model, scores, and the arms in priority order (controls first: full pool, random and
`degenerate` at the main budget, every seed; then Top-I, CCI and random_10x; then the other budgets),
each selected, pretrained and benchmarked in this one process. Pretraining steps come from the FLOPs
model (6 N T) and the throughput bench-sketch measured, so the arms fit the study's time; a deadline
stops it starting an arm it could not finish, and whatever finished is aggregated. OUT receives
bench.json, summary.csv, table.csv, verdict.txt, ledger.csv, plan.json and log.txt (7 files).

`make gpu-rehearsal OUT=dir` builds a tiny kit for this machine's Python and runs the same run.sh with
pip's network off, so CI catches a broken kit before a lease is spent on it.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bioprune.errors import BiopruneError

log = logging.getLogger("bioprune.tools.gpukit")

WHEELS = ["fair-esm==2.0.0", "biopython==1.88"]  # what the device image lacks (KINDS.md's package list)
DEVICE_PYTHON = "3.12"
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]
MAX_KIT_MB = 60
STUDY_CONFIG = "experiments/gpu_kit.yaml"
# The study's plan (what config.yaml cannot say): arms in priority order, seeds, how the time is shared.
# `core_arms` arms share the time (the controls, Top-I and CCI at the main budget, random at every budget);
# the rest run only if time is left.
STUDY = {"main_budget": 0.005, "budgets": [0.002, 0.005, 0.02, 0.05], "strategies": ["top_influence", "cci", "random_10x"],
         "seeds": [0, 1, 2], "bench_s": 120, "reserve_s": 30, "arm_overhead_s": 4, "core_arms": 24,
         "min_steps": 100, "max_steps": 20000}
# The rehearsal: same code path, a study that fits a 2-core CI machine.
TINY = {"main_budget": 0.005, "budgets": [0.005, 0.02], "strategies": ["top_influence"], "seeds": [0, 1], "bench_s": 150,
        "reserve_s": 20, "arm_overhead_s": 2, "core_arms": 8, "min_steps": 10, "max_steps": 40}
TINY_CONFIG = {"reference": {"layers": 1, "embed_dim": 32, "heads": 2, "epochs": 1, "subset_fraction": 0.05},
               "pretrain": {"layers": 1, "embed_dim": 32, "heads": 2, "batch_size": 16},
               "benchmark": {"max_eval": 60, "nearest_neighbour": False}, "corpus": {"shards": 2}}
BENCH_SHAPE = {"layers": 12, "embed_dim": 480, "heads": 20, "length": 512, "batch_size": 32, "repeats": 3}  # ESM-2 35M
TINY_BENCH = {"layers": 1, "embed_dim": 32, "heads": 2, "length": 64, "batch_size": 4, "repeats": 2}
MFU_FALLBACK = 0.25  # assumed training MFU when bench-sketch measured no throughput (sizing only)
CPU_FLOPS_FALLBACK = 5e10

RUN_SH = r"""#!/usr/bin/env bash
# bioprune GPU kit: the one command of a lease.  bash gpukit/run.sh OUT [DEADLINE_S]
# Installs the kit's wheels offline into a temporary folder, then bioprune.tools.gpukit run (bench, then study).
set -euo pipefail
KIT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$KIT/.." && pwd)"
OUT="${1:?usage: run.sh OUT [DEADLINE_S]}"
DEADLINE="${2:-__DEADLINE__}"
PY="${KIT_PYTHON:-python3}"
mkdir -p "$OUT"
SITE="$(mktemp -d /tmp/bioprune_site.XXXXXX)"
export PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
shopt -s nullglob
WHEELS=("$KIT"/wheels/*.whl)
echo "run.sh: installing ${#WHEELS[@]} wheels offline into $SITE" | tee "$OUT/log.txt"
if [ ${#WHEELS[@]} -gt 0 ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "${WHEELS[@]}" 2>&1 | tee -a "$OUT/log.txt"
fi
export PYTHONPATH="$SITE:$REPO${PYTHONPATH:+:$PYTHONPATH}"
cd "$REPO"
"$PY" -m bioprune.tools.gpukit run --kit "$KIT" --out "$OUT" --deadline "$DEADLINE" 2>&1 | tee -a "$OUT/log.txt"
"""


# ----------------------------------------------------------------------------------------------- build
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download_wheels(dest: Path, python_version: str | None, cache: Path | None = None) -> list[str]:
    """The WHEELS for `python_version` (None: this interpreter) into dest; BiopruneError naming pip's last line."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(dest)]
    if python_version:
        cmd += ["--python-version", python_version, "--implementation", "cp"]
        for p in PLATFORMS:
            cmd += ["--platform", p]
    if cache and cache.is_dir():
        cmd += ["--find-links", str(cache)]
    res = subprocess.run(cmd + WHEELS, capture_output=True, text=True)
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["no output"])[-1]
        raise BiopruneError(f"gpu-kit: pip download of {WHEELS} failed (network to PyPI needed here): {last}")
    return sorted(p.name for p in dest.glob("*.whl"))


def study_config(files: list[str], overrides: dict | None = None) -> dict:
    from bioprune.config.resolve import resolve_config

    return resolve_config(files, overrides or {})


def build(kit: str, config_files: list[str], tiny: bool = False, python_version: str | None = DEVICE_PYTHON,
          deadline_s: int = 570, threads: int = 2, wheels: bool = True) -> dict:
    """Build the kit folder (module doc); returns the manifest. The folder is replaced only when complete."""
    from bioprune import stages
    from bioprune.config.params import (benchmark_params, corpus_files, ingest_params, kmer_params, leakage_params,
                                 split_params)

    kit_p = Path(kit)
    tmp = kit_p.with_name(kit_p.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    t0 = time.time()
    from bioprune.config.resolve import deep_merge

    overrides = deep_merge(copy.deepcopy(TINY_CONFIG) if tiny else {}, {"results": str(tmp / "data")})
    config = study_config(config_files, overrides)
    if config["corpus"]["molecule"] != "rna":
        raise BiopruneError("gpu-kit: the study config must be an RNA pool (corpus.molecule: rna)")
    study = dict(TINY if tiny else STUDY)
    R = Path(config["results"])
    n = config["corpus"]["shards"]
    raw = [str(R / "raw" / f"{i + 1}-of-{n}.h5") for i in range(n)]
    shards = [str(R / "shards" / f"{i + 1}-of-{n}.h5") for i in range(n)]
    holdout = str(R / "shards" / "holdout.h5")
    log.info("gpu-kit: ingest %s into %d shards", config["corpus"]["path"], n)
    stages.ingest(corpus_files(config), raw, holdout, str(R / "shards" / "ingest.json"), ingest_params(config))
    from bioprune.config.resolve import EVAL_FILES

    res = config["benchmark"]["resources"]
    tasks = [t for t in config["benchmark"]["tasks"] if t in EVAL_FILES]
    evals = [f"{res}/{EVAL_FILES[t]}" for t in tasks]
    log.info("gpu-kit: leakage gate against %s", evals)
    stages.leakage_gate(raw, evals, shards, str(R / "leakage" / "excluded.txt"), str(R / "leakage" / "report.csv"),
                        leakage_params(config), threads, config["selection"])
    shutil.rmtree(R / "raw")
    for t in tasks:
        stages.probe_split(t, f"{res}/{EVAL_FILES[t]}", str(R / "benchmark" / "splits" / f"{t}.tsv"),
                           split_params(config), threads)
    clean = str(R / "leakage" / "holdout_eval.h5")  # held-out sequences near-copied in the pool left out
    stages.holdout_eval(holdout, shards, clean, str(R / "leakage" / "holdout_excluded.txt"),
                        str(R / "leakage" / "holdout_report.csv"), leakage_params(config), threads)
    bparams = {**benchmark_params(config), "device": "cpu"}
    if config["benchmark"]["kmer_baseline"] and "perplexity" in config["benchmark"]["tasks"]:
        stages.kmer_baseline(shards, clean, str(R / "metrics" / "kmer_baseline.csv"),
                             {**kmer_params(config), "device": "cpu"})
    if config["benchmark"]["nearest_neighbour"] and tasks:
        stages.nearest_neighbour(str(R / "metrics" / "nearest_neighbour.csv"), bparams)
    (tmp / "resources").mkdir()
    for t in tasks:  # the evaluation sets travel with the kit (run time reads them from there)
        dst = tmp / "resources" / EVAL_FILES[t]
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f"{res}/{EVAL_FILES[t]}", dst)
    (tmp / "wheels").mkdir()
    wheels = download_wheels(tmp / "wheels", python_version, Path(".whl")) if wheels else []
    config["results"] = "data"  # relative to the kit; run() rebases
    config["benchmark"]["resources"] = "resources"
    bench = dict(TINY_BENCH if tiny else BENCH_SHAPE, **study.get("bench", {}))
    plan = {"study": study, "bench": bench, "shards": [Path(s).name for s in shards], "deadline_s": deadline_s,
            "tiny": tiny, "python": python_version or f"{sys.version_info[0]}.{sys.version_info[1]}"}
    (tmp / "config.json").write_text(json.dumps(config, indent=1, sort_keys=True))
    (tmp / "plan.json").write_text(json.dumps(plan, indent=1, sort_keys=True))
    (tmp / "run.sh").write_text(RUN_SH.replace("__DEADLINE__", str(int(deadline_s))))
    os.chmod(tmp / "run.sh", 0o755)
    files = {str(p.relative_to(tmp)): {"bytes": p.stat().st_size, "sha256": _sha256(p)}
             for p in sorted(tmp.rglob("*")) if p.is_file()}
    total = sum(f["bytes"] for f in files.values())
    manifest = {"files": files, "total_mb": round(total / 2**20, 2), "wheels": wheels, "built_s": round(time.time() - t0, 1),
                "commit": _git_commit(), "python": plan["python"], "tiny": tiny}
    if total > MAX_KIT_MB * 2**20:
        raise BiopruneError(f"gpu-kit: {total / 2**20:.1f} MiB is over the {MAX_KIT_MB} MiB limit "
                            f"(the device call carries at most 64 MiB): use a smaller corpus.shards or pool")
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    shutil.rmtree(kit_p, ignore_errors=True)
    tmp.rename(kit_p)
    log.info("gpu-kit: %s, %.1f MiB, %d files, built in %.0f s", kit_p, manifest["total_mb"], len(files),
             manifest["built_s"])
    return manifest


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# ------------------------------------------------------------------------------------------------- run
def verify(kit: Path) -> dict:
    """manifest.json of the kit, after checking every file's size and checksum (BiopruneError naming the file)."""
    mpath = kit / "manifest.json"
    if not mpath.is_file():
        raise BiopruneError(f"{mpath}: missing (build the kit with `make gpu-kit`)")
    manifest = json.loads(mpath.read_text())
    for rel, meta in manifest["files"].items():
        p = kit / rel
        if not p.is_file() or p.stat().st_size != meta["bytes"] or _sha256(p) != meta["sha256"]:
            raise BiopruneError(f"{p}: missing or changed since the kit was built (rebuild with `make gpu-kit`)")
    return manifest


def arm_order(study: dict, seeds: list[int]) -> list[tuple[str, float, int]]:
    """(strategy, budget, seed) in the order the study runs them: the controls at the main budget (full
    pool, random, degenerate; all seeds), then the strategies at the main budget, then the other budgets.
    A deadline cuts the tail, so what must be compared comes first."""
    main = float(study["main_budget"])
    budgets = [main] + [float(b) for b in study["budgets"] if float(b) != main]
    arms: list[tuple[str, float, int]] = []
    for s in seeds:
        arms += [("full", 1.0, s), ("random", main, s), ("degenerate", main, s)]
    for strategy in study["strategies"]:
        arms += [(strategy, main, s) for s in seeds]
    for b in budgets[1:]:
        for strategy in ["random", "degenerate"] + list(study["strategies"]):
            arms += [(strategy, b, s) for s in seeds]
    seen, out = set(), []
    for a in arms:
        if a not in seen:
            seen.add(a)
            out.append(a)
    return out


def size_steps(tokens_per_s: float | None, n_params: int, tokens_per_step: float, seconds_per_arm: float,
               lo: int, hi: int, device: str) -> tuple[int, str]:
    """Pretraining steps of one arm so it takes about `seconds_per_arm`: from the measured training
    throughput when there is one, else from the FLOPs model (6 N T at MFU_FALLBACK of the device's peak)."""
    if tokens_per_s and tokens_per_s > 0:
        rate, how = tokens_per_s, f"bench-sketch train: {tokens_per_s:.0f} tokens/s"
    else:
        from bioprune.report.flops import peak_tflops

        peak = None
        if device == "cuda":
            import torch

            peak = peak_tflops(torch.cuda.get_device_name(0))
        flops = (peak * 1e12 * MFU_FALLBACK) if peak else CPU_FLOPS_FALLBACK
        rate, how = flops / (6.0 * n_params), f"FLOPs model: {flops:.3g} FLOP/s / (6 x {n_params} params)"
    steps = int(max(lo, min(hi, math.floor(seconds_per_arm * rate / tokens_per_step))))
    return steps, how


class Deadline:
    def __init__(self, seconds: float):
        self.t0, self.seconds = time.time(), seconds

    def left(self) -> float:
        return self.seconds - (time.time() - self.t0)


def _bench_call(b: dict, device: str, modes: str, seconds: float, repeats: int | None = None) -> dict:
    """One bench-sketch child process with a time limit: its JSON, or {"error": ...}."""
    cmd = [sys.executable, "-m", "bioprune.cli", "bench-sketch", "--molecule", "rna", "--layers", str(b["layers"]),
           "--embed-dim", str(b["embed_dim"]), "--heads", str(b["heads"]), "--length", str(b["length"]),
           "--batch-size", str(b["batch_size"]), "--batches", str(b.get("batches", 5)), "--sketch-dim",
           str(b.get("sketch_dim", 1024)), "--device", device, "--modes", modes]
    if repeats or b.get("repeats"):
        cmd += ["--repeats", str(repeats or b["repeats"])]
    if "train_compile" in modes:
        cmd += ["--compile"]
    log.info("bench: %s (limit %.0f s)", " ".join(cmd[3:]), seconds)
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=max(10.0, seconds))
    except subprocess.TimeoutExpired:
        return {"error": f"bench-sketch --modes {modes} passed its {seconds:.0f} s limit"}
    if res.returncode != 0:
        return {"error": (res.stderr.strip().splitlines() or ["?"])[-1][:500]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def _bench(out: Path, plan: dict, device: str, seconds: float) -> dict:
    """bench-sketch (module doc) written to bench.json: the eager modes first, then train_compile (CUDA
    only) with the time left, so a slow compile cannot cost the other numbers."""
    t0 = time.time()
    data = _bench_call(plan["bench"], device, "train,sketch_paper,sketch_all_linear", seconds)
    if device == "cuda" and "error" not in data:
        left = seconds - (time.time() - t0)
        comp = _bench_call(plan["bench"], device, "train,train_compile", left, repeats=1) if left > 20 else \
            {"error": f"no time left for train_compile ({left:.0f} s)"}
        data["train_compile"] = comp.get("train_compile", {"error": comp.get("error", "?")})
        for key in ("ratios", "ratios_cpu"):
            got = (comp.get(key) or {}).get("train_compile/train")
            if isinstance(data.get(key), dict) and got is not None:
                data[key]["train_compile/train"] = got
    data["wall_s"] = round(time.time() - t0, 1)
    _write_json(out / "bench.json", data)
    for m in ("train", "train_compile", "sketch_paper", "sketch_all_linear"):
        if isinstance(data.get(m), dict):
            d = data[m]
            log.info("bench %-18s seq/s %s tokens/s %s mfu %s peak MB %s", m, d.get("seq_per_s"), d.get("tokens_per_s"),
                     d.get("mfu"), d.get("peak_mem_mb"))
    if "error" in data:
        log.warning("bench: %s", data["error"])
    return data


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, default=str))
    tmp.replace(path)


def _timed(results: Path, key: str, fn) -> float:
    """Run fn and write a Snakemake-style benchmark file (column s) under results/benchmarks/key.tsv (the ledger reads them)."""
    t0 = time.time()
    fn()
    s = time.time() - t0
    p = results / "benchmarks" / f"{key}.tsv"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(f"s\th:m:s\n{s:.4f}\t{time.strftime('%H:%M:%S', time.gmtime(s))}\n")
    return s


def run(kit: str, out: str, deadline_s: float, work: str | None = None) -> dict:
    """The device side (module doc). Returns what plan.json in OUT holds."""
    import torch

    from bioprune import stages
    from bioprune.config.params import (benchmark_params, ensemble_params, influence_params, pretrain_params, reference_params,
                                selection_params)
    from bioprune.influence.ensemble import member_seeds
    from bioprune.training.gpumem import esm2_params

    clock = Deadline(deadline_s)
    kit_p, out_p = Path(kit).resolve(), Path(out).resolve()
    out_p.mkdir(parents=True, exist_ok=True)
    manifest = verify(kit_p)
    plan = json.loads((kit_p / "plan.json").read_text())
    config = json.loads((kit_p / "config.json").read_text())
    study = plan["study"]
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    info = {"torch": torch.__version__, "cuda": torch.version.cuda, "device": torch.cuda.get_device_name(0) if cuda else "cpu",
            "python": sys.version.split()[0], "kit_commit": manifest.get("commit"), "deadline_s": deadline_s}
    log.info("gpu-kit run: %s", info)
    results = Path(work or "/tmp/bioprune_kit_results").resolve()
    shutil.rmtree(results, ignore_errors=True)
    shutil.copytree(kit_p / "data", results)
    config["results"] = str(results)
    config["benchmark"]["resources"] = str(kit_p / "resources")
    config["device"] = device
    shards = [str(results / "shards" / s) for s in plan["shards"]]
    holdout = str(results / "shards" / "holdout.h5")  # pretraining's validation curve
    held_eval = str(results / "leakage" / "holdout_eval.h5")  # what the benchmarks score (leakage.holdout)

    bench = _bench(out_p, plan, device, min(float(study.get("bench_s", 120)), clock.left() * 0.3))
    # ----------------------------------------------------------------- scoring (reference, curvature, sketches, scores)
    rp = reference_params(config)
    inf_seed = config["influence"]["seed"]
    scores = str(results / "influence" / "scores.h5")  # every arm selects from it (random draws its ids)
    t_score = time.time()
    ep = ensemble_params(config)
    members = member_seeds(rp["seed"], ep["size"])  # reference.ensemble R: R members (the DAG's), else [seed]
    member_scores = []
    for m in members:
        mp = reference_params(config, m)
        ref = results / "reference" / f"seed{m}"
        run_id = f"ref{m}_inf{inf_seed}"
        _timed(results, f"reference/seed{m}",
               lambda mp=mp, ref=ref: stages.reference(shards, str(ref / "model.pt"), str(ref / "curves.h5"), mp))
        curv = None
        if config["influence"]["estimator"] == "diag_fisher":
            curv = str(results / "curvature" / f"{run_id}.h5")
            _timed(results, f"curvature/{run_id}", lambda m=m, ref=ref, curv=curv: stages.curvature(
                shards, str(ref / "model.pt"), curv, influence_params(config, "curvature", m)))
        sk = []
        for s in shards:
            o = str(results / "sketches" / run_id / Path(s).name)
            _timed(results, f"sketch/{run_id}/{Path(s).stem}", lambda s=s, o=o, m=m, ref=ref, curv=curv: stages.sketch(
                s, str(ref / "model.pt"), o, influence_params(config, "sketch", m), curv))
            sk.append(o)
        out_m = scores if len(members) == 1 else str(results / "influence" / f"{run_id}.h5")
        _timed(results, f"scores/{run_id}", lambda sk=sk, out_m=out_m, m=m: stages.scores(
            sk, out_m, influence_params(config, "scores", m)))
        member_scores.append(out_m)
    if len(members) > 1:
        run_id = f"ref{rp['seed']}_inf{inf_seed}"
        _timed(results, f"ensemble/{run_id}", lambda: stages.ensemble_scores(member_scores, scores, ep))
    log.info("scoring: %.1f s", time.time() - t_score)
    # ----------------------------------------------------------------- sizing
    seeds = [int(s) for s in study.get("seeds", config["seeds"])]
    arms = arm_order(study, seeds)
    pp = pretrain_params(config)
    pp.update(budget="steps")
    tokens_per_step = pp["batch_size"] * (config["corpus"]["max_length"] + 2)
    n_params = esm2_params(pp["layers"], pp["embed_dim"])
    reserve = float(study.get("reserve_s", 30))
    per_arm_overhead = float(study.get("arm_overhead_s", 4))
    budget_s = max(1.0, clock.left() - reserve)
    seconds_per_arm = max(0.5, budget_s / max(1, min(len(arms), int(study["core_arms"]))) - per_arm_overhead)
    if study.get("steps"):
        steps, how = int(study["steps"]), "fixed by the kit's plan"
    else:
        train = bench.get("train") if isinstance(bench.get("train"), dict) else {}
        same_shape = plan["bench"]["layers"] == pp["layers"] and plan["bench"]["embed_dim"] == pp["embed_dim"]
        steps, how = size_steps(train.get("tokens_per_s") if same_shape else None, n_params, tokens_per_step,
                                seconds_per_arm, int(study.get("min_steps", 50)), int(study.get("max_steps", 20000)), device)
    pp["steps"] = steps
    pp["save_every"] = steps + 1
    plan_out = {"info": info, "arms_planned": len(arms), "steps": steps, "sizing": how, "seconds_per_arm": round(seconds_per_arm, 1),
                "model_params": n_params, "tokens_per_step": tokens_per_step, "bench_s": bench.get("wall_s"),
                "arms": [], "skipped": []}
    log.info("study: %d arms planned, %d steps each (%s; %.1f s per arm), model %d params", len(arms), steps, how,
             seconds_per_arm, n_params)
    bp = benchmark_params(config)
    metric_files = [str(p) for p in (results / "metrics").glob("*.csv")]
    arm_s: list[float] = []
    for strategy, budget, seed in arms:
        est = (max(arm_s) if arm_s else seconds_per_arm + per_arm_overhead)
        if clock.left() - reserve < est:
            plan_out["skipped"].append([strategy, budget, seed])
            continue
        label = f"{strategy}_{'1' if strategy == 'full' else f'{budget:g}'}_seed{seed}"
        t_arm = time.time()
        sel = None
        if strategy != "full":
            sel = str(results / "selection" / f"{label}.h5")
            _timed(results, f"select/{label}", lambda: stages.select(
                scores, shards, sel, sel[:-3] + ".fa", selection_params(config, strategy), budget, seed))
        mdir = results / "models" / label
        _timed(results, f"pretrain/{label}", lambda: stages.pretrain(
            shards, holdout, str(mdir / "model.pt"), str(mdir / "curves.h5"), pp, seed, sel, label))
        mfile = str(results / "metrics" / f"{label}.csv")
        _timed(results, f"benchmark/{label}", lambda: stages.benchmark(
            str(mdir / "model.pt"), held_eval, mfile, bp, strategy, "1" if strategy == "full" else f"{budget:g}", seed))
        metric_files.append(mfile)
        arm_s.append(time.time() - t_arm)
        plan_out["arms"].append([strategy, budget, seed, round(arm_s[-1], 1)])
        log.info("arm %s: %.1f s (%.0f s left)", label, arm_s[-1], clock.left())
    plan_out["arms_run"] = len(plan_out["arms"])
    if plan_out["skipped"]:
        log.warning("deadline: %d arms not started: %s", len(plan_out["skipped"]), plan_out["skipped"][:6])
    # ----------------------------------------------------------------- outputs
    from bioprune.report.tables import aggregate

    if plan_out["arms"]:
        aggregate(metric_files, str(out_p / "summary.csv"), str(out_p / "table.csv"), str(out_p / "verdict.txt"))
        tsvs = [str(p) for p in (results / "benchmarks").rglob("*.tsv")]
        stages.ledger(tsvs, str(results / "benchmark" / "ledger.csv"))
        shutil.copyfile(results / "benchmark" / "ledger.csv", out_p / "ledger.csv")
    plan_out["wall_s"] = round(time.time() - clock.t0, 1)
    _write_json(out_p / "plan.json", plan_out)
    log.info("gpu-kit run: %d arms in %.0f s; outputs in %s", plan_out["arms_run"], plan_out["wall_s"], out_p)
    return plan_out


# ------------------------------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bioprune.tools.gpukit", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the kit folder here")
    b.add_argument("--kit", default="gpukit")
    b.add_argument("--configfile", nargs="+", default=["config.yaml", STUDY_CONFIG])
    b.add_argument("--tiny", action="store_true", help="the rehearsal's tiny study and bench shapes")
    b.add_argument("--python-version", default=DEVICE_PYTHON,
                   help="wheels for this Python (default the device's 3.12; 'local' = this interpreter)")
    b.add_argument("--deadline", type=int, default=570, help="seconds run.sh allows itself (default 570)")
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--no-wheels", action="store_true", help="no wheels (a machine that has fair-esm and biopython)")
    r = sub.add_parser("run", help="run the kit (the device side; run.sh calls this)")
    r.add_argument("--kit", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--deadline", type=float, default=570)
    r.add_argument("--work", default=None)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stdout)
    try:
        if a.cmd == "build":
            m = build(a.kit, a.configfile, a.tiny, None if a.python_version == "local" else a.python_version,
                      a.deadline, a.threads, not a.no_wheels)
            print(json.dumps({k: m[k] for k in ("total_mb", "wheels", "built_s", "commit")}))
        else:
            run(a.kit, a.out, a.deadline, a.work)
    except BiopruneError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
