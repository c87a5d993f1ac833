"""Protein secondary structure: per-residue Q3/Q8 linear probe on frozen embeddings, chains split by
homology cluster (bioprune.benchmarks.splits)."""
from __future__ import annotations

import numpy as np

from bioprune.errors import BiopruneError
from bioprune.benchmarks.metrics import dssp_to_ss3, residue_accuracy
from bioprune.benchmarks.common import SPLIT_SEED, BenchParams, embed, probe, read_tsv

SCHEMES = (("q3", dssp_to_ss3), ("q8", lambda s: s))
MAX_TRAIN_RESIDUES = 40000


def sets(bp: BenchParams) -> tuple[list[dict], list[dict]]:
    """At most max_eval chains (seeded), split by the stored homology split."""
    from bioprune.benchmarks.splits import probe_split

    rows = read_tsv(bp.eval_path("protein_ss"))
    split = probe_split("protein_ss", rows, bp)
    rng = np.random.default_rng(SPLIT_SEED)
    rows = [rows[i] for i in sorted(rng.choice(len(rows), min(len(rows), bp.max_eval), replace=False))]
    train = [r for r in rows if split[r["id"]] == "train"]
    test = [r for r in rows if split[r["id"]] == "test"]
    if not train or not test:
        raise BiopruneError(f"benchmark protein_ss: the homology split left {len(train)} train / {len(test)} test "
                            "chains; raise benchmark.max_eval")
    return train, test


def run(model, bp: BenchParams) -> list[tuple[str, float]]:
    train, test = sets(bp)
    rng = np.random.default_rng(SPLIT_SEED)
    h_tr, _ = embed(model, [r["sequence"] for r in train], "protein")
    h_te, _ = embed(model, [r["sequence"] for r in test], "protein")
    out = []
    for name, conv in SCHEMES:
        xtr = np.concatenate(h_tr)
        ytr = np.array(list("".join(conv(r["dssp8"]) for r in train)))
        if len(ytr) > MAX_TRAIN_RESIDUES:
            pick = rng.choice(len(ytr), MAX_TRAIN_RESIDUES, replace=False)
            xtr, ytr = xtr[pick], ytr[pick]
        clf = probe().fit(xtr, ytr)
        yte = np.array(list("".join(conv(r["dssp8"]) for r in test)))
        out.append((name, residue_accuracy(clf.predict(np.concatenate(h_te)), yte)))
    return out
