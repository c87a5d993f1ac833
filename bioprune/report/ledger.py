"""Compute ledger: what choosing a coreset cost versus what pretraining on it cost, per model arm.

Wall seconds come from Snakemake's `benchmark:` files; FLOPs are estimates from the model size and the
tokens each stage processed (Kaplan et al. 2020's rule of thumb: 6 N T for a training step or a
per-sample gradient pass over T tokens with N parameters, i.e. forward 2 N T + backward 4 N T; an upper
bound for sketches of one layer's gradient, whose backward stops early). Tokens count residues plus
the two special tokens, never padding.
"""
from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from bioprune.errors import BiopruneError

# with reference.ensemble R > 1 every member's reference, curvature, sketch and scores runs are listed (R-fold
# cost) plus the `ensemble` average
SCORING_STAGES = ("reference", "curvature", "sketch", "scores", "ensemble")
SELECTION_STAGES = {"top_influence": SCORING_STAGES, "cci": SCORING_STAGES, "grad_norm": SCORING_STAGES,
                    "cluster": ("cluster",)}
MODEL_LABEL = re.compile(r"^(?P<strategy>[a-z0-9_]+?)_(?P<budget>[0-9.e+-]+)_seed(?P<seed>[0-9]+)$")
LEDGER_COLUMNS = ["strategy", "budget", "seed", "scoring_s", "select_s", "pretrain_s", "benchmark_s", "total_s",
                  "scoring_flops", "pretrain_flops", "pretrain_flops_vs_full", "total_flops_vs_full"]
FLOPS_PER_PARAM_TOKEN = 6.0


def benchmark_seconds(path: str) -> float:
    """Wall seconds in a Snakemake `benchmark:` TSV (mean over repeats)."""
    if not Path(path).is_file():
        raise BiopruneError(f"{path}: benchmark file not found")
    d = pd.read_csv(path, sep="\t")
    if "s" not in d.columns or d.empty:
        raise BiopruneError(f"{path}: missing column s (not a Snakemake benchmark file)")
    return float(d["s"].mean())


def n_params(checkpoint: str) -> int:
    """Parameters of a checkpoint's model (what 6 N T multiplies)."""
    from bioprune.models import load_model

    model, _ = load_model(checkpoint)
    return int(sum(p.numel() for p in model.parameters()))


def training_flops(checkpoint: str, curves: str) -> float:
    """6 N T of a training run, T = the `tokens_seen` its curves file records."""
    with h5py.File(curves, "r") as f:
        if "tokens_seen" not in f.attrs:
            raise BiopruneError(f"{curves}: no tokens_seen attribute (written by an older bioprune; re-run the stage)")
        tokens = float(f.attrs["tokens_seen"])
    return FLOPS_PER_PARAM_TOKEN * n_params(checkpoint) * tokens


def sketch_flops(n: int, sketch: str) -> float:
    """6 N T of one shard's per-sample gradient pass, T = its tokens x the mask draws."""
    with h5py.File(sketch, "r") as f:
        tokens = float(np.sum(f["length"][:].astype(np.float64) + 2))
        draws = int(f.attrs.get("mask_draws", 1))
    return FLOPS_PER_PARAM_TOKEN * n * tokens * draws


def curvature_flops(n: int, curvature: str, mean_tokens: float) -> float:
    """6 N T of the Fisher fit on D_sub: its n_samples x the pool's mean tokens per sequence x the mask draws."""
    with h5py.File(curvature, "r") as f:
        samples = int(f.attrs.get("n_samples", 0))
        draws = int(f.attrs.get("mask_draws", 1))
    return FLOPS_PER_PARAM_TOKEN * n * samples * mean_tokens * draws


def stages_needed(cluster_strata: tuple[str, ...] = ()) -> dict[str, tuple[str, ...]]:
    """SELECTION_STAGES, plus `cluster` for the influence strategies whose stratify_by is cluster (their
    budget is split over the MMseqs2 clusters, so each would need the clustering alone)."""
    need = dict(SELECTION_STAGES)
    for s in cluster_strata:
        need[s] = tuple(need.get(s, ())) + ("cluster",)
    return need


