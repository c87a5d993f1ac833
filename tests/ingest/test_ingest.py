"""Ingest: every valid sequence in exactly one shard once, stable held-out split, clear errors on bad input."""
from __future__ import annotations

import gzip

import h5py
import pytest

from bioprune.errors import BiopruneError
from bioprune.h5io import read_str
from bioprune.ingest import IngestOptions, ingest, read_shard

from helpers import random_rna, write_fasta


def run(tmp_path, fasta, n=3, split_bytes=0, **kw):
    shards = [str(tmp_path / "out" / f"{i}-of-{n}.h5") for i in range(1, n + 1)]
    (tmp_path / "out").mkdir(exist_ok=True)
    stats = ingest(fasta, shards, str(tmp_path / "out/holdout.h5"), IngestOptions(**kw), str(tmp_path / "out/stats.json"),
                   split_bytes)
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
        ("short.fa", b">x\nAC\n>y\nGU\n", "0 of 2 records kept: 2 shorter than corpus.min_length"),
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
    from bioprune.ingest import gather_shard, route_file, summarise

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


# --- byte ranges of one large uncompressed file (corpus.split_mb) ---------------------------------

def ranged_fasta(tmp_path, name="big.fa", tail=b"\n"):
    """Leading blank lines, multi-line and one-line records, spaces, a long record, an exact
    (id, sequence) repeat and duplicate sequences under other ids; optionally no final newline."""
    recs = random_rna(40, seed=11)
    lines = []
    for i, (rid, s) in enumerate(recs):
        body = "\n".join(s[j:j + 13] for j in range(0, len(s), 13)) if i % 3 == 0 else s
        lines.append(f">{rid} desc >x\n{body}")
    lines.insert(7, ">long one\n" + "\n".join(["ACGUACGUAC" * 3] * 8))  # longer than a small range
    lines += [f">{recs[2][0]}\n{recs[2][1]}", f">dupA\n{recs[5][1].lower()}", f">dupB\n{recs[31][1]}"]
    path = tmp_path / name
    path.write_bytes(b"\n \n" + "\n".join(lines).encode() + tail)
    return path


def spans_of(path, bounds):
    """Route-job spans of a file cut at `bounds` (byte offsets)."""
    size = path.stat().st_size
    cuts = [0, *bounds, size]
    return [{"index": r, "count": len(cuts) - 1, "start": a, "end": b, "size": size}
            for r, (a, b) in enumerate(zip(cuts, cuts[1:]))]


def records_by_span(path, spans):
    from bioprune.ingest import read_batches

    out = []
    for span in spans:
        recs = []
        for first, ids, seqs in read_batches(path, span):
            assert first == len(recs) + 1  # numbered from 1 within the range
            recs += list(zip(ids, seqs))
        out.append(recs)
    return out


@pytest.mark.parametrize("tail", [b"\n", b""])
def test_two_ranges_cut_anywhere_read_every_record_once(tmp_path, tail):
    """Every cut position (inside a header, inside a sequence line, on a '>', on the newline before
    it, inside a multi-line record): the two ranges give the file's records, in order, once."""
    from bioprune.ingest.ranges import records_before

    path = ranged_fasta(tmp_path, tail=tail)
    whole = records_by_span(path, [None])[0]
    assert len(whole) == 44 and whole[-1][0] == b"dupB"
    data = path.read_bytes()
    for cut in range(1, len(data)):
        spans = spans_of(path, [cut])
        first, second = records_by_span(path, spans)
        assert first + second == whole, cut
        heads = data[:cut].count(b"\n>")  # headers starting before the cut (the first follows a newline too)
        assert len(first) == heads and records_before(path, spans[1]) == heads, cut


