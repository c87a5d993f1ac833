"""Data-parallel pretraining on CPU (gloo, 2 torchrun processes): the same loss trajectory and weights
as one process with the same global batch, launched by the pretrain stage from `pretrain.gpus`; a
run interrupted after a periodic checkpoint resumes under DDP from the saved step."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from helpers import random_rna, write_fasta

PARAMS = dict(layers=1, embed_dim=16, heads=2, lr=3e-3, weight_decay=0.01, warmup_fraction=0.1, batch_size=8,
              budget="steps", epochs=1, steps=12, save_every=0, device="cpu", max_tokens=None, clip_norm=1.0,
              tokens=1, compile=False)

WORKER = """
import json, sys
import bioprune.training.loop as T
cfg = T.TrainConfig(**json.loads(sys.argv[1]))
seqs = json.loads(open(sys.argv[2]).read())
real, steps = T.lr_at, []
stop_at = int(sys.argv[5])
def recording_lr_at(step, total, c):
    if step == stop_at:
        raise SystemExit(3)  # a pre-emption right after the checkpoint of step stop_at
    steps.append(step)
    return real(step, total, c)
T.lr_at = recording_lr_at
T.train_mlm(seqs, "rna", cfg, sys.argv[3], sys.argv[4])
import os
if os.environ.get("RANK", "0") == "0":
    open(sys.argv[3] + ".steps.json", "w").write(json.dumps(steps))
"""


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}


def _curves(path):
    with h5py.File(path) as f:
        return f["loss"][()], f["tokens"][()], dict(f.attrs), f["grad_norm"][()]


def _state(path):
    return torch.load(path, weights_only=False)["state_dict"]


def test_two_processes_match_one_with_the_same_global_batch(tmp_path, monkeypatch):
    from bioprune.training.loop import TrainConfig
    from bioprune.training.pretraining import pretrain
    from bioprune.ingest import IngestOptions, ingest

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", _env()["PYTHONPATH"])
    fa = write_fasta(tmp_path / "a.fa", random_rna(70, seed=3, lo=10, hi=60))
    shard, hold = str(tmp_path / "1-of-1.h5"), str(tmp_path / "h.h5")
    ingest(fa, [shard], hold, IngestOptions(holdout_fraction=0.05))
    one = pretrain([shard], hold, str(tmp_path / "one.pt"), str(tmp_path / "one.h5"), TrainConfig(**PARAMS, seed=0),
                   gpus=1)
    assert one["steps"] == 12
    pretrain([shard], hold, str(tmp_path / "two.pt"), str(tmp_path / "two.h5"), TrainConfig(**PARAMS, seed=0),
             gpus=2)
    l1, t1, a1, g1 = _curves(tmp_path / "one.h5")
    l2, t2, a2, g2 = _curves(tmp_path / "two.h5")
    np.testing.assert_allclose(g2, g1, rtol=1e-4)  # the averaged gradient is the global-batch gradient
    assert len(l1) == len(l2) == 12 and np.array_equal(t1, t2)
    np.testing.assert_allclose(l2, l1, rtol=1e-4)
    assert l1[-1] < l1[0]  # it trained
    assert a2["tokens_seen"] == a1["tokens_seen"]
    s1, s2 = _state(tmp_path / "one.pt"), _state(tmp_path / "two.pt")
    assert all(torch.allclose(s1[k], s2[k], atol=1e-4) for k in s1)
    assert torch.load(tmp_path / "two.pt", weights_only=False)["meta"]["world_size"] == 2
    assert not list(tmp_path.glob(".ddp-*.json"))


def test_preempted_run_resumes_under_ddp_from_the_saved_step(tmp_path):
    seqs = [s for _, s in random_rna(48, seed=6, lo=10, hi=50)]
    (tmp_path / "seqs.json").write_text(json.dumps(seqs))
    cfg = {**{k: v for k, v in PARAMS.items() if k not in ("tokens",)}, "steps": 16, "save_every": 5,
           "seed": 2, "log_every": 1000}
    run = [sys.executable, "-c", WORKER, json.dumps(cfg), str(tmp_path / "seqs.json")]
    subprocess.run(run + [str(tmp_path / "ref.pt"), str(tmp_path / "ref.h5"), "-1"], check=True, env=_env())
    out = tmp_path / "m.pt"
    cut = subprocess.run(run + [str(out), str(tmp_path / "m.h5"), "12"], env=_env())
    assert cut.returncode == 3 and not out.exists()
    assert torch.load(str(out) + ".partial", weights_only=False)["step"] == 10
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    subprocess.run(torchrun + [str(script)] + run[3:] + [str(out), str(tmp_path / "m.h5"), "-1"], check=True,
                   env=_env())
    assert json.loads(Path(str(out) + ".steps.json").read_text()) == list(range(10, 16))
    ref, got = _curves(tmp_path / "ref.h5")[0], _curves(tmp_path / "m.h5")[0]
    np.testing.assert_allclose(got, ref, rtol=1e-4)
    s1, s2 = _state(tmp_path / "ref.pt"), _state(out)
    assert all(torch.allclose(s1[k], s2[k], atol=1e-4) for k in s1)
    assert not Path(str(out) + ".partial").exists()


def test_local_rows_split_every_global_batch_into_the_batch_mean():
    """Every rank gets at least one row (a forward pass needs one; DDP needs every rank to step), the real
    rows of all ranks are the global batch exactly once, and sum over ranks of weight x sum(loss of its
    rows) x N / B, averaged over the N ranks as DDP does, is the batch mean, also when B < N (dummy rows
    weigh 0)."""
    from bioprune.training.distributed import DistContext, local_rows

    rng = np.random.default_rng(0)
    for world in (1, 2, 3, 4, 8):
        for batch in (1, 2, 3, 5, 8, 9):
            loss = rng.random(batch)
            seen, total = [], 0.0
            for rank in range(world):
                rows, weight = local_rows(batch, DistContext(rank=rank, world=world))
                idx = np.arange(batch)[rows]
                assert len(idx) >= 1 and weight in (0.0, 1.0), (world, batch, rank)
                if weight:
                    seen += idx.tolist()
                total += weight * loss[idx].sum() * world / batch
            assert sorted(seen) == list(range(batch)), (world, batch)
            assert total / world == pytest.approx(loss.mean()), (world, batch)
