"""Merge per-shard sketches into `scores.h5`: one self-influence score per sequence, higher = more.

diag_fisher: the per-shard files already hold s(z); the merge concatenates them.
projected: pass 1 builds the k x k empirical Fisher from D_sub's sketches, pass 2 scores
s(z) = g~^T (F~ + damping I)^-1 g~. Both stream shard by shard: memory O(k^2 + one shard).
"""
from __future__ import annotations

import logging

import numpy as np
from scipy.stats import spearmanr

from .errors import BiopruneError, NumericalError
from .h5io import atomic_h5, open_h5, read_str, write_str

log = logging.getLogger(__name__)
SIGN_NOTE = ("positive self-influence s = g^T F^-1 g; higher = more influential. The official "
             "bio-coreset code stores -s (more negative = more influential).")


def _finite_sketch(f, path: str) -> np.ndarray:
    """A shard's sketches as float64; a non-finite row stops the merge with its sequence id."""
    s = f["sketch"][()].astype(np.float64)
    bad = ~np.isfinite(s).all(1)
    if bad.any():
        raise NumericalError(f"scores: non-finite sketch for sequence {f['id'].asstr()[int(np.argmax(bad))]} "
                             f"({path}, stage scores)")
    return s


def _projected_fisher(paths: list[str]) -> tuple[np.ndarray, int]:
    fisher, m = None, 0
    for p in paths:
        with open_h5(p, "sketches", ["id", "sketch", "in_subset"]) as f:
            sub = f["in_subset"][()]
            s = _finite_sketch(f, p)[sub]
        if fisher is None:
            fisher = np.zeros((s.shape[1], s.shape[1]))
        fisher += s.T @ s
        m += s.shape[0]
    if not m:
        raise BiopruneError("scores: no D_sub sequence among the sketches; raise reference.subset_fraction")
    return fisher / m, m


def merge_scores(paths: list[str], out_path: str, damping: float) -> dict:
    """Write `scores.h5` (id, score float64, length, loss, grad_sqnorm, in_subset) from shard sketches."""
    with open_h5(paths[0], "sketches", ["id"]) as f:
        estimator = str(f.attrs["estimator"])
        attrs = {k: f.attrs[k] for k in ("params", "loss", "seed", "model_sha256", "molecule")}
    inv_eig = None
    m = None
    if estimator == "projected":
        fisher, m = _projected_fisher(paths)
        evals, evecs = np.linalg.eigh(fisher)
        inv_eig = (evecs, 1.0 / (np.clip(evals, 0.0, None) + damping))
        log.info("projected Fisher %dx%d from %d D_sub sketches; eigenvalues %.3g..%.3g",
                 *fisher.shape, m, evals.min(), evals.max())
    ids: list[str] = []
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("score", "length", "loss", "grad_sqnorm", "in_subset")}
    for p in paths:
        need = ["id", "length", "loss", "grad_sqnorm", "in_subset"] + (["sketch"] if inv_eig else ["score"])
        with open_h5(p, "sketches", need) as f:
            if str(f.attrs["estimator"]) != estimator or f.attrs["model_sha256"] != attrs["model_sha256"]:
                raise BiopruneError(f"{p}: sketched with another estimator or model than {paths[0]}; re-run sketching")
            shard_ids = read_str(f["id"])
            if inv_eig is not None:
                proj = _finite_sketch(f, p) @ inv_eig[0]
                score = (proj * proj * inv_eig[1]).sum(1)
            else:
                score = f["score"][()]
            for k in ("length", "loss", "grad_sqnorm", "in_subset"):
                cols[k].append(f[k][()])
        bad = ~np.isfinite(score)
        if bad.any():
            raise NumericalError(f"scores: non-finite score for sequence {shard_ids[int(np.argmax(bad))]} "
                                 f"({p}, stage scores)")
        ids.extend(shard_ids)
        cols["score"].append(score)
    arr = {k: np.concatenate(v) for k, v in cols.items()}
    if len(set(ids)) != len(ids):
        raise BiopruneError("scores: the same id appears in two shards; re-run ingest")
    rho = float(spearmanr(arr["score"], arr["length"]).statistic) if len(ids) > 2 else float("nan")
    rho_norm = float(spearmanr(arr["score"], arr["grad_sqnorm"]).statistic) if len(ids) > 2 else float("nan")
    with atomic_h5(out_path, "scores", estimator=estimator, damping=damping, sign=SIGN_NOTE,
                   spearman_score_length=rho, spearman_score_gradnorm=rho_norm, n=len(ids),
                   n_subset=int(arr["in_subset"].sum()), **attrs) as f:
        write_str(f, "id", ids)
        f.create_dataset("score", data=arr["score"].astype(np.float64))
        f.create_dataset("length", data=arr["length"].astype(np.int32))
        f.create_dataset("loss", data=arr["loss"])
        f.create_dataset("grad_sqnorm", data=arr["grad_sqnorm"])
        f.create_dataset("in_subset", data=arr["in_subset"])
    log.info("scores: %d sequences, Spearman(score, length) = %.3f", len(ids), rho)
    return {"n": len(ids), "spearman_score_length": rho}


def read_scores(path: str) -> dict:
    """Load scores.h5 as a dict of arrays (ids as a list) plus its attrs."""
    with open_h5(path, "scores", ["id", "score", "length", "grad_sqnorm"]) as f:
        out = {"id": read_str(f["id"]), "attrs": dict(f.attrs)}
        for k in ("score", "length", "loss", "grad_sqnorm", "in_subset"):
            if k in f:
                out[k] = f[k][()]
    return out
