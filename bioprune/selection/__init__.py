"""Coreset selection (rules/selection.smk). Modules: strategies (Top-I, CCI, GraNd, random, random_10x,
cluster, degenerate; budgets), stream (streaming top-k and CCI plans over score columns), strata (length,
source and cluster strata), io (score columns in, selection HDF5 and FASTA out, MMseqs2 representatives),
export (ids, scores and original records for the user's own trainer)."""
from bioprune.lazy import lazy_exports

_EXPORTS = {
    "CCIOptions": "strategies",
    "SelectionConfig": "strategies",
    "TopOptions": "strategies",
    "LabelPlan": "strata",
    "StrataPlan": "strata",
    "budget_size": "strategies",
    "cluster_labels": "strata",
    "fraction_count": "strategies",
    "kmer_entropy": "strategies",
    "mmseqs_representatives": "io",
    "original_fasta_path": "export",
    "read_selection": "io",
    "score_columns": "io",
    "select_indices": "strategies",
    "source_labels": "strata",
    "write_original_records": "export",
    "write_selection_streaming": "io",
    "write_selection_table": "export",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
