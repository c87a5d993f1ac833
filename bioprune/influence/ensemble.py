"""Reference ensembles (reference.ensemble: R): the scores of R reference models, each trained on its
own D_sub, averaged per sequence after a per-model normalisation (TRAK's average over models).

Member j of the ensemble drawn by reference seed s uses reference seed member_seeds(s, R)[j]: member 0
is s itself (so R = 1 is exactly today's single-model run and its files), members j >= 1 take a seed
derived from (s, j) by hash into [2^31, 2^32) (numpy's and torch's seed range), away from any seed a user writes, so the ensembles of two
reference seeds share no member. Each member is an ordinary scoring run (its own D_sub, reference model,
curvature and sketches); ensemble_scores merges their scores.h5 files.

Per-model normalisation (reference.ensemble_normalize) before the average:
rank   = average rank / n (a member contributes its ordering only: robust to one model's scale and tails),
zscore = (s - mean) / std over the pool (std 0: all zero),
none   = the raw scores (a member with a larger scale dominates).
"""
from __future__ import annotations

import logging

import numpy as np

from bioprune.errors import BiopruneError
from bioprune.h5io import STR, atomic_h5
from bioprune.hashing import int_hash

log = logging.getLogger(__name__)
ENSEMBLE_NORMALIZE = ("rank", "zscore", "none")
_LOW = 1 << 31  # derived seeds are >= 2^31: never a seed 0..2^31-1 written in a config


def member_seeds(seed: int, size: int) -> list[int]:
    """Reference seeds of the `size` members of the ensemble drawn by `seed` (module doc)."""
    if int(size) < 1:
        raise BiopruneError(f"config key reference.ensemble: {size} must be >= 1")
    seeds = [int(seed)]
    for j in range(1, int(size)):
        seeds.append(_LOW + int_hash(str(j), "reference_ensemble", int(seed)) % _LOW)
    return seeds


def normalize_member(score: np.ndarray, how: str) -> np.ndarray:
    """One member's scores under reference.ensemble_normalize `how` (module doc)."""
    s = np.asarray(score, dtype=np.float64)
    if how == "none":
        return s.copy()
    if how == "zscore":
        sd = float(s.std())
        return (s - s.mean()) / sd if sd > 0 else np.zeros_like(s)
    if how == "rank":
        from scipy.stats import rankdata

        return rankdata(s, method="average") / max(len(s), 1)
    raise BiopruneError(f"config key reference.ensemble_normalize: {how!r} is not one of {', '.join(ENSEMBLE_NORMALIZE)}")


def combine(members: list[dict], how: str) -> dict:
    """Average of the members' normalised scores, aligned by id (member 0's order). Each member is a
    read_scores() dict; the result carries member 0's length, the mean grad_sqnorm and loss, and
    in_subset = in any member's D_sub."""
    if not members:
        raise BiopruneError("config key reference.ensemble: no member scores to average")
    first = members[0]
    ids = list(first["id"])
    pos = {i: j for j, i in enumerate(ids)}
    total = np.zeros(len(ids))
    extra = {k: np.zeros(len(ids)) for k in ("grad_sqnorm", "loss") if k in first}
    in_subset = np.zeros(len(ids), dtype=bool)
    for m in members:
        if len(m["id"]) != len(ids) or any(i not in pos for i in m["id"]):
            raise BiopruneError("reference.ensemble: member scores hold different sequences; re-run scoring")
        order = np.array([pos[i] for i in m["id"]], dtype=np.int64)
        total[order] += normalize_member(m["score"], how)
        for k in extra:
            extra[k][order] += np.asarray(m[k], dtype=np.float64)
        if "in_subset" in m:
            in_subset[order] |= np.asarray(m["in_subset"], dtype=bool)
    out = {"id": ids, "score": total / len(members), "length": np.asarray(first["length"]),
           "in_subset": in_subset, **{k: v / len(members) for k, v in extra.items()}}
    return out


def ensemble_scores(paths: list[str], out_path: str, how: str, seed: int) -> dict:
    """Write the ensemble's scores.h5 (the same datasets as scores.merge_scores) from its members'."""
    from bioprune.influence.scores import read_scores
    from bioprune.influence.stability import spearman

    members = [read_scores(p) for p in paths]
    comb = combine(members, how)
    a0 = members[0]["attrs"]
    keep = ("estimator", "params", "model_sha256", "molecule", "loss", "reduction", "mask_draws", "paper_exact",
            "influence_seed", "subset_fraction", "damping", "relative_damping", "damping_effective", "normalize",
            "sign", "dsub_leave_one_out")
    attrs = {k: a0[k] for k in keep if k in a0}
    rho = spearman(comb["score"], comb["length"])
    with atomic_h5(out_path, "scores", **attrs, subset_seed=int(seed), ensemble=len(paths),
                   ensemble_normalize=how, member_seeds=np.array([int(m["attrs"].get("subset_seed", -1))
                                                                  for m in members], dtype=np.int64),
                   n=len(comb["id"]), n_subset=int(comb["in_subset"].sum()), spearman_score_length=rho,
                   spearman_score_gradnorm=spearman(comb["score"], comb.get("grad_sqnorm", comb["score"])),
                   spearman_sample_stride=1, spearman_score_length_note="") as f:
        f.create_dataset("id", data=np.array(comb["id"], dtype=object), dtype=STR)
        f.create_dataset("score", data=comb["score"].astype(np.float64))
        f.create_dataset("length", data=comb["length"].astype(np.int32))
        for k in ("loss", "grad_sqnorm"):
            if k in comb:
                f.create_dataset(k, data=comb[k])
        f.create_dataset("in_subset", data=comb["in_subset"])
    log.info("ensemble of %d reference models (%s-normalised): %d sequences, Spearman(score, length) = %.3f",
             len(paths), how, len(comb["id"]), rho)
    return {"n": len(comb["id"]), "spearman_score_length": rho}
