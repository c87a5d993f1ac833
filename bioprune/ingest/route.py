"""Ingest, scatter step: read one input file, normalise and filter its records, and write one part
file in which every record sits in the group of its destination (shard or held-out split, by the
digest of its sequence) and every id in the group of its id bucket (for the duplicate-id check).

A part file (kind `ingest_part`) holds, per destination g, group r{g}: digest, idhash (16 bytes
each), rec (record number in the input file, or in its byte range: the gather adds the records of
the file's earlier ranges), seq_end/seq_blob and id_end/id_blob (the strings,
each followed by a newline, concatenated; cumulative end offsets); per id bucket b, group i{b}: idhash, digest of the
uncropped sequence, rec and fate (what happened to the record). Memory: one input block plus a
bounded write buffer (flushed to resizable datasets), whatever the file size.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from operator import itemgetter
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from bioprune.errors import BiopruneError
from bioprune.h5io import SCHEMA_VERSION, atomic_path, sha256_file
from bioprune.hashing import id_buckets, route_digests
from bioprune.ingest.fasta import _BatchAlphabetError, check_fasta, normalise_batch, read_batches
from bioprune.ingest.ranges import records_before

log = logging.getLogger(__name__)
FLUSH_BYTES = 16 << 20
# fate of a record, stored with its id so the gather can undo the counts of a repeated (id, sequence)
KEPT, CROPPED, DROPPED_AMBIGUOUS, DROPPED_SHORT, DROPPED_LONG = range(5)
FATE_STATS = {CROPPED: "cropped", DROPPED_AMBIGUOUS: "dropped_ambiguous", DROPPED_SHORT: "dropped_short",
              DROPPED_LONG: "dropped_long"}


@dataclass
class RouteStats:
    records: int = 0
    routed: int = 0
    dropped_ambiguous: int = 0
    dropped_short: int = 0
    dropped_long: int = 0
    cropped: int = 0


@dataclass
class _Group:
    """Buffered columns of one part group; numeric columns as arrays, strings as (lengths, blob)."""

    arrays: dict[str, list[np.ndarray]] = field(default_factory=dict)
    blobs: dict[str, list[tuple[np.ndarray, bytes]]] = field(default_factory=dict)
    ends: dict[str, int] = field(default_factory=dict)


class PartWriter:
    """Append scattered columns to the groups of one part file, flushing when the buffer is large."""

    def __init__(self, f: h5py.File):
        self.f, self.groups, self.buffered = f, {}, 0

    def add(self, name: str, arrays: dict[str, np.ndarray], blobs: dict[str, tuple[np.ndarray, bytes]]) -> None:
        g = self.groups.setdefault(name, _Group())
        for k, v in arrays.items():
            g.arrays.setdefault(k, []).append(v)
            self.buffered += v.nbytes
        for k, (lens, blob) in blobs.items():
            g.blobs.setdefault(k, []).append((lens, blob))
            self.buffered += len(blob) + lens.nbytes
        if self.buffered > FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        for name, g in self.groups.items():
            grp = self.f.require_group(name)
            for k, parts in g.arrays.items():
                _append(grp, k, np.concatenate(parts))
            for k, parts in g.blobs.items():
                lens = np.concatenate([p[0] for p in parts])
                end0 = g.ends.get(k, 0)
                ends = end0 + np.cumsum(lens, dtype=np.int64)
                _append(grp, f"{k}_end", ends)
                _append(grp, f"{k}_blob", np.frombuffer(b"".join(p[1] for p in parts), dtype=np.uint8))
                g.ends[k] = int(ends[-1]) if len(ends) else end0
            g.arrays, g.blobs = {}, {}
        self.buffered = 0


def _append(grp: h5py.Group, name: str, data: np.ndarray) -> None:
    if name not in grp:
        chunk = (1 << 20,) if data.ndim == 1 and data.dtype == np.uint8 else (min(1 << 16, max(1, len(data))),)
        grp.create_dataset(name, data=data, maxshape=(None, *data.shape[1:]), chunks=chunk + data.shape[1:])
        return
    ds = grp[name]
    n0 = ds.shape[0]
    ds.resize((n0 + len(data), *data.shape[1:]))
    ds[n0:] = data


def _scatter(writer: PartWriter, prefix: str, dest: np.ndarray, n_groups: int, arrays: dict[str, np.ndarray],
             strings: dict[str, list[bytes]]) -> None:
    """Split one batch's columns by destination group (stable: input order kept within a group)."""
    if not len(dest):
        return
    order = np.argsort(dest, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(dest, minlength=n_groups))])
    joined = {}
    pick = order.tolist()
    for k, values in strings.items():
        lens = np.fromiter(map(len, values), dtype=np.int64, count=len(values))[order] + 1
        picked = [values[pick[0]]] if len(pick) == 1 else itemgetter(*pick)(values)
        joined[k] = (lens, b"\n".join(picked) + b"\n", np.concatenate([[0], np.cumsum(lens)]))
    for g in np.flatnonzero(bounds[1:] > bounds[:-1]):
        a, b = bounds[g], bounds[g + 1]
        rows = order[a:b]
        blobs = {k: (lens[a:b], blob[off[a]:off[b]]) for k, (lens, blob, off) in joined.items()}
        writer.add(f"{prefix}{g}", {k: v[rows] for k, v in arrays.items()}, blobs)


