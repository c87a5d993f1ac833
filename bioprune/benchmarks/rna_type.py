"""RNA type (family of origin): linear probe on mean-pooled embeddings, homology-aware split."""
from __future__ import annotations

from bioprune.benchmarks.common import BenchParams
from bioprune.benchmarks.probes import classification_sets, classify


def sets(bp: BenchParams) -> tuple[list[dict], list[dict]]:
    return classification_sets("rna_type", bp)


def run(model, bp: BenchParams) -> list[tuple[str, float]]:
    return classify(model, "rna_type", bp)
