"""bench-sketch modes report tokens/s, MFU (with a given peak) and peak memory; train vs train_stock."""
from __future__ import annotations

import pytest

from bioprune import bench
from bioprune.bench import run_mode
from bioprune.flops import forward_flops_per_token
from bioprune.models import build_model

TINY = {"molecule": "protein", "layers": 1, "embed_dim": 16, "heads": 2, "length": 20, "batch_size": 4,
        "batches": 1, "sketch_dim": 64, "baseline_samples": 2, "device": "cpu", "peak_tflops": 1e-6}
FORWARDS = {"train": 3, "train_stock": 3, "sketch_paper": 1}  # model FLOPs of a step, in forward passes


@pytest.mark.parametrize("mode", ["train", "train_stock", "sketch_paper"])
def test_modes_report_throughput_and_mfu(mode, monkeypatch):
    """The mode runs for real; its timer then reports a known rate (40 sequences/s), so tokens/s and MFU
    have known answers: MFU = forwards x forward FLOPs per token x tokens/s / peak."""
    real, calls = bench._time, []

    def timed(fn, device, batches, n_per_call, warmup=1):
        calls.append(real(fn, device, batches, n_per_call, warmup))
        return 40.0, 20.0

    monkeypatch.setattr(bench, "_time", timed)
    context = TINY["length"] + 2
    flops = forward_flops_per_token(build_model("protein", 1, 16, 2, seed=0), context)
    peak = FORWARDS[mode] * flops * 40 * context / 0.5e12  # a peak at which MFU is 0.5
    r = run_mode(mode, {**TINY, "peak_tflops": peak})
    assert len(calls) == 1 and calls[0][0] > 0
    assert r["seq_per_s"] == 40.0 and r["seq_per_cpu_s"] == 20.0 and r["tokens_per_s"] == 40.0 * context
    assert r["mfu"] == pytest.approx(0.5, abs=1e-4) and r["peak_mem_mb"] > 0
    assert ("SDPA" in r["method"]) == (mode == "train")
    assert run_mode(mode, {**TINY, "peak_tflops": None})["mfu"] is None  # CPU: no known peak, no MFU
