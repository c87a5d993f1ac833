"""Reliability: killed sketch jobs leave nothing behind and re-run identically; readers check schemas;
non-finite scores stop with the sequence id and stage."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import yaml

from bioprune.errors import BiopruneError, NumericalError
from bioprune.h5io import open_h5
from bioprune.scores import merge_scores
from bioprune.shards import IngestOptions, ingest
from bioprune.sketches import InfluenceConfig, sketch_shard
from bioprune.training import TrainConfig, train_mlm

from helpers import random_rna, write_fasta


def test_reader_checks_kind_version_and_datasets(tmp_path):
    p = tmp_path / "x.h5"
    with h5py.File(p, "w") as f:
        f.attrs["kind"] = "scores"
        f.attrs["schema_version"] = 99
    with pytest.raises(BiopruneError, match="schema version 99"):
        open_h5(p, "scores")
    with pytest.raises(BiopruneError, match="expected a bioprune 'sketches' file"):
        open_h5(p, "sketches")
    with h5py.File(p, "w") as f:
        f.attrs["kind"] = "scores"
        f.attrs["schema_version"] = 1
    with pytest.raises(BiopruneError, match="missing dataset\\(s\\) id, score"):
        open_h5(p, "scores", ["id", "score"])
    (tmp_path / "n.h5").write_bytes(b"not hdf5")
    with pytest.raises(BiopruneError, match="not a readable HDF5 file"):
        open_h5(tmp_path / "n.h5", "scores")


def test_nan_score_names_sequence_and_stage(tiny_workdir):
    tmp, shards = tiny_workdir
    cfg = InfluenceConfig(estimator="projected", sketch_dim=16)
    sketch_shard(shards[0], str(tmp / "ref.pt"), str(tmp / "s.h5"), cfg)
    with h5py.File(tmp / "s.h5", "r+") as f:
        f["sketch"][3] = np.nan
        bad = f["id"].asstr()[3]
    with pytest.raises(NumericalError, match=f"sequence {bad}.*scores"):
        merge_scores([str(tmp / "s.h5")], str(tmp / "scores.h5"), 1e-3)
    assert not (tmp / "scores.h5").exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_sketch_job_leaves_no_output_and_reruns_identically(tmp_path, sig):
    fasta = write_fasta(tmp_path / "a.fa", random_rna(6000, seed=9, lo=150, hi=250))
    shard, hold = str(tmp_path / "1-of-1.h5"), str(tmp_path / "h.h5")
    ingest(fasta, [shard], hold, IngestOptions(max_length=300, holdout_fraction=0.01))
    train_mlm([s for _, s in random_rna(50, seed=1)], "rna",
              TrainConfig(layers=2, embed_dim=32, heads=2, epochs=1, batch_size=16), tmp_path / "ref.pt")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"corpus": {"path": str(fasta), "molecule": "rna"}, "device": "cpu",
                                      "influence": {"estimator": "projected", "sketch_dim": 256,
                                                    "params": "all_linear", "batch_size": 16}}))
    out = tmp_path / "sk.h5"
    cmd = [sys.executable, "-m", "bioprune.cli", "sketch", "--config", str(config), "--shard", shard,
           "--model", str(tmp_path / "ref.pt"), "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    for line in proc.stderr:  # wait until it is mid-way through the shard
        if "sketch" in line and "sequences (" in line or time.time() > deadline:
            break
    assert proc.poll() is None, "sketch finished before it could be killed; enlarge the shard"
    proc.send_signal(sig)
    proc.wait()
    assert not out.exists()
    if sig == signal.SIGTERM:  # SIGTERM runs the cleanup: not even a temporary file is left
        assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".sk.h5")]
    subprocess.run(cmd, check=True, capture_output=True)
    ref = tmp_path / "ref_sk.h5"
    subprocess.run(cmd[:-1] + [str(ref)], check=True, capture_output=True)
    with h5py.File(out) as a, h5py.File(ref) as b:
        assert a["sketch"][()].tobytes() == b["sketch"][()].tobytes()
        assert list(a["id"].asstr()) == list(b["id"].asstr())
