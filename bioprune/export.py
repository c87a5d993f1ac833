"""Selections for the user's own trainer: a TSV of the chosen ids and their scores beside the selection FASTA.

`<strategy>_<budget>_seed<seed>.tsv`, tab-separated, one header line, rows in the selection's order
(the FASTA's order):
  id           sequence id (the FASTA header, up to the first whitespace)
  rank         1-based rank by influence score in the whole pool (1 = highest score)
  score        the influence score used for selection (scores.h5 `score`, after influence.normalize)
  loss         the reference model's scoring loss on the sequence
  grad_sqnorm  squared norm of its per-sample gradient
  length       residues
  in_subset    1 when the sequence is in D_sub (the reference model's training subset)
See README "Using a selection" for fair-esm, Hugging Face Trainer and plain-Python recipes.
"""
from __future__ import annotations

import numpy as np

from .h5io import atomic_path

COLUMNS = ("id", "rank", "score", "loss", "grad_sqnorm", "length", "in_subset")


def write_selection_table(path: str, chosen: list[str], scores: dict) -> None:
    """Write the TSV (module doc) for the ids `chosen`, taking their values from read_scores' dict."""
    pos = {i: k for k, i in enumerate(scores["id"])}
    order = np.argsort(-np.asarray(scores["score"], dtype=np.float64), kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(1, len(order) + 1)
    n = len(scores["id"])
    cols = {k: np.asarray(scores.get(k, np.full(n, np.nan))) for k in ("score", "loss", "grad_sqnorm", "length")}
    sub = np.asarray(scores.get("in_subset", np.zeros(n, dtype=bool)), dtype=bool)
    with atomic_path(path) as tmp:
        with open(tmp, "w") as fh:
            fh.write("\t".join(COLUMNS) + "\n")
            for i in chosen:
                k = pos[i]
                vals = "\t".join(repr(float(cols[c][k])) for c in ("score", "loss", "grad_sqnorm"))
                fh.write(f"{i}\t{int(rank[k])}\t{vals}\t{int(cols['length'][k])}\t{int(sub[k])}\n")
