"""The probe rows of a labelled task (homology split, label-balanced) and the linear probe on them."""
from __future__ import annotations

import numpy as np

from bioprune.benchmarks.common import (TASK_MOLECULE, BenchParams, balanced_subset, classification_metrics, embed, probe,
                                        read_tsv)
from bioprune.benchmarks.splits import probe_split
from bioprune.errors import BiopruneError


def classification_sets(task: str, bp: BenchParams) -> tuple[list[dict], list[dict]]:
    """Probe train and test rows of a labelled task: a label-balanced subset of at most max_eval rows,
    split by the stored homology split (whole clusters on one side). Models and the nearest-neighbour
    baseline both call this, so they see the same rows."""
    rows = read_tsv(bp.eval_path(task))
    split = probe_split(task, rows, bp)
    sub = balanced_subset(rows, bp.max_eval)
    train = [r for r in sub if split[r["id"]] == "train"]
    test = [r for r in sub if split[r["id"]] == "test"]
    if len({r["label"] for r in train}) < 2 or not test:
        raise BiopruneError(f"benchmark {task}: the homology split left {len(train)} train / {len(test)} test rows "
                            "with under two train classes or no test row; raise benchmark.max_eval or "
                            "benchmark.split_identity")
    return train, test


def classify(model, task: str, bp: BenchParams) -> list[tuple[str, float]]:
    """Linear probe on mean-pooled embeddings: accuracy and macro F1 on the probe-test rows."""
    train, test = classification_sets(task, bp)
    molecule = TASK_MOLECULE[task]
    h_tr, _ = embed(model, [r["sequence"] for r in train], molecule)
    h_te, _ = embed(model, [r["sequence"] for r in test], molecule)
    clf = probe().fit(np.stack([e.mean(0) for e in h_tr]), [r["label"] for r in train])
    pred = clf.predict(np.stack([e.mean(0) for e in h_te]))
    return classification_metrics([r["label"] for r in test], list(pred))
