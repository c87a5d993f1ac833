"""Leakage gate: drop every pool sequence that is a near-copy of an evaluation sequence (MMseqs2).

A pool sequence is excluded when some evaluation sequence aligns to it with identity >= max_identity
(identical columns / alignment columns, MMseqs2 `fident`) over >= min_coverage of the SHORTER of
the two sequences. MMseqs2 has no "shorter sequence" coverage mode (`--cov-mode 0` asks for both
sequences, 1 target, 2 query, 5 only compares lengths), so the search runs with `-c 0` and the
coverage is computed here from the alignment coordinates: the aligned span of whichever sequence is
shorter, divided by its length. A fragment inside a longer evaluation sequence, or an evaluation
sequence inside a longer pool window, both count.

Search settings: RNA runs a nucleotide search (`--search-type 3`, forward strand only since RNAs are
oriented, k-mer 11 and no low-complexity masking: with the defaults, k 15 and masking, planted 91%
copies of short RNAs were missed); protein runs a protein search at `-s 4` (5.7, the default, found
the same demo hits at five times the cost). E-values are not used to filter (`-e 10`).
"""
from __future__ import annotations

import csv
import gzip
import logging
import shutil
import subprocess
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bioprune.errors import BiopruneError
from bioprune.h5io import atomic_path

log = logging.getLogger(__name__)
HIT_COLUMNS = ["query", "target", "fident", "alnlen", "qstart", "qend", "qlen", "tstart", "tend", "tlen", "bits"]
REPORT_COLUMNS = ["eval_set", "source", "pool_sequences", "removed", "eval_sequences", "eval_with_hit"]


def mmseqs_exe(hint: str) -> str:
    """Path of the mmseqs binary; BiopruneError naming `hint` (what to do instead) when it is missing."""
    exe = shutil.which("mmseqs")
    if exe is None:
        raise BiopruneError(f"MMseqs2 (`mmseqs`) is not on PATH: install it with `apt-get install mmseqs2` "
                            f"(Debian/Ubuntu) or `conda install -c bioconda mmseqs2`, or {hint}")
    return exe


def search_args(molecule: str, min_identity: float = 0.0, sensitivity: float | None = None) -> list[str]:
    """easy-search options for a molecule (see the module docstring for why these)."""
    if molecule == "rna":
        args = ["--search-type", "3", "--strand", "1", "-k", "11", "--mask", "0"]
    elif molecule == "protein":
        args = ["--search-type", "1", "-s", str(sensitivity or 4.0)]
    else:
        raise BiopruneError(f"molecule {molecule!r}: expected rna or protein")
    if min_identity > 0:
        args += ["--min-seq-id", f"{max(0.0, min_identity - 0.005):.3f}"]  # exact threshold applied afterwards
    return args


def _write_fasta(path: Path, seqs: list[str], prefix: str, molecule: str) -> None:
    with open(path, "w") as fh:
        for k, s in enumerate(seqs):
            fh.write(f">{prefix}{k}\n{s.upper().replace('U', 'T') if molecule == 'rna' else s}\n")


