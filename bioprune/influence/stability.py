"""Is the score a property of the sequence? Seed-to-seed agreement, length bias and selection composition.

Statistics (pure numpy/scipy) compare two scorings of the same pool aligned by id: Spearman, the
mean Spearman within length deciles (length held nearly fixed, so agreement there is not agreement
on length), and the Jaccard overlap of the two top-k sets, k = budget_size(n, budget). The stage
writes them as a long CSV (comparison, statistic, budget, stratum, value) and draws one figure with
the acceptance thresholds of issue 11.

Source of a sequence (composition): the id up to its first '_', '|' or ':' (lower-cased), e.g.
`rrna_gb_AJ313019__172` -> rrna (rRNA windows), `mircarta_hsa-...` -> mircarta, `trna_hg19-...` ->
trna, `rfam_tRNA_DK6051` -> rfam (Rfam seeds), `sp|P69905|HBA_HUMAN` -> sp. An id with none of
these separators (the protein demo's bare UniProt accessions) has source `other`.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bioprune.errors import BiopruneError  # noqa: E402
from bioprune.influence.rank_stats import jaccard, spearman, undefined_why  # noqa: E402,F401
from bioprune.h5io import atomic_path, open_h5, read_str  # noqa: E402
from bioprune.selection.strategies import fraction_count, length_strata, top_k  # noqa: E402

log = logging.getLogger(__name__)
COLUMNS = ["comparison", "statistic", "budget", "stratum", "value", "note"]
NA = "NA"  # how an undefined statistic is written in stability.csv; its `note` says why
NO_SOURCE = "other"
_SEP = re.compile(r"[_|:]")
# (comparison, statistic, budget or None for any) -> (threshold, "min" = value >= t | "absmax" = |value| <= t)
THRESHOLDS = {
    ("influence_seed", "spearman", None): (0.95, "min"),
    ("influence_seed", "within_decile_spearman", None): (0.9, "min"),
    ("influence_seed", "top_k_jaccard", 0.005): (0.7, "min"),
    ("length", "spearman_score_length", None): (0.3, "absmax"),
    ("reference_seed", "spearman", None): (0.7, "min"),
}


def _align(a: dict, b: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(score a, score b, length) over the ids both scorings hold, in a's order."""
    pos = {i: k for k, i in enumerate(b["id"])}
    ia = [k for k, i in enumerate(a["id"]) if i in pos]
    if len(ia) < 3:
        raise BiopruneError(f"stability: the two scorings share {len(ia)} ids; were they made from the same shards?")
    if len(ia) < len(a["id"]) or len(ia) < len(b["id"]):
        log.warning("stability: comparing the %d ids both scorings hold (%d and %d)", len(ia), len(a["id"]), len(b["id"]))
    ib = [pos[a["id"][k]] for k in ia]
    return np.asarray(a["score"], float)[ia], np.asarray(b["score"], float)[ib], np.asarray(a["length"])[ia]


def compare_scores(a: dict, b: dict, budgets: list[float], n_strata: int = 10) -> dict:
    """Agreement of two scorings (dicts as bioprune.influence.scores.read_scores returns), aligned by id.

    Returns {n, spearman, within_decile_spearman (mean over length deciles with >= 3 members and
    non-constant scores), decile_spearman {"[lo,hi]": rho}, top_k_jaccard {budget: J}}, where the
    top-k sets take k = budget_size(n, budget) highest scores (ties by position), and `why`
    {statistic or "length[lo,hi]" or "top_k_jaccard@budget": reason} for every undefined (NaN) value.
    Constant lengths give one length stratum (its Spearman is the overall one); a budget under one
    sequence gives an undefined Jaccard, not an error.
    """
    sa, sb, length = _align(a, b)
    strata = length_strata(length, n_strata)
    deciles, why = {}, {}
    for s in range(strata.max() + 1):
        m = strata == s
        key = f"[{length[m].min()},{length[m].max()}]"
        deciles[key] = spearman(sa[m], sb[m])
        if not np.isfinite(deciles[key]):
            why[f"length{key}"] = undefined_why(sa[m], sb[m])
    rhos = [v for v in deciles.values() if np.isfinite(v)]
    n = len(sa)
    jac = {}
    for beta in budgets:
        k = fraction_count(n, beta)
        jac[float(beta)] = jaccard(top_k(sa, k), top_k(sb, k)) if 1 <= k <= n else float("nan")
        if not 1 <= k <= n:
            why[f"top_k_jaccard@{float(beta)}"] = f"budget {beta} of {n} sequences is {beta * n:g} (< 1 sequence)"
    rho = spearman(sa, sb)
    if not np.isfinite(rho):
        why["spearman"] = undefined_why(sa, sb)
    if not rhos:
        why["within_decile_spearman"] = "no length stratum has 3 sequences with non-constant scores"
    return {"n": n, "spearman": rho, "within_decile_spearman": float(np.mean(rhos)) if rhos else float("nan"),
            "decile_spearman": deciles, "top_k_jaccard": jac, "why": why}


