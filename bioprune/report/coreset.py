"""The coreset a user came for: the short report of the `coreset` target (`snakemake coreset`,
`bioprune coreset`), written as markdown to <results>/coreset/summary.md.

It states, with numbers from the run's own files: the pool (ingest.json: records read, kept, cropped,
duplicates collapsed, held out), the leakage gate (leakage/report.csv), the scores (scores.h5: count,
quantiles, Spearman with length, warnings), the stability of the selections (influence/stability.csv)
and the composition of each selection (its TSV: size, lengths against the pool, cropped records,
D_sub members, pool sources), and where the exported files lie.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from bioprune.h5io import atomic_path
from bioprune.influence.stability import NA

log = logging.getLogger(__name__)

# |Spearman(score, length)| above this is docs/SCORES.md's target for a score that tracks length
LENGTH_RHO_TARGET = 0.3


def _fmt(x, digits: int = 3) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if np.isnan(v):
        return "NA"
    return f"{v:.{digits}g}"


def _table(df: pd.DataFrame) -> list[str]:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v) if isinstance(v, float) else str(v) for v in row) + " |")
    return lines


def read_selection_tsv(path: str) -> pd.DataFrame:
    """A selection TSV (bioprune.selection.export) without its `#` header lines."""
    return pd.read_csv(path, sep="\t", comment="#")


def reference_warning(curves: str | None) -> list[str]:
    """A warning when the reference model ended no better than the unigram model (reference curves attrs)."""
    if not curves or not Path(curves).exists():
        return []
    import h5py

    with h5py.File(curves, "r", locking=False) as f:
        final, uni = f.attrs.get("final_loss"), f.attrs.get("unigram_loss")
    if final is None or uni is None or float(final) < float(uni):
        return []
    return [f"the reference model is no better than a unigram model (final training loss {float(final):.3f} >= "
            f"{float(uni):.3f} from residue frequencies alone): its scores carry little beyond composition"]


def write_summary(out: str, ingest_json: str, leakage_csv: str, scores_h5: str, selections: dict[str, str],
                  stability_csv: str | None = None, warnings: list[str] | None = None,
                  reference_curves: str | None = None) -> str:
    """Write the coreset report (module doc) to `out` atomically; returns its text. `selections` maps a
    label (strategy_budget_seedN) to the selection's TSV; its FASTA files lie beside it."""
    from bioprune.leakage.gate import pool_source
    from bioprune.influence.scores import read_scores

    stats = json.loads(Path(ingest_json).read_text())
    sc = read_scores(scores_h5)
    score = np.asarray(sc["score"], dtype=np.float64)
    length = np.asarray(sc["length"], dtype=np.float64)
    rho = float(sc["attrs"].get("spearman_score_length", np.nan))
    warn = list(warnings or []) + reference_warning(reference_curves)
    if np.isfinite(rho) and abs(rho) > LENGTH_RHO_TARGET:
        warn.append(f"the score tracks sequence length: Spearman(score, length) = {rho:.3f}, beyond the target "
                    f"|rho| <= {LENGTH_RHO_TARGET}; a Top-I selection will be biased by length")
    lines = ["# Coreset summary", ""]
    if warn:
        lines += ["## Warnings", ""] + [f"- **warning:** {w}" for w in warn] + [""]
    lines += ["## Pool", "",
              f"- records read: {stats.get('records')}; kept in the pool: {stats.get('kept')}; held out: "
              f"{stats.get('holdout')}",
              f"- exact duplicates collapsed to the first id: {stats.get('duplicate_sequences')}; cropped to "
              f"corpus.max_length: {stats.get('cropped')}; dropped (short / long / ambiguous): "
              f"{stats.get('dropped_short')} / {stats.get('dropped_long')} / {stats.get('dropped_ambiguous')}", ""]
    leak = pd.read_csv(leakage_csv)
    allrow = leak[(leak.eval_set == "all") & (leak.source == "all")]
    if len(allrow):
        r = allrow.iloc[0]
        lines += ["## Leakage gate", "",
                  f"- {int(r.removed)} of {int(r.pool_sequences)} pool sequences removed as near-copies of "
                  f"{int(r.eval_with_hit)} of {int(r.eval_sequences)} evaluation sequences "
                  f"(sets: {', '.join(sorted(set(leak.eval_set) - {'all'})) or 'none'})", ""]
    else:
        lines += ["## Leakage gate", "", "- gate disabled (leakage.enabled: false): nothing was checked", ""]
    q = np.nanquantile(score, [0, 0.5, 0.99, 1]) if len(score) else [np.nan] * 4
    lines += ["## Scores", "",
              f"- {len(score)} sequences scored; score min {_fmt(q[0])}, median {_fmt(q[1])}, 99th percentile "
              f"{_fmt(q[2])}, max {_fmt(q[3])}",
              f"- Spearman(score, length) = {_fmt(rho)} (target |rho| <= {LENGTH_RHO_TARGET}); plots: "
              "plots/score_histogram.png, plots/score_vs_length.png", ""]
    if stability_csv and Path(stability_csv).exists():
        st = pd.read_csv(stability_csv)
        lines += ["## Stability", "", "Agreement of the primary scores with a rescoring under another influence.seed "
                  "and another reference.seed (influence/stability.csv):", ""]
        head = st[st.comparison.isin(["influence_seed", "reference_seed", "length"]) & st.stratum.isna()]
        head = head.assign(value=[NA if pd.isna(v) else v for v in head["value"]])  # undefined: NA, note says why
        lines += _table(head[["comparison", "statistic", "budget", "value", "note"]].fillna("")) + [""]
    pool_len = float(np.mean(length)) if len(length) else np.nan
    pool_sources = pd.Series([pool_source(i) for i in sc["id"]]).value_counts(normalize=True)
    rows = []
    for label, tsv in selections.items():
        t = read_selection_tsv(tsv)
        src = pd.Series([pool_source(str(i)) for i in t["id"]]).value_counts(normalize=True)
        top = ", ".join(f"{k} {v:.0%} (pool {pool_sources.get(k, 0):.0%})" for k, v in src.head(3).items())
        rows.append({"selection": label, "sequences": len(t),
                     "mean length": float(t["length"].mean()) if len(t) else np.nan, "pool mean length": pool_len,
                     "cropped": int(t["cropped"].sum()) if "cropped" in t else "NA",
                     "in D_sub": int(t["in_subset"].sum()) if len(t) else 0, "top sources": top or "-",
                     "files": f"selection/{Path(tsv).stem}.{{tsv,fa,original.fa}}"})
    lines += ["## Selections", "",
              "Composition of each selection (`.original.fa` holds the user's own records, `.fa` the training "
              "sequences; see the `#` lines of each TSV for crop, masking and duplicate collapse):", ""]
    lines += _table(pd.DataFrame(rows)) if rows else ["(none)"]
    text = "\n".join(lines) + "\n"
    with atomic_path(out) as tmp:
        Path(tmp).write_text(text)
    for w in warn:
        log.warning("%s", w)
    return text
