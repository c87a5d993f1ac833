"""Corpus scale (issue 14): resumable sketch jobs, streaming merge, selection on arrays."""
from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest

from bioprune.errors import BiopruneError
from helpers import typed_selection_kw

from bioprune.influence import sketch_store
from bioprune.influence.sketches import InfluenceConfig, sketch_shard

KILL_AFTER_TWO_CHUNKS = """
import os, signal, sys
import bioprune.influence.sketch_store as S, bioprune.influence.sketches as K
S.CHUNK_SEQS = 16
real, calls = K._sketch_chunk, []
def chunk(*a, **kw):
    if len(calls) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    calls.append(1)
    real(*a, **kw)
K._sketch_chunk = chunk
K.sketch_shard(sys.argv[1], sys.argv[2], sys.argv[3], K.InfluenceConfig(estimator="projected", sketch_dim=8, batch_size=8))
"""


def contents(path):
    with h5py.File(path) as f:
        return {k: f[k][()].tolist() for k in f}, {k: str(v) for k, v in f.attrs.items()}


def test_killed_sketch_job_resumes_with_identical_scores(tiny_workdir, monkeypatch):
    tmp, shards = tiny_workdir
    cfg = InfluenceConfig(estimator="projected", sketch_dim=8, batch_size=8)
    monkeypatch.setattr(sketch_store, "CHUNK_SEQS", 16)
    whole = tmp / "whole.h5"
    sketch_shard(shards[0], str(tmp / "ref.pt"), str(whole), cfg)
    out = tmp / "killed.h5"
    proc = subprocess.run([sys.executable, "-c", KILL_AFTER_TWO_CHUNKS, shards[0], str(tmp / "ref.pt"), str(out)])
    assert proc.returncode == -9 and not out.exists()
    work = tmp / ".killed.h5.chunks"
    assert len(list(work.glob("0*.h5"))) == 2
    stats = sketch_shard(shards[0], str(tmp / "ref.pt"), str(out), cfg)
    assert stats["resumed"] == 32 and not work.exists()
    assert contents(out) == contents(whole)


def test_chunks_of_another_run_are_not_reused(tiny_workdir, monkeypatch):
    tmp, shards = tiny_workdir
    monkeypatch.setattr(sketch_store, "CHUNK_SEQS", 16)
    cfg = InfluenceConfig(estimator="projected", sketch_dim=8, batch_size=8)
    work = sketch_store.chunk_dir(str(tmp / "s.h5"), {"other": "run"})
    (work / "000000.h5").write_text("stale")
    assert sketch_shard(shards[0], str(tmp / "ref.pt"), str(tmp / "s.h5"), cfg)["resumed"] == 0


def demo_like_pool(n: int, seed: int) -> dict:
    """Scores like the demo's (log-normal, some exact ties), lengths 20..160, grad norms."""
    rng = np.random.default_rng(seed)
    score = np.round(rng.lognormal(0, 1.5, n), 3)  # rounding plants ties, also at the cut-offs
    return {"id": [f"s{i}" for i in range(n)], "score": score, "grad_sqnorm": np.round(rng.random(n), 2),
            "length": rng.integers(20, 161, n)}


@pytest.mark.parametrize("n", [400, 1900])
def test_selection_on_arrays_equals_old_selection(n):
    import selection_oracle as old

    from bioprune.selection.strategies import select

    for seed in (0, 1):
        sc = demo_like_pool(n, seed)
        for budget in (0.005, 0.05, 0.1, 0.3):
            for strategy in ("top_influence", "cci", "random", "random_10x", "grad_norm"):
                for strat in ("none", "length"):
                    for edge in ("inclusive", "official"):
                        kw = dict(cci={"beta": 0.1, "bins": 10, "bin_edge": edge, "stratify_by": strat},
                                  top_influence={"stratify_by": strat}, length_strata=5)
                        try:
                            want = old.select(strategy, sc, budget, seed, **kw)
                        except Exception as e:  # the same error, then
                            with pytest.raises(type(e)):
                                select(strategy, sc, budget, seed, **typed_selection_kw(kw))
                            continue
                        assert select(strategy, sc, budget, seed, **typed_selection_kw(kw)) == want, (strategy, budget, strat, edge)


def awkward_scores(n: int, seed: int) -> np.ndarray:
    """Scores that stress an order-preserving radix key: ties, both zeros, negatives, infinities,
    tiny and huge exponents, and values sharing their top 48 bits."""
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(0, 3, n), 1) * 10.0 ** rng.integers(-300, 300, n)
    x[rng.random(n) < 0.1] = -0.0
    x[rng.random(n) < 0.1] = 0.0
    x[rng.random(n) < 0.05] = np.inf
    x[rng.random(n) < 0.05] = -np.inf
    near = rng.random(n) < 0.2
    x[near] = 1.5 + rng.integers(0, 40, near.sum()) * np.finfo(float).eps  # same top 48 bits
    return x


