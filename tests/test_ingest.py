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


def shard_contents(paths):
    """Everything a shard holds: datasets and attrs, for byte-level comparison of two runs."""
    out = []
    for p in paths:
        with h5py.File(p) as f:
            out.append(({k: f[k][()].tolist() for k in f}, {k: str(v) for k, v in f.attrs.items()}))
    return out


def three_files(tmp_path):
    recs = random_rna(300, seed=7)
    files = [write_fasta(tmp_path / f"in{k}.fa", recs[k * 100:(k + 1) * 100]) for k in range(3)]
    return recs, files


def test_duplicates_across_files_counted_once(tmp_path):
    """A sequence in all three files (under three ids, one lowercase with T) is kept once, with the
    first file's id and copies 3; an exact (id, sequence) repeat in another file is not a copy."""
    recs, _ = three_files(tmp_path)
    dup = recs[5][1]
    parts = [recs[:100] + [("r0", recs[0][1])], recs[100:200] + [("dupB", dup.lower().replace("u", "t"))],
             recs[200:] + [("dupC", dup), ("seq5", dup)]]
    files = [write_fasta(tmp_path / f"d{k}.fa", p) for k, p in enumerate(parts)]
    shards, stats = run(tmp_path, [str(f) for f in files], n=3, holdout_fraction=0.2)
    hold = str(tmp_path / "out/holdout.h5")
    copies = all_copies(shards + [hold])
    assert copies["seq5"] == 3 and "dupB" not in copies and "dupC" not in copies and "r0" not in copies
    assert copies["seq0"] == 2 and sum(copies.values()) == 303
    assert stats.duplicate_sequences == 3 and stats.duplicate_ids_same_sequence == 1 and stats.kept == 300


def test_duplicate_id_in_another_file_names_both_places(tmp_path):
    a = write_fasta(tmp_path / "a.fa", [("x", "ACGUACGUAC"), ("y", "GGGGGGGGGG")])
    b = write_fasta(tmp_path / "b.fa", [("z", "CCCCCCCCCC"), ("x", "UUUUUUUUUU")])
    with pytest.raises(BiopruneError, match=r"b\.fa: record 2 \(id x\) reuses the id of record 1 of .*a\.fa") as e:
        run(tmp_path, [str(a), str(b)], n=2)
    assert str(b) in str(e.value) and str(a) in str(e.value)
    assert_no_output(tmp_path)


def test_shards_identical_for_one_and_three_route_jobs(tmp_path):
    """One ingest call over three files == three route jobs + gather jobs (what Snakemake runs)."""
    from bioprune.shards import gather_shard, route_file, summarise

    _, files = three_files(tmp_path)
    files.append(write_fasta(tmp_path / "in3.fa", [(f"o{i}", s) for i, s in random_rna(50, seed=7)]))  # duplicates of in0.fa, other ids
    shards, stats = run(tmp_path, [str(f) for f in files], n=3, holdout_fraction=0.1)
    one = shard_contents(shards + [str(tmp_path / "out/holdout.h5")])
    opts = IngestOptions(holdout_fraction=0.1)
    parts = [str(tmp_path / f"part{k}.h5") for k in range(len(files))]
    for k, f in enumerate(files):
        route_file(f, parts[k], k, 3, opts)
    outs = [str(tmp_path / f"j{k}.h5") for k in range(4)]
    for dest in (3, 1, 0, 2):  # any job order
        gather_shard(parts, outs[dest], dest, 3)
    assert shard_contents(outs) == one
    assert summarise(parts, outs[:3], outs[3]).__dict__ == stats.__dict__ and stats.duplicate_sequences == 50


def test_glob_and_list_inputs(tmp_path):
    _, files = three_files(tmp_path)
    s1, stats = run(tmp_path, str(tmp_path / "in*.fa"), n=2)
    a = shard_contents(s1)
    s2, _ = run(tmp_path, [str(f) for f in files], n=2)
    assert shard_contents(s2) == a and stats.kept == 300
    with pytest.raises(BiopruneError, match="no file matches"):
        run(tmp_path, str(tmp_path / "nothing*.fa"), n=2)
