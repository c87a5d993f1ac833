"""Fixtures shared by the tests."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import random_rna, write_fasta  # noqa: E402


@pytest.fixture
def rna_fasta(tmp_path: Path) -> Path:
    return write_fasta(tmp_path / "pool.fa", random_rna(200))


@pytest.fixture
def tiny_workdir(tmp_path: Path, rna_fasta: Path):
    """Ingested shards plus a tiny trained reference model."""
    from bioprune.shards import IngestOptions, ingest, read_shard
    from bioprune.training import TrainConfig, train_mlm

    shards = [str(tmp_path / f"{i}-of-2.h5") for i in (1, 2)]
    ingest(rna_fasta, shards, str(tmp_path / "holdout.h5"), IngestOptions(max_length=100, holdout_fraction=0.05))
    seqs = [s for p in shards for s in read_shard(p)[1]]
    train_mlm(seqs, "rna", TrainConfig(layers=1, embed_dim=16, heads=2, epochs=2, batch_size=16),
              tmp_path / "ref.pt")
    return tmp_path, shards
