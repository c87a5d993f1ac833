"""k-mer baselines: what counting alone scores, so the pretrained models' numbers have a floor.

**Held-out perplexity (`kmer_baseline`).** A bidirectional count model predicts a masked residue x
from up to h residues on each side. Its estimator is interpolated Witten-Bell smoothing over a chain
of contexts of growing width:

    P_{-1}(x)     = 1 / V                                   (V: the molecule's residue letters)
    P_j(x | c_j)  = (C(c_j, x) + T(c_j) * P_{j-1}(x | c_{j-1})) / (C(c_j) + T(c_j))   (j = 0 .. h)
    P_j(x | c_j)  = P_{j-1}(x | c_{j-1})                    when C(c_j) = 0

where c_j is the context of order j: the min(j, A) residues left and min(j, B) residues right of the
position (c_0 is the empty context), A and B the residues visible on each side before a masked
token, BOS/EOS or padding; C(c, x) counts training positions whose residue is x with exactly that
context (a context of a left and b right residues is its own table, so asymmetric contexts near
masks and ends are counted where they occur), C(c) = sum_x C(c, x) and T(c) the number of distinct
x seen in c. Orders whose context equals the previous one are skipped.

It is scored on exactly what the MLM perplexity scores (bioprune.benchmarks.perplexity): the first
`benchmark.max_eval` held-out sequences, masked by batching.mask_by_id(seed 0), so the same positions
and the same corrupted inputs. Like the MLM, it sees the corrupted token at the masked position (80%
<mask>, 10% a random standard residue, 10% the residue itself) and combines it by Bayes' rule with
the corruption's known likelihood: P(x | c, o) is proportional to P_h(x | c) * P(o | x), with
P(<mask> | x) = 0.8 and P(r | x) = 0.1 [r = x] + 0.1 [r standard] / (number of standard residues).
Perplexity = exp(mean cross-entropy over the masked positions), as for the models.

Fitted on the full-pool model's training data (the gated shards). h is chosen on data other than the
held-out file: a validation slice of the training shards (VAL_MOD: sequences whose id hash falls in
1 of 50 buckets, at most `max_eval` of them; in a pool too small for that, the 2% of lowest hash) is
held aside, the model is fitted on the rest for every
h in 0..H_MAX, the h with the lowest masked cross-entropy on the slice wins, and the final model is
refitted on all training sequences with it.

**k-mer probe (`kmer_baseline` rows of rna_type / protein_loc).** The models' linear probe
(common.probe) on k-mer frequency profiles (k 3 for RNA, 2 for protein; overlapping k-mers of the
standard letters, divided by their number) instead of embeddings, on the same probe train/test rows.
"""
from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import numpy as np

from bioprune.alphabets import PROTEIN_STANDARD, RNA_STANDARD, kmer_codes
from bioprune.errors import BiopruneError

if TYPE_CHECKING:
    from bioprune.benchmarks.common import BenchParams
    from bioprune.leakage.gate import GateConfig

log = logging.getLogger(__name__)
LETTERS = {"rna": RNA_STANDARD + "N", "protein": PROTEIN_STANDARD + "X"}
STANDARD = {"rna": RNA_STANDARD, "protein": PROTEIN_STANDARD}
H_MAX = {"rna": 8, "protein": 3}  # validation loss on the demo pool: minimum at h 8 (h 9 is worse)
PROBE_K = {"rna": 3, "protein": 2}
VAL_MOD = 50
P_MASK, P_RANDOM, P_KEEP = 0.8, 0.1, 0.1


def encode_letters(seq: str, letters: str) -> np.ndarray:
    """Letter indices 0..V-1 of a sequence; any other character is an error."""
    lut = np.full(256, -1, dtype=np.int64)
    for i, c in enumerate(letters):
        lut[ord(c)] = i
    x = lut[np.frombuffer(seq.encode("ascii"), np.uint8)]
    if (x < 0).any():
        raise BiopruneError(f"k-mer model: characters outside {letters!r} in a sequence")
    return x


