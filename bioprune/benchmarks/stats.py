"""Statistics for the benchmark table: per-arm t-intervals and paired differences to the random arms.

Seeds are paired: seed i of a strategy shares the pretraining initialisation and data order of seed i
of `random` (and `random_10x`) at the same budget, so the per-seed differences cancel the seed-to-seed
variance they share. The table reports their mean, a 95% t-interval and a two-sided paired t-test.
With one value (or one pair) there is no interval: n = 1 and NaN bounds, never a zero-width interval.

The full-pool models are a third baseline (`full`): seed i of every arm, at any budget, is paired with
seed i of the full-pool model (same initialisation and data-order seed), so `diff_full` of random is
how much pruning to random cost.

Power: `mde_<baseline>` is the minimum detectable effect of a comparison, the smallest true paired
difference (in the metric's units, either sign) that a two-sided paired t-test at alpha 0.05 would
detect with 80% power with the n pairs run, if the paired differences had the observed standard
deviation sd: the exact solution of power(delta) = 0.8 under the noncentral t distribution,
power(delta) = P(|T| > t_{0.975, n-1}), T ~ noncentral t(n - 1, delta sqrt(n) / sd) (power_paired).
The closed-form approximation (t_{0.975, n-1} + t_{0.8, n-1}) sd / sqrt(n) is close for large n but
too small for few pairs (n = 3: 3.10 sd, power 0.77, against the exact 3.26 sd; mde_closed_form). A difference
smaller than mde could have been missed; "no significant difference" means no difference larger than
about mde. NaN with under two pairs; 0 when every paired difference is the same.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

KEYS = ["strategy", "budget", "task", "metric"]
BASELINES = ("random", "random_10x", "full")
ALPHA, POWER = 0.05, 0.8


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


def power_paired(delta: float, sd: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test (n pairs) when the true mean difference is delta and the
    differences' standard deviation is sd (noncentral t)."""
    df = n - 1
    tc = float(stats.t.ppf(1 - alpha / 2, df))
    nc = abs(delta) * math.sqrt(n) / sd
    upper, lower = float(stats.nct.sf(tc, df, nc)), float(stats.nct.cdf(-tc, df, nc))
    return (upper if np.isfinite(upper) else 1.0) + (lower if np.isfinite(lower) else 0.0)  # scipy NaNs far out


def mde_closed_form(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """(t_{1-alpha/2, n-1} + t_{power, n-1}) sd / sqrt(n): the usual approximation of mde_paired."""
    df = n - 1
    return float((stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * sd / math.sqrt(n))


def mde_paired(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """Minimum detectable effect: the delta > 0 with power_paired(delta, sd, n) = power (exact)."""
    if n < 2 or not np.isfinite(sd):
        return math.nan
    if sd == 0.0:
        return 0.0
    from scipy.optimize import brentq

    lo, hi = 0.0, mde_closed_form(1.0, n, alpha, power)  # in units of sd; the exact value lies above
    while power_paired(hi, 1.0, n, alpha) < power:
        lo, hi = hi, 2 * hi
    return float(brentq(lambda d: power_paired(d, 1.0, n, alpha) - power, lo, hi, xtol=1e-10)) * sd


def _budget_key(b) -> str:
    return "" if pd.isna(b) else f"{float(b):g}"


def paired_cols(baseline: str) -> list[str]:
    b = baseline
    return [f"n_pairs_{b}", f"diff_{b}", f"diff_{b}_low", f"diff_{b}_high", f"p_{b}", f"mde_{b}"]


def paired_vs(df: pd.DataFrame, baseline: str, level: float = 0.95) -> pd.DataFrame:
    """Per (strategy, budget, task, metric): paired difference (strategy - baseline) over the seeds both
    have at the same budget (any budget for baseline `full`). Columns n_pairs_<b>, diff_<b>,
    diff_<b>_low, diff_<b>_high, p_<b>, mde_<b> (minimum detectable effect, see the module doc)."""
    d = df.assign(_b=df["budget"].map(_budget_key))
    on = ["task", "metric", "seed"] if baseline == "full" else ["_b", "task", "metric", "seed"]
    base = d[d.strategy == baseline][[*on, "value"]].rename(columns={"value": "_base"})
    m = d[d.strategy != baseline].merge(base, on=on, how="inner")
    rows = []
    for key, g in m.groupby(["strategy", "_b", "task", "metric"], sort=True):
        diffs = (g["value"] - g["_base"]).to_numpy(dtype=float)
        test = paired_test(diffs, level)
        fin = diffs[np.isfinite(diffs)]
        sd = float(fin.std(ddof=1)) if fin.size > 1 else math.nan
        rows.append((*key, *test, mde_paired(sd, fin.size)))
    return pd.DataFrame(rows, columns=["strategy", "_b", "task", "metric", *paired_cols(baseline)])


def summarise(df: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """The table: per (strategy, budget, task, metric) n, mean, ci95_low, ci95_high, and the paired
    differences (with their mde) to every baseline present (NaN where the baseline has no seed at that
    budget)."""
    rows = []
    for key, g in df.groupby(KEYS, sort=True, dropna=False):
        rows.append((*key, *t_interval(g["value"].to_numpy(dtype=float), level)))
    tab = pd.DataFrame(rows, columns=[*KEYS, "n", "mean", "ci95_low", "ci95_high"])
    tab["_b"] = tab["budget"].map(_budget_key)
    for b in BASELINES:
        p = paired_vs(df, b, level)
        if p.empty:
            p = pd.DataFrame(columns=["strategy", "_b", "task", "metric", *paired_cols(b)])
        tab = tab.merge(p, on=["strategy", "_b", "task", "metric"], how="left")
        tab[f"n_pairs_{b}"] = tab[f"n_pairs_{b}"].fillna(0).astype(int)
    return tab.drop(columns="_b")
