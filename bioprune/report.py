"""Aggregate per-model metrics into summary/table CSVs and draw the report's plots."""
from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .h5io import atomic_path, open_h5  # noqa: E402
from .metrics import mean_ci  # noqa: E402
from .scores import read_scores  # noqa: E402
from .selections import read_selection  # noqa: E402

log = logging.getLogger(__name__)
COLUMNS = ["strategy", "budget", "seed", "task", "metric", "value"]


def write_csv(df: pd.DataFrame, path: str) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def aggregate(metric_files: list[str], summary: str, table: str) -> pd.DataFrame:
    """summary.csv = every row; table.csv = mean and 95% CI per strategy, budget, task and metric."""
    frames = [pd.read_csv(f) for f in metric_files]
    df = pd.concat(frames, ignore_index=True)[COLUMNS]
    df = df.sort_values(["task", "metric", "strategy", "budget", "seed"], kind="stable")
    write_csv(df, summary)
    rows = []
    for (s, b, t, m), g in df.groupby(["strategy", "budget", "task", "metric"], sort=True, dropna=False):
        mean, lo, hi = mean_ci(g["value"].to_numpy())
        rows.append({"strategy": s, "budget": b, "task": t, "metric": m, "mean": mean, "ci95_low": lo,
                     "ci95_high": hi, "n_seeds": len(g)})
    tab = pd.DataFrame(rows)
    write_csv(tab, table)
    return tab


def _save(fig, path: str) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_scores(scores_path: str, selections: dict[str, str], hist_path: str, length_path: str) -> None:
    """Score histogram with each strategy's selection overlaid; score against sequence length."""
    sc = read_scores(scores_path)
    s = np.log10(np.clip(sc["score"], 1e-12, None))
    pos = {i: k for k, i in enumerate(sc["id"])}
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(s.min(), s.max(), 60)
    ax.hist(s, bins=bins, color="lightgray", label=f"pool (n={len(s)})")
    for name, path in sorted(selections.items()):
        idx = [pos[i] for i in read_selection(path) if i in pos]
        ax.hist(s[idx], bins=bins, histtype="step", lw=1.5, label=f"{name} (n={len(idx)})")
    ax.set_yscale("log")
    ax.set_xlabel("log10 self-influence score")
    ax.set_ylabel("sequences")
    ax.legend(fontsize=7)
    _save(fig, hist_path)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.hexbin(sc["length"], s, gridsize=40, bins="log", cmap="viridis")
    rho = sc["attrs"].get("spearman_score_length", float("nan"))
    ax.set_title(f"Spearman(score, length) = {rho:.3f}")
    ax.set_xlabel("sequence length")
    ax.set_ylabel("log10 self-influence score")
    _save(fig, length_path)


DIAGNOSTIC_METRICS = ("n_test", "threshold")


def plot_metrics(table_path: str, out: str) -> None:
    """One panel per (task, metric): mean and 95% CI per strategy and budget (points, not bars from
    zero, so small differences stay visible); the RNAfold reference is drawn as a dashed line."""
    tab = pd.read_csv(table_path)
    tab = tab[~tab["metric"].isin(DIAGNOSTIC_METRICS)]
    keys = list(tab.groupby(["task", "metric"]).groups)
    n = max(1, len(keys))
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.6), squeeze=False)
    for ax, (task, metric) in zip(axes[0], keys):
        g = tab[(tab.task == task) & (tab.metric == metric)]
        ref = g[g.strategy == "rnafold"]
        g = g[g.strategy != "rnafold"].reset_index(drop=True)
        labels = [f"{s}\n{b:g}" for s, b in zip(g.strategy, g.budget)]
        err = np.vstack([g["mean"] - g["ci95_low"], g["ci95_high"] - g["mean"]])
        ax.errorbar(range(len(g)), g["mean"], yerr=err, fmt="o", capsize=3, color="tab:blue")
        for _, r in ref.iterrows():
            ax.axhline(r["mean"], ls="--", color="tab:red", label="RNAfold MFE")
            ax.legend(fontsize=6)
        ax.set_xticks(range(len(g)), labels, rotation=60, fontsize=6)
        ax.set_title(f"{task}: {metric}", fontsize=8)
    _save(fig, out)


def plot_curves(curve_files: dict[str, str], out: str) -> None:
    """Training loss (and held-out loss) curves, one line per model."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, path in sorted(curve_files.items()):
        with open_h5(path, "curves", ["step", "loss"]) as f:
            step, loss = f["step"][()], f["loss"][()]
            vs, vl = (f["val_step"][()], f["val_loss"][()]) if "val_step" in f else ([], [])
        if len(loss) > 20:
            k = max(1, len(loss) // 50)
            loss = np.convolve(loss, np.ones(k) / k, mode="valid")
            step = step[: len(loss)]
        axes[0].plot(step, loss, lw=1, label=name)
        if len(vs):
            axes[1].plot(vs, vl, marker=".", lw=1, label=name)
    axes[0].set_title("training MLM loss (smoothed)")
    axes[1].set_title("held-out MLM loss")
    for ax in axes:
        ax.set_xlabel("step")
        ax.set_xscale("symlog")
    axes[1].legend(fontsize=6)
    _save(fig, out)


def write_versions(path: str) -> None:
    """The software versions the run used (shown in the report)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    import torch

    rows = [("python", platform.python_version())]
    for pkg in ("bioprune", "torch", "fair-esm", "snakemake", "numpy", "h5py", "scikit-learn", "viennarna", "biopython"):
        try:
            rows.append((pkg, version(pkg)))
        except PackageNotFoundError:
            rows.append((pkg, "not installed"))
    rows.append(("device", "cuda:" + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"))
    write_csv(pd.DataFrame(rows, columns=["package", "version"]), path)
