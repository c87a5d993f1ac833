"""Property tests (hypothesis): ingest round-trips any valid FASTA; digest-routed splits are
deterministic and independent of record order and shard count; id-hash draws are pure; MLM masks by id do not depend on the batch."""
from __future__ import annotations

import hashlib
import string
import tempfile
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from bioprune.errors import BiopruneError
from bioprune.h5io import read_str
from bioprune.hashing import in_holdout, in_subset, route_digests, shard_of, unit_hash
from bioprune.ingest import IngestOptions, ingest

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

RNA_CHARS = "ACGUTacgut" + "RYSWKMBDHVN" + "rn"
ID_CHARS = string.ascii_letters + string.digits + "_.|:-/=+>;"

ids_st = st.text(ID_CHARS, min_size=1, max_size=10)
seq_st = st.text(RNA_CHARS, min_size=0, max_size=40)


@st.composite
def raw_sequence(draw, pool):
    """A new sequence, or a pool sequence respelled (case, T for U) or extended (equal after cropping)."""
    kind = draw(st.sampled_from(["new", "same", "respelled", "extended"]))
    if kind == "new":
        return draw(seq_st)
    s = draw(st.sampled_from(pool))
    if kind == "respelled":
        return s.lower().replace("u", "t") if draw(st.booleans()) else s.upper().replace("U", "T")
    if kind == "extended":
        return s + draw(st.text(RNA_CHARS, min_size=1, max_size=6))
    return s


@st.composite
def fasta_records(draw):
    """Unique ids with raw RNA sequences; some sequences repeated (or equal after normalisation or
    cropping) under other ids, some records repeated verbatim (same id, same sequence)."""
    ids = draw(st.lists(ids_st, min_size=1, max_size=25, unique=True))
    pool = draw(st.lists(seq_st, min_size=1, max_size=6))
    recs = [(i, draw(raw_sequence(pool))) for i in ids]
    for _ in range(draw(st.integers(0, 3))):
        recs.insert(draw(st.integers(0, len(recs))), draw(st.sampled_from(recs)))
    return recs


@st.composite
def fasta_text(draw, recs):
    """One of the many valid spellings of the same records: wrapping, CRLF, descriptions, blank lines."""
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    width = draw(st.one_of(st.none(), st.integers(1, 12)))
    out = []
    for i, s in recs:
        desc = draw(st.sampled_from(["", " ", " some description", "\tdesc with\ttabs"]))
        out.append(f">{i}{desc}{eol}")
        chunks = [s] if width is None or not s else [s[k:k + width] for k in range(0, len(s), width)]
        out += [c + eol for c in chunks if c or width is None]
        if draw(st.booleans()):
            out.append(eol)
    return "".join(out)


def model_ingest(recs, min_len, max_len):
    """Independent statement of ingest's contract (mask mode, crop policy): uppercase, T->U, ambiguity
    codes -> N, crop to max_len, drop below min_len; the first id of each distinct sequence is kept,
    `copies` counts the records that collapsed onto it; a repeated (id, sequence) record is ignored."""
    kept, first, copies, seen_ids = {}, {}, Counter(), set()
    for i, raw in recs:
        if i in seen_ids:
            continue
        seen_ids.add(i)
        s = "".join("N" if c in "RYSWKMBDHVN" else c for c in raw.upper().replace("T", "U"))[:max_len]
        if len(s) < min_len:
            continue
        if s in first:
            copies[first[s]] += 1
        else:
            first[s], kept[i], copies[i] = i, s, 1
    return kept, dict(copies)


def read_outputs(paths):
    recs, copies = {}, {}
    for p in paths:
        with h5py.File(p) as f:
            ids, seqs = read_str(f["id"]), read_str(f["sequence"])
            assert not set(ids) & set(recs), "an id in two output files"
            recs.update(zip(ids, seqs))
            copies.update(zip(ids, f["copies"][()].tolist()))
    return recs, copies