def length_correlation(scores: dict) -> float:
    """Spearman(score, length) of one scoring (NaN when undefined: length_correlation_why says why)."""
    return spearman(scores["score"], scores["length"])


def length_correlation_why(scores: dict) -> str:
    return undefined_why(scores["score"], scores["length"], ("scores", "lengths"))


def source_of(seq_id: str) -> str:
    """The id's prefix before its first '_', '|' or ':' (lower-cased); `other` when it has none."""
    parts = _SEP.split(seq_id, maxsplit=1)
    return parts[0].lower() if len(parts) == 2 and parts[0] else NO_SOURCE


def composition(selection_ids, pool_ids) -> pd.DataFrame:
    """Per source: counts and fractions in the selection and in the pool, and their ratio (enrichment).

    Columns source, n_selection, n_pool, frac_selection, frac_pool, enrichment; one row per source
    of the pool, sorted by source. A selected id that is not in the pool is an error.
    """
    pool = pd.Series([source_of(i) for i in pool_ids], dtype=object)
    missing = set(selection_ids) - set(pool_ids)
    if missing:
        raise BiopruneError(f"stability: {len(missing)} selected ids are not in the scored pool, e.g. {sorted(missing)[0]}")
    sel = pd.Series([source_of(i) for i in selection_ids], dtype=object)
    df = pd.DataFrame({"n_pool": pool.value_counts()}).join(pd.DataFrame({"n_selection": sel.value_counts()}))
    df = df.fillna(0).astype(int).sort_index()
    df.index.name = "source"
    df["frac_selection"] = df["n_selection"] / max(len(sel), 1)
    df["frac_pool"] = df["n_pool"] / max(len(pool), 1)
    df["enrichment"] = df["frac_selection"] / df["frac_pool"]
    return df.reset_index()[["source", "n_selection", "n_pool", "frac_selection", "frac_pool", "enrichment"]]


def comparison_rows(name: str, cmp: dict) -> list[dict]:
    """Long-format rows of one compare_scores result (an undefined value carries its reason in `note`)."""
    why = cmp.get("why", {})
    rows = [dict(comparison=name, statistic="spearman", budget="", stratum="", value=cmp["spearman"],
                 note=why.get("spearman", "")),
            dict(comparison=name, statistic="within_decile_spearman", budget="", stratum="",
                 value=cmp["within_decile_spearman"], note=why.get("within_decile_spearman", ""))]
    rows += [dict(comparison=name, statistic="spearman", budget="", stratum=f"length{k}", value=v,
                  note=why.get(f"length{k}", "")) for k, v in cmp["decile_spearman"].items()]
    rows += [dict(comparison=name, statistic="top_k_jaccard", budget=b, stratum="", value=v,
                  note=why.get(f"top_k_jaccard@{float(b)}", "")) for b, v in cmp["top_k_jaccard"].items()]
    return rows


def composition_rows(name: str, df: pd.DataFrame, budget="") -> list[dict]:
    rows = []
    for r in df.itertuples(index=False):
        rows.append(dict(comparison=f"composition:{name}", statistic="fraction", budget=budget, stratum=r.source,
                         value=r.frac_selection, note=""))
        rows.append(dict(comparison=f"composition:{name}", statistic="count", budget=budget, stratum=r.source,
                         value=r.n_selection, note=""))
    return rows


def write_stability(out_csv: str, rows: list[dict]) -> pd.DataFrame:
    """Write rows as CSV with columns comparison, statistic, budget, stratum, value, note (atomically).

    An undefined value (NaN) is written as `NA` and must carry its reason in `note`."""
    df = pd.DataFrame(rows, columns=COLUMNS)
    df["note"] = ["" if pd.isna(v) else str(v) for v in df["note"]]  # rows given without a note: ""
    undefined = pd.to_numeric(df["value"], errors="coerce").isna()
    if (undefined & (df["note"] == "")).any():
        bad = df[undefined & (df["note"] == "")].iloc[0]
        raise ValueError(f"stability: undefined {bad.comparison} {bad.statistic} {bad.stratum} without a reason")
    with atomic_path(out_csv) as tmp:
        df.to_csv(tmp, index=False, na_rep=NA)
    return df


def read_stability(csv: str) -> pd.DataFrame:
    """stability.csv with `value` as float (NA -> NaN) and every other column as text."""
    df = pd.read_csv(csv, keep_default_na=False, dtype=str)
    if "note" not in df:
        df["note"] = ""
    df["value"] = pd.to_numeric(df["value"].replace(NA, ""), errors="coerce").astype(float)
    return df


