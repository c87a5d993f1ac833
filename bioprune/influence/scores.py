"""Merge per-shard sketches into `scores.h5`: one self-influence score per sequence, higher = more.

diag_fisher: the per-shard files already hold s(z) = sum_j g_j^2 / (F_j + damping); the merge
concatenates them.
projected: pass 1 builds the k x k empirical Fisher F~ from D_sub's sketches, pass 2 scores
s(z) = g~^T (F~ + lambda I)^-1 g~ with lambda = relative_damping x mean eigenvalue of F~ (the
curvature's own scale, so the damping means the same at any sketch size or loss scale); with
relative_damping 0, lambda = the absolute `damping`. A D_sub member is scored against the Fisher of
D_sub without itself (leave-one-out, exact by Sherman-Morrison: with q = s^T (F~ + lambda)^-1 s and
m = |D_sub|, s_loo = q / (1 - q/m)), so members and non-members are scored alike; without it a
member's own sketch shrinks its score (with k >= m and small lambda the score detects membership).
Both stream block by block (BLOCK rows of one shard at a time) straight into the output: memory
O(k^2 + one block + a sample), no Python object per sequence. Spearman(score, length) and
Spearman(score, grad_sqnorm) are exact up to SPEARMAN_SAMPLE sequences, beyond that over every
k-th sequence (k = spearman_sample_stride, an attr). Unique ids across shards are ingest's
guarantee; the merge refuses two sketch files of the same source shard.
normalize "rayleigh": s(z) / g^T g (diag_fisher: the exact gradient's g^T g, stored as grad_sqnorm;
projected: the sketch's own squared norm), a magnitude-free score; 0 where the gradient is 0.
normalize "length_rank": s(z)'s percentile (mid-rank / stratum size) among the sequences of its length
decile (LENGTH_RANK_STRATA quantile strata of the pool's lengths, strata.StrataPlan): Spearman(score,
length) ~ 0 by construction; a second pass over the merged column (memory O(N) floats).
"""
from __future__ import annotations

import logging

import numpy as np

from bioprune.errors import BiopruneError, NumericalError
from bioprune.h5io import STR, atomic_h5, open_h5, read_str

log = logging.getLogger(__name__)
SIGN_NOTE = ("positive self-influence s = g^T F^-1 g; higher = more influential. The official "
             "bio-coreset code stores -s (more negative = more influential).")


BLOCK = 1 << 16  # rows read, scored and written at a time
SPEARMAN_SAMPLE = 1_000_000  # Spearman correlations over every k-th sequence beyond this many
LENGTH_RANK_STRATA = 10  # normalize length_rank: length deciles
NORMALIZE = ("none", "rayleigh", "length_rank")


def length_rank(score: np.ndarray, length: np.ndarray, n_strata: int = LENGTH_RANK_STRATA) -> np.ndarray:
    """Percentile (average rank / stratum size, in (0, 1]) of every score within its length quantile stratum."""
    from scipy.stats import rankdata

    from bioprune.selection.stream import as_column
    from bioprune.selection.strata import StrataPlan

    score, length = np.asarray(score, dtype=np.float64), np.asarray(length)
    out = np.zeros(len(score))
    if not len(score):
        return out
    plan = StrataPlan.of(as_column(length, "length"), n_strata)
    label = plan.of_lengths(length.astype(float))
    for s in np.unique(label):
        m = label == s
        out[m] = rankdata(score[m], method="average") / int(m.sum())
    return out


def _finite(s: np.ndarray, f, path: str, offset: int) -> np.ndarray:
    """Sketch rows as float64; a non-finite row stops the merge with its sequence id."""
    s = s.astype(np.float64)
    bad = ~np.isfinite(s).all(1)
    if bad.any():
        raise NumericalError(f"scores: non-finite sketch for sequence {f['id'].asstr()[offset + int(np.argmax(bad))]} "
                             f"({path}, stage scores)")
    return s


def _projected_fisher(paths: list[str]) -> tuple[np.ndarray, int]:
    """Empirical Fisher of D_sub's sketches, accumulated block by block (memory O(k^2 + block))."""
    fisher, m = None, 0
    for p in paths:
        with open_h5(p, "sketches", ["id", "sketch", "in_subset"]) as f:
            n, k = f["sketch"].shape
            if fisher is None:
                fisher = np.zeros((k, k))
            for a in range(0, n, BLOCK):
                sub = f["in_subset"][a:a + BLOCK]
                if sub.any():
                    s = _finite(f["sketch"][a:a + BLOCK], f, p, a)[sub]
                    fisher += s.T @ s
                    m += s.shape[0]
    if not m:
        raise BiopruneError("scores: no D_sub sequence among the sketches; raise reference.subset_fraction")
    return fisher / m, m


