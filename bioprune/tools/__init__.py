"""Developer tools: bench_sketch (`bioprune bench-sketch`), bench_scale (`bioprune bench-scale`), gpukit (the
offline kit for a leased GPU, `make gpu-kit`)."""
from bioprune.lazy import lazy_exports

_EXPORTS = {
    "bench_scale": "bench_scale",
    "bench_sketch": "bench_sketch",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
