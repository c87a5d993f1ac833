"""bench-sketch modes report tokens/s, MFU (with a given peak) and peak memory; train vs train_stock;
repeats run in rotated rounds, medians per mode and ratios paired within a round."""
from __future__ import annotations

import pytest

from bioprune.tools import bench_sketch as bench
from bioprune.tools.bench_sketch import run_mode
from bioprune.cli import build_parser, main
from bioprune.errors import BiopruneError
from bioprune.report.flops import forward_flops_per_token
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


# --- bench_sketch: interleaved rounds, medians over repeats, ratios paired within a round ----------
# planted seq_per_s per round. Round loads drift: round 2 is a quiet round for train (fast) while
# train_stock was slowed, etc. The per-round train/train_stock ratios are 2, 1, 4, 1.5, 3 ->
# median 2, but the ratio of the medians is median(10,20,80,30,90)=30 / median(5,20,20,20,30)=20 = 1.5.
PLANTED = {"train": [10.0, 20.0, 80.0, 30.0, 90.0],
           "train_stock": [5.0, 20.0, 20.0, 20.0, 30.0],
           "sketch_paper": [40.0, 10.0, 100.0, 60.0, 45.0],
           "sketch_all_linear": [15.0, 25.0, 35.0, 45.0, 55.0],
           "per_sample_baseline": [4.0, 5.0, 20.0, 3.0, 9.0]}


def _args(**kw):
    ns = build_parser().parse_args(["bench-sketch", "--layers", "1", "--embed-dim", "16", "--heads", "2",
                                    "--length", "20", "--batch-size", "4", "--batches", "1",
                                    "--device", "cpu"])
    for k, v in kw.items():
        setattr(ns, k, v)
    return ns


@pytest.fixture
def fake(monkeypatch):
    """Replace the subprocess with planted numbers: the n-th call of a mode is its round n."""
    calls, fail = [], {}

    def run(mode, a):
        r = sum(1 for m in calls if m == mode)
        calls.append(mode)
        if (mode, r) in fail:
            return {"error": fail[(mode, r)]}
        v = PLANTED[mode][r]
        return {"seq_per_s": v, "seq_per_cpu_s": v / 2 if mode != "train" else v, "tokens_per_s": v * 22,
                "mfu": None if mode.startswith("train") else v / 1000, "peak_mem_mb": 100.0 + 10 * r,
                "method": f"fake {mode}"}

    monkeypatch.setattr(bench, "_run_mode_subprocess", run)
    return calls, fail


def test_rounds_rotate_and_medians_over_repeats(fake):
    calls, _ = fake
    out = bench.bench_sketch(_args(repeats=5))
    modes = list(bench.DEFAULT_MODES)
    assert len(calls) == 25
    rounds = [calls[i * 5:(i + 1) * 5] for i in range(5)]
    for r, got in enumerate(rounds):  # every mode once a round, round r starting at mode r mod M
        assert got == modes[r:] + modes[:r]
    assert [g[0] for g in rounds] == modes  # each mode leads exactly one round
    assert out["round_order"] == rounds and out["settings"]["repeats"] == 5
    t = out["train"]
    assert t["seq_per_s"] == 30.0 and t["seq_per_s_min"] == 10.0 and t["seq_per_s_max"] == 90.0
    assert t["repeats"] == PLANTED["train"] and t["ok_repeats"] == 5 and "error" not in t
    assert t["tokens_per_s"] == 30.0 * 22 and t["mfu"] is None and t["method"] == "fake train"
    assert t["peak_mem_mb"] == 140.0  # the max over repeats, not the median
    s = out["sketch_paper"]
    assert s["seq_per_s"] == 45.0 and s["seq_per_cpu_s"] == 22.5 and s["mfu"] == 0.045


