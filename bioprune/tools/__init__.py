"""Developer tools: bench_sketch (`bioprune bench-sketch`), bench_scale (`bioprune bench-scale`), gpukit (the
offline kit for a leased GPU, `make gpu-kit`)."""
from bioprune.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "bench_scale": "bench_scale",
    "bench_sketch": "bench_sketch",
})
