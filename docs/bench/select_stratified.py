"""Peak RSS of length-stratified selection (docs/PERFORMANCE.md): `python docs/bench/select_stratified.py
SCORES.h5 top_influence|cci` on an HDF5 file with `score` (float64) and `length` datasets; prints JSON."""
import json, sys, time, h5py
from bioprune.tools.bench_scale import peak_rss_mb
from bioprune.selection.stream import Column
from bioprune.selection.strategies import CCIOptions, TopOptions, select_indices
path, strategy = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
with h5py.File(path, "r") as f:
    n = int(f["score"].shape[0])
    cols = {"score": Column(f["score"], path), "length": Column(f["length"], path)}
    idx = select_indices(strategy, cols, n, 0.01, 0, CCIOptions(beta=0.1, bins=50, stratify_by="length"),
                         top_influence=TopOptions(stratify_by="length"), length_strata=10)
print(json.dumps({"n": n, "strategy": strategy, "seconds": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb()}))
