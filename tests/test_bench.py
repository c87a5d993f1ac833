"""bench-sketch modes report tokens/s, MFU (with a given peak) and peak memory; train vs train_stock."""
from __future__ import annotations

import pytest

from bioprune.bench import run_mode

TINY = {"molecule": "protein", "layers": 1, "embed_dim": 16, "heads": 2, "length": 20, "batch_size": 4,
        "batches": 1, "sketch_dim": 64, "baseline_samples": 2, "device": "cpu", "peak_tflops": 1e-6}


@pytest.mark.parametrize("mode", ["train", "train_stock", "sketch_paper"])
def test_modes_report_throughput_and_mfu(mode):
    r = run_mode(mode, TINY)
    assert r["tokens_per_s"] == pytest.approx(r["seq_per_s"] * 22, rel=1e-3)
    assert 0 < r["mfu"] and r["peak_mem_mb"] > 0
    assert ("SDPA" in r["method"]) == (mode == "train")
