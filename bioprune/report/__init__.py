"""Report (rules/benchmark.smk's aggregate, ledger and report rules). Modules: tables (summary and paired
table, verdict, plots, versions), pages (the HTML report pages), coreset (the coreset summary), ledger (compute
per arm), flops (FLOPs and MFU)."""
from bioprune.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "tables": "aggregate plot_curves plot_metrics plot_pruning_curves plot_scores write_versions",
    "flops": "forward_flops_per_token mfu peak_tflops",
    "ledger": "write_ledger",
    "pages": "write_pages",
    "coreset": "write_summary",
})
