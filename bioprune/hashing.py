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
