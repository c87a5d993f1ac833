"""Selections for the user's own trainer: per selection, beside the training FASTA (`.fa`, the normalised
sequences the workflow trains on), a FASTA of the user's ORIGINAL records (`.original.fa`) and a TSV of
the chosen ids with their scores.

`<strategy>_<budget>_seed<seed>.original.fa`: for each chosen id, the record as it stands in the corpus
file(s): full header line (id and description) and the full, unnormalised sequence (not cropped, not
masked, case kept; written on one line). Records are in INPUT order (corpus.path order, then record order
in the file), found by id in one streaming pass over the corpus files (memory O(selection); the pass
stops at the last chosen record, but each select job makes its own pass: on a very large corpus, this
export costs one read of the corpus per selection). The id is
the first id that carried the sequence (exact duplicates are collapsed to it at ingest), so its record
is the first with that id.

`<strategy>_<budget>_seed<seed>.tsv`, tab-separated; `#` comment lines first (how the training sequences
differ from the records: crop, masking, duplicate collapse), then one header line and one row per
chosen id in the training FASTA's order:
  id               sequence id (the FASTA header, up to the first whitespace)
  rank             1-based rank by influence score in the whole pool (1 = highest score)
  score            the influence score used for selection (scores.h5 `score`, after influence.normalize)
  loss             the reference model's scoring loss on the sequence
  grad_sqnorm      squared norm of its per-sample gradient
  length           residues of the training sequence (after crop)
  in_subset        1 when the sequence is in D_sub (the reference model's training subset)
  original_length  residues of the original record in the corpus file (a trailing * not counted; NA when
                   no corpus file was given)
  cropped          1 when the training sequence is shorter than the original record (corpus.max_length)
Read it with `pandas.read_csv(tsv, sep="\\t", comment="#")`. See docs/OUTPUTS.md "Using a selection in your own
trainer".
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bioprune.errors import BiopruneError
from bioprune.h5io import atomic_path

if TYPE_CHECKING:
    from bioprune.ingest import IngestOptions

COLUMNS = ("id", "rank", "score", "loss", "grad_sqnorm", "length", "in_subset", "original_length", "cropped")


def original_fasta_path(fasta_path: str) -> str:
    """`x.fa` -> `x.original.fa` (the user's records beside the training FASTA)."""
    return os.path.splitext(fasta_path)[0] + ".original.fa"


def write_original_records(files: list[str], chosen: list[str], out: str) -> dict[str, int]:
    """Write the original records of the ids `chosen` (module doc), in input order; returns id ->
    original length (residues, whitespace removed). An id not found in the files is an error naming it."""
    from Bio.SeqIO.FastaIO import SimpleFastaParser

    from bioprune.ingest.fasta import _open_text

    want = set(chosen)
    found: dict[str, int] = {}
    with atomic_path(out) as tmp, open(tmp, "w") as fh:
        for f in files:
            if len(found) == len(want):
                break
            handle = _open_text(Path(f))
            try:
                for title, seq in SimpleFastaParser(handle):
                    seq_id = title.split(None, 1)[0] if title.strip() else ""
                    if seq_id in want and seq_id not in found:
                        seq = "".join(seq.split())
                        found[seq_id] = len(seq) - seq.endswith("*")  # a stop codon is not a residue
                        fh.write(f">{title}\n{seq}\n")
                        if len(found) == len(want):
                            break  # every chosen id found: the rest of the corpus is not read
            finally:
                handle.close()
        missing = [i for i in chosen if i not in found]
        if missing:
            raise BiopruneError(f"selection id {missing[0]} ({len(missing)} in all) is in no corpus file "
                                f"({', '.join(files)}); the shards were built from other files (config key "
                                "corpus.path): re-run ingest")
    return found


def header_lines(ingest: IngestOptions | None, original: str | None) -> list[str]:
    """The TSV's `#` lines: how the training FASTA differs from the user's records."""
    if not ingest:
        return ["# training sequences as stored in the shards (no ingest settings recorded)"]
    mol, amb, max_length = ingest.molecule, ingest.ambiguous, ingest.max_length
    rules = ("RNA: upper-cased, T written as U" if mol == "rna" else "protein: upper-cased, one trailing * removed")
    mask = ("ambiguity codes masked to " + ("N" if mol == "rna" else "X") if amb == "mask"
            else "records with ambiguity codes dropped")
    crop = (f"sequences longer than corpus.max_length = {max_length} cropped to their first "
            f"{max_length} residues (cropped = 1)" if ingest.length_policy == "crop"
            else f"sequences longer than corpus.max_length = {max_length} dropped (corpus.length_policy: drop)")
    lines = [f"# training FASTA: corpus records normalised ({rules}); {mask} (corpus.ambiguous: {amb})",
             f"# crop: {crop}; shorter than corpus.min_length = {ingest.min_length} dropped",
             "# duplicates: exact duplicate sequences (after normalisation and crop) collapsed to the first id "
             "(corpus.path order, then record order)"]
    if original:
        lines.append(f"# original records: {Path(original).name}, full headers and unnormalised sequences, "
                     "in input order (corpus.path order, then record order)")
    return lines


def write_selection_table(path: str, chosen: list[str], scores: dict, original_length: dict[str, int] | None = None,
                          ingest: IngestOptions | None = None, original: str | None = None) -> None:
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
            fh.write("".join(line + "\n" for line in header_lines(ingest, original)))
            fh.write("\t".join(COLUMNS) + "\n")
            for i in chosen:
                k = pos[i]
                vals = "\t".join(repr(float(cols[c][k])) for c in ("score", "loss", "grad_sqnorm"))
                length = int(cols["length"][k])
                if original_length is not None and i in original_length:
                    orig = original_length[i]
                    tail = f"{orig}\t{int(length < orig)}"
                else:
                    tail = "NA\tNA"
                fh.write(f"{i}\t{int(rank[k])}\t{vals}\t{length}\t{int(sub[k])}\t{tail}\n")
