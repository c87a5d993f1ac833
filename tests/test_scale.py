"""Corpus scale (issue 14): resumable sketch jobs, streaming merge, selection on arrays."""
from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest

from bioprune import sketch_store
from bioprune.sketches import InfluenceConfig, sketch_shard

KILL_AFTER_TWO_CHUNKS = """
import os, signal, sys
import bioprune.sketch_store as S, bioprune.sketches as K
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
