"""The report's first category and landing page: the verdict with its numbers in the page.

Snakemake's HTML report offers CSV results only as downloads; HTML results open in the page. So the
paired table (with its minimum detectable effects), the compute ledger and the leakage summary are
written here as small self-contained HTML pages, and the verdict as RST fragments that the report's
captions and landing page (report/workflow.rst) include at report time:

- verdict.rst: one sentence per task (its headline metric), the caption of the verdict page;
- landing.rst: those sentences, the leakage gate and the compute saved, in one short block for the
  landing page (the full paired table is one click away, in the first category).
"""
from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
import pandas as pd

from bioprune.h5io import atomic_path
from bioprune.report.tables import LOWER_IS_BETTER, SIGNIFICANT, UNITS, VERDICT_METRICS, metric_label

REFERENCES = ("kmer_baseline", "nearest_neighbour", "rnafold")
CONTROLS = ("random", "degenerate", "full")

def num(x) -> str:
    """A number as shown in the page: 3 significant digits, 'NA' for NaN."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not math.isfinite(x):
        return "NA"
    if x == int(x) and abs(x) < 1e6:
        return str(int(x))
    return f"{x:.3g}"


def budget_text(b) -> str:
    """A budget as shown: '' for the references, which have none."""
    try:
        return f"{float(b):g}" if math.isfinite(float(b)) else ""
    except (TypeError, ValueError):
        return str(b)


def signed(x) -> str:
    x = float(x)
    return "NA" if not math.isfinite(x) else ("+" if x > 0 else "\u2212" if x < 0 else "") + num(abs(x))


def interval(lo, hi) -> str:
    return "" if not (np.isfinite(lo) and np.isfinite(hi)) else f"[{signed(lo)}, {signed(hi)}]"


def _lit(name: str) -> str:
    """An identifier as an RST literal (underscores and asterisks are markup otherwise)."""
    return f"``{name}``"


def _versus(r: pd.Series, base: str, metric: str, base_mean: float | None) -> str:
    """One paired comparison in words with its numbers: the effect and p when significant, else the
    minimum detectable effect (never 'indistinguishable')."""
    d, p, mde, n = r[f"diff_{base}"], r[f"p_{base}"], r[f"mde_{base}"], int(r[f"n_pairs_{base}"])
    against = f"{_lit(base)}" + (f" {num(base_mean)}" if base_mean is not None and np.isfinite(base_mean) else "")
    if n == 0:
        return f"no {_lit(base)} arm to compare"
    if n < 2 or not np.isfinite(p):
        return f"vs {against}: {signed(d)} (one seed, no test)"
    if mde == 0 and d == 0:
        return f"vs {against}: the same in {'both' if n == 2 else f'all {n}'} seed pairs"
    if p < SIGNIFICANT:
        better = (d < 0) == (metric in LOWER_IS_BETTER)
        return f"vs {against}: {'better' if better else 'worse'} by {num(abs(d))} (paired p {p:.2g}, n {n})"
    return (f"vs {against}: no difference larger than {num(mde)} could be detected "
            f"({signed(d)}, paired p {p:.2g}, n {n})")


def task_sentence(tab: pd.DataFrame, task: str, metric: str) -> str | None:
    """The verdict for one task in one sentence (RST): every strategy's mean and its paired comparison
    with random at the same budget (effect and p, or the minimum detectable effect), then the controls
    (degenerate vs random, full pool, k-mer baseline)."""
    g = tab[(tab.task == task) & (tab.metric == metric)]
    if g.empty:
        return None
    arms = g[~g.strategy.isin(REFERENCES + CONTROLS)]
    random_mean = {float(b): float(m) for b, m in zip(g[g.strategy == "random"].budget, g[g.strategy == "random"]["mean"])}
    seeds = int(g[~g.strategy.isin(REFERENCES)]["n"].max()) if len(g) else 0
    unit = UNITS.get(metric)
    head = (f"**{task}** ({metric}{' in ' + unit if unit else ''}, {'lower' if metric in LOWER_IS_BETTER else 'higher'}"
            f" is better, {seeds} seed{'s' if seeds != 1 else ''}): ")
    parts = []
    for _, r in arms.iterrows():
        b = float(r.budget)
        parts.append(f"{_lit(r.strategy)} at {b:g} scored {num(r['mean'])}, "
                     + _versus(r, "random", metric, random_mean.get(b)))
    if not parts:
        parts.append("no pruning strategy was benchmarked")
    controls = []
    for _, r in g[g.strategy == "degenerate"].iterrows():
        sep = "separated" if r["p_random"] < SIGNIFICANT else "did NOT separate"
        controls.append(f"the {_lit('degenerate')} control {sep} from random ({signed(r['diff_random'])}, "
                        f"p {num(r['p_random'])})")
    full = g[g.strategy == "full"]
    if len(full):
        controls.append(f"the full pool scored {num(full['mean'].iloc[0])}")
    kmer = g[g.strategy == "kmer_baseline"]
    if len(kmer):
        controls.append(f"the k-mer baseline {num(kmer['mean'].iloc[0])}")
    tail = ("; " + ", ".join(controls)) if controls else ""
    return head + "; ".join(parts) + tail + "."


def sentences(tab: pd.DataFrame) -> list[str]:
    out = [task_sentence(tab, t, m) for t, m in VERDICT_METRICS.items()]
    return [s for s in out if s] or ["No headline metric (perplexity or a probe task) is in the benchmark table."]


def leakage_sentence(leak: pd.DataFrame) -> str:
    tot = leak[(leak.eval_set == "all") & (leak.source == "all")]
    if tot.empty:
        return "Leakage gate: no summary row."
    r = tot.iloc[0]
    return (f"**Leakage gate**: {num(r.removed)} of {num(r.pool_sequences)} pool sequences were removed as near-copies "
            f"of an evaluation sequence; {num(r.eval_with_hit)} of {num(r.eval_sequences)} evaluation sequences had one.")


def ledger_sentence(led: pd.DataFrame) -> str:
    if led.empty or "total_flops_vs_full" not in led:
        return "**Compute**: no ledger rows."
    g = led[~led.strategy.isin(["full"])].groupby(["strategy", "budget"], sort=True)["total_flops_vs_full"].mean()
    if g.empty:
        return "**Compute**: only the full-pool model was trained."
    parts = [f"{_lit(s)} at {float(b):g} {num(100 * v)}%" for (s, b), v in g.items() if np.isfinite(v)]
    return ("**Compute** (scoring + pretraining FLOPs as a percentage of the full-pool model's, mean over seeds): "
            + ", ".join(parts) + ".")


PAGE_CSS = """body{font-family:system-ui,sans-serif;font-size:13px;margin:1em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em 0}th,td{border:1px solid #ccc;padding:2px 6px;text-align:right}
th{background:#f0f0f0;text-align:left}td.t{text-align:left}caption{text-align:left;font-weight:bold;padding:4px 0}
p.v{max-width:60em}pre{background:#f7f7f7;padding:0.5em;white-space:pre-wrap}"""


def html_table(df: pd.DataFrame, caption: str = "", text_cols: tuple[str, ...] = ()) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = []
    for row in df.itertuples(index=False):
        cells = []
        for c, v in zip(df.columns, row):
            is_text = c in text_cols or not isinstance(v, (int, float, np.integer, np.floating))
            cells.append(f"<td class=\"t\">{html.escape(str(v))}</td>" if is_text else f"<td>{num(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def html_page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{PAGE_CSS}</style></head><body><h2>{html.escape(title)}</h2>\n{body}\n</body></html>\n")


def _rst_to_html_inline(s: str) -> str:
    """The sentences' light RST (**bold**, ``literal``) as HTML."""
    import re

    s = html.escape(s)
    s = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", s)
    return re.sub(r"``(.+?)``", r"<code>\1</code>", s)


def paired_table(tab: pd.DataFrame) -> str:
    """The paired table per task and metric (headline metrics first): mean [95% CI] and, against each
    baseline, the mean paired difference [95% CI], p and the minimum detectable effect (MDE)."""
    order = {(t, m): i for i, (t, m) in enumerate(VERDICT_METRICS.items())}
    keys = sorted(set(zip(tab.task, tab.metric)), key=lambda k: (order.get(k, len(order)), k))
    out = []
    for task, metric in keys:
        g = tab[(tab.task == task) & (tab.metric == metric)]
        g = g.assign(_o=g.strategy.map(lambda s: 2 if s in REFERENCES else 1 if s in CONTROLS else 0))
        rows = []
        for _, r in g.sort_values(["_o", "strategy", "budget"], kind="stable").iterrows():
            row = {"strategy": r.strategy, "budget": budget_text(r.budget), "n": num(r["n"]), "mean": num(r["mean"]),
                   "95% CI": interval(r.ci95_low, r.ci95_high)}
            for base in ("random", "random_10x", "full"):
                n = r.get(f"n_pairs_{base}", 0)
                n = int(n) if np.isfinite(n) else 0
                ci = interval(r[f"diff_{base}_low"], r[f"diff_{base}_high"]) if n > 1 else ""
                row[f"vs {base}: diff [95% CI]"] = (signed(r[f"diff_{base}"]) + (f" {ci}" if ci else "")) if n else ""
                row[f"{base} p"] = num(r[f"p_{base}"]) if n > 1 else ""
                row[f"{base} MDE"] = num(r[f"mde_{base}"]) if n > 1 else ""
                row[f"{base} pairs"] = str(n)
            rows.append(row)
        df = pd.DataFrame(rows)
        headline = VERDICT_METRICS.get(task) == metric
        out.append(html_table(df.astype(str), f"{task}: {metric_label(metric)}" + (" (headline)" if headline else ""),
                              text_cols=tuple(df.columns)))
    return "\n".join(out)


def write_pages(table: str, verdict_txt: str, ledger: str, leakage: str, out: dict[str, str]) -> None:
    """Write out['verdict'] / out['ledger'] / out['leakage'] (HTML pages) and out['sentences'] /
    out['landing'] (RST fragments) from the benchmark table, verdict.txt, ledger.csv and the leakage report."""
    tab = pd.read_csv(table)
    led = pd.read_csv(ledger)
    leak = pd.read_csv(leakage)
    said = sentences(tab)
    verdict_body = (
        "<h3>Verdict, one sentence per task</h3>\n"
        + "\n".join(f"<p class=\"v\">{_rst_to_html_inline(s)}</p>" for s in said)
        + "\n<p>Paired by seed (seed i of every arm shares its initialisation and data order with seed i of the "
          "baseline); 95% t-intervals; p from the two-sided paired t-test; MDE = minimum detectable effect, the "
          "smallest true paired difference detected with 80% power at alpha 0.05 with these pairs and the observed "
          "spread. An empty cell: fewer than two pairs, no test.</p>\n<h3>Paired table</h3>\n"
        + paired_table(tab)
        + "\n<h3>verdict.txt</h3>\n<pre>" + html.escape(Path(verdict_txt).read_text()) + "</pre>"
    )
    pages = {
        "verdict": html_page("Verdict and paired table", verdict_body),
        "ledger": html_page("Compute ledger", "<p>" + _rst_to_html_inline(ledger_sentence(led)) + "</p>\n"
                            + html_table(led, text_cols=("strategy",))),
        "leakage": html_page("Leakage gate", "<p>" + _rst_to_html_inline(leakage_sentence(leak)) + "</p>\n"
                             + html_table(leak, text_cols=("eval_set", "source"))),
    }
    for key, text in pages.items():
        with atomic_path(out[key]) as tmp:
            Path(tmp).write_text(text)
    with atomic_path(out["sentences"]) as tmp:
        Path(tmp).write_text("\n\n".join(said) + "\n")
    landing = "\n\n".join(said) + "\n\n" + leakage_sentence(leak) + "\n\n" + ledger_sentence(led) + "\n"
    with atomic_path(out["landing"]) as tmp:
        Path(tmp).write_text(landing)
