"""Reading shards and held-out files (schema-checked)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import h5py

from bioprune.errors import BiopruneError
from bioprune.h5io import open_h5, read_str

SHARD_DATASETS = ("id", "sequence", "length", "copies")


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


def load_sequences(shard_paths: list[str], ids: set[str] | None) -> tuple[list[str], list[str]]:
    """(ids, sequences) of the chosen ids (all when `ids` is None), in shard order."""
    out_ids, out_seqs = [], []
    for p in shard_paths:
        for i, s in iter_shard(p, batch=65536):  # one block of a shard at a time, not the whole shard
            for a, b in zip(i, s):
                if ids is None or a in ids:
                    out_ids.append(a)
                    out_seqs.append(b)
    return out_ids, out_seqs