@pytest.mark.parametrize("small_reads", [False, True])
def test_many_ranges_and_ranges_without_a_record_start(tmp_path, monkeypatch, small_reads):
    """Also with reads of a few bytes, so that a '\n>' straddles two reads."""
    from bioprune.ingest import fasta, ranges
    from bioprune.ingest.ranges import byte_ranges, records_before

    path = ranged_fasta(tmp_path, tail=b"")
    whole = records_by_span(path, [None])[0]
    if small_reads:
        monkeypatch.setattr(ranges, "READ", 3)
        monkeypatch.setattr(fasta, "BLOCK", 5)
    size = path.stat().st_size
    for split in (7, 40, 97, 500, size - 1):
        ranges = byte_ranges(size, split)
        assert len(ranges) == -(-size // split) and ranges[0][0] == 0 and ranges[-1][1] == size
        spans = spans_of(path, [a for a, _ in ranges[1:]])
        got = records_by_span(path, spans)
        assert [r for g in got for r in g] == whole
        assert [records_before(path, s) for s in spans] == [sum(map(len, got[:r])) for r in range(len(spans))]
        if split == 7:  # the 240-nt record spans several 7-byte ranges, which own no record
            assert sum(not g for g in got) > 10


def test_split_ingest_identical_to_one_job_and_to_several_files(tmp_path):
    """Shards, held-out file and stats: one job == byte ranges (many, some empty) == the records cut
    into several files (datasets; the attrs there name other source files)."""
    path = ranged_fasta(tmp_path)
    hold = str(tmp_path / "out/holdout.h5")
    shards, stats = run(tmp_path, str(path), n=3, holdout_fraction=0.2, min_length=30)
    one = shard_contents(shards + [hold])
    assert stats.duplicate_sequences == 2 and stats.duplicate_ids_same_sequence == 1 and stats.dropped_short > 0
    for split in (40, 97, 1000, path.stat().st_size // 2):
        s2, st2 = run(tmp_path, str(path), n=3, holdout_fraction=0.2, min_length=30, split_bytes=split)
        assert shard_contents(s2 + [hold]) == one, split
        assert st2.__dict__ == stats.__dict__
    blocks = path.read_bytes().split(b"\n>")
    files = []
    for k, (a, b) in enumerate([(0, 9), (9, 10), (10, 31), (31, len(blocks))]):
        text = b"\n>".join(blocks[a:b])
        files.append(tmp_path / f"f{k}.fa")
        files[-1].write_bytes((text if a == 0 else b">" + text) + b"\n")
    s3, st3 = run(tmp_path, [str(f) for f in files], n=3, holdout_fraction=0.2, min_length=30, split_bytes=300)
    assert [d for d, _ in shard_contents(s3 + [hold])] == [d for d, _ in one] and st3.__dict__ == stats.__dict__


def run_split(tmp_path, fasta, split, **kw):
    shards = [str(tmp_path / "out" / f"{i}-of-2.h5") for i in (1, 2)]
    (tmp_path / "out").mkdir(exist_ok=True)
    return ingest(str(fasta), shards, str(tmp_path / "out/holdout.h5"), IngestOptions(**kw), split_bytes=split)


@pytest.mark.parametrize("bad,match", [
    (lambda recs: recs[:25] + [("x", "CCCCCCCCCCCCCCCCCCCCCCCC")] + recs[25:], r"record 26 \(id x\) reuses the id of record 4 "
                                                                            r"with a different sequence"),
    (lambda recs: recs[:25] + [("r26", "ACGU7ACGUACGUACGUACGU")] + recs[25:], r"record 26 \(id r26\).*outside the rna"),
])
def test_errors_in_a_later_range_name_the_record_number_in_the_file(tmp_path, bad, match):
    recs = [(f"x" if i == 3 else f"s{i}", s) for i, (_, s) in enumerate(random_rna(40, seed=3, lo=20, hi=30))]
    path = write_fasta(tmp_path / "e.fa", bad(recs))
    for split in (0, 150, 400):
        with pytest.raises(BiopruneError, match=match):
            run_split(tmp_path, path, split)
        assert_no_output(tmp_path)


def test_empty_header_and_non_ascii_in_a_later_range(tmp_path):
    recs = random_rna(40, seed=4, lo=20, hi=30)
    text = "".join(f">{i}\n{s}\n" for i, s in recs)
    for broken, match in ((text.replace(">seq30\n", ">\n"), "record 31 has an empty header"),
                          (text.replace(">seq33\n", ">seq33 caf\u00e9\n"), "non-ASCII bytes after record 34")):
        path = tmp_path / "b.fa"
        path.write_text(broken)
        for split in (0, 100, 700):
            with pytest.raises(BiopruneError, match=match):
                run_split(tmp_path, path, split)


def test_gather_refuses_parts_missing_a_byte_range(tmp_path):
    from bioprune.ingest import gather_shard, route_file
    from bioprune.ingest.ranges import byte_ranges

    path = ranged_fasta(tmp_path)
    spans = spans_of(path, [a for a, _ in byte_ranges(path.stat().st_size, 500)[1:]])
    parts = [str(tmp_path / f"p{r}.h5") for r in range(len(spans))]
    for span, part in zip(spans, parts):
        route_file(path, part, 0, 2, IngestOptions(), span)
    for broken in (parts[:-1], parts[:1] + parts[2:], parts[1:]):
        with pytest.raises(BiopruneError, match="byte range"):
            gather_shard(broken, str(tmp_path / "s.h5"), 0, 2)
    path.write_bytes(path.read_bytes() + b">new\nACGUACGU\n")
    with pytest.raises(BiopruneError, match="the file changed"):
        route_file(path, parts[0], 0, 2, IngestOptions(), spans[0])


def test_workflow_plans_one_route_job_per_byte_range(tmp_path):
    """Dry run: a plain file of 5.03 x corpus.split_mb is six route jobs, in (file, range) part order;
    a larger gzipped file is one (gzip cannot seek); split_mb 0 is one job per file."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    import yaml
    from helpers import ROOT

    big = tmp_path / "big.fa"
    big.write_text("".join(f">r{i}\n{'ACGU' * 30}\n" for i in range(40)))
    assert big.stat().st_size == 5030
    gz = tmp_path / "small.fa.gz"
    gz.write_bytes(gzip.compress(big.read_bytes() * 3, compresslevel=0))
    jobs = {}
    for split_mb in (1000 / 2**20, 0):
        (tmp_path / "u.yaml").write_text(yaml.safe_dump(
            {"corpus": {"path": ["big.fa", "small.fa.gz"], "molecule": "rna", "split_mb": split_mb}}))
        res = subprocess.run([str(Path(sys.executable).with_name("snakemake")), "-s", str(ROOT / "Snakefile"),
                              "--configfile", "u.yaml", "-n", "results/shards/ingest.json"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        table = res.stdout.split("Job stats:", 1)[1].split("\n\n", 1)[0]
        jobs[split_mb] = dict(re.findall(r"^(ingest_\w+)\s+(\d+)$", table, re.M))
        parts = re.findall(r"output: results/ingest/parts/(\d+_\d+)\.h5", res.stdout)
        if split_mb:
            assert sorted(parts) == [f"00000_{r:05d}" for r in range(6)] + ["00001_00000"]
            gather_in = re.search(r"rule ingest_summary:\n\s+input: (.*)", res.stdout).group(1)
            assert re.findall(r"parts/(\d+_\d+)\.h5", gather_in) == sorted(parts)
    assert jobs[1000 / 2**20]["ingest_route"] == "7" and jobs[0]["ingest_route"] == "2"


def test_iter_fasta_yields_numbered_ids_and_sequences_without_blanks(tmp_path):
    """iter_fasta (used by the leakage gate's eval sets and the resource builders): record numbers from 1, the id
    is the header's first word, spaces and carriage returns inside a sequence line are dropped, CRLF ends."""
    from bioprune.ingest import iter_fasta

    p = tmp_path / "x.fa"
    p.write_bytes(b">a first record\r\nAC GU\r\nG\rG\r\n>b\nCC CC\n\n>c  x y\nUUUU\n")
    assert list(iter_fasta(p)) == [(1, "a", "ACGUGG"), (2, "b", "CCCC"), (3, "c", "UUUU")]


def test_iter_fasta_refuses_an_empty_header(tmp_path):
    from bioprune.errors import BiopruneError
    from bioprune.ingest import iter_fasta

    p = tmp_path / "x.fa"
    p.write_text(">a\nACGU\n>\nGGGG\n")
    with pytest.raises(BiopruneError, match="record 2 has an empty header"):
        list(iter_fasta(p))
