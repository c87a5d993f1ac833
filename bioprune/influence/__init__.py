"""Self-influence scoring (rules/influence.smk). Modules: reference (the reference model on D_sub),
gradients (InfluenceConfig, per-sample factors), persample (gradient capture, Kronecker projector), sketches
(curvature fit, shard sketches) and sketch_store, scores (merge, length_rank), ensemble (reference
ensembles), rank_stats and stability (seed and reference stability), paper (the official code's losses)."""
from bioprune.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "reference": "ReferenceConfig build_reference",
    "gradients": "InfluenceConfig",
    "stability": "THRESHOLDS compare_scores length_correlation run_stability",
    "ensemble": "combine ensemble_scores member_seeds",
    "sketches": "fit_diag_fisher sketch_shard",
    "rank_stats": "jaccard spearman",
    "scores": "length_rank merge_scores read_scores",
})
