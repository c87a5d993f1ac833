"""Pretraining: deterministic on CPU; an interrupted run continues from its checkpoint (not from
scratch) to the uninterrupted run's weights; a non-finite loss stops with the stage and step."""
from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import bioprune.training.loop as training
from bioprune.errors import NumericalError
from bioprune.training.loop import TrainConfig, epoch_batches, lr_at, total_steps, train_mlm

from helpers import random_rna, write_fasta

SCRIPT = """
import json, sys
import bioprune.training.loop as T
cfg = T.TrainConfig(**json.loads(sys.argv[1]))
seqs = json.loads(open(sys.argv[2]).read())
real, steps = T.lr_at, []
def recording_lr_at(step, total, c):  # records which optimizer steps this process ran
    steps.append(step)
    return real(step, total, c)
T.lr_at = recording_lr_at
T.train_mlm(seqs, "rna", cfg, sys.argv[3], sys.argv[4])
open(sys.argv[5], "w").write(json.dumps(steps))
"""


def state(path):
    return torch.load(path, weights_only=False)["state_dict"]


def same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def curves(path):
    with h5py.File(path) as f:
        return {k: f[k][()] for k in ("step", "loss", "lr")}


def same_curves(a, b):
    ca, cb = curves(a), curves(b)
    return all(np.array_equal(ca[k], cb[k]) for k in ca)


def test_schedule_and_batches():
    cfg = TrainConfig(lr=1.0, warmup_fraction=0.1, batch_size=4, epochs=3)
    assert total_steps(10, cfg) == 9
    assert lr_at(0, 100, cfg) == pytest.approx(0.1) and lr_at(9, 100, cfg) == pytest.approx(1.0)
    assert lr_at(99, 100, cfg) < 0.01
    lengths = np.arange(10)
    b = epoch_batches(0, lengths, cfg)
    assert sorted(np.concatenate(b).tolist()) == list(range(10)) and len(b) == 3
    assert all((x == y).all() for x, y in zip(b, epoch_batches(0, lengths, cfg)))


def test_schedule_values():
    cfg = TrainConfig(lr=2.0, warmup_fraction=0.1)
    assert [lr_at(s, 100, cfg) for s in (0, 4, 9)] == pytest.approx([0.2, 1.0, 2.0])  # linear warmup
    assert lr_at(10, 100, cfg) == pytest.approx(2.0) and lr_at(55, 100, cfg) == pytest.approx(1.0)  # cosine
    assert lr_at(100, 100, cfg) == pytest.approx(0.0) and lr_at(150, 100, cfg) == pytest.approx(0.0)
    assert total_steps(10, TrainConfig(budget="steps", steps=7, epochs=99)) == 7
    assert total_steps(33, TrainConfig(budget="epochs", batch_size=8, epochs=2)) == 10


def test_epoch_batches_group_similar_lengths_and_reshuffle_per_epoch():
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 500, size=203)
    cfg = TrainConfig(batch_size=8, seed=4)
    b0 = epoch_batches(0, lengths, cfg, bucket=5)  # chunks of 40 sequences, length-sorted within
    assert sorted(np.concatenate(b0).tolist()) == list(range(203)) and [len(b) for b in b0].count(8) == 25
    spread = np.mean([np.ptp(lengths[b]) for b in b0])
    assert spread < 0.5 * np.mean([np.ptp(lengths[rng.permutation(203)[:8]]) for _ in range(50)])
    b1 = epoch_batches(1, lengths, cfg, bucket=5)
    assert [b.tolist() for b in b0] != [b.tolist() for b in b1]
    assert [b.tolist() for b in b0] == [b.tolist() for b in epoch_batches(0, lengths, cfg, bucket=5)]
    assert [b.tolist() for b in b0] != [b.tolist() for b in epoch_batches(0, lengths, TrainConfig(batch_size=8, seed=5), bucket=5)]


def test_eval_loss_is_independent_of_batching_and_recorded_on_schedule(tmp_path):
    """Validation masks are fixed per id: the loss does not depend on batch size or order; the curves
    hold it every eval_every steps and at the end."""
    from bioprune.models import load_model
    from bioprune.training.loop import mlm_eval_loss

    recs = random_rna(30, seed=8)
    ids, seqs = [i for i, _ in recs], [s for _, s in recs]
    cfg = TrainConfig(**{**SMALL, "steps": 25, "save_every": 0}, eval_every=10)
    train_mlm(seqs, "rna", cfg, tmp_path / "m.pt", tmp_path / "m.h5", val=(ids, seqs))
    model, _ = load_model(tmp_path / "m.pt", "rna")
    full = mlm_eval_loss(model, ids, seqs, "rna", batch_size=64)
    assert mlm_eval_loss(model, ids[::-1], seqs[::-1], "rna", batch_size=4) == pytest.approx(full, rel=1e-5)
    assert mlm_eval_loss(model, ids, seqs, "rna", seed=1) != pytest.approx(full, rel=1e-6)
    from bioprune.h5io import open_h5

    with open_h5(tmp_path / "m.h5", "curves", ["step", "loss", "lr", "val_step", "val_loss"]) as f:
        assert f["val_step"][()].tolist() == [10, 20, 25] and f["val_step"].dtype.kind == "i"
        assert f["val_loss"][-1] == pytest.approx(full, rel=1e-5)
        assert f["step"][()].tolist() == list(range(25)) and f["step"].dtype.kind == "i"
        assert f["lr"][()].tolist() == pytest.approx([lr_at(s, 25, cfg) for s in range(25)])  # schedule applied
        assert (f.attrs["total_steps"], f.attrs["n_sequences"], f.attrs["budget"]) == (25, 30, "steps")
    meta = torch.load(tmp_path / "m.pt", weights_only=False)["meta"]
    assert meta["steps"] == 25 and meta["n_sequences"] == 30 and meta["train_config"]["eval_every"] == 10