def _sketch_attrs(path: str) -> dict:
    with open_h5(path, "sketches", ["id"]) as f:
        return dict(f.attrs)


def _attr(a: dict, key: str, default):
    v = a.get(key, default)
    return v.item() if hasattr(v, "item") else v


def _rayleigh(score: np.ndarray, sqnorm: np.ndarray) -> np.ndarray:
    return np.divide(score, sqnorm, out=np.zeros_like(score), where=sqnorm > 0)


def _leave_one_out(q: np.ndarray, m: int, ids: list[str], path: str) -> np.ndarray:
    gap = 1.0 - q / m
    if (gap < 1e-10).any():  # float64 no longer resolves q / (1 - q/m)
        raise NumericalError(f"scores: leave-one-out score of D_sub member {ids[int(np.argmin(gap))]} is ill-conditioned "
                             f"({path}); raise influence.relative_damping")
    return q / gap


def merge_scores(paths: list[str], out_path: str, damping: float | None = None,
                 relative_damping: float | None = None, normalize: str | None = None,
                 leave_one_out: bool = True) -> dict:
    """Write `scores.h5` (id, score float64, length, loss, grad_sqnorm, in_subset) from shard sketches.

    damping, relative_damping, normalize: None = the value sketch_shard wrote in the sketch attrs
    (from InfluenceConfig). For diag_fisher the damping is applied when sketching: a different
    explicit value is an error. For projected, lambda = relative_damping x mean eigenvalue of the
    D_sub sketch Fisher, or `damping` when relative_damping is 0; `leave_one_out` (projected only)
    scores D_sub members without themselves in the Fisher (module doc).
    """
    first = _sketch_attrs(paths[0])
    estimator = str(first["estimator"])
    keys = ("params", "model_sha256", "molecule", "loss", "reduction", "mask_draws", "paper_exact",
            "influence_seed", "subset_seed", "subset_fraction")
    attrs = {k: first[k] for k in keys if k in first}
    shard_damping = float(_attr(first, "damping", float("nan")))
    if estimator == "diag_fisher" and damping is not None and not np.isclose(damping, shard_damping, rtol=1e-12, atol=0):
        raise BiopruneError(f"scores: influence.damping {damping} differs from {shard_damping} used to sketch "
                            f"{paths[0]}; re-run sketching")
    damping = shard_damping if damping is None else float(damping)
    rel = float(_attr(first, "relative_damping", 0.1)) if relative_damping is None else float(relative_damping)
    normalize = str(_attr(first, "normalize", "none")) if normalize is None else normalize
    if normalize not in NORMALIZE:
        raise BiopruneError(f"config key influence.normalize: {normalize!r} is not one of {NORMALIZE}")
    inv_eig = None
    m_fisher = None
    lam = damping
    if estimator == "projected":
        fisher, m_fisher = _projected_fisher(paths)
        evals, evecs = np.linalg.eigh(fisher)
        evals = np.clip(evals, 0.0, None)
        lam = rel * float(evals.mean()) if rel > 0 else damping
        if not lam > 0:
            raise BiopruneError("scores: projected damping is 0 (all D_sub sketches are 0, or "
                                "influence.relative_damping and influence.damping are both 0)")
        inv_eig = (evecs, 1.0 / (evals + lam))
        log.info("projected Fisher %dx%d from %d D_sub sketches; eigenvalues %.3g..%.3g, lambda %.3g",
                 *fisher.shape, m_fisher, evals.min(), evals.max(), lam)
    sizes, origins = [], set()
    for p in paths:
        with open_h5(p, "sketches", ["id"]) as f:
            sizes.append(int(f["id"].shape[0]))
            origin = f.attrs.get("source_shard")
        if origin is not None:
            if str(origin) in origins:
                raise BiopruneError(f"scores: {p} sketches shard {origin} again; the same id appears in two shards")
            origins.add(str(origin))
    n = sum(sizes)
    stride = max(1, -(-n // SPEARMAN_SAMPLE))
    sample: dict[str, list[np.ndarray]] = {"score": [], "length": [], "grad_sqnorm": []}
    n_subset = 0
    with atomic_h5(out_path, "scores", estimator=estimator, damping=damping, relative_damping=rel,
                   damping_effective=lam, normalize=normalize, sign=SIGN_NOTE,
                   dsub_leave_one_out=bool(leave_one_out and estimator == "projected"), n=n, **attrs) as out:
        cols = {"id": out.create_dataset("id", shape=(n,), dtype=STR),
                "score": out.create_dataset("score", shape=(n,), dtype=np.float64),
                "length": out.create_dataset("length", shape=(n,), dtype=np.int32)}
        at = 0
        for p in paths:
            need = ["id", "length", "loss", "grad_sqnorm", "in_subset"] + (["sketch"] if inv_eig else ["score"])
            with open_h5(p, "sketches", need) as f:
                for k in ("estimator",) + keys:
                    if k in attrs and not np.array_equal(np.asarray(f.attrs.get(k)), np.asarray(attrs[k])):
                        raise BiopruneError(f"{p}: sketched with another {k} than {paths[0]}; re-run sketching")
                for k in ("loss", "grad_sqnorm", "in_subset"):
                    if k not in cols:
                        cols[k] = out.create_dataset(k, shape=(n,), dtype=f[k].dtype)
                m = int(f["id"].shape[0])
                for a in range(0, m, BLOCK):
                    b = min(m, a + BLOCK)
                    score = _score_block(f, p, a, b, inv_eig, m_sub=m_fisher, leave_one_out=leave_one_out,
                                         normalize=normalize)
                    block = {"score": score, "id": f["id"][a:b], "length": f["length"][a:b],
                             "loss": f["loss"][a:b], "grad_sqnorm": f["grad_sqnorm"][a:b],
                             "in_subset": f["in_subset"][a:b]}
                    for k, v in block.items():
                        cols[k][at + a:at + b] = v
                    n_subset += int(block["in_subset"].sum())
                    pick = np.flatnonzero((np.arange(at + a, at + b) % stride) == 0)
                    for k in sample:
                        sample[k].append(np.asarray(block[k])[pick])
            at += m
        smp = {k: np.concatenate(v) if v else np.zeros(0) for k, v in sample.items()}
        if normalize == "length_rank" and n:
            ranked = length_rank(cols["score"][()], cols["length"][()])
            cols["score"][:] = ranked
            smp["score"] = ranked[::stride]
        from bioprune.influence.rank_stats import spearman, undefined_why

        rho, rho_norm = spearman(smp["score"], smp["length"]), spearman(smp["score"], smp["grad_sqnorm"])
        why = undefined_why(smp["score"], smp["length"], ("scores", "lengths"))  # '' when rho is defined
        out.attrs.update(spearman_score_length=rho, spearman_score_gradnorm=rho_norm, n_subset=n_subset,
                         spearman_sample_stride=stride, spearman_score_length_note=why)
    if why:
        log.warning("scores: %d sequences, Spearman(score, length) = NA (%s)", n, why)
    elif abs(rho) > 0.3:  # docs/SCORES.md's target for a score that does not just track length
        log.warning("scores: %d sequences, Spearman(score, length) = %.3f: beyond |rho| <= 0.3, the score tracks "
                    "sequence length (a Top-I selection will be biased by length)", n, rho)
    else:
        log.info("scores: %d sequences, Spearman(score, length) = %.3f", n, rho)
    return {"n": n, "spearman_score_length": rho, "damping_effective": lam}


def _score_block(f, path: str, a: int, b: int, inv_eig, m_sub, leave_one_out: bool, normalize: str) -> np.ndarray:
    """Scores of rows a..b of one sketch file (module doc), checked finite."""
    if inv_eig is not None:
        sk = _finite(f["sketch"][a:b], f, path, a)
        proj = sk @ inv_eig[0]
        score = (proj * proj * inv_eig[1]).sum(1)
        if leave_one_out:
            sub = f["in_subset"][a:b]
            score[sub] = _leave_one_out(score[sub], m_sub, f["id"].asstr()[a:b][sub].tolist(), path)
        if normalize == "rayleigh":
            score = _rayleigh(score, (sk * sk).sum(1))
    else:
        score = f["score"][a:b].astype(np.float64)
        if normalize == "rayleigh":
            score = _rayleigh(score, f["grad_sqnorm"][a:b])
    bad = ~np.isfinite(score)
    if bad.any():
        raise NumericalError(f"scores: non-finite score for sequence {f['id'].asstr()[a + int(np.argmax(bad))]} "
                             f"({path}, stage scores)")
    return score


def read_scores(path: str) -> dict:
    """Load scores.h5 as a dict of arrays (ids as a list) plus its attrs."""
    with open_h5(path, "scores", ["id", "score", "length", "grad_sqnorm"]) as f:
        out = {"id": read_str(f["id"]), "attrs": dict(f.attrs)}
        for k in ("score", "length", "loss", "grad_sqnorm", "in_subset"):
            if k in f:
                out[k] = f[k][()]
    return out
