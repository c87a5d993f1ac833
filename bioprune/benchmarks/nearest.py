"""Nearest-neighbour baseline: what homology transfer alone scores on each probe split.

Every probe-test sequence takes the label (rna_type, protein_loc), the base pairs (rna_ss) or the
DSSP states (protein_ss) of its most identical probe-train sequence: the one with the most identical
aligned positions per test residue in a local alignment (Bio.Align.PairwiseAligner; blastn-like
scores for RNA, BLOSUM62 11/1 for protein). To keep it cheap, only the K_CANDIDATES train sequences
with the most similar k-mer profiles (cosine) are aligned. Pairs and states are transferred through
the aligned columns; a test sequence with no aligned identity gets the majority train label / no pairs
/ the majority state. The rows use the models' task and metric names, strategy `nearest_neighbour`.
"""
from __future__ import annotations

import logging
from collections import Counter

import numpy as np

from bioprune.benchmarks.metrics import pair_f1, residue_accuracy
from bioprune.benchmarks.common import TASK_MOLECULE, BenchParams, classification_metrics

log = logging.getLogger(__name__)
K_CANDIDATES = 20
ALPHABET = {"rna": ("ACGU", 5), "protein": ("ACDEFGHIKLMNPQRSTVWY", 3)}


def _aligner(molecule: str):
    from Bio import Align
    from Bio.Align import substitution_matrices

    if molecule == "rna":
        return Align.PairwiseAligner(mode="local", match_score=2, mismatch_score=-3, open_gap_score=-5,
                                     extend_gap_score=-2)
    return Align.PairwiseAligner(mode="local", substitution_matrix=substitution_matrices.load("BLOSUM62"),
                                 open_gap_score=-11, extend_gap_score=-1)


def kmer_profiles(seqs: list[str], molecule: str) -> np.ndarray:
    """Unit-length k-mer count vectors (k 5 for RNA, 3 for protein; k-mers with other letters skipped)."""
    letters, k = ALPHABET[molecule]
    code = np.full(256, -1, dtype=np.int64)
    for i, c in enumerate(letters):
        code[ord(c)] = i
    base = len(letters)
    out = np.zeros((len(seqs), base**k), dtype=np.float32)
    for n, s in enumerate(seqs):
        s = s.upper().replace("T", "U") if molecule == "rna" else s.upper()
        x = code[np.frombuffer(s.encode("ascii"), np.uint8)]
        if len(x) < k:
            continue
        win = np.lib.stride_tricks.sliding_window_view(x, k)
        win = win[(win >= 0).all(1)]
        np.add.at(out[n], win @ (base ** np.arange(k - 1, -1, -1)), 1.0)
    norm = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norm > 0, norm, 1.0)


def aligned_map(aln) -> dict[int, int]:
    """Aligned columns of align(test, train): train position -> test position."""
    m = {}
    for (t0, t1), (q0, q1) in zip(aln.aligned[0], aln.aligned[1]):
        for d in range(int(t1 - t0)):
            m[int(q0) + d] = int(t0) + d
    return m


def nearest(test: list[str], train: list[str], molecule: str, k: int = K_CANDIDATES) -> list[tuple[int, dict[int, int]]]:
    """Per test sequence: (index of its most identical train sequence or -1, train pos -> test pos map)."""
    aligner = _aligner(molecule)
    sim = kmer_profiles(test, molecule) @ kmer_profiles(train, molecule).T
    out = []
    for i, s in enumerate(test):
        best, best_key, best_map = -1, (0, -np.inf), {}
        for j in sorted(np.argsort(-sim[i], kind="stable")[:k].tolist()):
            try:
                aln = aligner.align(s, train[j])[0]
            except IndexError:  # no positive-scoring local alignment
                continue
            m = aligned_map(aln)
            key = (sum(s[p] == train[j][q] for q, p in m.items()), aln.score)
            if key[0] > 0 and key > best_key:
                best, best_key, best_map = j, key, m
        out.append((best, best_map))
    return out


def nn_classification(train: list[dict], test: list[dict], molecule: str) -> list[tuple[str, float]]:
    majority = Counter(r["label"] for r in train).most_common(1)[0][0]
    nn = nearest([r["sequence"] for r in test], [r["sequence"] for r in train], molecule)
    pred = [train[j]["label"] if j >= 0 else majority for j, _ in nn]
    log.info("nearest_neighbour: %d of %d test sequences found a neighbour", sum(j >= 0 for j, _ in nn), len(nn))
    return classification_metrics([r["label"] for r in test], pred)


def nn_rna_ss(train: list[dict], test: list[dict]) -> list[tuple[str, float]]:
    from bioprune.benchmarks.rna_ss import parse_pairs

    nn = nearest([r["sequence"] for r in test], [r["sequence"] for r in train], "rna")
    f1s = []
    for r, (j, m) in zip(test, nn):
        pred = {(m[a], m[b]) for a, b in parse_pairs(train[j]["pairs"]) if a in m and b in m} if j >= 0 else set()
        f1s.append(pair_f1(pred, parse_pairs(r["pairs"])))
    return [("bp_f1", float(np.mean(f1s))), ("n_test", float(len(test)))]


def nn_protein_ss(train: list[dict], test: list[dict]) -> list[tuple[str, float]]:
    from bioprune.benchmarks.protein_ss import SCHEMES

    nn = nearest([r["sequence"] for r in test], [r["sequence"] for r in train], "protein")
    out = []
    for name, conv in SCHEMES:
        majority = Counter("".join(conv(r["dssp8"]) for r in train)).most_common(1)[0][0]
        pred, true = [], []
        for r, (j, m) in zip(test, nn):
            src = conv(train[j]["dssp8"]) if j >= 0 else ""
            p = [majority] * len(r["sequence"])
            for a, b in m.items():
                p[b] = src[a]
            pred += p
            true += list(conv(r["dssp8"]))
        out.append((name, residue_accuracy(np.array(pred), np.array(true))))
    return out


def nearest_neighbour_reference(bp: BenchParams) -> list[tuple[str, str, float]]:
    """(task, metric, value) rows of the baseline for every configured task where it is defined."""
    from bioprune.benchmarks import protein_loc, protein_ss, rna_ss, rna_type

    rows: list[tuple[str, str, float]] = []
    for task in bp.tasks:
        if task == "perplexity" or TASK_MOLECULE[task] != bp.molecule:
            continue
        if task in ("rna_type", "protein_loc"):
            train, test = (rna_type if task == "rna_type" else protein_loc).sets(bp)
            vals = nn_classification(train, test, TASK_MOLECULE[task])
        elif task == "rna_ss":
            vals = nn_rna_ss(*rna_ss.sets(bp))
        else:
            vals = nn_protein_ss(*protein_ss.sets(bp))
        rows += [(task, m, float(v)) for m, v in vals]
        log.info("nearest_neighbour %s: %s", task, ", ".join(f"{m}={v:.4f}" for m, v in vals))
    return rows
