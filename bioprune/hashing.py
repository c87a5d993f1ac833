"""Deterministic, order-independent draws from a sequence id: held-out split, D_sub, MLM masks."""
from __future__ import annotations

import hashlib


def unit_hash(key: str, salt: str, seed: int = 0) -> float:
    """Map (salt, seed, key) to a float in [0, 1), stable across runs, machines and shard counts."""
    digest = hashlib.blake2b(f"{salt}\x1f{seed}\x1f{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2.0**64


def int_hash(key: str, salt: str, seed: int = 0) -> int:
    """A 63-bit integer from (salt, seed, key), used to seed per-sequence generators."""
    digest = hashlib.blake2b(f"{salt}\x1f{seed}\x1f{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def in_holdout(seq_id: str, fraction: float) -> bool:
    """True when the id falls in the held-out validation split (independent of the run seed)."""
    return unit_hash(seq_id, "holdout") < fraction


def in_subset(seq_id: str, fraction: float, seed: int) -> bool:
    """True when the id is in D_sub, the random subset the reference model and curvature use."""
    return unit_hash(seq_id, "dsub", seed) < fraction


def shard_of(seq_id: str, n_shards: int) -> int:
    """Shard index (0-based) of an id; depends only on the id and the shard count."""
    return int_hash(seq_id, "shard") % n_shards


def route_digests(digests, n_shards: int, holdout_fraction: float):
    """Destination of records by the 16-byte digest of their normalised sequence: shard index
    0..n_shards-1, or n_shards for the held-out split.

    Digest bytes 8..15 (little-endian, top 53 bits as a float in [0, 1)) decide the held-out split
    (below `holdout_fraction`), bytes 0..7 modulo n_shards the shard. Both depend only on the
    sequence, so exact duplicates always meet in one file, whatever the input order, file count
    or number of ingest jobs; the held-out split does not depend on the shard count.
    """
    import numpy as np

    words = np.ascontiguousarray(digests, dtype=np.uint8).reshape(-1, 16).view("<u8")
    dest = (words[:, 0] % np.uint64(n_shards)).astype(np.int64)
    unit = (words[:, 1] >> np.uint64(11)).astype(np.float64) * 2.0**-53
    dest[unit < holdout_fraction] = n_shards
    return dest


def id_buckets(id_digests, n_buckets: int):
    """Bucket 0..n_buckets-1 of each record's 16-byte id digest (where its duplicate-id check runs)."""
    import numpy as np

    words = np.ascontiguousarray(id_digests, dtype=np.uint8).reshape(-1, 16).view("<u8")
    return (words[:, 0] % np.uint64(n_buckets)).astype(np.int64)
