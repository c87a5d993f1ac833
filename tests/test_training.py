"""Pretraining: deterministic on CPU, and a run killed mid-way resumes to a bit-identical checkpoint."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bioprune.training import TrainConfig, epoch_batches, lr_at, total_steps, train_mlm

from helpers import random_rna

SCRIPT = """
import json, sys
from bioprune.training import TrainConfig, train_mlm
cfg = TrainConfig(**json.loads(sys.argv[1]))
seqs = json.loads(open(sys.argv[2]).read())
train_mlm(seqs, "rna", cfg, sys.argv[3], sys.argv[4])
"""


def state(path):
    return torch.load(path, weights_only=False)["state_dict"]


def same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_schedule_and_batches():
    cfg = TrainConfig(lr=1.0, warmup_fraction=0.1, batch_size=4, epochs=3)
    assert total_steps(10, cfg) == 9
    assert lr_at(0, 100, cfg) == pytest.approx(0.1) and lr_at(9, 100, cfg) == pytest.approx(1.0)
    assert lr_at(99, 100, cfg) < 0.01
    import numpy as np

    lengths = np.arange(10)
    b = epoch_batches(0, lengths, cfg)
    assert sorted(np.concatenate(b).tolist()) == list(range(10)) and len(b) == 3
    assert all((x == y).all() for x, y in zip(b, epoch_batches(0, lengths, cfg)))


def test_same_seed_bit_identical(tmp_path):
    seqs = [s for _, s in random_rna(40, seed=5)]
    cfg = TrainConfig(layers=1, embed_dim=16, heads=2, epochs=2, batch_size=8, seed=3)
    train_mlm(seqs, "rna", cfg, tmp_path / "a.pt")
    train_mlm(seqs, "rna", cfg, tmp_path / "b.pt")
    assert same_state(state(tmp_path / "a.pt"), state(tmp_path / "b.pt"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_run_resumes_identically(tmp_path, sig):
    seqs = [s for _, s in random_rna(64, seed=6)]
    (tmp_path / "seqs.json").write_text(json.dumps(seqs))
    cfg = dict(layers=1, embed_dim=16, heads=2, budget="steps", steps=200, batch_size=8, save_every=10,
               seed=1, device="cpu", log_every=1000)
    train_mlm(seqs, "rna", TrainConfig(**cfg), tmp_path / "ref.pt", tmp_path / "ref_curves.h5")
    out = tmp_path / "killed.pt"
    partial = Path(str(out) + ".partial")
    args = [sys.executable, "-c", SCRIPT, json.dumps(cfg), str(tmp_path / "seqs.json"), str(out), str(tmp_path / "c.h5")]
    proc = subprocess.Popen(args)
    deadline = time.time() + 120
    while not partial.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert partial.exists(), "no periodic checkpoint before the kill"
    proc.send_signal(sig)
    proc.wait()
    assert not out.exists(), "the killed run must not leave a final checkpoint"
    resumed_from = torch.load(partial, weights_only=False)["step"]
    assert 0 < resumed_from < 200
    subprocess.run(args, check=True)
    assert same_state(state(out), state(tmp_path / "ref.pt"))
    assert not partial.exists()
