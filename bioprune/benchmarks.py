"""Downstream benchmarks on frozen models with light heads: the representation is what is compared.

Tasks: perplexity (held-out split), rna_ss (base-pair F1, pair head on embeddings + attention maps,
family-held-out), rna_type (linear probe), protein_ss (per-residue Q3/Q8 probe), protein_loc
(linear probe). Splits depend only on fixed seeds, never on the model, so all models see the same split.
"""
from __future__ import annotations

import csv
import gzip
import logging
import math
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .batching import pad_batch
from .errors import BiopruneError
from .metrics import dssp_to_ss3, pair_f1, residue_accuracy
from .models import load_model, n_layers, pick_device
from .shards import read_shard
from .training import mlm_eval_loss

log = logging.getLogger(__name__)
SPLIT_SEED = 0
PAIR_DIM = 64  # residue embeddings are reduced to this many principal components for the pair head
CANONICAL = {("A", "U"), ("U", "A"), ("G", "C"), ("C", "G"), ("G", "U"), ("U", "G")}
TASKS = ("perplexity", "rna_ss", "rna_type", "protein_ss", "protein_loc")
TASK_MOLECULE = {"rna_ss": "rna", "rna_type": "rna", "protein_ss": "protein", "protein_loc": "protein"}


def read_tsv(path: Path) -> list[dict]:
    if not path.exists():
        raise BiopruneError(f"{path}: evaluation set not found (config key benchmark.resources)")
    with gzip.open(path, "rt") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


@torch.no_grad()
def embed(model, seqs: list[str], molecule: str, attention: bool = False, batch_size: int = 16):
    """Per-sequence residue embeddings (L, E) from the last layer, and optionally attention maps (L*H, L, L)."""
    device = next(model.parameters()).device
    last = n_layers(model)
    out_h: list = [None] * len(seqs)
    out_a: list = [None] * len(seqs)
    order = np.argsort([len(s) for s in seqs])
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
                a = att[k, :, :, 1 : n + 1, 1 : n + 1]
                out_a[j] = a.reshape(-1, n, n).numpy()
    return out_h, out_a


def _probe() -> object:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))


def task_perplexity(model, holdout: str, molecule: str, cap: int) -> list[tuple[str, float]]:
    ids, seqs, _ = read_shard(holdout)
    loss = mlm_eval_loss(model, ids[:cap], seqs[:cap], molecule, seed=0)
    return [("perplexity", math.exp(loss)), ("mlm_loss", loss)]


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


def _classification(model, rows: list[dict], molecule: str, cap: int) -> list[tuple[str, float]]:
    rows = balanced_subset(rows, cap)
    labels = [r["label"] for r in rows]
    h, _ = embed(model, [r["sequence"] for r in rows], molecule)
    x = np.stack([e.mean(0) for e in h])
    idx_tr, idx_te = train_test_split(np.arange(len(rows)), test_size=0.3, random_state=SPLIT_SEED, stratify=labels)
    clf = _probe().fit(x[idx_tr], [labels[i] for i in idx_tr])
    pred = clf.predict(x[idx_te])
    true = [labels[i] for i in idx_te]
    return [("accuracy", accuracy_score(true, pred)), ("macro_f1", f1_score(true, pred, average="macro"))]