def test_weight_decay_reaches_the_optimizer(tmp_path):
    seqs = [s for _, s in random_rna(24, seed=3)]
    for wd in (0.0, 0.01, 0.5):
        train_mlm(seqs, "rna", TrainConfig(**{**SMALL, "steps": 6, "save_every": 0, "weight_decay": wd}),
                  tmp_path / f"wd{wd}.pt")
    a, b, c = (state(tmp_path / f"wd{wd}.pt") for wd in (0.0, 0.01, 0.5))
    assert not same_state(a, b) and not same_state(b, c)


def test_same_seed_bit_identical(tmp_path):
    seqs = [s for _, s in random_rna(40, seed=5)]
    cfg = TrainConfig(layers=1, embed_dim=16, heads=2, epochs=2, batch_size=8, seed=3)
    train_mlm(seqs, "rna", cfg, tmp_path / "a.pt")
    train_mlm(seqs, "rna", cfg, tmp_path / "b.pt")
    assert same_state(state(tmp_path / "a.pt"), state(tmp_path / "b.pt"))


SMALL = dict(layers=1, embed_dim=16, heads=2, budget="steps", steps=30, batch_size=8, save_every=10,
             seed=1, device="cpu", log_every=1000)


def interrupt_at(monkeypatch, stop: int | None, ran: list[int]):
    """Make train_mlm record the optimizer steps it runs and raise KeyboardInterrupt at step `stop`."""
    real = lr_at

    def hook(step, total, cfg):
        if step == stop:
            raise KeyboardInterrupt
        ran.append(step)
        return real(step, total, cfg)

    monkeypatch.setattr(training, "lr_at", hook)


def test_interrupted_run_continues_from_its_checkpoint(tmp_path, monkeypatch):
    """Stopped at step 25 (checkpoint at 20), the re-run runs only steps 20..29 and ends bit-identical
    to an uninterrupted run; a restart from scratch would run 0..29 (same weights, other step count)."""
    seqs = [s for _, s in random_rna(48, seed=6)]
    cfg = TrainConfig(**SMALL)
    train_mlm(seqs, "rna", cfg, tmp_path / "ref.pt", tmp_path / "ref.h5")
    out, partial = tmp_path / "m.pt", tmp_path / "m.pt.partial"
    first: list[int] = []
    interrupt_at(monkeypatch, 25, first)
    with pytest.raises(KeyboardInterrupt):
        train_mlm(seqs, "rna", cfg, out, tmp_path / "m.h5")
    assert first == list(range(25)) and not out.exists()
    assert torch.load(partial, weights_only=False)["step"] == 20
    second: list[int] = []
    interrupt_at(monkeypatch, None, second)
    train_mlm(seqs, "rna", cfg, out, tmp_path / "m.h5")
    assert second == list(range(20, 30)), "the re-run did not continue from the step-20 checkpoint"
    assert same_state(state(out), state(tmp_path / "ref.pt"))
    assert same_curves(tmp_path / "m.h5", tmp_path / "ref.h5")  # curve of steps 0..19 came from the checkpoint
    assert not partial.exists()


