"""Checks of a resolved config against the machine and the input files, made before the first job
(rules/common.smk at DAG build, `bioprune coreset`): each stops with one line naming the key or file.

- corpus.path: every file exists (a glob that matches nothing is already an error of corpus_files);
- corpus.molecule: the residues of the first records of each file (up to SAMPLE_BYTES) agree with the
  declared molecule: >= NUCLEOTIDE_FRACTION of A, C, G, T, U, N is nucleic acid, below it protein;
  `corpus.molecule_check: false` skips this (a protein corpus that really is that poor in other residues);
- leakage: the gate has an evaluation set of the corpus's molecule to check against (resolve.check_leakage_sets);
- device: cuda needs a visible CUDA device where the jobs run (checked only for local execution: on a
  cluster the submit host usually has no GPU).
"""
from __future__ import annotations

import gzip
from pathlib import Path

from bioprune.errors import BiopruneError

NUCLEOTIDE_FRACTION = 0.9
SAMPLE_BYTES = 1 << 20
NUCLEOTIDES = frozenset("ACGTUN")


def nucleotide_fraction(path: str, sample_bytes: int = SAMPLE_BYTES) -> tuple[float, int]:
    """(fraction of A, C, G, T, U, N among the letters of sequence lines, letters counted) in the file's first
    `sample_bytes` (decompressed) bytes; (nan, 0) when it holds no sequence letter."""
    p = Path(path)
    with open(p, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    opener = gzip.open if gz else open
    try:
        with opener(p, "rb") as fh:
            head = fh.read(sample_bytes)
    except (OSError, EOFError):
        return float("nan"), 0  # ingest names a corrupt file
    lines = head.split(b"\n")
    if len(head) == sample_bytes:
        lines = lines[:-1]  # a partial last line
    letters = b"".join(line.strip() for line in lines if not line.startswith(b">")).upper()
    letters = bytes(c for c in letters if 65 <= c <= 90)
    if not letters:
        return float("nan"), 0
    nuc = sum(letters.count(c.encode()) for c in NUCLEOTIDES)
    return nuc / len(letters), len(letters)


def check_corpus(config: dict, source: str = "config") -> None:
    """corpus.path files exist; corpus.molecule agrees with their residues (module doc)."""
    from bioprune.config.params import corpus_files

    c = config["corpus"]
    for f in corpus_files(config):
        if not Path(f).is_file():
            raise BiopruneError(f"{source}: key corpus.path: {f}: file not found")
        if not c.get("molecule_check", True):
            continue
        frac, n = nucleotide_fraction(f)
        if n < 50:
            continue
        if c["molecule"] == "protein" and frac >= NUCLEOTIDE_FRACTION:
            raise BiopruneError(
                f"{source}: key corpus.molecule is protein, but {frac:.0%} of the first {n} residues of {f} are "
                "A, C, G, T/U or N: this looks like RNA/DNA. Set corpus.molecule: rna, or corpus.molecule_check: "
                "false if it really is protein")
        if c["molecule"] == "rna" and frac < NUCLEOTIDE_FRACTION:
            raise BiopruneError(
                f"{source}: key corpus.molecule is rna, but only {frac:.0%} of the first {n} residues of {f} are "
                "A, C, G, T/U or N: this looks like protein. Set corpus.molecule: protein, or "
                "corpus.molecule_check: false if it really is RNA")


def check_device(config: dict, source: str = "config") -> None:
    """device: cuda with no visible CUDA device stops here, not in the first GPU job."""
    if config["device"] != "cuda":
        return
    try:
        import torch

        ok = torch.cuda.is_available()
    except ImportError:
        ok = False
    if not ok:
        raise BiopruneError(f"{source}: key device is cuda, but no CUDA device is visible on this machine "
                            "(torch.cuda.is_available() is False): set device: auto or cpu, or run on a GPU node")


def preflight(config: dict, source: str = "config", local: bool = True) -> None:
    """All checks before the first job; `local` = the jobs run on this machine (device check)."""
    from bioprune.config.resolve import check_leakage_sets

    check_corpus(config, source)
    check_leakage_sets(config, source)
    if local:
        check_device(config, source)