@pytest.mark.parametrize("collect", [0, 1 << 20])
def test_streamed_top_k_is_exact_at_every_radix_level(monkeypatch, collect):
    from bioprune.selection import stream as S
    monkeypatch.setattr(S, "COLLECT", collect)  # 0: all four 16-bit passes; else finish in memory
    for seed in range(4):
        x = awkward_scores(500, seed)
        for block in (1, 7, 1000):
            col = S.Column(x, block=block)
            for k in (1, 2, 17, 250, 499, 500):
                assert S.kth_largest(col, k) == np.sort(x)[::-1][k - 1], (seed, block, k)
                np.testing.assert_array_equal(S.top_k_stream(col, k), np.argsort(-x, kind="stable")[:k])


def test_streamed_selection_in_small_blocks_equals_old_selection(monkeypatch):
    import selection_oracle as old

    from bioprune.selection import stream as S
    from bioprune.selection.strategies import select_indices

    monkeypatch.setattr(S, "COLLECT", 3)
    for seed in (0, 1):
        sc = demo_like_pool(1900, seed)
        for budget in (0.005, 0.1, 0.3):
            for strategy in ("top_influence", "cci", "grad_norm"):
                for edge, strat in (("inclusive", "none"), ("official", "none"), ("inclusive", "length"),
                                    ("official", "length")):
                    kw = dict(cci={"beta": 0.1, "bins": 10, "bin_edge": edge, "stratify_by": strat},
                              top_influence={"stratify_by": strat}, length_strata=5)
                    cols = {k: S.Column(sc[k], k, block=64) for k in ("score", "grad_sqnorm", "length")}
                    got = select_indices(strategy, cols, 1900, budget, seed, **typed_selection_kw(kw))
                    assert [sc["id"][i] for i in got] == old.select(strategy, sc, budget, seed, **kw), (strategy, strat)


def test_length_strata_from_counts_equal_numpy_quantiles():
    from bioprune.selection import stream as S
    from bioprune.selection.strata import StrataPlan

    rng = np.random.default_rng(0)
    for trial in range(300):
        n = int(rng.integers(1, 400))
        lengths = rng.integers(1, int(rng.choice([3, 30, 3000])), n)
        n_strata = int(rng.integers(1, 25))
        want = np.unique(np.quantile(lengths.astype(float), np.arange(1, n_strata) / n_strata))
        plan = StrataPlan.of(S.Column(lengths, "length", block=int(rng.integers(1, 50))), n_strata)
        np.testing.assert_array_equal(plan.inner, want)
        raw = np.searchsorted(want, lengths, side="right")
        assert plan.of_lengths(lengths).tolist() == np.unique(raw, return_inverse=True)[1].tolist()
        assert plan.sizes.tolist() == np.bincount(np.unique(raw, return_inverse=True)[1]).tolist()


def test_streamed_selection_names_a_nan_score(tmp_path):
    from bioprune.selection import stream as S
    x = np.arange(10.0)
    x[7] = np.nan
    with pytest.raises(BiopruneError, match="scores.h5: dataset score: NaN at position 7"):
        S.top_k_stream(S.Column(x, "scores.h5: dataset score", block=4), 3)


def fake_scores(path, shards, seed=0):
    """A scores.h5 over the shards' sequences in shard order (as the merge writes it)."""
    from bioprune.h5io import atomic_h5, write_str
    from bioprune.ingest import read_shard

    ids, seqs = [], []
    for p in shards:
        i, s, _ = read_shard(p)
        ids += i
        seqs += s
    rng = np.random.default_rng(seed)
    with atomic_h5(path, "scores", subset_seed=0) as f:
        write_str(f, "id", ids)
        f.create_dataset("score", data=np.round(rng.lognormal(0, 1, len(ids)), 2))
        f.create_dataset("length", data=np.array([len(s) for s in seqs], dtype=np.int32))
        f.create_dataset("grad_sqnorm", data=rng.random(len(ids)))
    return dict(zip(ids, seqs))