def test_checkpoint_of_another_config_is_not_resumed(tmp_path, monkeypatch):
    """A periodic checkpoint written under another config (here lr) is ignored: the run starts at
    step 0 and matches a fresh run of the new config."""
    seqs = [s for _, s in random_rna(48, seed=6)]
    out = tmp_path / "m.pt"
    interrupt_at(monkeypatch, 15, [])
    with pytest.raises(KeyboardInterrupt):
        train_mlm(seqs, "rna", TrainConfig(**{**SMALL, "lr": 5e-3}), out)
    assert Path(str(out) + ".partial").exists()
    ran: list[int] = []
    interrupt_at(monkeypatch, None, ran)
    cfg = TrainConfig(**SMALL)
    train_mlm(seqs, "rna", cfg, out)
    assert ran == list(range(30))
    train_mlm(seqs, "rna", cfg, tmp_path / "fresh.pt")
    assert same_state(state(out), state(tmp_path / "fresh.pt"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_run_resumes_identically(tmp_path, sig):
    seqs = [s for _, s in random_rna(64, seed=6)]
    (tmp_path / "seqs.json").write_text(json.dumps(seqs))
    cfg = dict(layers=1, embed_dim=16, heads=2, budget="steps", steps=120, batch_size=8, save_every=10,
               seed=1, device="cpu", log_every=1000)
    train_mlm(seqs, "rna", TrainConfig(**cfg), tmp_path / "ref.pt", tmp_path / "ref_curves.h5")
    out = tmp_path / "killed.pt"
    partial = Path(str(out) + ".partial")
    ran = tmp_path / "ran.json"
    args = [sys.executable, "-c", SCRIPT, json.dumps(cfg), str(tmp_path / "seqs.json"), str(out),
            str(tmp_path / "c.h5"), str(ran)]
    proc = subprocess.Popen(args)
    deadline = time.time() + 120
    while not partial.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert partial.exists(), "no periodic checkpoint before the kill"
    proc.send_signal(sig)
    proc.wait()
    assert not out.exists(), "the killed run must not leave a final checkpoint"
    resumed_from = torch.load(partial, weights_only=False)["step"]
    assert 0 < resumed_from < 120
    subprocess.run(args, check=True)
    assert json.loads(ran.read_text()) == list(range(resumed_from, 120)), "the re-run restarted instead of resuming"
    assert same_state(state(out), state(tmp_path / "ref.pt"))
    assert same_curves(tmp_path / "c.h5", tmp_path / "ref_curves.h5")
    assert not partial.exists()


def test_diverging_pretraining_stops_naming_stage_and_step(tmp_path):
    """An infinite learning rate turns the weights non-finite after the first update: the second
    step's loss is NaN, and the error names the stage and step; no model or curves are written."""
    from bioprune.training.pretraining import pretrain
    from bioprune.ingest import IngestOptions, ingest

    fa = write_fasta(tmp_path / "a.fa", random_rna(60, seed=2))
    shard, hold = str(tmp_path / "1-of-1.h5"), str(tmp_path / "h.h5")
    ingest(fa, [shard], hold, IngestOptions(holdout_fraction=0.05))
    params = dict(layers=1, embed_dim=16, heads=2, lr=math.inf, weight_decay=0.0, warmup_fraction=0.0,
                  batch_size=8, budget="steps", epochs=1, steps=10, save_every=0, device="cpu")
    out, curves_ = tmp_path / "p.pt", tmp_path / "p.h5"
    with pytest.raises(NumericalError, match=r"^pretrain \(p\.pt\): non-finite loss at step 2 of 10"):
        pretrain([shard], hold, str(out), str(curves_), TrainConfig(**params, seed=0), label="full")
    assert not out.exists() and not curves_.exists()


def test_nan_reference_checkpoint_names_reference_stage(tmp_path):
    """Fine-tuning a checkpoint with NaN weights stops at step 1 naming the reference stage."""
    from bioprune.models import build_model, save_checkpoint
    from bioprune.influence.reference import ReferenceConfig, build_reference
    from bioprune.ingest import IngestOptions, ingest

    fa = write_fasta(tmp_path / "a.fa", random_rna(60, seed=2))
    shard = str(tmp_path / "1-of-1.h5")
    ingest(fa, [shard], str(tmp_path / "h.h5"), IngestOptions(holdout_fraction=0.05))
    m = build_model("rna", 1, 16, 2, seed=0)
    with torch.no_grad():
        m.lm_head.dense.weight.fill_(float("nan"))
    save_checkpoint(tmp_path / "nan.pt", m, "rna")
    params = {"checkpoint": str(tmp_path / "nan.pt"), "finetune": True, "subset_fraction": 0.5, "seed": 0,
              "layers": 1, "embed_dim": 16, "heads": 2, "lr": 1e-3, "batch_size": 8, "epochs": 1, "device": "cpu"}
    with pytest.raises(NumericalError, match=r"^reference \(ref\.pt\): non-finite loss at step 1 of"):
        build_reference([shard], str(tmp_path / "ref.pt"), str(tmp_path / "c.h5"), ReferenceConfig.from_params(params))
    assert not (tmp_path / "ref.pt").exists()


def test_tokens_seen_counts_residues_and_specials_of_every_trained_sequence(tmp_path):
    """Two full epochs over the set: tokens_seen = 2 x (residues + 2 per sequence), no padding counted."""
    seqs = [s for _, s in random_rna(24, seed=3, lo=10, hi=60)]
    cfg = TrainConfig(layers=1, embed_dim=16, heads=2, batch_size=8, budget="epochs", epochs=2, device="cpu",
                      save_every=0)
    train_mlm(seqs, "rna", cfg, tmp_path / "m.pt", tmp_path / "c.h5")
    with h5py.File(tmp_path / "c.h5") as f:
        assert int(f.attrs["tokens_seen"]) == 2 * (sum(len(s) for s in seqs) + 2 * len(seqs))