def run_ingest(d: Path, text: str, n_shards: int, opts: IngestOptions, split_bytes: int = 0):
    d.mkdir()
    (d / "a.fa").write_bytes(text.encode())
    shards = [str(d / f"{k}-of-{n_shards}.h5") for k in range(1, n_shards + 1)]
    stats = ingest(d / "a.fa", shards, str(d / "holdout.h5"), opts, split_bytes=split_bytes)
    return shards, str(d / "holdout.h5"), stats


@FAST
@given(data=st.data(), n_shards=st.integers(1, 3), min_len=st.integers(1, 4), max_len=st.integers(4, 30),
       holdout=st.sampled_from([0.0, 0.2, 0.5]), split=st.sampled_from([0, 0, 16, 45, 150]))
def test_ingest_roundtrips_any_valid_fasta(data, n_shards, min_len, max_len, holdout, split):
    """Also when the file is routed in byte ranges of `split` bytes (corpus.split_mb)."""
    recs = data.draw(fasta_records())
    expected, expected_copies = model_ingest(recs, min_len, max_len)
    text = data.draw(fasta_text(recs))
    opts = IngestOptions(min_length=min_len, max_length=max_len, holdout_fraction=holdout)
    assume(expected)  # "no sequence survived" is tested in test_ingest
    with tempfile.TemporaryDirectory() as d:
        if all(destination(s, n_shards, holdout) == n_shards for s in expected.values()):
            # every kept sequence held out: the pool would be empty, so ingest stops and writes nothing
            with pytest.raises(BiopruneError, match=r"corpus\.holdout_fraction: all \d+ distinct sequences"):
                run_ingest(Path(d) / "x", text, n_shards, opts, split)
            assert not list((Path(d) / "x").glob("*.h5"))
            return
        shards, hold, stats = run_ingest(Path(d) / "x", text, n_shards, opts, split)
        check_roundtrip(shards, hold, stats, recs, expected, expected_copies, holdout, n_shards)


def check_roundtrip(shards, hold, stats, recs, expected, expected_copies, holdout, n_shards):
    got, copies = read_outputs(shards + [hold])
    assert got == expected
    assert copies == expected_copies
    assert stats.kept == len(expected) and stats.records == len(recs)
    assert stats.duplicate_sequences == sum(expected_copies.values()) - len(expected)
    assert set(read_outputs([hold])[0]) == {i for i, s in expected.items() if destination(s, n_shards, holdout) == n_shards}
    for k, p in enumerate(shards):
        assert all(destination(s, n_shards, holdout) == k for s in read_outputs([p])[0].values())


def destination(seq: str, n_shards: int, holdout: float) -> int:
    """Where ingest must put a (normalised) sequence: by its digest alone (n_shards = held out)."""
    digest = np.frombuffer(hashlib.blake2b(seq.encode(), digest_size=16).digest(), dtype=np.uint8)
    return int(route_digests(digest, n_shards, holdout)[0])


@FAST
@given(ids=st.lists(ids_st, min_size=2, max_size=30, unique=True), data=st.data(),
       n1=st.integers(1, 4), n2=st.integers(1, 4))
def test_split_depends_only_on_sequences(ids, data, n1, n2):
    """Holdout membership is the same for any record order and shard count; shard membership for any
    order at a given count (both follow the sequence digest)."""
    seqs = {i: "ACGU"[k % 4] * (5 + k) for k, i in enumerate(ids)}  # distinct sequences
    perm = data.draw(st.permutations(ids))
    opts = IngestOptions(min_length=1, holdout_fraction=0.3)
    assume(any(destination(s, 1, 0.3) == 0 for s in seqs.values()))  # an all-held-out pool stops ingest

    def layout(d, order, n):
        shards, hold, _ = run_ingest(Path(d), "".join(f">{i}\n{seqs[i]}\n" for i in order), n, opts)
        return [set(read_outputs([p])[0]) for p in shards], set(read_outputs([hold])[0])

    with tempfile.TemporaryDirectory() as d:
        a_shards, a_hold = layout(f"{d}/a", ids, n1)
        b_shards, b_hold = layout(f"{d}/b", perm, n1)
        c_shards, c_hold = layout(f"{d}/c", perm, n2)
    assert a_shards == b_shards and a_hold == b_hold == c_hold
    assert set().union(*c_shards, c_hold) == set(ids)


