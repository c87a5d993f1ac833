"""Aggregate per-model metrics into summary/table CSVs and draw the report's plots."""
from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bioprune.errors import BiopruneError  # noqa: E402
from bioprune.h5io import atomic_path, open_h5  # noqa: E402
from bioprune.influence.scores import read_scores  # noqa: E402
from bioprune.selection.strategies import read_selection  # noqa: E402

log = logging.getLogger(__name__)
COLUMNS = ["strategy", "budget", "seed", "task", "metric", "value"]


def write_csv(df: pd.DataFrame, path: str) -> None:
    """CSV written atomically; an undefined number (NaN) is written as NA (table.csv's note says why)."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, na_rep="NA")


def read_metrics(metric_files: list[str]) -> pd.DataFrame:
    """Concatenate per-model metrics CSVs; a missing file, an unreadable CSV, a missing column, a
    non-numeric value or a row given twice raises BiopruneError naming the file (and column)."""
    if not metric_files:
        raise BiopruneError("aggregate: no metrics files given")
    frames = []
    for f in metric_files:
        if not Path(f).is_file():
            raise BiopruneError(f"{f}: metrics file not found")
        try:
            d = pd.read_csv(f)
        except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as e:
            raise BiopruneError(f"{f}: not a readable metrics CSV ({str(e).splitlines()[0]})") from None
        missing = [c for c in COLUMNS if c not in d.columns]
        if missing:
            raise BiopruneError(f"{f}: missing column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}")
        for c in ("value", "seed"):
            num = pd.to_numeric(d[c], errors="coerce")
            bad = num.isna() & d[c].notna()
            if bad.any():
                raise BiopruneError(f"{f}: column {c}: non-numeric value {d[c][bad].iloc[0]!r} in row {int(bad.idxmax()) + 2}")
            d[c] = num
        frames.append(d[COLUMNS].assign(_file=str(f)))
    df = pd.concat(frames, ignore_index=True)
    key = ["strategy", "budget", "seed", "task", "metric"]
    dup = df[df.duplicated(key, keep=False)]
    if len(dup):
        r = dup.iloc[0]
        files = sorted(set(dup[(dup[key] == r[key]).all(axis=1)]["_file"]))
        raise BiopruneError(f"{', '.join(files)}: row {r.strategy} {r.budget} seed {r.seed} {r.task} {r.metric} given twice")
    return df.drop(columns="_file")


def aggregate(metric_files: list[str], summary: str, table: str, verdict_path: str | None = None) -> pd.DataFrame:
    """summary.csv = every row; table.csv = per strategy, budget, task and metric: n, mean, 95% t-interval
    (NaN for one seed), the paired differences to random and random_10x at the same budget and to the
    full pool, with their minimum detectable effects (bioprune.benchmarks.stats); `verdict_path` the
    plain-text verdict (verdict())."""
    from bioprune.benchmarks.stats import summarise

    df = read_metrics(metric_files)
    df = df.sort_values(["task", "metric", "strategy", "budget", "seed"], kind="stable")
    write_csv(df, summary)
    tab = summarise(df)
    write_csv(tab, table)
    if verdict_path:
        with atomic_path(verdict_path) as tmp:
            Path(tmp).write_text(verdict(tab))
    return tab


LOWER_IS_BETTER = ("perplexity", "mlm_loss")
VERDICT_METRICS = {"perplexity": "perplexity", "rna_type": "accuracy", "protein_loc": "accuracy",
                   "rna_ss": "bp_f1", "protein_ss": "q3"}
SIGNIFICANT = 0.05

# unit (or scale) of each metric, for axis labels and the report's tables
UNITS = {
    "perplexity": "exp(nats per masked token)",
    "mlm_loss": "nats per masked token",
    "kmer_val_loss": "nats per masked token",
    "accuracy": "fraction of test sequences",
    "macro_f1": "0-1",
    "bp_f1": "0-1, base pairs",
    "q3": "fraction of residues",
    "tokens_seen": "tokens",
    "unique_tokens": "tokens",
    "unique_sequences": "sequences",
    "n_test": "sequences",
    "threshold": "probability",
    "kmer_h": "k-mer order",
}


def metric_label(metric: str) -> str:
    """`metric (unit)`, e.g. for an axis label; the bare name when no unit is known."""
    unit = UNITS.get(metric)
    return f"{metric} ({unit})" if unit else metric


def _num(x: float) -> str:
    return "nan" if not np.isfinite(x) else f"{x:.3g}" if abs(x) < 0.01 and x != 0 else f"{x:.3f}"


def _p(x: float) -> str:
    return "nan" if not np.isfinite(x) else f"{x:.2g}"


def _contrast(r: pd.Series, base: str, metric: str) -> str:
    """One paired comparison in words: the difference, its p and, when not significant, what could be missed."""
    d, p, mde, n = r[f"diff_{base}"], r[f"p_{base}"], r[f"mde_{base}"], int(r[f"n_pairs_{base}"])
    if n < 2 or not np.isfinite(p):
        return f"{_num(d)} ({n} pair{'s' if n != 1 else ''}: no test)"
    if p < SIGNIFICANT:
        better = (d < 0) == (metric in LOWER_IS_BETTER)
        return f"{'better' if better else 'worse'} by {_num(abs(d))} (paired p {_p(p)}, n {n})"
    return (f"no difference larger than {_num(mde)} could be detected (observed {_num(d)}, paired p {_p(p)}, "
            f"n {n}; mde at 80% power)")


def verdict(tab: pd.DataFrame) -> str:
    """What the study can see and what it saw, per task's headline metric: the controls first (degenerate
    vs random, full pool vs random, full pool vs the k-mer baseline), then every strategy against random
    and random_10x at its budget, in terms of paired differences, p and minimum detectable effects."""
    out = []
    for task, metric in VERDICT_METRICS.items():
        g = tab[(tab.task == task) & (tab.metric == metric)]
        if g.empty:
            continue
        arms = g[~g.strategy.isin(["kmer_baseline", "nearest_neighbour", "rnafold", "full"])]
        out.append(f"{task} {metric} ({'lower' if metric in LOWER_IS_BETTER else 'higher'} is better)")
        full, kmer = g[g.strategy == "full"], g[g.strategy == "kmer_baseline"]
        out.append("  controls:")
        for _, r in arms[arms.strategy == "degenerate"].iterrows():
            sep = "separated" if r["p_random"] < SIGNIFICANT else "NOT separated"
            out.append(f"    degenerate vs random at {r['budget']:g}: {_contrast(r, 'random', metric)} -> {sep}")
        for _, r in arms[arms.strategy == "random"].iterrows():
            if r["n_pairs_full"] > 0:  # random - full, said as full vs random
                flip = r.copy()
                flip["diff_full"] = -r["diff_full"]
                sep = "separated" if r["p_full"] < SIGNIFICANT else "NOT separated"
                out.append(f"    full pool vs random at {r['budget']:g}: {_contrast(flip, 'full', metric)} -> {sep}")
        if len(full) and len(kmer):
            f, k = float(full["mean"].iloc[0]), float(kmer["mean"].iloc[0])
            beats = (f < k) if metric in LOWER_IS_BETTER else (f > k)
            out.append(f"    full pool {_num(f)} vs kmer_baseline {_num(k)}: the models "
                       f"{'beat' if beats else 'do NOT beat'} counting k-mers")
        out.append("  strategies:")
        for _, r in arms[~arms.strategy.isin(["random", "degenerate"])].iterrows():
            parts = [f"vs random {_contrast(r, 'random', metric)}"]
            if r.strategy != "random_10x" and r["n_pairs_random_10x"] > 0:
                parts.append(f"vs random_10x {_contrast(r, 'random_10x', metric)}")
            out.append(f"    {r.strategy} {r['budget']:g}: mean {_num(r['mean'])}; " + "; ".join(parts))
        out.append("")
    return "\n".join(out) if out else "no headline metric in the table\n"


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
    lo, hi = (float(s.min()), float(s.max())) if len(s) else (0.0, 1.0)
    bins = np.linspace(lo, hi, 60) if hi > lo else np.linspace(lo - 0.5, lo + 0.5, 3)  # all scores tied: one bar
    ax.hist(s, bins=bins, color="lightgray", label=f"pool (n={len(s)})")
    for name, path in sorted(selections.items()):
        idx = [pos[i] for i in read_selection(path) if i in pos]
        ax.hist(s[idx], bins=bins, histtype="step", lw=1.5, label=f"{name} (n={len(idx)})")
    ax.set_yscale("log")
    ax.set_xlabel("log10 self-influence score (arbitrary units)")
    ax.set_ylabel("sequences (count, log scale)")
    ax.legend(fontsize=7)
    _save(fig, hist_path)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.hexbin(sc["length"], s, gridsize=40, bins="log", cmap="viridis")
    rho = float(sc["attrs"].get("spearman_score_length", float("nan")))
    why = str(sc["attrs"].get("spearman_score_length_note", "")) or "undefined"
    ax.set_title(f"Spearman(score, length) = {rho:.3f}" if np.isfinite(rho) else f"Spearman(score, length) = NA\n({why})",
                 fontsize=10 if np.isfinite(rho) else 7)
    ax.set_xlabel("sequence length (residues, as scored)")
    ax.set_ylabel("log10 self-influence score (arbitrary units)")
    _save(fig, length_path)


DIAGNOSTIC_METRICS = ("n_test", "threshold", "kmer_h", "kmer_val_loss")


def plot_metrics(table_path: str, out: str) -> None:
    """One panel per (task, metric): mean and 95% CI per strategy and budget (points, not bars from
    zero, so small differences stay visible); the RNAfold, nearest-neighbour and k-mer references are
    drawn as dashed lines; budgets with several values are joined per strategy (a pruning curve)."""
    tab = pd.read_csv(table_path)
    tab = tab[~tab["metric"].isin(DIAGNOSTIC_METRICS)]
    tab = tab[tab.task != "training"]  # token counts per arm (task training) are not quality metrics
    keys = list(tab.groupby(["task", "metric"]).groups)
    n = max(1, len(keys))
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.6), squeeze=False, layout="constrained")
    for ax, (task, metric) in zip(axes[0], keys):
        g = tab[(tab.task == task) & (tab.metric == metric)]
        refs = {"rnafold": ("RNAfold MFE", "tab:red"), "nearest_neighbour": ("nearest neighbour", "tab:green"),
                "kmer_baseline": ("k-mer baseline", "tab:purple")}
        ref = g[g.strategy.isin(list(refs))]
        g = g[~g.strategy.isin(list(refs))].reset_index(drop=True)
        budgets = pd.to_numeric(g["budget"], errors="coerce")
        labels = [f"{s}\n{b:g}" for s, b in zip(g.strategy, budgets)]
        err = np.vstack([g["mean"] - g["ci95_low"], g["ci95_high"] - g["mean"]])
        err = np.nan_to_num(err)  # one-seed rows have no interval: a bare point
        ax.errorbar(range(len(g)), g["mean"], yerr=err, fmt="o", capsize=3, color="tab:blue")
        for _, r in ref.iterrows():
            name, color = refs[r["strategy"]]
            ax.axhline(r["mean"], ls="--", color=color, label=name)
        if len(ref):
            ax.legend(fontsize=6)
        ax.set_xticks(range(len(g)), labels, rotation=60, fontsize=6)
        ax.set_xlabel("strategy and budget (fraction of the pool)", fontsize=7)
        ax.set_ylabel(metric_label(metric), fontsize=7)
        ax.set_title(f"{task}: {metric}", fontsize=8)
    _save(fig, out)


def plot_pruning_curves(table_path: str, out: str) -> None:
    """Metric vs budget per strategy (log budget axis), one panel per (task, metric): the figure a
    pruning study leads with. random_10x is drawn at ten times its nominal budget (what it holds).
    With one budget each strategy is a single point: drawn as points (no lines), dodged sideways so they
    do not hide each other; ticks sit only at the sizes drawn, labelled in plain numbers."""
    from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

    tab = pd.read_csv(table_path)
    tab = tab[~tab["metric"].isin(DIAGNOSTIC_METRICS)]
    tab = tab[~tab.strategy.isin(["rnafold", "nearest_neighbour", "kmer_baseline", "full"])].copy()
    tab["size"] = pd.to_numeric(tab["budget"], errors="coerce") * np.where(tab.strategy == "random_10x", 10, 1)
    tab = tab[tab.task != "training"]  # token counts per arm (task training) are not quality metrics
    keys = list(tab.groupby(["task", "metric"]).groups)
    n = max(1, len(keys))
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n, 3.4), squeeze=False, layout="constrained")
    one_budget = pd.to_numeric(tab["budget"], errors="coerce").nunique() <= 1
    for ax, (task, metric) in zip(axes[0], keys):
        g = tab[(tab.task == task) & (tab.metric == metric)]
        groups = list(g.groupby("strategy"))
        for k, (strategy, h) in enumerate(groups):
            h = h.sort_values("size")
            err = np.nan_to_num(np.vstack([h["mean"] - h["ci95_low"], h["ci95_high"] - h["mean"]]))
            dodge = 10 ** (0.04 * (k - (len(groups) - 1) / 2)) if one_budget else 1.0  # log-axis offset
            ax.errorbar(h["size"] * dodge, h["mean"], yerr=err, marker="o", capsize=2, lw=1,
                        ls="none" if one_budget else "-", label=strategy)
        ax.set_xscale("log")
        sizes = sorted(float(x) for x in g["size"].dropna().unique())
        if sizes:
            ax.xaxis.set_major_locator(FixedLocator(sizes))
            ax.xaxis.set_major_formatter(FixedFormatter([f"{x:g}" for x in sizes]))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xlim(sizes[0] / 2, sizes[-1] * 2)
            ax.tick_params(axis="x", labelsize=6, labelrotation=45 if len(sizes) > 4 else 0)
        ax.set_xlabel("fraction of the pool pretrained on (log scale)", fontsize=7)
        ax.set_ylabel(metric_label(metric), fontsize=7)
        ax.set_title(f"{task}: {metric}", fontsize=8)
        ax.legend(fontsize=5)
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
        ax.set_xlabel("optimizer step (symlog scale)")
        ax.set_ylabel("MLM loss (nats per masked token)")
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
