"""Reliability: a writer killed inside its atomic write window leaves no final file; killed sketch
jobs re-run identically; readers check schemas; non-finite scores stop with the sequence id and stage."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from bioprune.errors import BiopruneError, NumericalError
from bioprune.h5io import open_h5
from bioprune.influence.scores import merge_scores
from bioprune.ingest import IngestOptions, ingest
from bioprune.influence.sketches import InfluenceConfig, sketch_shard
from bioprune.training.loop import TrainConfig, train_mlm

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


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_sketch_job_leaves_no_output_and_reruns_identically(tmp_path, sig):
    fasta = write_fasta(tmp_path / "a.fa", random_rna(1200, seed=9, lo=150, hi=250))  # killed after ~800
    shard, hold = str(tmp_path / "1-of-1.h5"), str(tmp_path / "h.h5")
    ingest(fasta, [shard], hold, IngestOptions(max_length=300, holdout_fraction=0.01))
    train_mlm([s for _, s in random_rna(50, seed=1)], "rna",
              TrainConfig(layers=2, embed_dim=32, heads=2, epochs=1, batch_size=16), tmp_path / "ref.pt")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"corpus": {"path": str(fasta), "molecule": "rna"}, "device": "cpu",
                                      "influence": {"estimator": "projected", "sketch_dim": 64,
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
    if sig == signal.SIGTERM:  # SIGTERM runs the cleanup: no temporary file is left, only finished chunks
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".sk.h5")] == [".sk.h5.chunks"]
        assert not [p.name for p in (tmp_path / ".sk.h5.chunks").iterdir() if p.name.endswith(".tmp")]
    rerun = subprocess.run(cmd, check=True, capture_output=True, text=True)
    assert "resumed" in rerun.stderr and not (tmp_path / ".sk.h5.chunks").exists()
    ref = tmp_path / "ref_sk.h5"
    subprocess.run(cmd[:-1] + [str(ref)], check=True, capture_output=True)
    with h5py.File(out) as a, h5py.File(ref) as b:
        assert a["sketch"][()].tobytes() == b["sketch"][()].tobytes()
        assert list(a["id"].asstr()) == list(b["id"].asstr())


# Runs one real writer in a child process, holding it INSIDE the atomic write window: the wrapped
# atomic_path/atomic_h5 lets the writer fill the temporary file, then (before the rename) flushes,
# touches `ready` and sleeps, so the parent's signal lands while the data is half-published.
WINDOW_SCRIPT = """
import contextlib, json, sys, time
from pathlib import Path
from bioprune.errors import exit_on_sigterm
exit_on_sigterm()
writer, out, ready, extra = sys.argv[1], sys.argv[2], Path(sys.argv[3]), json.loads(sys.argv[4])

def held(real, h5=False):
    @contextlib.contextmanager
    def wrapper(*args, **kw):
        with real(*args, **kw) as handle:
            yield handle
            if h5:
                handle.flush()
            ready.write_text("in window")
            time.sleep(300)
    return wrapper

if writer == "sketch":
    import bioprune.influence.sketches as S
    import bioprune.influence.sketch_store as T
    T.atomic_h5 = held(T.atomic_h5, h5=True)  # the output's window (chunks are written before it)
    S.sketch_shard(extra["shard"], extra["model"], out, S.InfluenceConfig(estimator="projected", sketch_dim=16))
elif writer == "checkpoint":
    import bioprune.models as M
    M.atomic_path = held(M.atomic_path)
    M.save_checkpoint(out, M.build_model("rna", 1, 16, 2, seed=0), "rna")
elif writer == "ingest":
    import bioprune.ingest as I
    import bioprune.ingest.dedupe as D
    D.atomic_path = held(D.atomic_path)  # the window of the first shard (parts are written before)
    I.ingest(extra["fasta"], [out], extra["holdout"], I.IngestOptions(holdout_fraction=0.05))
