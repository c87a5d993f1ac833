"""Leakage gate (rules/leakage.smk): MMseqs2 search of the pool against the evaluation sets; near-copies
leave the pool (gate) and the held-out file (clean_holdout). Module: gate."""
from bioprune.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "gate": "GateConfig clean_holdout filter_shards near_copies pool_source read_excluded run_gate search write_gate",
})
