"""Device batches: token-budget batches stay within the budget and cover every sequence once per
epoch; the prefetcher yields the plain loop's batches; device masking equals the host masking;
gradient clipping is applied; the tokens budget gives arms of different lengths equal tokens."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import bioprune.training.loop as training
from bioprune.training.batching import mask_with_generator, pad_batch
from bioprune.training.dataflow import BatchPlan, Prefetcher, host_batch, seq_tokens, token_batches
from bioprune.errors import BiopruneError
from bioprune.training.loop import TrainConfig, train_mlm

from helpers import random_rna

TINY = dict(layers=1, embed_dim=16, heads=2, batch_size=8, seed=1, device="cpu", save_every=0, log_every=1000)


@pytest.mark.parametrize("seed", [0, 1])
def test_token_batches_within_budget_cover_each_sequence_once(seed):
    lengths = np.random.default_rng(seed).integers(5, 300, size=517)
    for epoch in range(3):
        bs = token_batches(epoch, lengths, seed, max_tokens=1024)
        assert all(len(b) * seq_tokens(lengths[b]).max() <= 1024 for b in bs)
        assert sorted(np.concatenate(bs).tolist()) == list(range(517))
        fill = sum(seq_tokens(lengths[b]).sum() for b in bs) / (1024 * len(bs))
        assert fill > 0.7  # length bucketing keeps padding low
    assert [b.tolist() for b in token_batches(0, lengths, seed, 1024)] != \
        [b.tolist() for b in token_batches(1, lengths, seed, 1024)]


def test_max_tokens_below_longest_sequence_is_a_config_error():
    with pytest.raises(BiopruneError, match="pretrain.max_tokens"):
        BatchPlan(np.array([10, 500]), 0, 8, max_tokens=256)


def test_plan_resumes_mid_epoch_and_counts_tokens():
    lengths = np.random.default_rng(0).integers(5, 60, size=50)
    plan = BatchPlan(lengths, 3, 8, max_tokens=200)
    full = [(s, b.tolist()) for s, _, b in plan.steps(0, 40)]
    assert [(s, b.tolist()) for s, _, b in plan.steps(17, 40)] == full[17:]
    counts = plan.token_counts(40)
    assert counts["tokens_seen"] == sum(seq_tokens(lengths[b]).sum() for _, b in full)
    assert counts["unique_sequences"] == 50 and counts["unique_tokens"] == seq_tokens(lengths).sum()


def test_prefetcher_yields_the_plain_loop_batches_and_raises_errors():
    seqs = [s for _, s in random_rna(40, seed=2)]
    plan = BatchPlan(np.array([len(s) for s in seqs]), 0, 6)
    plain = [host_batch(seqs, "rna", b, False) for _, _, b in plan.steps(0, 15)]
    pre = Prefetcher(plan.steps(0, 15), lambda it: host_batch(seqs, "rna", it[2], False), depth=3)
    got = list(pre)
    assert len(got) == 15 and all(torch.equal(a, b) for a, b in zip(plain, got))

    def boom(i):
        if i == 3:
            raise RuntimeError("bad batch")
        return i

    with pytest.raises(RuntimeError, match="bad batch"):
        list(Prefetcher(range(10), boom))


def test_sync_free_masking_matches_reference_algorithm():
    """At least one masked residue per row; the mask is a function of the generator only."""
    toks = pad_batch(["A", "ACGUACGUAC" * 3, "GG"], "rna")
    a = mask_with_generator(toks, "rna", torch.Generator().manual_seed(5))
    b = mask_with_generator(toks, "rna", torch.Generator().manual_seed(5))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert ((a[1] != -100).sum(1) >= 1).all()


def test_token_batches_train_and_clipping_is_applied(tmp_path, monkeypatch):
    seqs = [s for _, s in random_rna(30, seed=4)]
    norms = []
    real = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, *a, **k):
        params = list(params)
        out = real(params, max_norm, *a, **k)
        norms.append(float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))))
        return out

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    cfg = TrainConfig(**TINY, budget="steps", steps=5, max_tokens=256, clip_norm=0.01)
    train_mlm(seqs, "rna", cfg, tmp_path / "m.pt")
    assert len(norms) == 5 and max(norms) <= 0.01 * 1.0001
    norms.clear()
    train_mlm(seqs, "rna", TrainConfig(**TINY, budget="steps", steps=5), tmp_path / "n.pt")
    assert norms == []  # clip_norm None: no clipping


def test_tokens_budget_gives_arms_of_different_lengths_equal_tokens(tmp_path):
    short = [s for _, s in random_rna(60, seed=1, lo=10, hi=20)]
    long = [s for _, s in random_rna(60, seed=2, lo=60, hi=90)]
    cfg = TrainConfig(**TINY, budget="tokens", tokens=6000, max_tokens=512)
    a = train_mlm(short, "rna", cfg, tmp_path / "a.pt", tmp_path / "a.h5")
    b = train_mlm(long, "rna", cfg, tmp_path / "b.pt", tmp_path / "b.h5")
    for r in (a, b):
        assert 6000 <= r["tokens_seen"] < 6000 + 512  # stops at the first step reaching the budget
    assert a["steps"] > b["steps"]  # short sequences: more steps for the same tokens
    assert b["unique_tokens"] == sum(len(s) + 2 for s in long)  # the long arm saw every sequence
    assert a["unique_tokens"] < a["tokens_seen"]  # the short arm repeated sequences
    meta = torch.load(tmp_path / "a.pt", weights_only=False)["meta"]
    assert meta["tokens_seen"] == a["tokens_seen"] and meta["unique_tokens"] == a["unique_tokens"]
    import h5py

    with h5py.File(tmp_path / "b.h5") as f:
        assert f.attrs["tokens_seen"] == b["tokens_seen"] and f["tokens"][-1] == b["tokens_seen"]
    steps_arm = train_mlm(short, "rna", TrainConfig(**{**TINY, "budget": "steps", "steps": 3}), tmp_path / "c.pt")
    assert steps_arm["steps"] == 3 and steps_arm["tokens_seen"] < 6000


def test_step_loop_reads_the_loss_only_at_log_steps(tmp_path, monkeypatch):
    """No host sync per step: losses are read back in one batch per logging interval."""
    calls = []
    real = training.ddp.all_sum

    def spy(t, ctx):
        calls.append(t.numel())
        return real(t, ctx)

    monkeypatch.setattr(training.ddp, "all_sum", spy)
    seqs = [s for _, s in random_rna(30, seed=4)]
    train_mlm(seqs, "rna", TrainConfig(**{**TINY, "log_every": 4}, budget="steps", steps=10), tmp_path / "m.pt")
    assert calls == [4, 4, 2]  # one read-back (and all-reduce) per logging interval


def test_config_keys_reach_the_training_config():
    from bioprune.config import load_config, pretrain_params

    c = load_config(overrides={"pretrain": {"budget": "tokens", "tokens": 5000, "max_tokens": 2048, "clip_norm": 1.0,
                                            "gpus": 2}, "influence": {"max_tokens": 4096}})
    p = pretrain_params(c)
    assert (p["budget"], p["tokens"], p["max_tokens"], p["clip_norm"], p["compile"], p["gpus"]) == \
        ("tokens", 5000, 2048, 1.0, False, 2)
    from bioprune.config import influence_params

    assert influence_params(c, "sketch")["max_tokens"] == 4096
