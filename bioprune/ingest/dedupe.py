"""Ingest, gather step: collect one destination's records from every part file, collapse exact
duplicates, and write the shard; and the duplicate-id check of one id bucket.

Parts are read in input-file order (a file's byte ranges in order) and, within a part, in record
order, so "first occurrence" is global (file list order, then record number) and a shard is the
same whatever the number of route jobs. Memory per job: about 60 bytes per record of its own shard (numeric arrays, no Python object
per record) plus one block of strings being copied, so it is bounded by the shard count chosen.
"""
from __future__ import annotations

import json
import logging
from operator import itemgetter

import h5py
import numpy as np

from bioprune.errors import BiopruneError
from bioprune.h5io import STR, SCHEMA_VERSION, atomic_path
from bioprune.ingest.fasta import read_batches
from bioprune.ingest.route import FATE_STATS

log = logging.getLogger(__name__)
COPY_ROWS = 1 << 14


def _void(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    return a.view(np.dtype((np.void, a.shape[1]))).reshape(-1)


def _load(parts: list[str], group: str, names: tuple[str, ...]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Concatenate numeric columns of one group over the parts; also the part index of each row.
    `rec` becomes the record number in the input file (a byte range's part numbers from 1)."""
    cols: dict[str, list[np.ndarray]] = {k: [] for k in names}
    owner = []
    base = record_offsets(parts) if "rec" in names else [0] * len(parts)
    for p, path in enumerate(parts):
        with h5py.File(path, "r", locking=False) as f:
            if group not in f:
                continue
            for k in names:
                cols[k].append(f[group][k][()] + base[p] if k == "rec" else f[group][k][()])
            owner.append(np.full(len(cols[names[0]][-1]), p, dtype=np.int32))
    if not owner:
        empty = {"digest": np.zeros((0, 16), np.uint8), "idhash": np.zeros((0, 16), np.uint8)}
        return {k: empty.get(k, np.zeros(0, np.int64)) for k in names}, np.zeros(0, np.int32)
    return {k: np.concatenate(v) for k, v in cols.items()}, np.concatenate(owner)


def record_offsets(parts: list[str]) -> list[int]:
    """Per part, the records of its input file before its byte range (0 for a whole file), from the
    record counts of the file's earlier ranges, which must precede it in `parts`, all of them, in order."""
    out, prev = [], None  # prev: (path, file_index, span_index, n_spans, offset + records)
    for path in parts:
        with h5py.File(path, "r", locking=False) as f:
            a = f.attrs
            cur = (str(a["source_path"]), int(a["file_index"]), int(a.get("span_index", 0)), int(a.get("n_spans", 1)))
            records = int(json.loads(a["route_stats"])["records"])
        if prev and prev[2] + 1 < prev[3] and (cur[2] == 0 or prev[:2] != cur[:2]):
            raise BiopruneError(f"{path}: follows byte range {prev[2] + 1} of {prev[3]} of {prev[0]} in the ingest "
                                "parts; its later ranges are missing, re-run ingest")
        if cur[2] and (not prev or prev[:2] != cur[:2] or prev[2] != cur[2] - 1):
            raise BiopruneError(f"{path}: byte range {cur[2] + 1} of {cur[3]} of {cur[0]} does not follow range "
                                f"{cur[2]} in the ingest parts; re-run ingest")
        out.append(prev[4] if cur[2] else 0)
        prev = (*cur, out[-1] + records)
    if prev and prev[2] + 1 < prev[3]:
        raise BiopruneError(f"{prev[0]}: only {prev[2] + 1} of its {prev[3]} byte ranges in the ingest parts; re-run ingest")
    return out


def _part_attr(path: str, key: str):
    with h5py.File(path, "r", locking=False) as f:
        return f.attrs[key]


def _id_at(path: str, rec: int) -> str:
    """The id of record `rec` of an input file (error path only: re-reads the file up to it)."""
    for first, ids, _ in read_batches(path):
        if first + len(ids) > rec:
            return ids[rec - first].decode()
    return "?"


def check_ids(parts: list[str], bucket: int) -> dict:
    """Duplicate-id check of one id bucket over all parts; error naming both places when one id
    has two different sequences. Returns counts of repeated (id, sequence) records by fate."""
    cols, owner = _load(parts, f"i{bucket}", ("idhash", "digest", "rec", "fate"))
    if not len(owner):
        return {"duplicate_ids_same_sequence": 0, **{v: 0 for v in FATE_STATS.values()}}
    _, first, inverse = np.unique(_void(cols["idhash"]), return_index=True, return_inverse=True)
    first_of = first[inverse.reshape(-1)]
    conflict = (cols["digest"] != cols["digest"][first_of]).any(1)
    if conflict.any():
        j = int(np.flatnonzero(conflict)[0])
        i = int(first_of[j])
        pj, pi = (str(_part_attr(parts[owner[x]], "source_path")) for x in (j, i))
        rj, ri = int(cols["rec"][j]), int(cols["rec"][i])
        where = f"record {ri}" if pi == pj else f"record {ri} of {pi}"
        raise BiopruneError(f"{pj}: record {rj} (id {_id_at(pj, rj)}) reuses the id of {where} with a different sequence")
    repeat = np.arange(len(first_of)) != first_of
    by_fate = np.bincount(cols["fate"][repeat], minlength=5)
    return {"duplicate_ids_same_sequence": int(repeat.sum()), **{v: int(by_fate[k]) for k, v in FATE_STATS.items()}}


def gather(parts: list[str], dest: int, out_path: str, attrs: dict, id_check: dict | None = None) -> dict:
    """Write destination `dest`'s shard (or held-out file): the first record of each distinct
    sequence, in global order, with `copies` = number of distinct ids that carried the sequence."""
    group = f"r{dest}"
    cols, owner = _load(parts, group, ("digest", "idhash", "rec"))
    n = len(owner)
    if n:
        pairs = _void(np.concatenate([cols["digest"], cols["idhash"]], axis=1))
        distinct = np.sort(np.unique(pairs, return_index=True)[1])  # one row per (sequence, id)
        _, first, counts = np.unique(_void(cols["digest"][distinct]), return_index=True, return_counts=True)
        order = np.argsort(distinct[first])
        keep, copies = distinct[first][order], counts[order].astype(np.int32)
        del pairs
    else:
        distinct = keep = np.zeros(0, np.int64)
        copies = np.zeros(0, np.int32)
    stats = {"rows": n, "kept": len(keep), "duplicate_sequences": int(len(distinct) - len(keep)),
             **(id_check or {})}
    with atomic_path(out_path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs.update({**attrs, "schema_version": SCHEMA_VERSION})
        ds = {k: f.create_dataset(k, shape=(0,), maxshape=(None,), dtype=STR, chunks=(8192,)) for k in ("id", "sequence")}
        ln = f.create_dataset("length", shape=(0,), maxshape=(None,), dtype=np.int32, chunks=(8192,))
        offsets = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=len(parts)))])
        written = 0
        for p, path in enumerate(parts):
            rows = keep[(keep >= offsets[p]) & (keep < offsets[p + 1])] - offsets[p]
            if len(rows):
                written = _copy_rows(path, group, rows, ds, ln, written)
        f.create_dataset("copies", data=copies)
        f.attrs["n_records"] = written
        f.attrs["ingest_stats"] = json.dumps(stats, sort_keys=True)
    return stats


