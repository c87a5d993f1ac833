"""Ingest as one call (CLI, tests) or as scatter/gather jobs (Snakemake): route every input file
into a part file, check ids per bucket, gather each shard and the held-out file, sum the stats.
"""
from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import h5py

from bioprune.alphabets import alphabet_name
from bioprune.errors import BiopruneError
from bioprune.h5io import atomic_path
from bioprune.ingest import dedupe as _gather
from bioprune.ingest.fasta import check_fasta
from bioprune.ingest.ranges import file_spans, part_name
from bioprune.ingest.route import FATE_STATS, route_file

log = logging.getLogger(__name__)


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


def expand_inputs(path: str | os.PathLike | list) -> list[str]:
    """corpus.path as a list of files: one path, a glob (sorted matches), or a list of either."""
    items = path if isinstance(path, (list, tuple)) else [path]
    out: list[str] = []
    for item in items:
        item = str(item)
        if glob.has_magic(item):
            hits = sorted(glob.glob(item))
            if not hits:
                raise BiopruneError(f"{item}: no file matches this pattern (config key corpus.path)")
            out += hits
        else:
            out.append(item)
    if not out:
        raise BiopruneError("config key corpus.path: an empty list of input files")
    return out


def _check_options(opts: IngestOptions) -> None:
    if opts.length_policy not in ("crop", "drop"):
        raise BiopruneError(f"config key corpus.length_policy: expected crop or drop, got {opts.length_policy!r}")


def shard_attrs(parts: list[str], n_shards: int, dest: int) -> dict:
    """Attrs of shard `dest` (0-based; n_shards = the held-out file), from the parts' attrs."""
    sources, config = [], None
    for p in parts:
        with h5py.File(p, "r", locking=False) as f:
            if not int(f.attrs.get("span_index", 0)):  # a file split in byte ranges counts once
                sources.append({"file": str(f.attrs["source_file"]), "sha256": str(f.attrs["source_sha256"])})
            cfg = str(f.attrs["ingest_config"])
            if config not in (None, cfg) or int(f.attrs["n_shards"]) != n_shards:
                raise BiopruneError(f"{p}: routed with another corpus configuration than {parts[0]}; re-run ingest")
            config = cfg
    molecule = json.loads(config)["molecule"]
    one = len(sources) == 1
    combined = hashlib.sha256("".join(f"{s['file']}\t{s['sha256']}\n" for s in sources).encode()).hexdigest()
    return {"kind": "holdout" if dest == n_shards else "shards", "molecule": molecule,
            "alphabet": alphabet_name(molecule),
            "source_file": sources[0]["file"] if one else json.dumps([s["file"] for s in sources]),
            "source_sha256": sources[0]["sha256"] if one else combined,
            "source_files": json.dumps(sources), "ingest_config": config, "n_shards": n_shards,
            "shard_index": 0 if dest == n_shards else dest + 1, "routing": "blake2b-128 digest of the normalised sequence"}


def gather_shard(parts: list[str], out: str, dest: int, n_shards: int) -> dict:
    """One gather job: the duplicate-id check of bucket `dest` (shards only), then the shard. Stops,
    writing nothing, when no record of any part passed the filters (every job names the filter)."""
    routed, opts, files = _route_totals(parts)
    if not routed.routed:
        raise no_survivor(files, opts, routed.records, routed.dropped_short, routed.dropped_long,
                          routed.dropped_ambiguous)
    check = _gather.check_ids(parts, dest) if dest < n_shards else None
    return _gather.gather(parts, dest, out, shard_attrs(parts, n_shards, dest), check)


def _route_totals(parts: list[str]):
    """(summed RouteStats, IngestOptions, source paths) of the route parts."""
    from bioprune.ingest.route import RouteStats

    total, opts, files = RouteStats(), None, []
    for p in parts:
        with h5py.File(p, "r", locking=False) as f:
            route = json.loads(f.attrs["route_stats"])
            opts = IngestOptions(**json.loads(str(f.attrs["ingest_config"])))
            path = str(f.attrs.get("source_path", f.attrs["source_file"]))
        files += [path] if path not in files else []
        for key, v in route.items():
            if hasattr(total, key):
                setattr(total, key, getattr(total, key) + v)
    return total, opts or IngestOptions(), files