@settings(max_examples=200, deadline=None)
@given(key=st.text(max_size=20), seed=st.integers(0, 2**31), f1=st.floats(0, 1), f2=st.floats(0, 1),
       n=st.integers(1, 64))
def test_hash_draws_are_pure_nested_and_in_range(key, seed, f1, f2, n):
    u = unit_hash(key, "dsub", seed)
    assert 0.0 <= u < 1.0 and u == unit_hash(key, "dsub", seed)
    lo, hi = min(f1, f2), max(f1, f2)
    assert not in_subset(key, lo, seed) or in_subset(key, hi, seed)  # D_sub grows with the fraction
    assert not in_holdout(key, lo) or in_holdout(key, hi)
    assert 0 <= shard_of(key, n) < n
    assert not in_subset(key, 0.0, seed) and in_subset(key, 1.0, seed)


def test_hash_values_are_pinned():
    """Frozen values: a change of hash function, salt or key layout (or Python's randomised `hash`)
    would silently move every split, so it must show up here."""
    assert unit_hash("seq1", "holdout") == GOLDEN["holdout_seq1"]
    assert unit_hash("seq1", "dsub", 3) == GOLDEN["dsub_seq1_3"]
    assert [shard_of(f"seq{i}", 7) for i in range(8)] == GOLDEN["shards7"]


GOLDEN = {"holdout_seq1": 0.3064117250329187, "dsub_seq1_3": 0.23054979694201425, "shards7": [1, 6, 2, 3, 0, 2, 2, 6]}


@FAST
@given(seqs=st.lists(st.text("ACGU", min_size=1, max_size=30), min_size=1, max_size=6), data=st.data(),
       seed=st.integers(0, 1000), extra_pad=st.integers(0, 5))
def test_mask_by_id_independent_of_batch_and_padding(seqs, data, seed, extra_pad):
    from bioprune.training.batching import mask_by_id, pad_batch

    ids = [f"r{k}" for k in range(len(seqs))]
    order = data.draw(st.permutations(range(len(seqs))))
    batch = pad_batch([seqs[k] for k in order], "rna", pad_to=max(map(len, seqs)) + 2 + extra_pad)
    inp, tgt = mask_by_id(batch, [ids[k] for k in order], "rna", seed)
    for row, k in enumerate(order):
        alone = pad_batch([seqs[k]], "rna")
        a_inp, a_tgt = mask_by_id(alone, [ids[k]], "rna", seed)
        n = alone.shape[1]
        assert torch.equal(inp[row, :n], a_inp[0]) and torch.equal(tgt[row, :n], a_tgt[0])
        assert (tgt[row, n:] == -100).all() and (tgt[row] != -100).any()


@settings(max_examples=150, deadline=None)
@given(seqs=st.lists(st.text("ACGTUacgtuRYSWKMBDHVNXZOBrnx*" , max_size=12), min_size=1, max_size=6),
       molecule=st.sampled_from(["rna", "protein"]), ambiguous=st.sampled_from(["mask", "drop"]))
@example(seqs=["**"], molecule="protein", ambiguous="mask")  # found in issue 29: one '*' was stripped twice
@example(seqs=["AC", "K**"], molecule="protein", ambiguous="drop")
def test_batch_normalisation_equals_per_record(seqs, molecule, ambiguous):
    """Ingest's one-translate batch normalisation gives what alphabets.normalise gives per record,
    including the first bad record's error."""
    from bioprune.alphabets import AlphabetError, normalise
    from bioprune.ingest.fasta import normalise_batch

    expected, error = [], None
    for k, s in enumerate(seqs):
        try:
            expected.append(normalise(s, molecule, ambiguous))
        except AlphabetError as e:
            error = (k, str(e))
            break
    try:
        out, drop = normalise_batch([s.encode() for s in seqs], molecule, ambiguous)
    except AlphabetError as e:
        assert error == (e.index, str(e))
        return
    assert error is None
    assert [None if d else o.decode() for o, d in zip(out, drop)] == expected