def _digests(values: list[bytes]) -> np.ndarray:
    b2 = hashlib.blake2b
    return np.frombuffer(b"".join([b2(v, digest_size=16).digest() for v in values]), dtype=np.uint8).reshape(-1, 16)


def route_file(fasta: str | os.PathLike, part_path: str, file_index: int, n_shards: int, opts,
               span: dict | None = None) -> RouteStats:
    """Scatter one input FASTA(.gz), or the records of one byte range of it (`span`, see
    bioprune.ingest.ranges), into a part file (module doc); `opts` is an IngestOptions."""
    fasta = Path(fasta)
    check_fasta(fasta)
    if span is not None and os.path.getsize(fasta) != span["size"]:
        raise BiopruneError(f"{fasta}: {os.path.getsize(fasta)} bytes, {span['size']} when the byte ranges of the "
                            "ingest jobs were planned; the file changed, re-run the workflow")
    stats = RouteStats()
    index, count = (span["index"], span["count"]) if span else (0, 1)
    # the file's hash once per file (by its first range job): the shards' attrs name whole files
    attrs = {"kind": "ingest_part", "schema_version": SCHEMA_VERSION, "source_file": fasta.name,
             "source_path": str(fasta), "source_sha256": sha256_file(fasta) if index == 0 else "",
             "file_index": file_index, "span_index": index, "n_spans": count,
             "n_shards": n_shards, "ingest_config": json.dumps(opts.as_dict(), sort_keys=True)}
    with atomic_path(part_path) as tmp, h5py.File(tmp, "w") as f:
        writer = PartWriter(f)
        for first, ids, raws in read_batches(fasta, span):
            _route_batch(fasta, span, first, ids, raws, opts, n_shards, writer, stats)
        writer.flush()
        f.attrs.update(attrs)
        f.attrs["route_stats"] = json.dumps(stats.__dict__, sort_keys=True)
    log.info("route %s%s: %s", fasta, f" (byte range {index + 1} of {count})" if span else "", json.dumps(stats.__dict__))
    return stats


def _route_batch(fasta: Path, span: dict | None, first: int, ids: list[bytes], raws: list[bytes], opts, n_shards: int,
                 writer: PartWriter, stats: RouteStats) -> None:
    if not ids:
        return
    try:
        seqs, drop = normalise_batch(raws, opts.molecule, opts.ambiguous)
    except _BatchAlphabetError as e:
        rec = records_before(fasta, span) + first + e.index
        raise BiopruneError(f"{fasta}: record {rec} (id {ids[e.index].decode()}): {e}") from None
    n = len(ids)
    rec = np.arange(first, first + n, dtype=np.int64)
    idh = _digests(ids)
    pre = _digests(seqs)
    lens = np.fromiter(map(len, seqs), dtype=np.int64, count=n)
    fate = np.full(n, KEPT, dtype=np.uint8)
    fate[lens > opts.max_length] = DROPPED_LONG if opts.length_policy == "drop" else CROPPED
    fate[lens < opts.min_length] = DROPPED_SHORT
    fate[np.asarray(drop, dtype=bool)] = DROPPED_AMBIGUOUS
    counts = np.bincount(fate, minlength=5)
    stats.records += n
    for code, key in FATE_STATS.items():
        setattr(stats, key, getattr(stats, key) + int(counts[code]))
    _scatter(writer, "i", id_buckets(idh, n_shards), n_shards,
             {"idhash": idh, "digest": pre, "rec": rec, "fate": fate}, {})
    keep = np.flatnonzero(fate <= CROPPED)
    stats.routed += len(keep)
    if not len(keep):
        return
    digest = pre[keep].copy()
    kept_seqs = [seqs[i] for i in keep]
    for j in np.flatnonzero(fate[keep] == CROPPED):
        kept_seqs[j] = kept_seqs[j][: opts.max_length]
        digest[j] = np.frombuffer(hashlib.blake2b(kept_seqs[j], digest_size=16).digest(), dtype=np.uint8)
    _scatter(writer, "r", route_digests(digest, n_shards, opts.holdout_fraction), n_shards + 1,
             {"digest": digest, "idhash": idh[keep], "rec": rec[keep]},
             {"seq": kept_seqs, "id": [ids[i] for i in keep]})
