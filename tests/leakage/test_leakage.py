"""Leakage gate (MMseqs2): near-copies of evaluation sequences leave the pool, distant sequences stay."""
from __future__ import annotations

import gzip
import random
import shutil

import pandas as pd
import pytest

from bioprune.errors import BiopruneError
from bioprune.leakage.gate import GateConfig, count_leaks, eval_set_name, leakage_gate, near_copies, pool_source, run_gate

pytestmark = pytest.mark.skipif(shutil.which("mmseqs") is None, reason="needs MMseqs2")
RNG = random.Random(7)


def rand(n: int) -> str:
    return "".join(RNG.choice("ACGU") for _ in range(n))


def mutate(s: str, positions) -> str:
    out = list(s)
    for p in positions:
        out[p] = {"A": "C", "C": "G", "G": "U", "U": "A"}[out[p]]
    return "".join(out)


EVAL = [rand(120), rand(150)]
TAIL = rand(30)
POOL = {
    "rfam_near": mutate(EVAL[0], range(10, 110, 17)),  # 6 substitutions: 95% identical over the full length
    "trna_ninety2": mutate(EVAL[0], range(8, 112, 11)),  # 10 substitutions: ~92% identical
    "rrna_far": rand(120),  # unrelated
    "rrna_fragment": EVAL[1][40:100],  # identical, 60 nt inside a 150 nt evaluation sequence
    "mircarta_partial": EVAL[1][:60] + TAIL[:20],  # identical over 60 of its 80 nt: 75% of the shorter
}


@pytest.fixture
def files(tmp_path):
    ev = tmp_path / "rna" / "type_eval.tsv.gz"
    ev.parent.mkdir()
    with gzip.open(ev, "wt") as fh:
        fh.write("id\tlabel\tsequence\n" + "".join(f"e{k}\tx\t{s}\n" for k, s in enumerate(EVAL)))
    pool = tmp_path / "pool.fa"
    pool.write_text("".join(f">{i} desc\n{s}\n" for i, s in POOL.items()))
    return pool, ev


def test_gate_removes_near_copies_and_keeps_distant(files):
    pool, ev = files
    excluded, rows = leakage_gate([str(pool)], {"rna_type": str(ev)}, "rna", 0.9, 0.8)
    assert excluded == {"rfam_near", "trna_ninety2", "rrna_fragment"}  # coverage of the SHORTER (the fragment)
    rep = pd.DataFrame(rows).set_index(["eval_set", "source"])
    assert rep.loc[("rna_type", "rrna"), "removed"] == 1 and rep.loc[("rna_type", "rrna"), "pool_sequences"] == 2
    assert rep.loc[("rna_type", "mircarta"), "removed"] == 0
    assert rep.loc[("all", "all"), "removed"] == 3 and rep.loc[("all", "all"), "eval_with_hit"] == 2


def test_threshold_edges(files):
    pool, ev = files
    strict, _ = leakage_gate([str(pool)], {"rna_type": str(ev)}, "rna", 0.94, 0.8)
    assert "rfam_near" in strict and "trna_ninety2" not in strict  # identity ~0.95 passes 0.94, ~0.92 does not
    loose, _ = leakage_gate([str(pool)], {"rna_type": str(ev)}, "rna", 0.9, 0.7)
    assert "mircarta_partial" in loose  # 75% of the shorter sequence: in at 0.7, out at 0.8 (first test)
    hits = pd.DataFrame({"q": [0, 1, 2, 3], "t": [0, 0, 0, 0], "fident": [0.9, 0.899, 1.0, 0.95],
                         "cov": [0.8, 1.0, 0.799, 1.0]})
    assert near_copies(hits, 0.9, 0.8).q.tolist() == [0, 3]  # both thresholds inclusive


def test_missing_mmseqs_is_a_clear_error(files, monkeypatch):
    pool, ev = files
    monkeypatch.setattr(shutil, "which", lambda *a, **k: None)
    with pytest.raises(BiopruneError, match=r"mmseqs2.*leakage\.enabled: false"):
        leakage_gate([str(pool)], {"rna_type": str(ev)}, "rna")


def test_run_gate_writes_excluded_ids_and_report(files, tmp_path):
    pool, ev = files
    out_ex, out_rep = tmp_path / "leakage" / "excluded.txt", tmp_path / "leakage" / "report.csv"
    run_gate([str(pool)], [str(ev)], str(out_ex), str(out_rep),
             GateConfig(molecule="rna", max_identity=0.9, min_coverage=0.8, threads=1))
    assert out_ex.read_text().split() == ["rfam_near", "rrna_fragment", "trna_ninety2"]
    rep = pd.read_csv(out_rep)
    assert list(rep.columns) == ["eval_set", "source", "pool_sequences", "removed", "eval_sequences", "eval_with_hit"]
    assert set(rep.eval_set) == {"rna_type", "all"}
    assert not list(tmp_path.glob("leakage/.*.tmp"))


def test_count_leaks_independent_check(files, tmp_path):
    pool, ev = files
    assert count_leaks(str(pool), str(ev), "rna") == 2
    clean = tmp_path / "clean.fa"
    clean.write_text(f">rrna_far\n{POOL['rrna_far']}\n>m\n{POOL['mircarta_partial']}\n")
    assert count_leaks(str(clean), str(ev), "rna") == 0