def ss_split(rows: list[dict], test_families: list[str]) -> tuple[list[dict], list[dict]]:
    """Family-held-out split of the RNA structure set by RNA class (`label`: tRNA, 5S_rRNA, ...), so
    that e.g. tRNAs from two alignments never sit on both sides; a seeded third of classes when none given."""
    fams = sorted({r["label"] for r in rows})
    if test_families:
        unknown = set(test_families) - set(fams)
        if unknown:
            raise BiopruneError(f"config key benchmark.test_families: unknown families {sorted(unknown)}; known: {fams}")
        test = set(test_families)
    else:
        rng = np.random.default_rng(SPLIT_SEED)
        test = set(rng.choice(fams, size=max(1, len(fams) // 3), replace=False).tolist())
    return [r for r in rows if r["label"] not in test], [r for r in rows if r["label"] in test]


def ss_sets(rows: list[dict], test_families: list[str], cap: int, n_train: int = 300):
    """The structure head's training sequences (at most n_train) and test sequences (at most cap),
    drawn with a fixed seed so every model and the RNAfold row see the same ones."""
    train, test = ss_split(rows, test_families)
    rng = np.random.default_rng(SPLIT_SEED)
    train = [train[i] for i in sorted(rng.choice(len(train), min(len(train), n_train), replace=False))]
    if len(test) > cap:
        test = [test[i] for i in sorted(rng.choice(len(test), cap, replace=False))]
    return train, test


def parse_pairs(text: str) -> set[tuple[int, int]]:
    return {tuple(int(x) for x in p.split(",")) for p in text.split(";") if p}


def _fit_pca(x: np.ndarray, dim: int = PAIR_DIM):
    """Centre and project residue embeddings on their top principal axes (bounded pair-feature cost)."""
    mean = x.mean(0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    basis = vt[:dim].T.astype(np.float32)
    return lambda e: ((e - mean) @ basis).astype(np.float32)


def _pair_features(h: np.ndarray, a: np.ndarray, ii: np.ndarray, jj: np.ndarray) -> np.ndarray:
    """Features of candidate pairs (i, j) and of their stacking neighbours (i-1, j+1), (i+1, j-1)."""
    n = len(h)
    sym = (a + a.transpose(0, 2, 1)).astype(np.float32)
    feats = []
    for di in (0, -1, 1):
        i2 = np.clip(ii + di, 0, n - 1)
        j2 = np.clip(jj - di, 0, n - 1)
        feats += [h[i2] * h[j2], sym[:, i2, j2].T]
    feats.append(np.abs(h[ii] - h[jj]))
    return np.concatenate(feats, 1)


_CANON = np.zeros((256, 256), dtype=bool)
for _a, _b in CANONICAL:
    _CANON[ord(_a), ord(_b)] = True


def _candidates(seq: str) -> tuple[np.ndarray, np.ndarray]:
    """Canonical (AU, GC, GU) pairs i < j with at least 3 unpaired bases between them."""
    ii, jj = np.triu_indices(len(seq), k=4)
    code = np.frombuffer(seq.encode("ascii"), dtype=np.uint8)
    ok = _CANON[code[ii], code[jj]]
    return ii[ok], jj[ok]


def decode_pairs(ii, jj, prob, threshold: float = 0.5) -> set[tuple[int, int]]:
    """Greedy decoding: highest-probability pairs first, each base in at most one pair."""
    used, out = set(), set()
    for k in np.argsort(-prob):
        if prob[k] < threshold:
            break
        i, j = int(ii[k]), int(jj[k])
        if i not in used and j not in used:
            out.add((i, j))
            used.update((i, j))
    return out


def task_rna_ss(model, rows: list[dict], cap: int, test_families: list[str]) -> list[tuple[str, float]]:
    """Pair head (logistic regression on h_i*h_j, |h_i-h_j| and symmetrised attention) on frozen features;
    decoding threshold tuned on training families, F1 averaged over test-family sequences."""
    train, test = ss_sets(rows, test_families, cap)
    rng = np.random.default_rng(SPLIT_SEED)
    h, a = embed(model, [r["sequence"] for r in train], "rna", attention=True)
    pca = _fit_pca(np.concatenate(h))
    h = [pca(x) for x in h]
    xs, ys, tune = [], [], []
    for k, (r, hi, ai) in enumerate(zip(train, h, a)):
        ii, jj = _candidates(r["sequence"])
        if not len(ii):
            continue
        true = parse_pairs(r["pairs"])
        y = np.array([(i, j) in true for i, j in zip(ii.tolist(), jj.tolist())])
        neg = np.flatnonzero(~y)
        neg = rng.choice(neg, size=min(len(neg), 5 * max(1, int(y.sum()))), replace=False)
        keep = np.concatenate([np.flatnonzero(y), neg])
        xs.append(_pair_features(hi, ai, ii[keep], jj[keep]))
        ys.append(y[keep])
        if len(tune) < 40:
            tune.append((ii, jj, _pair_features(hi, ai, ii, jj), true))
    clf = _probe().fit(np.concatenate(xs), np.concatenate(ys))
    probs = [(ii, jj, clf.predict_proba(x)[:, 1], true) for ii, jj, x, true in tune]
    grid = np.linspace(0.05, 0.95, 19)
    tuned = [np.mean([pair_f1(decode_pairs(ii, jj, p, t), true) for ii, jj, p, true in probs]) for t in grid]
    threshold = float(grid[int(np.argmax(tuned))])
    h, a = embed(model, [r["sequence"] for r in test], "rna", attention=True)
    h = [pca(x) for x in h]
    f1s = []
    for r, hi, ai in zip(test, h, a):
        ii, jj = _candidates(r["sequence"])
        prob = clf.predict_proba(_pair_features(hi, ai, ii, jj))[:, 1] if len(ii) else np.zeros(0)
        f1s.append(pair_f1(decode_pairs(ii, jj, prob, threshold), parse_pairs(r["pairs"])))
    return [("bp_f1", float(np.mean(f1s))), ("threshold", threshold), ("n_test", float(len(test)))]


def rnafold_reference(resources: str, cap: int, test_families: list[str]) -> list[tuple[str, float]]:
    """ViennaRNA MFE structures scored on the same family-held-out test set as the pair heads."""
    import RNA

    from .metrics import dotbracket_pairs

    rows = read_tsv(Path(resources) / "rna/ss_eval.tsv.gz")
    _, test = ss_sets(rows, test_families, cap)
    f1s = []
    for r in test:
        ss, _ = RNA.fold(r["sequence"])
        f1s.append(pair_f1(dotbracket_pairs(ss), parse_pairs(r["pairs"])))
    return [("bp_f1", float(np.mean(f1s))), ("n_test", float(len(f1s)))]


def task_protein_ss(model, rows: list[dict], cap: int) -> list[tuple[str, float]]:
    rng = np.random.default_rng(SPLIT_SEED)
    rows = [rows[i] for i in sorted(rng.choice(len(rows), min(len(rows), cap), replace=False))]
    idx_tr, idx_te = train_test_split(np.arange(len(rows)), test_size=0.3, random_state=SPLIT_SEED)
    h, _ = embed(model, [r["sequence"] for r in rows], "protein")
    out = []
    for name, conv in (("q3", dssp_to_ss3), ("q8", lambda s: s)):
        def stack(idx, limit=None):
            x = np.concatenate([h[i] for i in idx])
            y = np.array(list("".join(conv(rows[i]["dssp8"]) for i in idx)))
            if limit and len(y) > limit:
                pick = rng.choice(len(y), limit, replace=False)
                x, y = x[pick], y[pick]
            return x, y

        xtr, ytr = stack(idx_tr, limit=40000)
        xte, yte = stack(idx_te)
        clf = _probe().fit(xtr, ytr)
        out.append((name, residue_accuracy(clf.predict(xte), yte)))
    return out


def run_benchmarks(model_path: str, holdout: str, params: dict) -> list[tuple[str, str, float]]:
    """All configured tasks for one model: rows of (task, metric, value)."""
    molecule = params["molecule"]
    model, _ = load_model(model_path, molecule)
    model.to(pick_device(params["device"])).eval()
    res = Path(params["resources"])
    cap = params["max_eval"]
    rows: list[tuple[str, str, float]] = []
    for task in params["tasks"]:
        if TASK_MOLECULE.get(task, molecule) != molecule:
            log.info("benchmark: skipping %s (a %s task) for a %s model", task, TASK_MOLECULE[task], molecule)
            continue
        log.info("benchmark %s: %s", model_path, task)
        if task == "perplexity":
            vals = task_perplexity(model, holdout, molecule, cap)
        elif task == "rna_type":
            vals = _classification(model, read_tsv(res / "rna/type_eval.tsv.gz"), "rna", cap)
        elif task == "rna_ss":
            vals = task_rna_ss(model, read_tsv(res / "rna/ss_eval.tsv.gz"), cap, params["test_families"])
        elif task == "protein_ss":
            vals = task_protein_ss(model, read_tsv(res / "protein/ss_eval.tsv.gz"), cap)
        elif task == "protein_loc":
            vals = _classification(model, read_tsv(res / "protein/loc_eval.tsv.gz"), "protein", cap)
        else:
            raise BiopruneError(f"config key benchmark.tasks: unknown task {task!r}; known: {TASKS}")
        rows += [(task, m, float(v)) for m, v in vals]
        log.info("benchmark %s: %s", task, ", ".join(f"{m}={v:.4f}" for m, v in vals))
    return rows
