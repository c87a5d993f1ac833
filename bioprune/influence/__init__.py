"""Self-influence scoring (rules/influence.smk). Modules: reference (the reference model on D_sub),
gradients (InfluenceConfig, per-sample factors), persample (gradient capture, Kronecker projector), sketches
(curvature fit, shard sketches) and sketch_store, scores (merge, length_rank), ensemble (reference
ensembles), rank_stats and stability (seed and reference stability), paper (the official code's losses)."""
from bioprune.lazy import lazy_exports

_EXPORTS = {
    "ReferenceConfig": "reference",
    "InfluenceConfig": "gradients",
    "THRESHOLDS": "stability",
    "build_reference": "reference",
    "combine": "ensemble",
    "compare_scores": "stability",
    "ensemble_scores": "ensemble",
    "fit_diag_fisher": "sketches",
    "jaccard": "rank_stats",
    "length_correlation": "stability",
    "length_rank": "scores",
    "member_seeds": "ensemble",
    "merge_scores": "scores",
    "read_scores": "scores",
    "run_stability": "stability",
    "sketch_shard": "sketches",
    "spearman": "rank_stats",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