def acceptance(df: pd.DataFrame) -> pd.DataFrame:
    """The issue-11 targets found in a stability table: name, value, threshold, kind, passed, note.

    An undefined value (NaN) has passed = None (neither met nor missed) and its reason in note."""
    out = []
    notes = df["note"] if "note" in df else pd.Series("", index=df.index)
    for (comp, stat, budget), (t, kind) in THRESHOLDS.items():
        m = (df.comparison == comp) & (df.statistic == stat) & (df.stratum.fillna("").astype(str) == "")
        if budget is not None:
            m &= pd.to_numeric(df.budget, errors="coerce").sub(budget).abs().lt(1e-12)
        values = pd.to_numeric(df.loc[m, "value"], errors="coerce").astype(float)
        for v, note in zip(values, notes[m].fillna("")):
            ok = None if not np.isfinite(v) else bool(v >= t) if kind == "min" else bool(abs(v) <= t)
            label = f"{comp} {stat}" + (f" @{budget:g}" if budget is not None else "")
            out.append(dict(name=label, value=v, threshold=t, kind=kind, passed=ok, note=str(note)))
    return pd.DataFrame(out, columns=["name", "value", "threshold", "kind", "passed", "note"])


def plot_stability(csv: str, png: str) -> None:
    """Left: the stability statistics as bars (green = target met) with the targets as dashed lines;
    right: the composition by source of the pool and of each selection (stacked fractions)."""
    df = read_stability(csv)
    acc = acceptance(df)
    comp = df[df.comparison.str.startswith("composition:") & (df.statistic == "fraction")]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw={"width_ratios": [1.2, 1], "wspace": 0.6})
    colors = ["lightgrey" if p is None else "tab:green" if p else "tab:red" for p in acc.passed]
    shown = [0.0 if not np.isfinite(v) else abs(v) if k == "absmax" else v for v, k in zip(acc.value, acc.kind)]
    ax.barh(range(len(acc)), shown, color=colors)
    for y, (t, k, v, p, note) in enumerate(zip(acc.threshold, acc.kind, shown, acc.passed, acc.note)):
        ax.plot([t, t], [y - 0.45, y + 0.45], color="black", lw=1.5, ls="--")
        label = f"NA: {note}" if p is None else f"{v:.2f} (target {'<=' if k == 'absmax' else '>='}{t:g})"
        ax.text(max(v, 0) + 0.01, y, label, fontsize=6, va="center")
    ax.set_yticks(range(len(acc)), [n.replace("absmax", "") for n in acc.name], fontsize=7)
    ax.set_xlim(min(0.0, min(shown, default=0.0)), 1.35)
    ax.invert_yaxis()
    ax.set_xlabel("value (Spearman rho, Jaccard index: unitless, -1 to 1; grey = NA, undefined)")
    ax.set_ylabel("statistic", fontsize=7)
    ax.set_title("score stability (|Spearman| for length; dashed = target)", fontsize=8)
    names = sorted(set(comp.comparison), key=lambda c: (c != "composition:pool", c))
    sources = sorted(set(comp.stratum))
    left = np.zeros(len(names))
    cmap = plt.get_cmap("tab10")
    for j, src in enumerate(sources):
        vals = np.array([comp[(comp.comparison == c) & (comp.stratum == src)].value.sum() for c in names])
        bx.barh(range(len(names)), vals, left=left, color=cmap(j % 10), label=src)
        left += vals
    bx.set_yticks(range(len(names)), [c.split(":", 1)[1] for c in names], fontsize=7)
    bx.invert_yaxis()
    bx.set_xlabel("fraction of the set's sequences (0-1)")
    bx.set_ylabel("set (pool or selection)", fontsize=7)
    bx.set_title("composition by source (id prefix)", fontsize=8)
    if sources:
        bx.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format=Path(png).suffix.lstrip(".") or "png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def _selection(path: str) -> tuple[list[str], str, object]:
    """(ids, label, budget) of a selection file."""
    with open_h5(path, "selection", ["id"]) as f:
        return read_str(f["id"]), str(f.attrs.get("strategy", "")), f.attrs.get("budget", "")


def run_stability(primary_scores: str, influence_seed_scores: str, reference_seed_scores: str,
                  selections: dict[str, str], out_csv: str, out_png: str, budgets: list[float]) -> pd.DataFrame:
    """The stability stage: compare the primary scoring with one that differs only in influence.seed and
    one that differs in reference.seed; Spearman(score, length); composition of each selection vs the pool."""
    from bioprune.influence.scores import read_scores

    primary = read_scores(primary_scores)
    rows = comparison_rows("influence_seed", compare_scores(primary, read_scores(influence_seed_scores), budgets))
    rows += comparison_rows("reference_seed", compare_scores(primary, read_scores(reference_seed_scores), budgets))
    rows.append(dict(comparison="length", statistic="spearman_score_length", budget="", stratum="",
                     value=length_correlation(primary), note=length_correlation_why(primary)))
    pool = primary["id"]
    rows += composition_rows("pool", composition(pool, pool))
    for name, path in sorted(selections.items()):
        ids, _, budget = _selection(path)
        rows += composition_rows(name, composition(ids, pool), budget)
    df = write_stability(out_csv, rows)
    plot_stability(out_csv, out_png)
    for r in acceptance(df).itertuples():
        if r.passed is None:
            log.warning("stability: %s = NA (%s)", r.name, r.note)
            continue
        log.info("stability: %s = %.3f (target %s%g: %s)", r.name, r.value, ">=" if r.kind == "min" else "|.|<=",
                 r.threshold, "pass" if r.passed else "FAIL")
    return df