class KmerModel:
    """Interpolated Witten-Bell bidirectional k-mer model (see the module doc) of half-width h."""

    def __init__(self, letters: str, h: int, standard: str | None = None):
        if h < 0:
            raise BiopruneError(f"k-mer model: context half-width {h} must be >= 0")
        self.letters, self.V, self.h = letters, len(letters), int(h)
        self.standard = letters if standard is None else standard  # what the MLM's random replacement draws
        self.tables: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    # -- fitting -------------------------------------------------------------------------------------
    def fit(self, seqs: list[str]) -> "KmerModel":
        """Count tables C(c, x) for every context shape (a left, b right), a, b <= h."""
        V = self.V
        parts, pos_in = [], []
        for s in seqs:
            x = encode_letters(s, self.letters)
            parts.append(x)
            pos_in.append(np.arange(len(x)))
        if not parts:
            raise BiopruneError("k-mer model: no training sequences")
        X = np.concatenate(parts)
        i_in = np.concatenate(pos_in)  # position within its sequence
        n_of = np.concatenate([np.full(len(p), len(p)) for p in parts])
        right_room = n_of - 1 - i_in
        N = len(X)
        for a in range(self.h + 1):
            for b in range(self.h + 1):
                ok = np.flatnonzero((i_in >= a) & (right_room >= b))
                code = np.zeros(len(ok), dtype=np.int64)
                for d in range(1, a + 1):
                    code = code * V + X[ok - d]
                for d in range(1, b + 1):
                    code = code * V + X[ok + d]
                keys, counts = np.unique(code * V + X[ok], return_counts=True)
                self.tables[(a, b)] = (keys, counts.astype(np.int64))
        log.info("k-mer model: %d positions, h %d, %d tables", N, self.h, len(self.tables))
        return self

    def _lookup(self, a: int, b: int, ctx: np.ndarray) -> np.ndarray:
        """(n, V) counts C(c, x) of the contexts `ctx` (codes) in table (a, b)."""
        keys, counts = self.tables[(a, b)]
        q = (ctx[:, None] * self.V + np.arange(self.V)[None, :]).ravel()
        j = np.searchsorted(keys, q)
        j = np.minimum(j, len(keys) - 1)
        hit = keys[j] == q if len(keys) else np.zeros(len(q), bool)
        out = np.where(hit, counts[j] if len(keys) else 0, 0)
        return out.reshape(len(ctx), self.V).astype(float)

    # -- prediction ----------------------------------------------------------------------------------
    def predict(self, left: list[np.ndarray], right: list[np.ndarray], h: int | None = None) -> np.ndarray:
        """(n, V) P_h(x | c) for n positions: left[i] = the visible residues left of position i, nearest
        LAST; right[i] = those right of it, nearest FIRST (letter indices; only the h nearest are used)."""
        h = self.h if h is None else int(h)
        if h > self.h:
            raise BiopruneError(f"k-mer model fitted with h {self.h}, asked for {h}")
        n, V = len(left), self.V
        A = np.array([len(x) for x in left])
        B = np.array([len(x) for x in right])
        p = np.full((n, V), 1.0 / V)
        prev = np.full((n, 2), -1)
        for j in range(h + 1):
            a, b = np.minimum(A, j), np.minimum(B, j)
            new = (a != prev[:, 0]) | (b != prev[:, 1])
            prev = np.stack([a, b], 1)
            for (ta, tb) in sorted(set(zip(a[new].tolist(), b[new].tolist()))):
                rows = np.flatnonzero(new & (a == ta) & (b == tb))
                ctx = np.array([_code(left[r][len(left[r]) - ta:][::-1], right[r][:tb], V) for r in rows],
                               dtype=np.int64)
                c = self._lookup(ta, tb, ctx)
                tot = c.sum(1, keepdims=True)
                types = (c > 0).sum(1, keepdims=True)
                mixed = (c + types * p[rows]) / np.maximum(tot + types, 1)
                p[rows] = np.where(tot > 0, mixed, p[rows])
        return p


def _code(left_near_first: np.ndarray, right_near_first: np.ndarray, V: int) -> int:
    """Context code as fit() builds it: left residues nearest first, then right residues nearest first."""
    c = 0
    for v in left_near_first:
        c = c * V + int(v)
    for v in right_near_first:
        c = c * V + int(v)
    return c


def corruption_likelihood(letters: str, standard: str) -> np.ndarray:
    """(V, V + 1) P(observed | true): columns 0..V-1 an observed residue, column V an observed <mask>."""
    V = len(letters)
    lik = np.zeros((V, V + 1))
    std = [letters.index(c) for c in standard]
    for x in range(V):
        lik[x, V] = P_MASK
        lik[x, x] += P_KEEP
        lik[x, std] += P_RANDOM / len(std)
    return lik