def search(queries: list[str], targets: list[str], molecule: str, min_identity: float = 0.0, threads: int = 1,
           evalue: float = 10.0, max_seqs: int = 1000, sensitivity: float | None = None,
           hint: str = "set leakage.enabled: false") -> pd.DataFrame:
    """All MMseqs2 hits of `queries` against `targets`: columns q, t (list indices), fident, cov (coverage
    of the shorter sequence), alnlen, bits, qlen, tlen. Sequences are named by index, so any ids work."""
    exe = mmseqs_exe(hint)
    empty = pd.DataFrame({c: pd.Series(dtype=float) for c in ("q", "t", "fident", "cov", "alnlen", "bits", "qlen", "tlen")})
    if not queries or not targets:
        return empty
    with tempfile.TemporaryDirectory(prefix="bioprune-mmseqs-") as tmp:
        t = Path(tmp)
        _write_fasta(t / "q.fa", queries, "q", molecule)
        _write_fasta(t / "t.fa", targets, "t", molecule)
        cmd = [exe, "easy-search", str(t / "q.fa"), str(t / "t.fa"), str(t / "hits.m8"), str(t / "work"),
               *search_args(molecule, min_identity, sensitivity), "-e", str(evalue), "--max-seqs", str(max_seqs),
               "--threads", str(threads), "-v", "1", "--format-output", ",".join(HIT_COLUMNS)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise BiopruneError(f"mmseqs easy-search failed ({res.returncode}): {(res.stderr or res.stdout)[-2000:]}")
        if (t / "hits.m8").stat().st_size == 0:
            return empty
        h = pd.read_csv(t / "hits.m8", sep="\t", names=HIT_COLUMNS)
    qspan = (h.qend - h.qstart).abs() + 1
    tspan = (h.tend - h.tstart).abs() + 1
    out = pd.DataFrame({"q": h["query"].str[1:].astype(int), "t": h["target"].str[1:].astype(int),
                        "fident": h.fident.astype(float), "alnlen": h.alnlen, "bits": h.bits,
                        "qlen": h.qlen, "tlen": h.tlen})
    out["cov"] = np.where(h.qlen <= h.tlen, qspan / h.qlen, tspan / h.tlen)
    return out


def near_copies(hits: pd.DataFrame, max_identity: float, min_coverage: float) -> pd.DataFrame:
    """Hits at or above both thresholds (identity >= max_identity over >= min_coverage of the shorter)."""
    return hits[(hits.fident >= max_identity - 1e-9) & (hits["cov"] >= min_coverage - 1e-9)]


def read_sequences(path: str) -> tuple[list[str], list[str]]:
    """(ids, sequences) of a shard (.h5), a FASTA(.gz), or an evaluation TSV(.gz) with id and sequence columns."""
    p = Path(path)
    if not p.exists():
        raise BiopruneError(f"{p}: file not found")
    if p.suffix == ".h5":
        from bioprune.ingest import read_shard

        return read_shard(p)[:2]
    if ".tsv" in p.suffixes:
        with (gzip.open(p, "rt") if p.suffix == ".gz" else open(p)) as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        if rows and not {"id", "sequence"} <= set(rows[0]):
            raise BiopruneError(f"{p}: evaluation set needs columns id and sequence")
        return [r["id"] for r in rows], [r["sequence"] for r in rows]
    from bioprune.ingest import iter_fasta

    ids, seqs = [], []
    for _, i, s in iter_fasta(p):
        ids.append(i)
        seqs.append(s)
    return ids, seqs


def pool_source(seq_id: str) -> str:
    """The pool source of an id: its prefix before the first `_` (rrna, trna, mircarta, rfam in the RNA
    pool); ids without one (UniProt accessions) are `pool`."""
    return seq_id.split("_", 1)[0] if "_" in seq_id else "pool"


def eval_set_name(path: str) -> str:
    """`resources/rna/type_eval.tsv.gz` -> `rna_type` (the task name); other names: the file name."""
    p = Path(path)
    stem = p.name.split(".")[0]
    if stem.endswith("_eval") and p.parent.name in ("rna", "protein"):
        return f"{p.parent.name}_{stem[: -len('_eval')]}"
    return stem  # a user's own set (leakage.eval_sets): its file name


def leakage_gate(pool: list[str], eval_sets: dict[str, str], molecule: str, max_identity: float = 0.9,
                 min_coverage: float = 0.8, threads: int = 1) -> tuple[set[str], list[dict]]:
    """Ids of pool sequences (shards, FASTA) that are near-copies of any evaluation sequence, and report rows
    per evaluation set and pool source (plus `all` rows): pool sequences removed, evaluation sequences hit."""
    pool_ids, pool_seqs = [], []
    for p in pool:
        i, s = read_sequences(p)
        pool_ids += i
        pool_seqs += s
    names, eval_seqs, eval_of = [], [], []
    for name, path in eval_sets.items():
        _, s = read_sequences(path)
        names.append(name)
        eval_seqs += s
        eval_of += [name] * len(s)
    hits = near_copies(search(pool_seqs, eval_seqs, molecule, max_identity, threads), max_identity, min_coverage)
    excluded = {pool_ids[q] for q in hits.q.unique()}
    sources = [pool_source(i) for i in pool_ids]
    n_source = pd.Series(sources).value_counts().to_dict()
    n_eval = pd.Series(eval_of).value_counts().to_dict()
    removed, hit = defaultdict(set), defaultdict(set)
    for q, t in zip(hits.q.tolist(), hits.t.tolist()):
        for e in (eval_of[t], "all"):
            for s in (sources[q], "all"):
                removed[e, s].add(q)
                hit[e, s].add(t)
    rows = []
    for e in names + ["all"]:
        for s in sorted(n_source) + ["all"]:
            rows.append({"eval_set": e, "source": s, "pool_sequences": len(pool_ids) if s == "all" else n_source[s],
                         "removed": len(removed[e, s]), "eval_sequences": len(eval_seqs) if e == "all" else n_eval.get(e, 0),
                         "eval_with_hit": len(hit[e, s])})
    log.info("leakage gate: %d of %d pool sequences removed (identity >= %g over >= %g of the shorter); "
             "%d of %d evaluation sequences had a near-copy", len(excluded), len(pool_ids), max_identity,
             min_coverage, len(hit["all", "all"]), len(eval_seqs))
    return excluded, rows


def write_gate(excluded: set[str], rows: list[dict], out_excluded: str, out_report: str) -> None:
    """The excluded ids (sorted, one per line) and report.csv, each written atomically."""
    with atomic_path(out_excluded) as tmp:
        Path(tmp).write_text("".join(f"{i}\n" for i in sorted(excluded)))
    with atomic_path(out_report) as tmp:
        pd.DataFrame(rows, columns=REPORT_COLUMNS).to_csv(tmp, index=False)


def read_excluded(path: str) -> set[str]:
    """The ids a gate run excluded."""
    return set(Path(path).read_text().split())


@dataclass(frozen=True)
class GateConfig:
    """The leakage section (plus corpus.molecule and the job's threads), typed once in bioprune.stages:
    near-copy = identity >= max_identity over >= min_coverage of the shorter sequence."""

    molecule: str
    enabled: bool = True
    holdout: bool = True
    max_identity: float = 0.9
    min_coverage: float = 0.8
    threads: int = 1

    def __post_init__(self):  # the YAML may say 1 for 1.0
        for name, conv in (("max_identity", float), ("min_coverage", float), ("threads", int)):
            object.__setattr__(self, name, conv(getattr(self, name)))


def run_gate(shards: list[str], eval_files: list[str], out_excluded: str, out_report: str, cfg: GateConfig) -> None:
    """Stage entry: drop pool sequences near-copying an evaluation sequence (cfg: molecule, max_identity,
    min_coverage, threads)."""
    sets = {}
    for f in eval_files:
        name = eval_set_name(f)
        if name in sets:
            raise BiopruneError(f"{f}: two evaluation sets named {name!r} (rename one of the files in leakage.eval_sets)")
        sets[name] = f
    max_identity, min_coverage = cfg.max_identity, cfg.min_coverage
    n_eval = sum(len(read_sequences(f)[1]) for f in sets.values())
    if not n_eval:
        raise BiopruneError(
            f"leakage gate: no evaluation sequence to check the pool against ({', '.join(eval_files) or 'no file'}): "
            "add a benchmark task of corpus.molecule to benchmark.tasks, name your own evaluation files in "
            "leakage.eval_sets, or set leakage.enabled: false")
    excluded, rows = leakage_gate(shards, sets, cfg.molecule, max_identity, min_coverage, cfg.threads)
    pool = max((int(r["pool_sequences"]) for r in rows if r["source"] == "all"), default=0)
    if pool and len(excluded) >= pool:
        raise BiopruneError(
            f"leakage gate: every one of the {pool} pool sequences has a near-copy (identity >= leakage.max_identity "
            f"= {max_identity:g} over >= leakage.min_coverage = {min_coverage:g}) in the evaluation sets "
            f"{', '.join(sorted(sets))}; nothing would be left to score. Is the corpus the evaluation data itself? "
            "Use another corpus, raise leakage.max_identity, or set leakage.enabled: false")
    write_gate(excluded, rows, out_excluded, out_report)


def count_leaks(train: str | list[str], eval_file: str, molecule: str, max_identity: float = 0.9,
                min_coverage: float = 0.8, threads: int = 1) -> int:
    """Independent check: how many sequences of `eval_file` have a near-copy among the `train` sequences
    (FASTA, shards). Searches the other way round from the gate (evaluation sequences are the queries),
    with a more sensitive protein search (-s 7.5)."""
    train_seqs = []
    for p in [train] if isinstance(train, str) else train:
        train_seqs += read_sequences(p)[1]
    _, eval_seqs = read_sequences(eval_file)
    hits = search(eval_seqs, train_seqs, molecule, max_identity, threads, max_seqs=5000, sensitivity=7.5,
                  hint="skip this check")
    return int(near_copies(hits, max_identity, min_coverage).q.nunique())


HOLDOUT_COLUMNS = ["source", "holdout_sequences", "with_near_copy", "kept"]


def clean_holdout(holdout: str, pool_shards: list[str], out: str, out_excluded: str, out_report: str,
                  cfg: GateConfig) -> dict:
    """The held-out evaluation file without the held-out sequences that have a near-copy in the (gated)
    pool: identity >= leakage.max_identity over >= leakage.min_coverage of the shorter sequence, the
    gate's own rule, searched with the held-out sequences as queries. Ingest draws the held-out split by
    sequence digest, so overlapping rRNA windows and gene copies fall on both sides (53% of the demo's
    held-out sequences had a near-copy in the pool); held-out perplexity and kmer_baseline read this file
    so they score modelling, not copying. The pool is not touched (the coreset keeps every sequence).
    Writes `out` (same datasets and attrs, plus `leakage_excluded`), the excluded ids and a report per
    source, each atomically. Returns {"holdout": n, "excluded": k, "kept": n - k}."""
    ids, seqs = read_sequences(holdout)
    pool: list[str] = []
    for p in pool_shards:
        pool += read_sequences(p)[1]
    max_identity, min_coverage = cfg.max_identity, cfg.min_coverage
    if cfg.enabled and cfg.holdout:
        hits = search(seqs, pool, cfg.molecule, max_identity, cfg.threads,
                      hint="set leakage.holdout: false")
        bad = {ids[int(q)] for q in near_copies(hits, max_identity, min_coverage).q.unique()}
    else:
        bad = set()
    rows = []
    for src in sorted({pool_source(i) for i in ids}) + ["all"]:
        mine = [i for i in ids if src == "all" or pool_source(i) == src]
        k = sum(i in bad for i in mine)
        rows.append({"source": src, "holdout_sequences": len(mine), "with_near_copy": k, "kept": len(mine) - k})
    with atomic_path(out_excluded) as tmp:
        Path(tmp).write_text("".join(f"{i}\n" for i in sorted(bad)))
    filter_shards([holdout], [out], out_excluded)
    with atomic_path(out_report) as tmp:
        pd.DataFrame(rows, columns=HOLDOUT_COLUMNS).to_csv(tmp, index=False)
    res = {"holdout": len(ids), "excluded": len(bad), "kept": len(ids) - len(bad)}
    log.info("held-out filter: %d of %d held-out sequences have a near-copy in the pool (identity >= %g over "
             ">= %g of the shorter) and leave the evaluation file; %d kept", len(bad), len(ids), max_identity,
             min_coverage, res["kept"])
    if ids and not res["kept"]:
        log.warning("held-out filter: every held-out sequence has a near-copy in the pool: held-out perplexity "
                    "and kmer_baseline are NA (raise corpus.holdout_fraction, or set leakage.holdout: false)")
    return res


def filter_shards(raw_shards: list[str], out_shards: list[str], excluded_path: str) -> int:
    """Write each shard without the excluded ids (same datasets and attrs, plus `leakage_excluded`),
    atomically. Returns the number of sequences removed."""
    import h5py
    import numpy as np

    from bioprune.h5io import atomic_path

    excluded = read_excluded(excluded_path)
    removed = 0
    for src, dst in zip(raw_shards, out_shards, strict=True):
        with h5py.File(src, "r", locking=False) as f, atomic_path(dst) as tmp:
            ids = f["id"].asstr()[()]
            keep = np.array([i not in excluded for i in ids], dtype=bool)
            removed += int((~keep).sum())
            with h5py.File(tmp, "w") as g:
                for k, v in f.attrs.items():
                    g.attrs[k] = v
                for name in f:
                    data = f[name][()]
                    g.create_dataset(name, data=data[keep] if len(data) == len(keep) else data, dtype=f[name].dtype)
                g.attrs["n_records"] = int(keep.sum())
                g.attrs["leakage_excluded"] = int((~keep).sum())
    return removed
