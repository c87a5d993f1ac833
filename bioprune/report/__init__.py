"""Report (rules/benchmark.smk's aggregate, ledger and report rules). Modules: tables (summary and paired
table, verdict, plots, versions), pages (the HTML report pages), coreset (the coreset summary), ledger (compute
per arm), flops (FLOPs and MFU)."""
from bioprune.lazy import lazy_exports

_EXPORTS = {
    "aggregate": "tables",
    "forward_flops_per_token": "flops",
    "mfu": "flops",
    "peak_tflops": "flops",
    "plot_curves": "tables",
    "plot_metrics": "tables",
    "plot_pruning_curves": "tables",
    "plot_scores": "tables",
    "write_ledger": "ledger",
    "write_pages": "pages",
    "write_summary": "coreset",
    "write_versions": "tables",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
