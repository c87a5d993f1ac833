"""RNA secondary structure: a base-pair head on frozen embeddings and attention maps, family-held-out,
scored by base-pair F1; plus the RNAfold MFE reference row on the same test sequences."""
from __future__ import annotations

import numpy as np

from bioprune.benchmarks.metrics import pair_f1
from bioprune.benchmarks.common import SPLIT_SEED, BenchParams, embed, probe, read_tsv

PAIR_DIM = 64  # residue embeddings are reduced to this many principal components for the pair head
CANONICAL = {("A", "U"), ("U", "A"), ("G", "C"), ("C", "G"), ("G", "U"), ("U", "G")}
_CANON = np.zeros((256, 256), dtype=bool)
for _a, _b in CANONICAL:
    _CANON[ord(_a), ord(_b)] = True


def ss_split(rows: list[dict], test_families: list[str]) -> tuple[list[dict], list[dict]]:
    """Family-held-out split of the RNA structure set by RNA class (`label`: tRNA, 5S_rRNA, ...), so
    that e.g. tRNAs from two alignments never sit on both sides; a seeded third of classes when none given."""
    from bioprune.benchmarks.splits import held_out_families

    test = held_out_families([r["label"] for r in rows], test_families, SPLIT_SEED)
    return [r for r in rows if r["label"] not in test], [r for r in rows if r["label"] in test]


def ss_sets(rows: list[dict], test_families: list[str], cap: int, n_train: int = 300,
            split: dict[str, str] | None = None):
    """The structure head's training sequences (at most n_train) and test sequences (at most cap),
    drawn with a fixed seed so every model and the reference rows see the same ones. With a homology
    `split`, training drops the sequences it marks `excluded` (a cluster reaching a test sequence)."""
    train, test = ss_split(rows, test_families)
    if split is not None:
        train = [r for r in train if split[r["id"]] == "train"]
    rng = np.random.default_rng(SPLIT_SEED)
    train = [train[i] for i in sorted(rng.choice(len(train), min(len(train), n_train), replace=False))]
    if len(test) > cap:
        test = [test[i] for i in sorted(rng.choice(len(test), cap, replace=False))]
    return train, test


def sets(bp: BenchParams) -> tuple[list[dict], list[dict]]:
    """Train and test rows of the structure task (homology-purged training families)."""
    from bioprune.benchmarks.splits import probe_split

    rows = read_tsv(bp.eval_path("rna_ss"))
    return ss_sets(rows, bp.test_families, bp.max_eval, split=probe_split("rna_ss", rows, bp))


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


def run(model, bp: BenchParams) -> list[tuple[str, float]]:
    """Pair head (logistic regression on h_i*h_j, |h_i-h_j| and symmetrised attention) on frozen features;
    decoding threshold tuned on training families, F1 averaged over test-family sequences."""
    train, test = sets(bp)
    rng = np.random.default_rng(SPLIT_SEED)
    h, a = embed(model, [r["sequence"] for r in train], "rna", attention=True)
    pca = _fit_pca(np.concatenate(h))
    h = [pca(x) for x in h]
    xs, ys, tune = [], [], []
    for r, hi, ai in zip(train, h, a):
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
    clf = probe().fit(np.concatenate(xs), np.concatenate(ys))
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
    """ViennaRNA MFE structures scored on the same family-held-out test set as the pair heads (the
    homology purge only removes training sequences, so the test set does not depend on it)."""
    import RNA

    from bioprune.benchmarks.metrics import dotbracket_pairs

    rows = read_tsv(BenchParams(resources=resources).eval_path("rna_ss"))
    _, test = ss_sets(rows, test_families, cap)
    f1s = []
    for r in test:
        ss, _ = RNA.fold(r["sequence"])
        f1s.append(pair_f1(dotbracket_pairs(ss), parse_pairs(r["pairs"])))
    return [("bp_f1", float(np.mean(f1s))), ("n_test", float(len(f1s)))]
