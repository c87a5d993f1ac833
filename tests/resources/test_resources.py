"""The bundled data: provenance checksums match, and every evaluation set is disjoint from every pool."""
from __future__ import annotations

import csv
import gzip
import re
from pathlib import Path

import pytest

from bioprune.h5io import sha256_file
from bioprune.ingest import iter_fasta

RES = Path(__file__).resolve().parents[2] / "resources"


def pool_sequences(path: Path) -> set[str]:
    return {s.upper() for _, _, s in iter_fasta(path)}


def eval_sequences(path: Path) -> set[str]:
    with gzip.open(path, "rt") as fh:
        return {r["sequence"] for r in csv.DictReader(fh, delimiter="\t")}


def test_provenance_sha256_matches():
    text = (RES / "PROVENANCE.md").read_text()
    rows = re.findall(r"\| `([^`]+)` \| `([0-9a-f]{64})` \|", text)
    assert len(rows) == 6
    for rel, digest in rows:
        assert sha256_file(RES / rel) == digest, rel


def test_bundle_under_10_mb():
    assert sum(p.stat().st_size for p in RES.rglob("*") if p.is_file()) < 10 * 1024 * 1024


@pytest.mark.parametrize("molecule,evals", [("rna", ("type_eval", "ss_eval")), ("protein", ("loc_eval", "ss_eval"))])
def test_eval_sets_disjoint_from_pool(molecule, evals):
    pool = pool_sequences(RES / f"{molecule}/pool.fa.gz")
    assert len(pool) > 15000
    for name in evals:
        ev = eval_sequences(RES / f"{molecule}/{name}.tsv.gz")
        assert ev and not (ev & pool), name


def test_rna_type_has_ten_classes():
    with gzip.open(RES / "rna/type_eval.tsv.gz", "rt") as fh:
        labels = {r["label"] for r in csv.DictReader(fh, delimiter="\t")}
    assert len(labels) >= 10


@pytest.mark.parametrize("name", ["protein/ss_eval.tsv.gz", "protein/loc_eval.tsv.gz", "rna/type_eval.tsv.gz"])
def test_eval_sequences_unique_so_probe_splits_share_no_sequence(name):
    """Probe train/test splits are drawn from these rows: unique sequences make them sequence-disjoint."""
    with gzip.open(RES / name, "rt") as fh:
        seqs = [r["sequence"] for r in csv.DictReader(fh, delimiter="\t")]
    assert len(seqs) == len(set(seqs)) > 100
