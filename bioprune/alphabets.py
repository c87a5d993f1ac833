"""Molecule alphabets: sequence normalisation for ingest and fair-esm Alphabet objects for models.

RNA: uppercase, T->U, letters ACGU; IUPAC ambiguity codes (RYSWKMBDHVN) are masked to N or the
sequence is dropped (`corpus.ambiguous`). Protein: the 20 standard residues plus X (unknown);
B, Z, U, O (Asx, Glx, selenocysteine, pyrrolysine) are masked to X or dropped; one trailing '*'
(stop) is removed. Anything else is an error naming the record.
"""
from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # esm (and torch) load only when a model needs an alphabet, not for ingest
    from esm.data import Alphabet

RNA_STANDARD = "ACGU"
RNA_AMBIGUOUS = "RYSWKMBDHVN"
PROTEIN_STANDARD = "ACDEFGHIKLMNPQRSTVWY"
PROTEIN_AMBIGUOUS = "BZUOX"
MOLECULES = ("rna", "protein")


class AlphabetError(ValueError):
    """A sequence holds characters outside the molecule's alphabet."""


def normalise(seq: str, molecule: str, ambiguous: str) -> str | None:
    """Return the canonical sequence, or None when `ambiguous == 'drop'` and it has ambiguity codes."""
    s = seq.upper()
    if molecule == "rna":
        s = s.replace("T", "U")
        standard, amb, mask_char = RNA_STANDARD, RNA_AMBIGUOUS, "N"
    elif molecule == "protein":
        if s.endswith("*"):
            s = s[:-1]
        standard, amb, mask_char = PROTEIN_STANDARD, PROTEIN_AMBIGUOUS, "X"
    else:
        raise ValueError(f"unknown molecule {molecule!r}; expected one of {MOLECULES}")
    bad = set(s) - set(standard) - set(amb)
    if bad:
        raise AlphabetError(f"characters outside the {molecule} alphabet: {''.join(sorted(bad))!r}")
    if any(c in amb for c in s):
        if ambiguous == "drop":
            return None
        if molecule == "protein":
            s = "".join(c if c in standard or c == "X" else mask_char for c in s)
        else:
            s = "".join(c if c in standard else mask_char for c in s)
    return s


@lru_cache(maxsize=None)
def get_alphabet(molecule: str) -> Alphabet:
    """The fair-esm Alphabet for a molecule: ESM-2's for protein, an RNA-FM-style one for RNA."""
    from esm.data import Alphabet

    if molecule == "protein":
        return Alphabet.from_architecture("ESM-1b")
    if molecule == "rna":
        return Alphabet(
            standard_toks=list(RNA_STANDARD + "N"),
            prepend_toks=("<cls>", "<pad>", "<eos>", "<unk>"),
            append_toks=("<mask>",),
            prepend_bos=True,
            append_eos=True,
        )
    raise ValueError(f"unknown molecule {molecule!r}; expected one of {MOLECULES}")


def standard_token_ids(molecule: str) -> list[int]:
    """Token ids of the standard residues, used for the MLM 10% random replacement."""
    a = get_alphabet(molecule)
    letters = RNA_STANDARD if molecule == "rna" else PROTEIN_STANDARD
    return [a.get_idx(c) for c in letters]


@lru_cache(maxsize=None)
def _lookup(molecule: str) -> np.ndarray:
    a = get_alphabet(molecule)
    table = np.full(256, a.unk_idx, dtype=np.int64)
    for tok, idx in a.tok_to_idx.items():
        if len(tok) == 1:
            table[ord(tok)] = idx
    return table


def encode(seq: str, molecule: str) -> np.ndarray:
    """Token ids with BOS (and EOS where the alphabet appends one), like fair-esm's batch converter."""
    a = get_alphabet(molecule)
    body = _lookup(molecule)[np.frombuffer(seq.encode("ascii"), dtype=np.uint8)]
    parts = []
    if a.prepend_bos:
        parts.append([a.cls_idx])
    parts.append(body)
    if a.append_eos:
        parts.append([a.eos_idx])
    return np.concatenate(parts).astype(np.int64)


def alphabet_name(molecule: str) -> str:
    """A short, stable name stored in HDF5 attrs and checkpoints."""
    return {"rna": "bioprune-rna-v1", "protein": "esm2-protein"}[molecule]


def kmer_codes(seq: str, k: int, letters: str) -> np.ndarray:
    """Integer codes (base len(letters), first letter most significant) of the overlapping k-mers of
    `seq` made of `letters` only (case-insensitive); windows with any other character are skipped."""
    lut = np.full(256, -1, dtype=np.int64)
    for i, c in enumerate(letters):
        lut[ord(c)] = i
    x = lut[np.frombuffer(seq.upper().encode("ascii"), np.uint8)]
    if len(x) < k:
        return np.zeros(0, dtype=np.int64)
    win = np.lib.stride_tricks.sliding_window_view(x, k)
    win = win[(win >= 0).all(1)]
    return win @ (len(letters) ** np.arange(k - 1, -1, -1))
