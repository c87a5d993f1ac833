"""FASTA reading: a record-at-a-time reader (iter_fasta) and a fast batch reader for ingest.

The batch reader parses blocks of bytes and normalises a whole batch with one bytes.translate,
falling back to the per-record `normalise` (and its error message) only when a batch holds a
character outside the alphabet, or ambiguity codes under `corpus.ambiguous: drop`.
"""
from __future__ import annotations

import gzip
import os
import re
import zlib
from pathlib import Path
from typing import IO, Iterator, TextIO

from Bio.SeqIO.FastaIO import SimpleFastaParser

from bioprune.alphabets import (PROTEIN_AMBIGUOUS, PROTEIN_STANDARD, RNA_AMBIGUOUS, RNA_STANDARD, AlphabetError,
                         normalise)
from bioprune.errors import BiopruneError
from bioprune.ingest.ranges import record_blocks, records_before, span_blocks

BLOCK = 1 << 22  # bytes read at a time
SEP = b"\x00"


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def check_fasta(path: str | os.PathLike) -> None:
    """Reject a missing, empty, binary or non-FASTA file before any output exists."""
    path = Path(path)
    if not path.exists():
        raise BiopruneError(f"{path}: file not found (config key corpus.path)")
    _open_text(path).close()


def _open_text(path: Path) -> TextIO:
    """Open plain or gzipped FASTA as text; reject binaries and files that are not FASTA."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if not head.strip():
        raise BiopruneError(f"{path}: file is empty")
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as gz:
                head = gz.read(4096)
        except (OSError, EOFError, zlib.error) as e:
            raise BiopruneError(f"{path}: corrupt or truncated gzip ({e})") from None
        if not head.strip():
            raise BiopruneError(f"{path}: file is empty (after gunzip)")
        opener = lambda: gzip.open(path, "rt", encoding="ascii", errors="strict")  # noqa: E731
    else:
        opener = lambda: open(path, "rt", encoding="ascii", errors="strict")  # noqa: E731
    first = head.lstrip()[:1]
    if first != b">":
        kind = "binary data" if b"\x00" in head or any(b > 127 for b in head[:512]) else "text"
        raise BiopruneError(f"{path}: not FASTA (starts with {kind}, expected a '>' header line)")
    return opener()


def iter_fasta(path: str | os.PathLike) -> Iterator[tuple[int, str, str]]:
    """Yield (record number from 1, id, raw sequence) from a FASTA or FASTA.gz, streamed."""
    path = Path(path)
    if not path.exists():
        raise BiopruneError(f"{path}: file not found (config key corpus.path)")
    n = 0
    handle = _open_text(path)
    try:
        for title, seq in SimpleFastaParser(handle):
            n += 1
            seq_id = title.split(None, 1)[0] if title.strip() else ""
            if not seq_id:
                raise BiopruneError(f"{path}: record {n} has an empty header")
            yield n, seq_id, seq.replace(" ", "").replace("\r", "")
    except (EOFError, zlib.error, OSError) as e:
        raise BiopruneError(f"{path}: corrupt or truncated gzip after record {n} ({e})") from None
    except UnicodeDecodeError:
        raise BiopruneError(f"{path}: non-ASCII bytes after record {n}; not a FASTA text file") from None
    finally:
        handle.close()


def _blocks(path: Path) -> Iterator[bytes]:
    """Byte blocks that each end at a record boundary (the last holds the file's tail)."""
    fh: IO[bytes] = gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")
    try:
        yield from record_blocks(iter(lambda: fh.read(BLOCK), b""))
    finally:
        fh.close()


_HEADER = re.compile(rb"^>[^\S\n]*(\S*)", re.M)
_HEADER_LINE = re.compile(rb"^>.*\n?", re.M)


def read_batches(path: str | os.PathLike, span: dict | None = None) -> Iterator[tuple[int, list[bytes], list[bytes]]]:
    """Yield (number of the batch's first record, ids, raw sequences) per block of a FASTA(.gz), or
    of the records of one byte range (`span`, bioprune.ingest.ranges; numbered from 1 within it,
    while error messages name the record's number in the file).

    Same records as iter_fasta (lines before the first '>' skipped, header = first word of the
    title, sequence lines joined without spaces, tabs and CRs); errors name the file and record.
    A block is parsed with a few whole-block operations (a regex for the ids, one substitution and
    one translate for the sequences), not per line.
    """
    path = Path(path)
    n = 0
    first = span is None
    try:
        for block in _blocks(path) if span is None else span_blocks(path, span, BLOCK):
            if first:  # check_fasta made sure the file starts with whitespace, then '>'
                block, first = block.lstrip(), False
            if not block.isascii():  # the block starts with '>': count the headers before the byte
                bad = block[: next(i for i, b in enumerate(block) if b > 127)]
                n += records_before(path, span) + 1 + bad.count(b"\n>")
                raise BiopruneError(f"{path}: non-ASCII bytes after record {n}; "
                                    "not a FASTA text file")
            ids, seqs = _parse_block(block)
            if not all(ids):
                n += records_before(path, span)
                raise BiopruneError(f"{path}: record {n + ids.index(b'') + 1} has an empty header")
            yield n + 1, ids, seqs
            n += len(ids)
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise BiopruneError(f"{path}: corrupt or truncated gzip after record {n} ({e})") from None


def _parse_block(block: bytes) -> tuple[list[bytes], list[bytes]]:
    """(ids, sequences) of a block that starts with '>' and ends at a record boundary."""
    lines = block.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    heads = b"\n".join(lines[0::2])
    if len(lines) % 2 == 0 and heads.count(b"\n>") == len(lines) // 2 - 1 and SEP not in block:
        # fast path, one sequence line per record (every even line is a header; C-level checks only)
        ids = heads[1:].split(b"\n>")
        if any(c in heads for c in (b" ", b"\t", b"\r")):
            ids = [(i.split(None, 1) or [b""])[0] for i in ids]
        seqs = lines[1::2]
        body = b"\n".join(seqs)
        if body.startswith(b">") or b"\n>" in body:  # an odd line is a header too: slow path
            return _parse_slow(block)
        if any(c in body for c in (b" ", b"\t", b"\r")):
            seqs = body.translate(None, b"\r \t").split(b"\n")
        return ids, seqs
    return _parse_slow(block)


def _parse_slow(block: bytes) -> tuple[list[bytes], list[bytes]]:
    ids = _HEADER.findall(block)
    if SEP in block:  # a NUL would split a record: parse record by record (alphabet error later)
        return ids, [rec.partition(b"\n")[2].translate(None, b"\n\r \t") for rec in block[1:].split(b"\n>")]
    return ids, _HEADER_LINE.sub(SEP, block).translate(None, b"\n\r \t").split(SEP)[1:]


def _tables(molecule: str) -> tuple[bytes, bytes, bytes]:
    """(case/T->U translation, standard letters, ambiguity letters) of a molecule, as bytes."""
    lower = bytes(range(ord("a"), ord("z") + 1))
    upper = lower.upper()
    if molecule == "rna":
        return bytes.maketrans(lower + b"T", upper.replace(b"T", b"U") + b"U"), RNA_STANDARD.encode(), RNA_AMBIGUOUS.encode()
    if molecule == "protein":
        return bytes.maketrans(lower, upper), PROTEIN_STANDARD.encode(), PROTEIN_AMBIGUOUS.encode()
    raise ValueError(f"unknown molecule {molecule!r}")


def normalise_batch(seqs: list[bytes], molecule: str, ambiguous: str) -> tuple[list[bytes], list[bool]]:
    """Canonical sequences of a batch (like alphabets.normalise) and a drop flag per record.

    A dropped record (ambiguity codes under `drop`) keeps its case-normalised sequence, so its id
    check still compares sequences. Raises AlphabetError(index, message) on a bad character.
    """
    table, standard, amb = _tables(molecule)
    raw = seqs  # the records as read: the per-record check below strips the one stop codon itself
    if molecule == "protein":
        seqs = [s[:-1] if s.endswith(b"*") else s for s in seqs]
    big = SEP.join(seqs).translate(table)
    extra = big.translate(None, standard + SEP)
    if not extra:
        return big.split(SEP), [False] * len(seqs)
    if extra.translate(None, amb) or big.count(SEP) != len(seqs) - 1:  # outside the alphabet: name the record
        for i, s in enumerate(raw):
            try:
                normalise(s.decode(), molecule, "mask")
            except AlphabetError as e:
                raise _BatchAlphabetError(i, str(e)) from None
    out = big.split(SEP)
    if ambiguous == "drop":
        drop = [bool(s.translate(None, standard)) for s in out]
        return out, drop
    mask = b"X" if molecule == "protein" else b"N"  # X and N are themselves in the ambiguity set
    return big.translate(bytes.maketrans(amb, mask * len(amb))).split(SEP), [False] * len(seqs)


class _BatchAlphabetError(AlphabetError):
    def __init__(self, index: int, message: str):
        super().__init__(message)
        self.index = index
