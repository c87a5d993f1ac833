"""Homology-aware probe splits: whole sequence clusters go to one side, so no probe-test sequence has a
probe-train neighbour at or above the split identity.

Clusters are the connected components (single linkage) of an all-against-all MMseqs2 search of the
evaluation set, an edge being a hit with identity >= identity over >= coverage of the shorter sequence
(bioprune.leakage.gate.search). Single linkage, unlike a representative-based clustering, guarantees the
property above (up to the search's sensitivity). Clusters are visited in the order of a seeded hash
of their representative (smallest member id) and go to test while every label they hold stays within
its test quota (test_fraction of the label's rows); the rest go to train. rna_ss keeps its
family-held-out split and drops from training every sequence whose cluster reaches a test sequence.

The split covers the whole evaluation set, is stored as a TSV (id, cluster, split) with a fingerprint
of the rows and settings in its first line, and is reused only when the fingerprint matches.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bioprune.benchmarks.common import SPLIT_SEED, TASK_MOLECULE, BenchParams, read_tsv
from bioprune.errors import BiopruneError
from bioprune.h5io import atomic_path

log = logging.getLogger(__name__)
DEFAULT_IDENTITY = {"rna": 0.8, "protein": 0.3}
TEST_FRACTION = 0.3
HINT = ("remove the labelled tasks (rna_ss, rna_type, protein_ss, protein_loc) from benchmark.tasks: "
        "their homology-aware probe splits need it")


@dataclass
class SplitParams:
    molecule: str
    identity: float
    coverage: float = 0.8
    test_fraction: float = TEST_FRACTION
    seed: int = 0
    test_families: list[str] = field(default_factory=list)  # rna_ss only


def split_params(task: str, bp) -> SplitParams:
    """SplitParams of a task from BenchParams (split_identity None = the molecule's default)."""
    mol = TASK_MOLECULE[task]
    ident = DEFAULT_IDENTITY[mol] if bp.split_identity is None else float(bp.split_identity)
    fams = list(bp.test_families) if task == "rna_ss" else []
    return SplitParams(mol, ident, float(bp.split_coverage), TEST_FRACTION, SPLIT_SEED, fams)


def homology_clusters(seqs: list[str], molecule: str, identity: float, coverage: float, threads: int = 1) -> np.ndarray:
    """Connected-component index of every sequence (hits >= identity over >= coverage of the shorter)."""
    from bioprune.leakage.gate import near_copies, search

    parent = list(range(len(seqs)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    hits = search(seqs, seqs, molecule, identity, threads, evalue=1e-3, max_seqs=max(300, len(seqs)),
                  sensitivity=7.5, hint=HINT)
    edges = near_copies(hits, identity, coverage)
    for q, t in zip(edges.q.astype(int).tolist(), edges.t.astype(int).tolist()):
        a, b = find(q), find(t)
        if a != b:
            parent[max(a, b)] = min(a, b)
    return np.array([find(i) for i in range(len(seqs))])


def held_out_families(labels: list[str], test_families: list[str], seed: int = 0) -> set[str]:
    """The rna_ss test classes: as configured, else a seeded third of the classes."""
    fams = sorted(set(labels))
    if test_families:
        unknown = set(test_families) - set(fams)
        if unknown:
            raise BiopruneError(f"config key benchmark.test_families: unknown families {sorted(unknown)}; known: {fams}")
        return set(test_families)
    rng = np.random.default_rng(seed)
    return set(rng.choice(fams, size=max(1, len(fams) // 3), replace=False).tolist())


def _hash(seed: int, rep: str) -> str:
    return hashlib.sha256(f"{seed}:{rep}".encode()).hexdigest()


def assign_clusters(ids: list[str], labels: list[str], cluster: np.ndarray, test_fraction: float, seed: int) -> list[str]:
    """'train'/'test' per row: clusters in seeded-hash order of their representative go to test while every
    label they carry stays within round(test_fraction x its rows)."""
    members: dict[int, list[int]] = defaultdict(list)
    for k, c in enumerate(cluster.tolist()):
        members[c].append(k)
    rep = {c: min(ids[k] for k in m) for c, m in members.items()}
    quota = {lab: round(test_fraction * n) for lab, n in Counter(labels).items()}
    taken: Counter = Counter()
    split = ["train"] * len(ids)
    for c in sorted(members, key=lambda c: (_hash(seed, rep[c]), rep[c])):
        need = Counter(labels[k] for k in members[c])
        if all(taken[lab] + n <= quota[lab] for lab, n in need.items()):
            taken.update(need)
            for k in members[c]:
                split[k] = "test"
    return split


def compute_split(task: str, rows: list[dict], sp: SplitParams, threads: int = 1) -> pd.DataFrame:
    """The split of a whole evaluation set: columns id, cluster (representative id), split."""
    ids = [r["id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise BiopruneError(f"benchmark {task}: the evaluation set has duplicate ids")
    cl = homology_clusters([r["sequence"] for r in rows], sp.molecule, sp.identity, sp.coverage, threads)
    rep = {}
    for k, c in enumerate(cl.tolist()):
        rep[c] = min(rep.get(c, ids[k]), ids[k])
    labels = [r.get("label", "") for r in rows]
    if task == "rna_ss":
        test = held_out_families(labels, sp.test_families, sp.seed)
        split = ["test" if lab in test else "train" for lab in labels]
        reach = {c for c, s in zip(cl.tolist(), split) if s == "test"}
        split = ["excluded" if s == "train" and c in reach else s for c, s in zip(cl.tolist(), split)]
    else:
        split = assign_clusters(ids, labels, cl, sp.test_fraction, sp.seed)
    df = pd.DataFrame({"id": ids, "cluster": [rep[c] for c in cl.tolist()], "split": split})
    n = Counter(split)
    log.info("split %s: %d clusters at identity %.2f; %s", task, len(rep), sp.identity, dict(sorted(n.items())))
    return df


def fingerprint(task: str, rows: list[dict], sp: SplitParams) -> str:
    h = hashlib.sha256(json.dumps([task, asdict(sp)], sort_keys=True).encode())
    for r in rows:
        h.update(f"{r['id']}\t{r.get('label', '')}\t{r['sequence']}\n".encode())
    return h.hexdigest()


def write_split(path: str, df: pd.DataFrame, fp: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as fh:
            fh.write(f"# fingerprint {fp}\n")
            df.to_csv(fh, sep="\t", index=False)


def read_split(path: str) -> tuple[str, pd.DataFrame]:
    """(fingerprint, table) of a stored split."""
    with open(path) as fh:
        first = fh.readline().split()
        if len(first) != 3 or first[:2] != ["#", "fingerprint"]:
            raise BiopruneError(f"{path}: not a bioprune split file (no fingerprint line)")
        df = pd.read_csv(fh, sep="\t", dtype=str, keep_default_na=False)
    if list(df.columns) != ["id", "cluster", "split"]:
        raise BiopruneError(f"{path}: expected columns id, cluster, split")
    return first[2], df


def probe_split(task: str, rows: list[dict], bp) -> dict[str, str]:
    """id -> train/test/excluded: the stored split when bp.split_dir holds one for these rows and settings
    (a stale one is an error), else computed now (MMseqs2)."""
    sp = split_params(task, bp)
    fp = fingerprint(task, rows, sp)
    if bp.split_dir:
        path = Path(bp.split_dir) / f"{task}.tsv"
        if path.exists():
            got, df = read_split(str(path))
            if got != fp:
                raise BiopruneError(f"{path}: stored split was made from other rows or settings; delete it or "
                                    "re-run the probe_split stage")
            return dict(zip(df["id"], df["split"]))
    df = compute_split(task, rows, sp)
    return dict(zip(df["id"], df["split"]))


def build_split(task: str, eval_path: str, out: str, bp: BenchParams, threads: int = 1) -> None:
    """Stage entry: compute and store the split of one task's evaluation set."""
    rows = read_tsv(eval_path)
    sp = split_params(task, bp)
    write_split(out, compute_split(task, rows, sp, threads), fingerprint(task, rows, sp))