def masked_positions(ids: list[str], seqs: list[str], molecule: str, seed: int = 0):
    """Per masked position of every sequence (the MLM perplexity's masks: batching.mask_by_id):
    (left visible residues, right visible residues, observed token index (V = <mask>), true residue)."""
    from bioprune.alphabets import get_alphabet
    from bioprune.training.batching import mask_by_id, pad_batch

    letters = LETTERS[molecule]
    alpha = get_alphabet(molecule)
    tok2let = {alpha.get_idx(c): i for i, c in enumerate(letters)}
    V = len(letters)
    out = []
    for k in range(0, len(seqs), 256):
        toks = pad_batch(seqs[k : k + 256], molecule)
        inputs, targets = mask_by_id(toks, ids[k : k + 256], molecule, seed)
        for row_in, row_t in zip(inputs.numpy(), targets.numpy()):
            obs = np.array([tok2let.get(int(t), -1) for t in row_in])  # -1: not a residue (mask, BOS, EOS, pad)
            is_mask = row_in == alpha.mask_idx
            for i in np.flatnonzero(row_t != -100):
                lo = i
                while lo > 0 and obs[lo - 1] >= 0:
                    lo -= 1
                hi = i + 1
                while hi < len(obs) and obs[hi] >= 0:
                    hi += 1
                o = V if is_mask[i] else obs[i]
                if o < 0:
                    raise BiopruneError("k-mer model: a masked position holds a non-residue token")
                out.append((obs[lo:i], obs[i + 1 : hi], int(o), tok2let[int(row_t[i])]))
    return out


def masked_cross_entropy(model: KmerModel, positions, h: int | None = None) -> float:
    """Mean -ln P(true | context, observed) over the masked positions (natural log, as the MLM loss)."""
    if not positions:
        raise BiopruneError("k-mer model: no masked positions to score")
    lik = corruption_likelihood(model.letters, model.standard)
    prior = model.predict([p[0] for p in positions], [p[1] for p in positions], h)
    post = prior * lik[:, [p[2] for p in positions]].T
    post /= post.sum(1, keepdims=True)
    true = np.array([p[3] for p in positions])
    return float(-np.log(post[np.arange(len(true)), true]).mean())


