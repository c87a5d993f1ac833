"""What the benchmark tasks share: typed params, evaluation-set reading, embeddings, the linear probe,
and the labelled probe sets (balanced subset, split by homology cluster)."""
from __future__ import annotations

import csv
import gzip
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bioprune.errors import BiopruneError

SPLIT_SEED = 0
EVAL_FILES = {"rna_ss": "rna/ss_eval.tsv.gz", "rna_type": "rna/type_eval.tsv.gz",
              "protein_ss": "protein/ss_eval.tsv.gz", "protein_loc": "protein/loc_eval.tsv.gz"}
TASK_MOLECULE = {"rna_ss": "rna", "rna_type": "rna", "protein_ss": "protein", "protein_loc": "protein"}


@dataclass
class BenchParams:
    """benchmark_params(config) as a typed object (the unknown keys are ignored)."""

    molecule: str = "rna"
    tasks: list[str] = field(default_factory=lambda: ["perplexity"])
    resources: str = "resources"
    max_eval: int = 2000
    device: str = "cpu"
    test_families: list[str] = field(default_factory=list)
    split_identity: float | None = None  # None: splits.DEFAULT_IDENTITY of the task's molecule
    split_coverage: float = 0.8
    split_dir: str | None = None  # stored splits (<split_dir>/<task>.tsv) written by the probe_split stage
    holdout: str = ""

    @classmethod
    def from_dict(cls, params: dict, holdout: str = "") -> "BenchParams":
        known = {k: v for k, v in params.items() if k in cls.__dataclass_fields__}
        known["holdout"] = holdout or known.get("holdout", "")
        return cls(**known)

    def eval_path(self, task: str) -> Path:
        return Path(self.resources) / EVAL_FILES[task]


def read_tsv(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        raise BiopruneError(f"{path}: evaluation set not found (config key benchmark.resources)")
    with gzip.open(path, "rt") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def probe() -> object:
    """The light head every task fits on frozen features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))


def embed(model, seqs: list[str], molecule: str, attention: bool = False, batch_size: int = 16):
    """Per-sequence residue embeddings (L, E) from the last layer, and optionally attention maps (L*H, L, L)."""
    import torch

    from bioprune.training.batching import pad_batch
    from bioprune.models import n_layers

    device = next(model.parameters()).device
    last = n_layers(model)
    out_h: list = [None] * len(seqs)
    out_a: list = [None] * len(seqs)
    order = np.argsort([len(s) for s in seqs])
    with torch.no_grad():
        for i in range(0, len(seqs), batch_size):
            idx = order[i : i + batch_size]
            toks = pad_batch([seqs[j] for j in idx], molecule).to(device)
            res = model(toks, repr_layers=[last], need_head_weights=attention)
            reps = res["representations"][last].float().cpu()
            att = res["attentions"].float().cpu() if attention else None
            for k, j in enumerate(idx):
                n = len(seqs[j])
                out_h[j] = reps[k, 1 : n + 1].numpy()
                if attention:
                    out_a[j] = att[k, :, :, 1 : n + 1, 1 : n + 1].reshape(-1, n, n).numpy()
    return out_h, out_a


def balanced_subset(rows: list[dict], cap: int) -> list[dict]:
    """At most `cap` rows, about equal per label (seeded), keeping only labels with at least 4 rows."""
    rng = np.random.default_rng(SPLIT_SEED)
    by: dict[str, list[int]] = {}
    for k, r in enumerate(rows):
        by.setdefault(r["label"], []).append(k)
    per = max(4, int(math.ceil(cap / max(1, len(by)))))
    keep = []
    for label in sorted(by):
        idx = by[label]
        if len(idx) >= 4:
            keep += sorted(rng.choice(idx, min(len(idx), per), replace=False).tolist())
    if len({rows[k]["label"] for k in keep}) < 2:
        raise BiopruneError("benchmark: fewer than two classes with 4+ sequences; raise benchmark.max_eval")
    return [rows[k] for k in sorted(keep)]


def classification_metrics(true: list[str], pred: list[str]) -> list[tuple[str, float]]:
    from sklearn.metrics import accuracy_score, f1_score

    return [("accuracy", float(accuracy_score(true, pred))), ("macro_f1", float(f1_score(true, pred, average="macro")))]