def test_names():
    assert eval_set_name("resources/rna/type_eval.tsv.gz") == "rna_type"
    assert eval_set_name("resources/protein/loc_eval.tsv.gz") == "protein_loc"
    assert pool_source("trna_dm6-tRNAs_x") == "trna" and pool_source("A6MFK6") == "pool"


def test_a_pool_sequence_exactly_at_max_identity_is_removed(tmp_path):
    """90 of 100 positions identical over the full length: identity exactly 0.9, so the gate at
    max_identity 0.9 removes it (the threshold is inclusive all the way: MMseqs2's own --min-seq-id
    pre-filter must not drop the hit before the exact test); at 0.91 it stays."""
    rng = random.Random(29)
    ev_seq = "".join(rng.choice("ACGU") for _ in range(100))
    at = mutate(ev_seq, range(5, 100, 10))  # 10 substitutions, none near the ends
    below = mutate(ev_seq, list(range(5, 100, 10)) + [50])  # 11: identity 0.89
    ev = tmp_path / "rna" / "type_eval.tsv.gz"
    ev.parent.mkdir()
    with gzip.open(ev, "wt") as fh:
        fh.write(f"id\tlabel\tsequence\ne0\tx\t{ev_seq}\n")
    pool = tmp_path / "pool.fa"
    pool.write_text(f">rfam_at\n{at}\n>rfam_below\n{below}\n")
    excluded, _ = leakage_gate([str(pool)], {"rna_type": str(ev)}, "rna", 0.9, 0.8)
    assert excluded == {"rfam_at"}
    assert leakage_gate([str(pool)], {"rna_type": str(ev)}, "rna", 0.91, 0.8)[0] == set()
    assert count_leaks(str(pool), str(ev), "rna", 0.9) == 1


def _as_shard(tmp_path, name, records):
    """records -> a one-shard HDF5 file in ingest's format (what ingest writes the held-out split as)."""
    from bioprune.ingest import IngestOptions, ingest

    fa = tmp_path / f"{name}.fa"
    fa.write_text("".join(f">{i}\n{s}\n" for i, s in records.items()))
    out = tmp_path / f"{name}.h5"
    ingest(str(fa), [str(out)], str(tmp_path / f"{name}_unused_holdout.h5"),
           IngestOptions(max_length=1000, holdout_fraction=0.0))
    return str(out)


def test_heldout_filter_drops_heldout_sequences_near_copied_in_the_pool(tmp_path):
    import h5py

    from bioprune.leakage.gate import GateConfig, clean_holdout
    from bioprune.ingest import read_shard

    held = {"rrna_copy": mutate(POOL["rrna_far"], range(5, 115, 20)),  # 6 substitutions: 95% of a pool sequence
            "rrna_novel": rand(120), "trna_inside": POOL["rrna_far"][10:90]}  # an identical fragment of a pool sequence
    holdout = _as_shard(tmp_path, "held", held)
    pool = tmp_path / "pool.fa"
    pool.write_text("".join(f">{i}\n{s}\n" for i, s in POOL.items()))
    out, exc, rep = (str(tmp_path / n) for n in ("clean.h5", "excluded.txt", "report.csv"))
    res = clean_holdout(holdout, [str(pool)], out, exc, rep, GateConfig(molecule="rna", max_identity=0.9, min_coverage=0.8))
    assert res == {"holdout": 3, "excluded": 2, "kept": 1}
    assert read_shard(out)[0] == ["rrna_novel"]
    assert open(exc).read().split() == ["rrna_copy", "trna_inside"]
    r = pd.read_csv(rep).set_index("source")
    assert r.loc["rrna", "with_near_copy"] == 1 and r.loc["rrna", "kept"] == 1 and r.loc["trna", "kept"] == 0
    assert r.loc["all", "holdout_sequences"] == 3
    with h5py.File(out) as f:
        assert f.attrs["leakage_excluded"] == 2 and f.attrs["n_records"] == 1
    # switched off: a plain copy, nothing dropped (the behaviour before the filter)
    off = clean_holdout(holdout, [str(pool)], out, exc, rep, GateConfig(molecule="rna", holdout=False))
    assert off["kept"] == 3 and sorted(read_shard(out)[0]) == sorted(held)


def test_empty_heldout_gives_na_perplexity_not_one(tmp_path):
    """An empty held-out file used to give perplexity exp(0 / 1) = 1.0, the best possible score."""
    import math

    from bioprune.benchmarks import perplexity
    from bioprune.benchmarks.common import BenchParams
    from bioprune.leakage.gate import GateConfig, clean_holdout

    holdout = _as_shard(tmp_path, "held", {"rrna_x": POOL["rrna_far"]})
    pool = tmp_path / "pool.fa"
    pool.write_text(f">rrna_far\n{POOL['rrna_far']}\n")
    out = str(tmp_path / "clean.h5")
    res = clean_holdout(holdout, [str(pool)], out, str(tmp_path / "e.txt"), str(tmp_path / "r.csv"), GateConfig(molecule="rna"))
    assert res["kept"] == 0
    bp = BenchParams.from_dict({"tasks": ["perplexity"], "max_eval": 10, "molecule": "rna", "device": "cpu"}, out)
    rows = dict(perplexity.run(None, bp))
    assert math.isnan(rows["perplexity"]) and math.isnan(rows["mlm_loss"])