def test_ratios_are_medians_of_per_round_ratios(fake):
    out = bench.bench_sketch(_args(repeats=5))
    r = out["ratios"]
    # train/train_stock per round: 2, 1, 4, 1.5, 3 -> median 2 (the ratio of medians would be 1.5)
    assert r["train/train_stock"] == {"median": 2.0, "min": 1.0, "max": 4.0, "n": 5}
    # sketch_paper/train per round: 4, 0.5, 1.25, 2, 0.5 -> median 1.25 (ratio of medians 45/30 = 1.5)
    assert r["sketch_paper/train"] == {"median": 1.25, "min": 0.5, "max": 4.0, "n": 5}
    # sketch_paper/per_sample_baseline: 10, 2, 5, 20, 5 -> median 5 (ratio of medians 45/5 = 9)
    assert r["sketch_paper/per_sample_baseline"] == {"median": 5.0, "min": 2.0, "max": 20.0, "n": 5}
    # sketch_all_linear/train: 1.5, 1.25, 0.4375, 1.5, 0.6111 -> median 1.25
    assert r["sketch_all_linear/train"] == {"median": 1.25, "min": 0.438, "max": 1.5, "n": 5}
    assert r["train_compile/train"] is None  # not run
    # CPU rates: train's CPU rate is its wall rate, the others' half of theirs
    assert out["ratios_cpu"]["train/train_stock"] == {"median": 4.0, "min": 2.0, "max": 8.0, "n": 5}
    assert out["ratios_cpu"]["sketch_paper/per_sample_baseline"]["median"] == 5.0


def test_a_failed_round_keeps_first_error_and_drops_that_round_from_ratios(fake):
    _, fail = fake
    fail[("train_stock", 2)] = "RuntimeError: out of memory (round 2)"
    fail[("train_stock", 4)] = "RuntimeError: later failure"
    fail[("per_sample_baseline", 0)] = fail[("per_sample_baseline", 1)] = "boom"
    for r in range(2, 5):
        fail[("per_sample_baseline", r)] = "boom again"
    out = bench.bench_sketch(_args(repeats=5))
    ts = out["train_stock"]
    assert ts["error"] == "RuntimeError: out of memory (round 2)" and ts["ok_repeats"] == 3
    assert ts["repeats"] == [5.0, 20.0, None, 20.0, None]
    assert ts["seq_per_s"] == 20.0 and ts["seq_per_s_min"] == 5.0 and ts["seq_per_s_max"] == 20.0
    # train/train_stock from rounds 0, 1, 3 only: 2, 1, 1.5
    assert out["ratios"]["train/train_stock"] == {"median": 1.5, "min": 1.0, "max": 2.0, "n": 3}
    psb = out["per_sample_baseline"]
    assert psb == {"repeats": [None] * 5, "ok_repeats": 0, "error": "boom"}
    assert out["ratios"]["sketch_paper/per_sample_baseline"] is None
    assert out["ratios_cpu"]["sketch_paper/per_sample_baseline"] is None


def test_one_repeat_and_a_mode_subset(fake):
    calls, _ = fake
    out = bench.bench_sketch(_args(repeats=1, modes="sketch_paper,train"))
    assert calls == ["sketch_paper", "train"]
    assert out["ratios"]["sketch_paper/train"] == {"median": 4.0, "min": 4.0, "max": 4.0, "n": 1}
    assert out["train"]["repeats"] == [10.0]


def test_repeats_below_one_refused(fake, capsys):
    calls, _ = fake
    assert build_parser().parse_args(["bench-sketch"]).repeats == 5
    with pytest.raises(BiopruneError, match="--repeats"):
        bench.bench_sketch(_args(repeats=0))
    assert main(["bench-sketch", "--repeats", "0", "--device", "cpu"]) == 1
    assert "--repeats" in capsys.readouterr().err
    with pytest.raises(BiopruneError, match="--repeats"):
        bench.bench_sketch(_args(repeats=-3))
    assert calls == []  # refused before running anything


def test_subprocess_runner_reports_a_failing_mode():
    """The real runner: an unknown mode fails inside the child, and its last stderr line is the error."""
    res = bench._run_mode_subprocess("no_such_mode", {**TINY})
    assert set(res) == {"error"} and "no_such_mode" in res["error"]


def test_sketch_mode_process_exits_cleanly():
    """The sketch modes' endless mask prefetchers are closed before exit: left running mid-op they made
    the child abort ('terminate called without an active exception') in 2 of 3 runs, and the mode was
    reported as failed although it had printed its numbers."""
    import json as _json
    import subprocess as _sp
    import sys as _sys

    a = {"molecule": "rna", "layers": 1, "embed_dim": 32, "heads": 2, "length": 64, "batch_size": 4, "batches": 3,
         "sketch_dim": 256, "baseline_samples": 4, "device": "cpu"}
    for mode in ("sketch_paper", "sketch_all_linear", "sketch_paper"):
        res = _sp.run([_sys.executable, "-m", "bioprune.tools.bench_sketch", mode, _json.dumps(a)], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr[-300:]
        assert _json.loads(res.stdout.strip().splitlines()[-1])["seq_per_s"] > 0
