"""Leakage gate (rules/leakage.smk): MMseqs2 search of the pool against the evaluation sets; near-copies
leave the pool (gate) and the held-out file (clean_holdout). Module: gate."""
from bioprune.lazy import lazy_exports

_EXPORTS = {
    "GateConfig": "gate",
    "clean_holdout": "gate",
    "filter_shards": "gate",
    "near_copies": "gate",
    "pool_source": "gate",
    "read_excluded": "gate",
    "run_gate": "gate",
    "search": "gate",
    "write_gate": "gate",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
