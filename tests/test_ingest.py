"""Ingest: every valid sequence in exactly one shard once, stable held-out split, clear errors on bad input."""
from __future__ import annotations

import gzip

import h5py
import pytest

from bioprune.errors import BiopruneError
from bioprune.h5io import read_str
from bioprune.shards import IngestOptions, ingest, read_shard

from helpers import random_rna, write_fasta


def run(tmp_path, fasta, n=3, **kw):
    shards = [str(tmp_path / "out" / f"{i}-of-{n}.h5") for i in range(1, n + 1)]
    (tmp_path / "out").mkdir(exist_ok=True)
    stats = ingest(fasta, shards, str(tmp_path / "out/holdout.h5"), IngestOptions(**kw), str(tmp_path / "out/stats.json"))
    return shards, stats


def all_records(paths):
    out = []
    for p in paths:
        ids, seqs, _ = read_shard(p)
        out += list(zip(ids, seqs))
    return out


def all_copies(paths):
    """{id: copies} over shards and the held-out file (an id is in exactly one of them)."""
    out = {}
    for p in paths:
        with h5py.File(p) as f:
            out.update(zip(read_str(f["id"]), f["copies"][()].tolist()))
    return out


def test_every_sequence_once(tmp_path):
    recs = random_rna(500, seed=1)
    fasta = write_fasta(tmp_path / "a.fa", recs)
    shards, stats = run(tmp_path, fasta, n=3, holdout_fraction=0.1)
    got = all_records(shards + [str(tmp_path / "out/holdout.h5")])
    assert sorted(got) == sorted(recs)
    assert len({i for i, _ in got}) == len(recs)
    assert stats.kept == 500 and 0 < stats.holdout < 500
    with h5py.File(shards[0]) as f:
        assert f.attrs["molecule"] == "rna" and f.attrs["schema_version"] == 1
        assert len(f.attrs["source_sha256"]) == 64 and "max_length" in f.attrs["ingest_config"]


def test_holdout_stable_across_runs_and_shard_counts(tmp_path):
    fasta = write_fasta(tmp_path / "a.fa", random_rna(300, seed=2))
    run(tmp_path, fasta, n=2)
    first = read_shard(str(tmp_path / "out/holdout.h5"))[0]
    run(tmp_path, fasta, n=5)
    assert read_shard(str(tmp_path / "out/holdout.h5"))[0] == first and len(first) > 0


def test_normalisation_dedupe_and_length(tmp_path):
    recs = [("a", "acgtacgtacgt"), ("b", "ACGUACGUACGU"), ("c", "ACGRACGUACGU"), ("d", "ACG"), ("e", "A" * 50)]
    fasta = write_fasta(tmp_path / "a.fa", recs)
    shards, stats = run(tmp_path, fasta, n=1, min_length=5, max_length=20, holdout_fraction=0.001)
    got = dict(all_records(shards + [str(tmp_path / "out/holdout.h5")]))
    assert got == {"a": "ACGUACGUACGU", "c": "ACGNACGUACGU", "e": "A" * 20}
    assert stats.duplicate_sequences == 1 and stats.dropped_short == 1 and stats.cropped == 1
    assert all_copies(shards + [str(tmp_path / "out/holdout.h5")]) == {"a": 2, "c": 1, "e": 1}


def test_drop_ambiguous_and_protein(tmp_path):
    fasta = write_fasta(tmp_path / "a.fa", [("a", "ACGRACGUAC"), ("b", "ACGUACGUAC")])
    shards, stats = run(tmp_path, fasta, n=1, ambiguous="drop", min_length=1, holdout_fraction=0.001)
    assert stats.dropped_ambiguous == 1
    pf = write_fasta(tmp_path / "p.fa", [("p1", "MKTAYIAKQRB*"), ("p2", "MKTAYIAKQRZU")])
    shards, _ = run(tmp_path, pf, n=1, molecule="protein", min_length=1, holdout_fraction=0.001)
    assert dict(all_records(shards + [str(tmp_path / "out/holdout.h5")])) == {"p1": "MKTAYIAKQRX", "p2": "MKTAYIAKQRXX"}


def assert_no_output(tmp_path):
    leftovers = [p.name for p in (tmp_path / "out").iterdir()] if (tmp_path / "out").exists() else []
    assert leftovers == [], leftovers


@pytest.mark.parametrize(
    "name,content,match",
    [
        ("empty.fa", b"", "empty"),
        ("blank.fa", b"\n\n  \n", "empty"),
        ("img.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "not FASTA"),
        ("table.csv", b"id,sequence\nx,ACGU\n", "not FASTA"),
        ("bad.fa", b">ok\nACGU\n>r2 second\nACG7U\n", r"record 2 \(id r2\).*outside the rna alphabet"),
        ("dupid.fa", b">x\nACGUACGU\n>y\nGGGG\n>x\nCCCCCCC\n", r"record 3 \(id x\) reuses the id of record 1"),
        ("short.fa", b">x\nAC\n>y\nGU\n", "no sequence survived"),
    ],
)
def test_bad_input(tmp_path, name, content, match):
    f = tmp_path / name
    f.write_bytes(content)
    with pytest.raises(BiopruneError, match=match) as e:
        run(tmp_path, f, n=2, min_length=3)
    assert str(f) in str(e.value)
    assert_no_output(tmp_path)


def test_truncated_gzip(tmp_path):
    data = gzip.compress("".join(f">s{i}\n{'ACGU' * 30}\n" for i in range(2000)).encode())
    f = tmp_path / "cut.fa.gz"
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(BiopruneError, match=r"cut\.fa\.gz: corrupt or truncated gzip after record \d+"):
        run(tmp_path, f, n=2)
    assert_no_output(tmp_path)


def test_gzip_input_reads_like_plain(tmp_path):
    recs = random_rna(50, seed=3)
    plain = write_fasta(tmp_path / "a.fa", recs)
    gz = tmp_path / "a.fa.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    s1, _ = run(tmp_path, plain, n=2)
    a = all_records(s1 + [str(tmp_path / "out/holdout.h5")])
    s2, _ = run(tmp_path, gz, n=2)
    assert all_records(s2 + [str(tmp_path / "out/holdout.h5")]) == a
