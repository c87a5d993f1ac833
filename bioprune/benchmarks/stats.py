"""Statistics for the benchmark table: per-arm t-intervals and paired differences to the random arms.

Seeds are paired: seed i of a strategy shares the pretraining initialisation and data order of seed i
of `random` (and `random_10x`) at the same budget, so the per-seed differences cancel the seed-to-seed
variance they share. The table reports their mean, a 95% t-interval and a two-sided paired t-test.
With one value (or one pair) there is no interval: n = 1 and NaN bounds, never a zero-width interval.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

KEYS = ["strategy", "budget", "task", "metric"]
BASELINES = ("random", "random_10x")


def t_interval(values, level: float = 0.95) -> tuple[int, float, float, float]:
    """(n, mean, low, high) of the finite values; low = high = NaN when n < 2."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if v.size == 0:
        return 0, math.nan, math.nan, math.nan
    m = float(v.mean())
    if v.size == 1:
        return 1, m, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return int(v.size), m, m - half, m + half


def paired_test(diffs, level: float = 0.95) -> tuple[int, float, float, float, float]:
    """(n, mean, low, high, p) of paired differences: t-interval and two-sided paired t-test p-value.
    n < 2 gives NaN bounds and p; identical differences give a point interval and p = 0 (or 1 if all 0)."""
    n, m, lo, hi = t_interval(diffs, level)
    if n < 2:
        return n, m, lo, hi, math.nan
    d = np.asarray([x for x in diffs if np.isfinite(x)], dtype=float)
    sd = float(d.std(ddof=1))
    if sd == 0.0:
        return n, m, m, m, 1.0 if m == 0 else 0.0
    t = m / (sd / math.sqrt(n))
    return n, m, lo, hi, float(2 * stats.t.sf(abs(t), n - 1))


def _budget_key(b) -> str:
    return "" if pd.isna(b) else f"{float(b):g}"


def paired_vs(df: pd.DataFrame, baseline: str, level: float = 0.95) -> pd.DataFrame:
    """Per (strategy, budget, task, metric): paired difference (strategy - baseline) over the seeds both
    have at the same budget. Columns n_pairs_<b>, diff_<b>, diff_<b>_low, diff_<b>_high, p_<b>."""
    d = df.assign(_b=df["budget"].map(_budget_key))
    base = d[d.strategy == baseline][["_b", "task", "metric", "seed", "value"]].rename(columns={"value": "_base"})
    m = d[d.strategy != baseline].merge(base, on=["_b", "task", "metric", "seed"], how="inner")
    cols = [f"n_pairs_{baseline}", f"diff_{baseline}", f"diff_{baseline}_low", f"diff_{baseline}_high", f"p_{baseline}"]
    rows = []
    for key, g in m.groupby(["strategy", "_b", "task", "metric"], sort=True):
        rows.append((*key, *paired_test((g["value"] - g["_base"]).to_numpy(), level)))
    return pd.DataFrame(rows, columns=["strategy", "_b", "task", "metric", *cols])


def summarise(df: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """The table: per (strategy, budget, task, metric) n, mean, ci95_low, ci95_high, and the paired
    differences to every baseline present (NaN where the baseline has no seed at that budget)."""
    rows = []
    for key, g in df.groupby(KEYS, sort=True, dropna=False):
        rows.append((*key, *t_interval(g["value"].to_numpy(dtype=float), level)))
    tab = pd.DataFrame(rows, columns=[*KEYS, "n", "mean", "ci95_low", "ci95_high"])
    tab["_b"] = tab["budget"].map(_budget_key)
    for b in BASELINES:
        p = paired_vs(df, b, level)
        if p.empty:
            p = pd.DataFrame(columns=["strategy", "_b", "task", "metric", f"n_pairs_{b}", f"diff_{b}",
                                      f"diff_{b}_low", f"diff_{b}_high", f"p_{b}"])
        tab = tab.merge(p, on=["strategy", "_b", "task", "metric"], how="left")
        tab[f"n_pairs_{b}"] = tab[f"n_pairs_{b}"].fillna(0).astype(int)
    return tab.drop(columns="_b")
