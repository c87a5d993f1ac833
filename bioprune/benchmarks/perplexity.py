"""Masked-LM perplexity on the held-out split of the pool (bioprune ingest's holdout file)."""
from __future__ import annotations

import math

from .common import BenchParams


def run(model, bp: BenchParams) -> list[tuple[str, float]]:
    from ..shards import read_shard
    from ..training import mlm_eval_loss

    ids, seqs, _ = read_shard(bp.holdout)
    if not ids:  # an empty held-out file (tiny corpus, or every held-out sequence near-copied in the pool)
        return [("perplexity", math.nan), ("mlm_loss", math.nan)]
    loss = mlm_eval_loss(model, ids[: bp.max_eval], seqs[: bp.max_eval], bp.molecule, seed=0)
    return [("perplexity", math.exp(loss)), ("mlm_loss", loss)]