@pytest.mark.parametrize("strategy", ["top_influence", "cci", "random"])
def test_select_stage_streams_the_old_selection_and_fasta(tmp_path, rna_fasta, strategy):
    from bioprune import stages
    from bioprune.influence.scores import read_scores
    from bioprune.selection.strategies import CCIOptions, read_selection, select
    from bioprune.ingest import IngestOptions, ingest

    shards = [str(tmp_path / f"{i}-of-3.h5") for i in (1, 2, 3)]
    ingest(rna_fasta, shards, str(tmp_path / "h.h5"), IngestOptions(holdout_fraction=0.05))
    seq_of = fake_scores(str(tmp_path / "sc.h5"), shards)
    params = {"strategy": strategy, "cci": {"beta": 0.1, "bins": 5}}
    stages.select(str(tmp_path / "sc.h5"), shards, str(tmp_path / "sel.h5"), str(tmp_path / "sel.fa"), params, 0.2, 3)
    want = select(strategy, read_scores(str(tmp_path / "sc.h5")), 0.2, 3, CCIOptions(**params["cci"]))
    assert read_selection(str(tmp_path / "sel.h5")) == want
    assert (tmp_path / "sel.fa").read_text() == "".join(f">{i}\n{seq_of[i]}\n" for i in want)
    with pytest.raises(BiopruneError, match="do not match"):
        stages.select(str(tmp_path / "sc.h5"), shards[::-1], str(tmp_path / "x.h5"), str(tmp_path / "x.fa"), params, 0.2, 3)


def test_bench_scale_reports_every_stage(tmp_path):
    from bioprune.tools.bench_scale import bench_scale

    rows = bench_scale(str(tmp_path), [3000], [3000], [3000], shards=2, strategies=("cci",), budgets=(0.01,))
    assert [r["stage"] for r in rows] == ["ingest", "merge", "select"]
    assert rows[0]["records"] == 3000 and 2900 < rows[0]["kept"] < 3000  # about 2% planted duplicates
    assert all(r["peak_rss_mb"] > 20 and r["rec_per_s"] > 0 for r in rows)


@pytest.mark.parametrize("edge,from_flat", [("inclusive", 10), ("official", 0)])
def test_cci_takes_its_share_from_a_stratum_of_equal_scores(monkeypatch, edge, from_flat):
    """The shortest quarter of the pool has one score for all (after its top share is dropped every kept
    score is equal: one bin of zero width). Length-stratified CCI with inclusive edges still takes that
    stratum's proportional share (10 of 40); official edges leave the most extreme kept score out of
    every bin (bio-coreset's upper edge, see selections.cci_bins), here the whole stratum, whose share
    goes to the others. Plain CCI over a pool of equal scores draws its k (inclusive). All equal the
    in-memory oracle, also when streamed in small blocks."""
    import selection_oracle as old

    from bioprune.selection import stream as S
    from bioprune.selection.strategies import select, select_indices

    monkeypatch.setattr(S, "COLLECT", 3)
    sc = demo_like_pool(400, 4)
    order = np.argsort(sc["length"], kind="stable")
    sc["length"][order] = np.repeat([25, 60, 100, 140], 100)  # four strata of 100
    flat = sc["length"] == 25
    sc["score"][flat] = 2.5
    kw = dict(cci={"beta": 0.1, "bins": 10, "bin_edge": edge, "stratify_by": "length"}, length_strata=4)
    want = old.select("cci", sc, 0.1, 0, **kw)
    got = select("cci", sc, 0.1, 0, **typed_selection_kw(kw))
    cols = {k: S.Column(sc[k], k, block=16) for k in ("score", "grad_sqnorm", "length")}
    streamed = [sc["id"][i] for i in select_indices("cci", cols, 400, 0.1, 0, **typed_selection_kw(kw))]
    assert got == want == streamed and len(got) == 40
    flat_ids = {i for i, f in zip(sc["id"], flat) if f}
    assert len(flat_ids & set(got)) == from_flat
    if edge == "inclusive":
        same = {**sc, "score": np.full(400, 2.5)}
        kw["cci"]["stratify_by"] = "none"
        got = select("cci", same, 0.1, 0, **typed_selection_kw(kw))
        assert got == old.select("cci", same, 0.1, 0, **kw) and len(got) == 40


@pytest.mark.parametrize("beta,ok", [(0.0, True), (0.5, True), (0.999, True), (1.0, False), (1.5, False), (-0.1, False)])
def test_cci_beta_must_be_in_the_half_open_unit_interval(beta, ok):
    """selection.cci.beta is a fraction of the kept scores dropped from the top: [0, 1). beta = 1 would drop
    everything (no bins to draw from), so it is refused like any value outside."""
    from bioprune.selection.stream import check_cci

    if ok:
        check_cci(beta, "inclusive")
    else:
        with pytest.raises(BiopruneError, match=r"selection.cci.beta: .* must be in \[0, 1\)"):
            check_cci(beta, "official")
