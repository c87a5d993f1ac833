"""Masked-LM perplexity on the held-out split of the pool (bioprune ingest's holdout file)."""
from __future__ import annotations

import math

from bioprune.benchmarks.common import BenchParams


def run(model, bp: BenchParams) -> list[tuple[str, float]]:
    from bioprune.ingest import read_shard
    from bioprune.training.loop import mlm_eval_loss

    ids, seqs, _ = read_shard(bp.holdout)
    if not ids:  # an empty held-out file (tiny corpus, or every held-out sequence near-copied in the pool)
        return [("perplexity", math.nan), ("mlm_loss", math.nan)]
    loss = mlm_eval_loss(model, ids[: bp.max_eval], seqs[: bp.max_eval], bp.molecule, seed=0)
    return [("perplexity", math.exp(loss)), ("mlm_loss", loss)]
