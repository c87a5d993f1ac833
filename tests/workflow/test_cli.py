"""CLI: on bad input every subcommand exits 1 with one line `bioprune CMD: error: ...` naming the file,
record or config key, prints no traceback and leaves no output (not even a temporary file).

Most cases call `bioprune.cli.main` in-process (a subprocess pays ~3-8 s of torch import each); two
run the real `python -m bioprune.cli` to check the process exit code and stderr end to end.
"""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bioprune.cli import main
from bioprune.models import build_model, save_checkpoint
from bioprune.ingest import IngestOptions, ingest

from helpers import random_rna, write_fasta


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Path:
    """Valid inputs (config, FASTA, shard, holdout, RNA and protein models) plus bad ones, in one folder."""
    d = tmp_path_factory.mktemp("cli")
    write_fasta(d / "pool.fa", random_rna(40, seed=1))
    ingest(d / "pool.fa", [str(d / "1-of-1.h5")], str(d / "holdout.h5"), IngestOptions(holdout_fraction=0.1))
    save_checkpoint(d / "rna.pt", build_model("rna", 1, 16, 2, seed=0), "rna")
    save_checkpoint(d / "protein.pt", build_model("protein", 1, 16, 2, seed=0), "protein")
    base = {"device": "cpu", "corpus": {"path": str(d / "pool.fa"), "molecule": "rna", "shards": 1},
            "influence": {"estimator": "projected", "sketch_dim": 16},
            "benchmark": {"resources": str(d / "no_resources"), "tasks": ["perplexity"], "rnafold": False}}
    (d / "ok.yaml").write_text(yaml.safe_dump(base))
    (d / "badkey.yaml").write_text(yaml.safe_dump({**base, "corpus": {**base["corpus"], "pth": "x.fa"}}))
    (d / "badtype.yaml").write_text(yaml.safe_dump({**base, "corpus": {**base["corpus"], "shards": "two"}}))
    (d / "notyaml.yaml").write_text("corpus: {path: [unclosed\n")
    (d / "badrec.fa").write_text("".join(f">ok{i}\nACGUACGUAC\n" for i in range(50)) + ">r51 bad\nACG7U\n")
    (d / "img.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (d / "junk.pt").write_bytes(b"not a checkpoint at all")
    (d / "metrics.csv").write_text("model,score\nx,1\n")
    return d


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    old = signal.getsignal(signal.SIGTERM)  # main() installs a SIGTERM handler; keep pytest's
    try:
        rc = main(argv)
    finally:
        signal.signal(signal.SIGTERM, old)
    return rc, capsys.readouterr().err


# (case id, argv with {d} = input folder and {o} = output folder, substrings the error line must name)
CASES = [
    ("ingest-missing-fasta", "ingest --config {d}/ok.yaml --fasta {d}/nope.fa --out-dir {o}", ["nope.fa", "not found"]),
    ("ingest-bad-record", "ingest --config {d}/ok.yaml --fasta {d}/badrec.fa --out-dir {o}",
     ["badrec.fa", "record 51", "id r51", "'7'"]),
    ("ingest-not-fasta", "ingest --config {d}/ok.yaml --fasta {d}/img.png --out-dir {o}", ["img.png", "not FASTA"]),
    ("ingest-wrong-config-key", "ingest --config {d}/badkey.yaml --out-dir {o}", ["badkey.yaml", "pth"]),
    ("ingest-wrong-config-type", "ingest --config {d}/badtype.yaml --out-dir {o}", ["badtype.yaml", "corpus.shards"]),
    ("ingest-missing-config", "ingest --config {d}/nope.yaml --out-dir {o}", ["nope.yaml", "not found"]),
    ("ingest-config-not-yaml", "ingest --config {d}/notyaml.yaml --out-dir {o}", ["notyaml.yaml", "YAML", "line"]),
    ("reference-missing-shard", "reference --config {d}/ok.yaml --shards {d}/nope.h5 --out {o}/r.pt --curves {o}/r.h5",
     ["nope.h5", "not found"]),
    ("reference-fasta-as-shard", "reference --config {d}/ok.yaml --shards {d}/pool.fa --out {o}/r.pt --curves {o}/r.h5",
     ["pool.fa"]),
    ("reference-wrong-config-key", "reference --config {d}/badkey.yaml --shards {d}/1-of-1.h5 --out {o}/r.pt "
     "--curves {o}/r.h5", ["pth"]),
    ("curvature-wrong-estimator", "curvature --config {d}/ok.yaml --shards {d}/1-of-1.h5 --model {d}/rna.pt "
     "--out {o}/cv.h5", ["influence.estimator"]),
    ("sketch-missing-model", "sketch --config {d}/ok.yaml --shard {d}/1-of-1.h5 --model {d}/nope.pt --out {o}/s.h5",
     ["nope.pt", "not found"]),
    ("sketch-junk-model", "sketch --config {d}/ok.yaml --shard {d}/1-of-1.h5 --model {d}/junk.pt --out {o}/s.h5",
     ["junk.pt", "not a PyTorch checkpoint"]),
    ("sketch-protein-model-rna-shard", "sketch --config {d}/ok.yaml --shard {d}/1-of-1.h5 --model {d}/protein.pt "
     "--out {o}/s.h5", ["protein.pt", "corpus.molecule"]),
    ("sketch-missing-shard", "sketch --config {d}/ok.yaml --shard {d}/nope.h5 --model {d}/rna.pt --out {o}/s.h5",
     ["nope.h5"]),
    ("scores-missing-sketch", "scores --config {d}/ok.yaml --sketches {d}/nope.h5 --out {o}/sc.h5", ["nope.h5"]),
    ("scores-shard-as-sketch", "scores --config {d}/ok.yaml --sketches {d}/1-of-1.h5 --out {o}/sc.h5",
     ["1-of-1.h5", "sketches"]),
    ("cluster-missing-shard", "cluster --config {d}/ok.yaml --shards {d}/nope.h5 --out {o}/reps.txt", ["nope.h5"]),
    ("select-missing-scores", "select --config {d}/ok.yaml --scores {d}/nope.h5 --shards {d}/1-of-1.h5 "
     "--strategy random --budget 0.1 --out {o}/sel.h5 --fasta {o}/sel.fa", ["nope.h5"]),
    ("select-shard-as-scores", "select --config {d}/ok.yaml --scores {d}/1-of-1.h5 --shards {d}/1-of-1.h5 "
     "--strategy random --budget 0.1 --out {o}/sel.h5 --fasta {o}/sel.fa", ["1-of-1.h5", "scores"]),
    ("pretrain-missing-selection", "pretrain --config {d}/ok.yaml --shards {d}/1-of-1.h5 --holdout {d}/holdout.h5 "
     "--selection {d}/nope.h5 --out {o}/p.pt --curves {o}/p.h5", ["nope.h5"]),
    ("pretrain-missing-holdout", "pretrain --config {d}/ok.yaml --shards {d}/1-of-1.h5 --holdout {d}/nope.h5 "
     "--out {o}/p.pt --curves {o}/p.h5", ["nope.h5"]),
    ("benchmark-missing-model", "benchmark --config {d}/ok.yaml --model {d}/nope.pt --holdout {d}/holdout.h5 "
     "--out {o}/m.csv", ["nope.pt"]),
    ("benchmark-missing-resources", "benchmark --config {d}/ok.yaml --model {d}/rna.pt --holdout {d}/nope.h5 "
     "--out {o}/m.csv", ["nope.h5"]),
    ("rnafold-missing-resources", "rnafold --config {d}/ok.yaml --out {o}/rf.csv", ["no_resources", "benchmark.resources"]),
    ("build-resources-missing-raw", "build-resources --raw {d}/noraw --out {o}/res --pdb-tsv {d}/x.tsv.gz", ["noraw"]),
    ("aggregate-missing-metrics", "aggregate --metrics {d}/nope.csv --summary {o}/s.csv --table {o}/t.csv", ["nope.csv"]),
    ("aggregate-wrong-columns", "aggregate --metrics {d}/metrics.csv --summary {o}/s.csv --table {o}/t.csv",
     ["metrics.csv"]),
]


def assert_clean_failure(rc: int, err: str, cmd: str, names: list[str], out: Path) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 1, err
    assert "Traceback" not in err, err
    errors = [ln for ln in lines if ln.startswith(f"bioprune {cmd}: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    for name in names:
        assert name in errors[0], f"{name!r} not named in: {errors[0]}"
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*")) if out.exists() else []
    assert left == [], f"output left behind: {left}"


@pytest.mark.parametrize("case,argv,names", [c if hasattr(c, "values") else pytest.param(*c, id=c[0]) for c in CASES])
def test_bad_input_one_line_error_no_output(env, tmp_path, capsys, case, argv, names):
    out = tmp_path / "out"
    args = argv.format(d=env, o=out).split()
    rc, err = run_cli(args, capsys)
    assert_clean_failure(rc, err, args[0], names, out)
    if case.startswith("ingest-missing") or case.startswith("ingest-not") or "config" in case:
        assert not out.exists(), "a run that fails on its input must not create the output folder"


@pytest.mark.parametrize("argv,names", [
    ("ingest --config {d}/ok.yaml --fasta {d}/badrec.fa --out-dir {o}", ["badrec.fa", "record 51", "id r51"]),
    ("sketch --config {d}/ok.yaml --shard {d}/1-of-1.h5 --model {d}/junk.pt --out {o}/s.h5", ["junk.pt"]),
], ids=["ingest-bad-record", "sketch-junk-model"])
def test_bad_input_real_process(env, tmp_path, argv, names):
    """The installed entry point: exit status 1, the error as stderr's last line, no traceback."""
    out = tmp_path / "out"
    args = argv.format(d=env, o=out).split()
    p = subprocess.run([sys.executable, "-m", "bioprune.cli", *args], capture_output=True, text=True, timeout=300)
    assert_clean_failure(p.returncode, p.stderr, args[0], names, out)


def test_success_path_writes_outputs(env, tmp_path, capsys):
    """Control for the cases above: the same command on good input exits 0 and writes its outputs."""
    out = tmp_path / "out"
    rc, err = run_cli(f"ingest --config {env}/ok.yaml --out-dir {out} --shards 2".split(), capsys)
    assert rc == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["1-of-2.h5", "2-of-2.h5", "holdout.h5", "ingest.json"]