def validation_split(ids: list[str]) -> np.ndarray:
    """Boolean mask of the validation slice: ids hashed into VAL_MOD buckets, bucket 0; in a pool too
    small for that bucket to hold any id, the len(ids) // VAL_MOD (at least one) ids of lowest hash."""
    from bioprune.hashing import int_hash

    h = [int_hash(i, "kmer_val") for i in ids]
    val = np.array([x % VAL_MOD == 0 for x in h], dtype=bool)
    if not val.any() and len(ids) >= 2:
        val[sorted(range(len(ids)), key=lambda j: (h[j], j))[: max(1, len(ids) // VAL_MOD)]] = True
    return val


def fit_kmer_baseline(ids: list[str], seqs: list[str], molecule: str, max_val: int,
                      h_max: int | None = None, validation_filter: GateConfig | None = None,
                      ) -> tuple[KmerModel, dict[int, float]]:
    """Choose h on the validation slice (fit on the rest), refit on everything: (model, {h: val loss}).

    `validation_filter` (molecule, max_identity, min_coverage: the held-out filter's rule): validation
    sequences with a near-copy in the fit sequences are not used to choose h, so h is chosen on data like
    the homology-filtered held-out file it is scored on. Without it the slice holds near-copies of its fit
    data and picks the longest context (h 8 on the demo pool, which then scores 4.69 on the filtered
    held-out file against 3.76 for the models)."""
    h_max = H_MAX[molecule] if h_max is None else int(h_max)
    val = validation_split(ids)
    if not val.any() or val.all():
        raise BiopruneError(f"k-mer model: the validation slice of {len(ids)} training sequences is empty "
                            "or all of them")
    rest = [s for s, v in zip(seqs, val) if not v]
    v_all = np.flatnonzero(val)
    if validation_filter:
        from bioprune.leakage.gate import near_copies, search

        vf = validation_filter
        hits = search([seqs[i] for i in v_all], rest, vf.molecule, vf.max_identity, hint="set leakage.holdout: false")
        near = set(near_copies(hits, vf.max_identity, vf.min_coverage).q.astype(int))
        log.info("k-mer model: %d of %d validation sequences have a near-copy in the fit data and are not used "
                 "to choose h", len(near), len(v_all))
        v_all = np.array([i for k, i in enumerate(v_all) if k not in near], dtype=int)
        if not len(v_all):
            raise BiopruneError("k-mer model: every validation sequence has a near-copy in the fit data; "
                                "set leakage.holdout: false")
    v_idx = v_all[:max_val]
    m = KmerModel(LETTERS[molecule], h_max, STANDARD[molecule]).fit(rest)
    pos = masked_positions([ids[i] for i in v_idx], [seqs[i] for i in v_idx], molecule)
    losses = {h: masked_cross_entropy(m, pos, h) for h in range(h_max + 1)}
    best = min(losses, key=lambda h: (losses[h], h))
    log.info("k-mer model: validation loss by h %s; chose h %d",
             ", ".join(f"{h}:{v:.4f}" for h, v in losses.items()), best)
    return KmerModel(LETTERS[molecule], best, STANDARD[molecule]).fit(seqs), losses


def kmer_profiles(seqs: list[str], molecule: str) -> np.ndarray:
    """k-mer frequency profiles (PROBE_K; standard letters only; counts / number of k-mers)."""
    letters, k = STANDARD[molecule], PROBE_K[molecule]
    out = np.zeros((len(seqs), len(letters) ** k))
    for n, s in enumerate(seqs):
        codes = kmer_codes(s, k, letters)
        if len(codes):
            np.add.at(out[n], codes, 1.0)
            out[n] /= len(codes)
    return out


def kmer_probe(task: str, bp: BenchParams) -> list[tuple[str, float]]:
    """The linear probe on k-mer profiles for a labelled classification task (same split and rows as the models)."""
    from bioprune.benchmarks.common import TASK_MOLECULE, classification_metrics, probe
    from bioprune.benchmarks.probes import classification_sets

    train, test = classification_sets(task, bp)
    mol = TASK_MOLECULE[task]
    clf = probe().fit(kmer_profiles([r["sequence"] for r in train], mol), [r["label"] for r in train])
    pred = clf.predict(kmer_profiles([r["sequence"] for r in test], mol))
    return classification_metrics([r["label"] for r in test], list(pred))


def kmer_baseline_rows(shards: list[str], bp: BenchParams, validation_filter: GateConfig | None = None,
                       ) -> list[tuple[str, str, float]]:
    """(task, metric, value) rows of strategy kmer_baseline: perplexity (and its h, validation loss)
    on the held-out masks (bp.holdout), and the k-mer probe for each configured classification task.
    `validation_filter`: the held-out filter's rule (fit_kmer_baseline), None when that filter is off."""
    from bioprune.ingest import load_sequences
    from bioprune.ingest import read_shard, shard_molecule
    from bioprune.benchmarks.common import TASK_MOLECULE

    holdout = bp.holdout
    rows: list[tuple[str, str, float]] = []
    if "perplexity" in bp.tasks:
        h_ids, h_seqs, _ = read_shard(holdout)
        if not h_ids:  # nothing held out to score: NA, as the models' rows
            rows += [("perplexity", "perplexity", math.nan), ("perplexity", "mlm_loss", math.nan)]
        else:
            molecule = shard_molecule(shards[0])
            ids, seqs = load_sequences(shards, None)
            model, losses = fit_kmer_baseline(ids, seqs, molecule, bp.max_eval,
                                              validation_filter=validation_filter)
            pos = masked_positions(h_ids[: bp.max_eval], h_seqs[: bp.max_eval], molecule)
            loss = masked_cross_entropy(model, pos)
            rows += [("perplexity", "perplexity", math.exp(loss)), ("perplexity", "mlm_loss", loss),
                     ("perplexity", "kmer_h", float(model.h)), ("perplexity", "kmer_val_loss", losses[model.h])]
            log.info("kmer_baseline perplexity %.4f (h %d, %d masked positions)", math.exp(loss), model.h, len(pos))
    for task in bp.tasks:
        if task in ("rna_type", "protein_loc") and TASK_MOLECULE[task] == bp.molecule:
            vals = kmer_probe(task, bp)
            rows += [(task, m, float(v)) for m, v in vals]
            log.info("kmer_baseline %s: %s", task, ", ".join(f"{m}={v:.4f}" for m, v in vals))
    return rows