def _copy_rows(path: str, group: str, rows: np.ndarray, ds: dict, ln: h5py.Dataset, written: int) -> int:
    """Append the strings of `rows` (sorted local row numbers) of one part group to the shard.

    Each block of rows is read as one contiguous slice of the blob and split at the newlines; the
    strings go to HDF5 as bytes (stored as UTF-8, read back as str), which h5py writes fastest.
    """
    with h5py.File(path, "r", locking=False) as f:
        g = f[group]
        ends = {k: g[f"{k}_end"][()] for k in ("seq", "id")}
        for a in range(0, len(rows), COPY_ROWS):
            block = rows[a:a + COPY_ROWS]
            r0, r1 = int(block[0]), int(block[-1]) + 1
            local = (block - r0).tolist()
            out = {}
            for k, name in (("seq", "sequence"), ("id", "id")):
                e = ends[k]
                lo = int(e[r0 - 1]) if r0 else 0
                strings = g[f"{k}_blob"][lo:int(e[r1 - 1])].tobytes().split(b"\n")
                picked = [strings[local[0]]] if len(local) == 1 else itemgetter(*local)(strings)
                out[name] = np.array(picked, dtype=object)
            m = written + len(block)
            for name, d in ds.items():
                d.resize((m,))
                d[written:m] = out[name]
            ln.resize((m,))
            ln[written:m] = np.fromiter(map(len, out["sequence"]), dtype=np.int32, count=len(block))
            written = m
    return written