def ledger(benchmark_tsvs: dict[str, str], flops: dict[str, float] | None = None,
           cluster_strata: tuple[str, ...] = ()) -> pd.DataFrame:
    """Compute per model arm. Keys are `<stage>` or `<stage>/<label>` (the benchmark file's path under
    the benchmarks folder); a label `<strategy>_<budget>_seed<n>` ties select, pretrain and benchmark
    runs to an arm, other labels (shards, seeds) are instances of a shared stage and are summed. Each arm
    is charged the shared stages its strategy needs in full (influence strategies: reference, curvature,
    sketch, scores; cluster: cluster; an influence strategy in `cluster_strata`, i.e. with stratify_by
    cluster, also cluster), since each would need them alone. `flops` uses the same keys.
    The `*_vs_full` columns divide by the mean of the full-pool arms (NaN without one)."""
    flops = flops or {}
    shared: dict[str, list[float]] = {}
    arms: dict[tuple, dict[str, float]] = {}
    for key, path in benchmark_tsvs.items():
        stage, _, label = key.partition("/")
        sec, fl = benchmark_seconds(path), flops.get(key, 0.0)
        m = MODEL_LABEL.match(label)
        if m and stage in ("select", "pretrain", "benchmark"):
            arm = arms.setdefault((m["strategy"], float(m["budget"]), int(m["seed"])), {})
            arm[f"{stage}_s"] = arm.get(f"{stage}_s", 0.0) + sec
            arm[f"{stage}_flops"] = arm.get(f"{stage}_flops", 0.0) + fl
        else:
            acc = shared.setdefault(stage, [0.0, 0.0])
            acc[0] += sec
            acc[1] += fl
    rows = []
    needs = stages_needed(tuple(cluster_strata))
    for (strategy, budget, seed), arm in sorted(arms.items()):
        need = needs.get(strategy, ())
        r = {"strategy": strategy, "budget": budget, "seed": seed,
             "scoring_s": sum(shared.get(s, [0.0])[0] for s in need), "select_s": arm.get("select_s", 0.0),
             "pretrain_s": arm.get("pretrain_s", 0.0), "benchmark_s": arm.get("benchmark_s", 0.0),
             "scoring_flops": sum(shared.get(s, [0.0, 0.0])[1] for s in need),
             "pretrain_flops": arm.get("pretrain_flops", 0.0)}
        r["total_s"] = r["scoring_s"] + r["select_s"] + r["pretrain_s"] + r["benchmark_s"]
        rows.append(r)
    out = pd.DataFrame(rows, columns=LEDGER_COLUMNS)
    full = out.loc[out.strategy == "full", "pretrain_flops"]
    ref = float(full.mean()) if len(full) and full.mean() > 0 else float("nan")
    out["pretrain_flops_vs_full"] = out["pretrain_flops"] / ref
    out["total_flops_vs_full"] = (out["pretrain_flops"] + out["scoring_flops"]) / ref
    return out


def _flops_of(results: Path, key: str, sizes: dict[str, int], mean_tokens: dict[str, float]) -> float:
    """FLOPs estimate of the stage run a benchmark key names (0 for stages without a model)."""
    stage, _, label = key.partition("/")
    if stage in ("reference", "pretrain"):
        run = results / ("reference" if stage == "reference" else "models") / label
        return training_flops(str(run / "model.pt"), str(run / "curves.h5"))
    if stage in ("sketch", "curvature"):
        run = label.split("/")[0]  # ref{r}_inf{i}
        rseed = run.split("_")[0][3:]
        if rseed not in sizes:
            sizes[rseed] = n_params(str(results / "reference" / f"seed{rseed}" / "model.pt"))
        if stage == "sketch":
            return sketch_flops(sizes[rseed], str(results / "sketches" / f"{label}.h5"))
        if run not in mean_tokens:
            lengths = []
            for p in sorted((results / "sketches" / run).glob("*.h5")):
                with h5py.File(p, "r") as f:
                    lengths.append(np.asarray(f["length"][:], dtype=np.float64))
            mean_tokens[run] = float(np.concatenate(lengths).mean() + 2) if lengths else 0.0
        return curvature_flops(sizes[rseed], str(results / "curvature" / f"{run}.h5"), mean_tokens[run])
    return 0.0


def write_ledger(results: str, benchmark_tsvs: list[str], out: str,
                 cluster_strata: tuple[str, ...] = ()) -> pd.DataFrame:
    """ledger() of the workflow's benchmark files (`<results>/benchmarks/<stage>[/<label>].tsv`), with
    FLOPs estimated from the checkpoints, curves, sketches and curvature files beside them; written
    atomically to `out`. `cluster_strata`: the strategies selected with stratify_by cluster."""
    from bioprune.h5io import atomic_path

    root = Path(results)
    keys = {}
    for path in benchmark_tsvs:
        rel = Path(path).relative_to(root / "benchmarks")
        keys[str(rel.with_suffix(""))] = path
    sizes: dict[str, int] = {}
    mean_tokens: dict[str, float] = {}
    flops = {k: _flops_of(root, k, sizes, mean_tokens) for k in keys}
    table = ledger(keys, flops, cluster_strata)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    return table
