"""Resumable storage of one shard's sketches: finished chunks saved atomically in `.NAME.chunks/`
next to the output, then assembled (rows back in shard order) into the `sketches` file.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np

from bioprune.h5io import STR, atomic_h5, open_h5
from bioprune.hashing import in_subset
from bioprune.ingest import iter_shard

CHUNK_SEQS = 512  # sequences per resumable chunk (whole batches); does not change any result


def chunks(batches: list[np.ndarray]) -> list[list[np.ndarray]]:
    """The shard's batches (the same length-sorted batches as a whole-shard pass) grouped into chunks
    of about CHUNK_SEQS sequences, in order."""
    out: list[list[np.ndarray]] = []
    size = CHUNK_SEQS
    for b in batches:
        if size >= CHUNK_SEQS:
            out.append([])
            size = 0
        out[-1].append(b)
        size += len(b)
    return out


def chunk_dir(out_path: str, signature: dict) -> Path:
    """Folder of finished chunks next to the output; emptied when it holds another run's chunks."""
    d = Path(out_path).parent / f".{Path(out_path).name}.chunks"
    sig = json.dumps(signature, sort_keys=True, default=str)
    if d.exists() and (not (d / "signature.json").exists() or (d / "signature.json").read_text() != sig):
        shutil.rmtree(d)
    if not d.exists():
        d.mkdir(parents=True)
        (d / "signature.json").write_text(sig)
    return d


def shard_kind(path: str) -> str:
    with h5py.File(path, "r", locking=False) as f:
        return str(f.attrs.get("kind", "shards"))


def assemble(shard_path: str, work: Path, n_chunks: int, out_path: str, attrs: dict, subset: tuple[float, int],
             n: int, dim: int | None) -> None:
    """Write the output from the finished chunks (rows back in shard order) and the shard's ids,
    lengths and D_sub flags, block by block."""
    with atomic_h5(out_path, "sketches", **attrs) as f:
        cols = {k: f.create_dataset(k, shape=(n,), dtype=np.float64) for k in ("loss", "grad_sqnorm")}
        if dim is None:
            cols["score"] = f.create_dataset("score", shape=(n,), dtype=np.float64)
        else:
            cols["sketch"] = f.create_dataset("sketch", shape=(n, dim), dtype=np.float32, chunks=(min(n, 4096) or 1, dim))
        for c in range(n_chunks):
            with open_h5(work / f"{c:06d}.h5", "sketch_chunk", ["rows"]) as g:
                rows = g["rows"][()]
                for k, ds in cols.items():
                    ds[rows] = g[k][()]
        ids = f.create_dataset("id", shape=(n,), dtype=STR)
        length = f.create_dataset("length", shape=(n,), dtype=np.int32)
        in_sub = f.create_dataset("in_subset", shape=(n,), dtype=bool)
        at = 0
        for b_ids, b_seqs in iter_shard(shard_path, batch=65536):
            k = len(b_ids)
            ids[at:at + k] = np.array(b_ids, dtype=object)
            length[at:at + k] = np.fromiter(map(len, b_seqs), dtype=np.int32, count=k)
            in_sub[at:at + k] = [in_subset(i, *subset) for i in b_ids]
            at += k
