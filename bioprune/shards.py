"""Ingest: stream FASTA(.gz) into HDF5 shards of the training pool plus a held-out split.

Streaming keeps memory to one buffer per shard plus a digest and an id per unique record (used
to collapse exact duplicates and to catch duplicate ids), never the sequences themselves.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, TextIO

import h5py
import numpy as np
from Bio.SeqIO.FastaIO import SimpleFastaParser

from .alphabets import AlphabetError, alphabet_name, normalise
from .errors import BiopruneError
from .h5io import STR, atomic_path, open_h5, read_str, sha256_file, write_str

log = logging.getLogger(__name__)
SHARD_DATASETS = ("id", "sequence", "length", "copies")


@dataclass
class IngestOptions:
    """Config values that shape the shards (all recorded in the shard attrs)."""

    molecule: str = "rna"
    ambiguous: str = "mask"
    min_length: int = 1
    max_length: int = 1024
    length_policy: str = "crop"
    holdout_fraction: float = 0.02

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class IngestStats:
    records: int = 0
    kept: int = 0
    holdout: int = 0
    duplicate_sequences: int = 0
    duplicate_ids_same_sequence: int = 0
    dropped_ambiguous: int = 0
    dropped_short: int = 0
    dropped_long: int = 0
    cropped: int = 0
    per_shard: list = field(default_factory=list)


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


class _ShardWriter:
    """Append records to one HDF5 file in chunks (resizable datasets), under a temporary name."""

    def __init__(self, path: Path, tmp: Path, attrs: dict, chunk: int = 8192):
        self.path, self.tmp, self.chunk = path, tmp, chunk
        self.f = h5py.File(tmp, "w")
        for k, v in attrs.items():
            self.f.attrs[k] = v
        self.f.create_dataset("id", shape=(0,), maxshape=(None,), dtype=STR, chunks=(chunk,))
        self.f.create_dataset("sequence", shape=(0,), maxshape=(None,), dtype=STR, chunks=(chunk,))
        self.f.create_dataset("length", shape=(0,), maxshape=(None,), dtype=np.int32, chunks=(chunk,))
        self.buf: list[tuple[str, str]] = []
        self.digests: list[bytes] = []

    def add(self, seq_id: str, seq: str, digest: bytes) -> None:
        self.buf.append((seq_id, seq))
        self.digests.append(digest)
        if len(self.buf) >= self.chunk:
            self.flush()

    def flush(self) -> None:
        if not self.buf:
            return
        n0 = self.f["id"].shape[0]
        n1 = n0 + len(self.buf)
        for name in ("id", "sequence", "length"):
            self.f[name].resize((n1,))
        self.f["id"][n0:n1] = np.array([b[0] for b in self.buf], dtype=object)
        self.f["sequence"][n0:n1] = np.array([b[1] for b in self.buf], dtype=object)
        self.f["length"][n0:n1] = np.array([len(b[1]) for b in self.buf], dtype=np.int32)
        self.buf = []

    def close(self, counts: dict[bytes, int]) -> int:
        self.flush()
        copies = np.array([counts[d] for d in self.digests], dtype=np.int32)
        self.f.create_dataset("copies", data=copies)
        n = int(self.f["id"].shape[0])
        self.f.attrs["n_records"] = n
        self.f.close()
        return n


def ingest(
    fasta: str | os.PathLike,
    shard_paths: list[str],
    holdout_path: str,
    opts: IngestOptions,
    stats_path: str | None = None,
) -> IngestStats:
    """Validate, normalise, dedupe and length-filter a FASTA; write pool shards and a held-out file.

    Every output is written under a temporary name and renamed only when the whole input was read
    without error, so a failure leaves no shard behind.
    """
    fasta = Path(fasta)
    if opts.length_policy not in ("crop", "drop"):
        raise BiopruneError(f"config key corpus.length_policy: expected crop or drop, got {opts.length_policy!r}")
    if not fasta.exists():
        raise BiopruneError(f"{fasta}: file not found (config key corpus.path)")
    _open_text(fasta).close()  # empty, binary or not FASTA: fail before any output (or its folder) exists
    n_shards = len(shard_paths)
    source_sha = sha256_file(fasta)
    base = {
        "kind": "shards",
        "schema_version": 1,
        "molecule": opts.molecule,
        "alphabet": alphabet_name(opts.molecule),
        "source_file": fasta.name,
        "source_sha256": source_sha,
        "ingest_config": json.dumps(opts.as_dict(), sort_keys=True),
        "n_shards": n_shards,
    }
    stats = IngestStats()
    with contextlib.ExitStack() as stack:
        tmps = [stack.enter_context(atomic_path(p)) for p in [*shard_paths, holdout_path]]
        writers = [
            _ShardWriter(Path(p), t, {**base, "shard_index": i + 1})
            for i, (p, t) in enumerate(zip(shard_paths, tmps[:-1]))
        ]
        hold = _ShardWriter(Path(holdout_path), tmps[-1], {**base, "kind": "holdout", "shard_index": 0})
        try:
            counts = _ingest_records(fasta, opts, writers, hold, stats)
        except BaseException:
            for w in [*writers, hold]:
                with contextlib.suppress(Exception):
                    w.f.close()
            raise
        stats.per_shard = [w.close(counts) for w in writers]
        stats.holdout = hold.close(counts)
        if stats.kept == 0:
            raise BiopruneError(
                f"{fasta}: no sequence survived filtering ({stats.records} records; "
                f"{stats.dropped_short} shorter than corpus.min_length={opts.min_length}, "
                f"{stats.dropped_long} longer than corpus.max_length={opts.max_length}, "
                f"{stats.dropped_ambiguous} dropped for ambiguity codes)"
            )
        if stats_path:
            with atomic_path(stats_path) as t:
                Path(t).write_text(json.dumps(stats.__dict__, indent=2) + "\n")
    log.info("ingest %s: %s", fasta, json.dumps(stats.__dict__))
    return stats


def _ingest_records(fasta: Path, opts: IngestOptions, writers, hold, stats: IngestStats) -> dict[bytes, int]:
    """Route every record to its shard or the held-out file; return copies per sequence digest."""
    from .hashing import in_holdout, shard_of

    seen_ids: dict[str, tuple[int, bytes]] = {}
    counts: dict[bytes, int] = {}
    for n, seq_id, raw in iter_fasta(fasta):
        stats.records += 1
        if n % 100000 == 0:
            log.info("ingest: %d records read, %d kept", n, stats.kept)
        try:
            seq = normalise(raw, opts.molecule, opts.ambiguous)
        except AlphabetError as e:
            raise BiopruneError(f"{fasta}: record {n} (id {seq_id}): {e}") from None
        digest = hashlib.blake2b((seq or raw.upper()).encode(), digest_size=16).digest()
        if seq_id in seen_ids:
            first_n, first_digest = seen_ids[seq_id]
            if first_digest != digest:
                raise BiopruneError(
                    f"{fasta}: record {n} (id {seq_id}) reuses the id of record {first_n} with a different sequence"
                )
            stats.duplicate_ids_same_sequence += 1
            continue
        seen_ids[seq_id] = (n, digest)
        if seq is None:
            stats.dropped_ambiguous += 1
            continue
        if len(seq) < opts.min_length:
            stats.dropped_short += 1
            continue
        if len(seq) > opts.max_length:
            if opts.length_policy == "drop":
                stats.dropped_long += 1
                continue
            seq = seq[: opts.max_length]
            stats.cropped += 1
            digest = hashlib.blake2b(seq.encode(), digest_size=16).digest()
        if digest in counts:
            counts[digest] += 1
            stats.duplicate_sequences += 1
            continue
        counts[digest] = 1
        stats.kept += 1
        if in_holdout(seq_id, opts.holdout_fraction):
            hold.add(seq_id, seq, digest)
        else:
            writers[shard_of(seq_id, len(writers))].add(seq_id, seq, digest)
    return counts


def iter_shard(path: str | os.PathLike, batch: int = 4096) -> Iterator[tuple[list[str], list[str]]]:
    """Yield (ids, sequences) blocks from a shard or holdout file, without loading it whole."""
    with _open_any(path) as f:
        n = f["id"].shape[0]
        for i in range(0, n, batch):
            ids = [s for s in f["id"].asstr()[i : i + batch]]
            seqs = [s for s in f["sequence"].asstr()[i : i + batch]]
            yield ids, seqs


def _open_any(path):
    if not Path(path).exists():
        raise BiopruneError(f"{path}: file not found")
    try:
        with h5py.File(path, "r", locking=False) as f:
            kind = f.attrs.get("kind")
    except OSError as e:  # e.g. a FASTA passed where a shard belongs
        raise BiopruneError(f"{path}: not a readable HDF5 file ({e})") from None
    if kind not in ("shards", "holdout"):
        raise BiopruneError(f"{path}: expected a bioprune shard or holdout file, found kind={kind!r}")
    return open_h5(path, kind, SHARD_DATASETS)


def read_shard(path: str | os.PathLike) -> tuple[list[str], list[str], str]:
    """Read a whole shard: (ids, sequences, molecule)."""
    with _open_any(path) as f:
        return read_str(f["id"]), read_str(f["sequence"]), str(f.attrs["molecule"])


def shard_molecule(path: str | os.PathLike) -> str:
    """The molecule recorded in a shard's attrs."""
    with _open_any(path) as f:
        return str(f.attrs["molecule"])
