"""Coreset selection (rules/selection.smk). Modules: strategies (Top-I, CCI, GraNd, random, random_10x,
cluster, degenerate; budgets), stream (streaming top-k and CCI plans over score columns), strata (length,
source and cluster strata), io (score columns in, selection HDF5 and FASTA out, MMseqs2 representatives),
export (ids, scores and original records for the user's own trainer)."""
from bioprune.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "strategies": "CCIOptions SelectionConfig TopOptions budget_size fraction_count kmer_entropy select_indices",
    "strata": "LabelPlan StrataPlan cluster_labels source_labels",
    "io": "mmseqs_representatives read_selection score_columns write_selection_streaming",
    "export": "original_fasta_path write_original_records write_selection_table",
})