def summarise(parts: list[str], shards: list[str], holdout: str, stats_path: str | None = None) -> IngestStats:
    """Sum the route stats of the parts and the gather stats of the shards (a repeated (id, sequence)
    record counts once, as in a single pass); error when no sequence survived."""
    stats = IngestStats()
    for p in parts:
        with h5py.File(p, "r", locking=False) as f:
            route = json.loads(f.attrs["route_stats"])
        stats.records += route["records"]
        for key in FATE_STATS.values():
            setattr(stats, key, getattr(stats, key) + route[key])
    for path in [*shards, holdout]:
        with h5py.File(path, "r", locking=False) as f:
            g = json.loads(f.attrs["ingest_stats"])
        stats.duplicate_sequences += g["duplicate_sequences"]
        stats.duplicate_ids_same_sequence += g.get("duplicate_ids_same_sequence", 0)
        for key in FATE_STATS.values():
            setattr(stats, key, getattr(stats, key) - g.get(key, 0))
        if path == holdout:
            stats.holdout = g["kept"]
        else:
            stats.per_shard.append(g["kept"])
        stats.kept += g["kept"]
    if stats_path:
        with atomic_path(stats_path) as t:
            Path(t).write_text(json.dumps(stats.__dict__, indent=2) + "\n")
    return stats


def no_survivor(files: list[str], opts: IngestOptions, records: int, short: int, long: int, amb: int) -> BiopruneError:
    """The error when ingest kept no record: the counts per filter, each with its config key and value."""
    why = []
    if short:
        why.append(f"{short} shorter than corpus.min_length = {opts.min_length}")
    if long:
        why.append(f"{long} longer than corpus.max_length = {opts.max_length} "
                   f"(corpus.length_policy = {opts.length_policy})")
    if amb:
        why.append(f"{amb} with ambiguity codes (corpus.ambiguous = {opts.ambiguous})")
    where = ", ".join(files) if files else "corpus.path"
    return BiopruneError(f"{where}: 0 of {records} records kept: " + ("; ".join(why) or "the files hold no record"))


def check_counts(stats: IngestStats, opts: IngestOptions, files: list[str] | None = None) -> None:
    """Stop when ingest kept no sequence, or kept some but left the pool empty (all held out)."""
    if not stats.kept:
        raise no_survivor(files or [], opts, stats.records, stats.dropped_short, stats.dropped_long,
                          stats.dropped_ambiguous)
    if not sum(stats.per_shard):
        raise BiopruneError(
            f"corpus.holdout_fraction: all {stats.kept} distinct sequences kept by ingest went to the held-out "
            f"split (corpus.holdout_fraction = {opts.holdout_fraction}), so the pool is empty; lower "
            f"corpus.holdout_fraction or add sequences")


def ingest(
    fasta: str | os.PathLike | list,
    shard_paths: list[str],
    holdout_path: str,
    opts: IngestOptions,
    stats_path: str | None = None,
    split_bytes: int = 0,
) -> IngestStats:
    """Validate, normalise, dedupe and length-filter FASTA file(s); write pool shards and a held-out file.

    One process doing what the workflow's route/gather jobs do, with the same result (also their
    byte ranges of files larger than `split_bytes`, corpus.split_mb; 0: none). Every id is checked
    before any shard is written, and each output is renamed into place only when complete.
    """
    files = expand_inputs(fasta)
    _check_options(opts)
    for f in files:
        check_fasta(f)  # empty, binary or not FASTA: fail before any output (or its folder) exists
    n_shards = len(shard_paths)
    parent = Path(holdout_path).parent
    parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".ingest-parts-", dir=parent) as tmp:
        jobs = [(k, f, span) for k, f in enumerate(files) for span in file_spans(f, split_bytes)]
        parts = [str(Path(tmp) / part_name(k, span)) for k, _, span in jobs]
        routed = [route_file(f, p, k, n_shards, opts, span) for (k, f, span), p in zip(jobs, parts)]
        if not sum(r.routed for r in routed):
            raise no_survivor(files, opts, sum(r.records for r in routed), sum(r.dropped_short for r in routed),
                               sum(r.dropped_long for r in routed), sum(r.dropped_ambiguous for r in routed))
        checks = [_gather.check_ids(parts, b) for b in range(n_shards)]
        for dest, out in enumerate([*shard_paths, holdout_path]):
            _gather.gather(parts, dest, out, shard_attrs(parts, n_shards, dest), checks[dest] if dest < n_shards else None)
        stats = summarise(parts, shard_paths, holdout_path, None)
        try:
            check_counts(stats, opts, files)
        except BiopruneError:
            for out in [*shard_paths, holdout_path]:
                Path(out).unlink(missing_ok=True)
            raise
        if stats_path:
            summarise(parts, shard_paths, holdout_path, stats_path)
    log.info("ingest %s: %s", ", ".join(files), json.dumps(stats.__dict__))
    return stats
