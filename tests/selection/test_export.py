"""Selection export: the TSV of ids and scores written beside each selection FASTA (bioprune.selection.export)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from bioprune import stages
from bioprune.selection.export import COLUMNS
from bioprune.h5io import atomic_h5, write_str
from bioprune.ingest import IngestOptions, ingest, read_shard
from helpers import random_rna, write_fasta


def test_selection_tsv_lists_fasta_ids_with_their_scores_and_pool_ranks(tmp_path):
    shards = [str(tmp_path / "1-of-1.h5")]
    ingest(write_fasta(tmp_path / "p.fa", random_rna(60, seed=1)), shards, str(tmp_path / "ho.h5"),
           IngestOptions(holdout_fraction=0.001))
    ids, seqs, _ = read_shard(shards[0])
    rng = np.random.default_rng(0)
    score, loss = rng.random(len(ids)), rng.random(len(ids))
    with atomic_h5(str(tmp_path / "scores.h5"), "scores") as f:
        write_str(f, "id", ids)
        f.create_dataset("score", data=score)
        f.create_dataset("loss", data=loss)
        f.create_dataset("length", data=np.array([len(s) for s in seqs], dtype=np.int32))
        f.create_dataset("grad_sqnorm", data=score * 2)
        f.create_dataset("in_subset", data=np.arange(len(ids)) % 3 == 0)
    stages.select(str(tmp_path / "scores.h5"), shards, str(tmp_path / "s.h5"), str(tmp_path / "s.fa"),
                  {"strategy": "top_influence"}, 0.1, 0, table=str(tmp_path / "s.tsv"))
    tab = pd.read_csv(tmp_path / "s.tsv", sep="\t", comment="#")
    fasta_ids = [line[1:].strip() for line in open(tmp_path / "s.fa") if line.startswith(">")]
    assert tuple(tab.columns) == COLUMNS and tab["id"].tolist() == fasta_ids and len(tab) == 6
    k = [ids.index(i) for i in tab["id"]]
    np.testing.assert_array_equal(tab["score"].to_numpy(), score[k])  # full precision (repr)
    np.testing.assert_array_equal(tab["loss"].to_numpy(), loss[k])
    assert tab["length"].tolist() == [len(seqs[j]) for j in k]
    assert tab["in_subset"].tolist() == [int(j % 3 == 0) for j in k]
    # top_influence keeps the highest scores: their pool ranks are exactly 1..6
    assert sorted(tab["rank"]) == list(range(1, 7))
    assert tab.loc[tab["score"].idxmax(), "rank"] == 1