"""


@pytest.mark.parametrize("writer,sig", [("sketch", signal.SIGKILL), ("sketch", signal.SIGTERM),
                                        ("checkpoint", signal.SIGKILL), ("ingest", signal.SIGKILL)],
                         ids=["sketch-SIGKILL", "sketch-SIGTERM", "checkpoint-SIGKILL", "ingest-SIGKILL"])
def test_kill_inside_atomic_write_window_leaves_no_final_file(tiny_workdir, writer, sig):
    """SIGKILL after the temporary file holds data but before the rename: the final path never
    appears (a stale `.NAME.*.tmp` may stay); SIGTERM runs the cleanup and leaves nothing at all.
    An in-place writer (no temporary file) fails this test."""
    import json

    tmp, shards = tiny_workdir
    out_dir = tmp / "win"
    out_dir.mkdir()
    out = out_dir / {"sketch": "sk.h5", "checkpoint": "m.pt", "ingest": "1-of-1.h5"}[writer]
    ready = tmp / "ready"
    extra = {"shard": shards[0], "model": str(tmp / "ref.pt"), "fasta": str(tmp / "pool.fa"),
             "holdout": str(out_dir / "holdout.h5")}
    proc = subprocess.Popen([sys.executable, "-c", WINDOW_SCRIPT, writer, str(out), str(ready), json.dumps(extra)],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not ready.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert ready.exists(), f"writer never reached its write window: {proc.poll()} {proc.stderr.read() if proc.poll() is not None else ''}"
    proc.send_signal(sig)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert not out.exists(), f"{out.name} was published by a writer killed before its rename"
    assert not (out_dir / "holdout.h5").exists()
    stale = [p for p in out_dir.iterdir() if p.name.startswith(f".{out.name}.") and p.name.endswith(".tmp")]
    if sig == signal.SIGKILL:
        assert stale and stale[0].stat().st_size > 0, "the kill did not land after data was written"
    else:
        left = [p.name for p in out_dir.iterdir() if p.name != f".{out.name}.chunks"]  # kept to resume
        assert left == [], "SIGTERM must remove the temporary files"


PROBE = """
import pytest

@pytest.mark.requires_tool("no-such-tool-bioprune")
def test_needs_missing_tool():
    pass

@pytest.mark.requires_tool("sh")
def test_needs_sh():
    pass

def test_skip_naming_mmseqs():
    pytest.skip("mmseqs2 not installed")

def test_unrelated_skip():
    pytest.skip("nothing to do with tools")
"""


@pytest.mark.parametrize("ci", ["", "true"])
def test_ci_turns_skipped_optional_tests_into_failures(tmp_path, ci):
    """conftest.py: with CI=true a test needing a missing system tool fails instead of skipping;
    either way the run ends by listing which optional tests ran."""
    import os
    import shutil

    here = Path(__file__).resolve().parents[1]
    for name in ("conftest.py", "helpers.py"):
        shutil.copy(here / name, tmp_path / name)
    (tmp_path / "test_probe.py").write_text(PROBE)
    env = {**os.environ, "CI": ci, "BIOPRUNE_ALLOW_SKIP": ""}
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfEs", str(tmp_path)],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    out = p.stdout
    assert "ran, passed" in out and "test_probe.py::test_needs_sh" in out
    assert "optional tests: 1 ran, 2 did not run" in out
    if ci:
        assert p.returncode == 1, out
        assert "ERROR test_probe.py::test_needs_missing_tool" in out and "FAILED test_probe.py::test_skip_naming_mmseqs" in out
        assert "1 failed, 1 passed, 1 skipped, 1 error" in out  # the unrelated skip stays a skip
    else:
        assert p.returncode == 0, out
        assert "1 passed, 3 skipped" in out


MODULE_SKIP = """
import pytest

pytest.importorskip("no_such_module_bioprune_29")


def test_hidden():
    pass
"""

ALLOWED_MODULE_SKIP = """
import pytest

pytest.skip("slurm not reachable here", allow_module_level=True)
"""


@pytest.mark.parametrize("ci", ["", "true"])
def test_ci_fails_a_test_module_skipped_at_collection(tmp_path, ci):
    """conftest.py: a module-level importorskip skips the whole module at collection, before any test's
    report exists; with CI=true that is a collection error (exit status not 0), unless the reason names
    only tools in BIOPRUNE_ALLOW_SKIP (here slurm); locally it stays a skip. Both are listed."""
    import os
    import shutil

    here = Path(__file__).resolve().parents[1]
    for name in ("conftest.py", "helpers.py"):
        shutil.copy(here / name, tmp_path / name)
    (tmp_path / "test_hidden.py").write_text(MODULE_SKIP)
    (tmp_path / "test_allowed.py").write_text(ALLOWED_MODULE_SKIP)
    (tmp_path / "test_fine.py").write_text("def test_fine():\n    pass\n")
    env = {**os.environ, "CI": ci, "BIOPRUNE_ALLOW_SKIP": "slurm"}
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfEs", str(tmp_path)],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    out = p.stdout
    assert "module skipped" in out and "test_allowed.py" in out
    if ci:
        assert p.returncode not in (0, 5), out
        assert "ERROR collecting test_hidden.py" in out and "was skipped at collection" in out
        assert "no_such_module_bioprune_29" in out and "failed (module skipped in CI)" in out
        assert "ERROR collecting test_allowed.py" not in out
    else:
        assert p.returncode == 0, out
        assert "1 passed, 2 skipped" in out
