"""Influence core against an independent brute-force reference.

The reference below re-implements tokenisation, padding (none: one sequence at a time), the MLM and
coverage masking rules, D_sub membership, the per-sample cross-entropy and the scores from their
documented definitions, with torch.func per-sample gradients. It imports nothing from
bioprune.training.batching, bioprune.hashing or bioprune.influence.scores, so a bug there cannot cancel out.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from torch.func import functional_call, grad

from bioprune.errors import BiopruneError, NumericalError
from bioprune.models import build_model, load_model, save_checkpoint
from bioprune.influence.scores import merge_scores, read_scores
from bioprune.ingest import IngestOptions, ingest, read_shard
from bioprune.influence.sketches import InfluenceConfig, KroneckerProjector, fit_diag_fisher, resolve_params, sketch_shard

from helpers import random_rna, write_fasta

# ----------------------------------------------------------------------------- reference
def ref_hash(key: str, salt: str, seed: int) -> int:
    return int.from_bytes(hashlib.blake2b(f"{salt}\x1f{seed}\x1f{key}".encode(), digest_size=8).digest(), "little")


def ref_in_dsub(seq_id: str, fraction: float, seed: int) -> bool:
    return ref_hash(seq_id, "dsub", seed) / 2.0**64 < fraction


class Ref:
    """Brute-force per-sample gradients of one unpadded sequence at a time."""

    def __init__(self, model, alphabet, names: list[str]):
        self.model, self.a, self.names = model, alphabet, names
        self.params = {k: v.detach() for k, v in model.named_parameters()}
        self.std = torch.tensor([alphabet.get_idx(c) for c in "ACGU"])

    def tokens(self, seq: str) -> torch.Tensor:
        return torch.tensor([self.a.cls_idx] + [self.a.get_idx(c) for c in seq] + [self.a.eos_idx])

    def _replace(self, tok, pos, u, rnd):
        inp = tok.clone()
        inp[pos] = torch.where(u < 0.8, torch.full_like(pos, self.a.mask_idx), torch.where(u < 0.9, rnd, tok[pos]))
        return inp

    def mlm(self, tok, seq_id, seed):
        """15% of residues (at least the one with the lowest draw), 80/10/10, generator seeded by id."""
        g = torch.Generator().manual_seed(ref_hash(seq_id, "mlm", seed) >> 1)
        n = len(tok)
        p = torch.rand(n, generator=g)
        res = torch.zeros(n, dtype=torch.bool)
        res[1:-1] = True
        chosen = res & (p < 0.15)
        if not chosen.any():
            chosen[torch.where(res, p, torch.full_like(p, 2.0)).argmin()] = True
        u = torch.rand(n, generator=g)
        rnd = self.std[torch.randint(4, (n,), generator=g)]
        pos = chosen.nonzero()[:, 0]
        return [(self._replace(tok, pos, u[pos], rnd[pos]), pos)]

    def coverage(self, tok, seq_id, seed, k):
        """K draws: a seeded permutation of the residues cut into K consecutive near-equal groups."""
        m = len(tok) - 2
        perm = torch.randperm(m, generator=torch.Generator().manual_seed(ref_hash(seq_id, "mlm_coverage", seed) >> 1))
        g = torch.Generator().manual_seed(ref_hash(seq_id, "mlm_coverage_replace", seed) >> 1)
        u = torch.rand(m, generator=g)
        rnd = self.std[torch.randint(4, (m,), generator=g)]
        out, start = [], 0
        for j in range(k):
            size = m // k + (1 if j < m % k else 0)
            idx = perm[start : start + size]
            start += size
            if size:
                out.append((self._replace(tok, idx + 1, u[idx], rnd[idx]), idx + 1))
        return out

    def loss(self, sub, inp, pos, tgt, reduction):
        logits = functional_call(self.model, {**self.params, **sub}, (inp[None],))["logits"][0]
        nll = -torch.log_softmax(logits.float(), -1)[pos, tgt[pos]]
        return nll.mean() if reduction == "mean" else nll.sum()

    def grad(self, seq_id: str, seq: str, cfg: InfluenceConfig) -> tuple[torch.Tensor, float]:
        """Flattened gradient (float64) and loss, averaged over the loss's mask draws."""
        tok = self.tokens(seq)
        if cfg.loss == "mlm":
            draws = self.mlm(tok, seq_id, cfg.seed)
        elif cfg.loss == "mlm_coverage":
            draws = self.coverage(tok, seq_id, cfg.seed, cfg.mask_draws)
        else:
            draws = [(tok, torch.arange(len(tok)))]
        gs, ls = [], []
        for inp, pos in draws:
            sub = {n: self.params[n] for n in self.names}
            g = grad(lambda s: self.loss(s, inp, pos, tok, cfg.reduction))(sub)
            gs.append(torch.cat([g[n].flatten() for n in self.names]).double())
            ls.append(float(self.loss(sub, inp, pos, tok, cfg.reduction)))
        return torch.stack(gs).mean(0), float(np.mean(ls))


def reference_grads(model_path, shards, cfg):
    model, alphabet = load_model(model_path, "rna")
    ref = Ref(model, alphabet, resolve_params(model, cfg.params))
    ids, seqs = [], []
    for p in shards:
        i, s, _ = read_shard(p)
        ids += i
        seqs += s
    out = [ref.grad(i, s, cfg) for i, s in zip(ids, seqs)]
    g = torch.stack([o[0] for o in out])
    sub = np.array([ref_in_dsub(i, cfg.subset_fraction, cfg.subset_seed) for i in ids])
    return ids, g, np.array([o[1] for o in out]), sub


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """Two shards of 90 random RNAs (2..60 nt, so some have fewer residues than mask draws) and an
    untrained 1-layer, 8-wide model (lm_head.dense.weight has d = 64 entries)."""
    tmp = tmp_path_factory.mktemp("influence")
    recs = random_rna(84, seed=3, lo=8, hi=60) + [(f"short{i}", "ACGU"[: 2 + i % 3]) for i in range(6)]
    fa = write_fasta(tmp / "pool.fa", recs)
    shards = [str(tmp / f"{i}-of-2.h5") for i in (1, 2)]
    ingest(fa, shards, str(tmp / "holdout.h5"), IngestOptions(holdout_fraction=0.001))
    save_checkpoint(tmp / "m.pt", build_model("rna", 1, 8, 2, seed=1), "rna")
    return tmp, shards, str(tmp / "m.pt")


def _score_diag(tmp, shards, model, cfg):
    fit_diag_fisher(shards, model, str(tmp / "c.h5"), cfg)
    for k, p in enumerate(shards):
        sketch_shard(p, model, str(tmp / f"s{k}.h5"), cfg, str(tmp / "c.h5"))
    merge_scores([str(tmp / f"s{k}.h5") for k in range(len(shards))], str(tmp / "m.h5"))
    return read_scores(str(tmp / "m.h5"))


def _aligned(got, ids, key):
    return got[key][[got["id"].index(i) for i in ids]]


# ----------------------------------------------------------------------------- diag_fisher parity
@pytest.mark.parametrize("loss,params,reduction", [
    ("mlm", ["lm_head.dense.weight"], "mean"),
    ("mlm_coverage", ["lm_head.dense.weight"], "mean"),
    ("mlm_coverage", ["lm_head.dense.weight"], "sum"),
    ("reconstruction", "all_linear", "mean"),
])
def test_diag_fisher_matches_independent_reference(pool, tmp_path, loss, params, reduction):
    _, shards, model = pool
    cfg = InfluenceConfig(estimator="diag_fisher", params=params, loss=loss, reduction=reduction, mask_draws=3,
                          subset_fraction=0.5, subset_seed=4, seed=7, batch_size=7)
    ids, g, ref_loss, sub = reference_grads(model, shards, cfg)
    fisher = (g[torch.from_numpy(sub)] ** 2).mean(0)
    # damping of the order of the Fisher entries: dropping it or flipping its sign changes every score
    cfg.damping = float(fisher.median())
    got = _score_diag(tmp_path, shards, model, cfg)
    expected = ((g**2) / (fisher + cfg.damping)).sum(1).numpy()
    np.testing.assert_allclose(_aligned(got, ids, "score"), expected, rtol=2e-4)
    np.testing.assert_allclose(_aligned(got, ids, "grad_sqnorm"), (g**2).sum(1).numpy(), rtol=2e-4)
    np.testing.assert_allclose(_aligned(got, ids, "loss"), ref_loss, rtol=1e-5)
    assert (_aligned(got, ids, "in_subset") == sub).all()
    a = got["attrs"]
    assert (a["loss"], a["reduction"], a["damping"], a["damping_effective"]) == (loss, reduction, cfg.damping, cfg.damping)
    assert (a["influence_seed"], a["subset_seed"], a["subset_fraction"], a["n_subset"]) == (7, 4, 0.5, sub.sum())
    assert a["mask_draws"] == (3 if loss == "mlm_coverage" else 1)


def test_diag_fisher_matches_brute_force_on_rnafm_esm1b(pool, tmp_path):
    """ESM-1b attention can bypass q/k/v Linear modules; the hooks must still see every weight."""
    from test_models import rnafm_file

    _, shards, _ = pool
    rnafm_file(tmp_path / "rnafm.pth")
    cfg = InfluenceConfig(estimator="diag_fisher", params="all_linear", loss="mlm", subset_fraction=0.5, batch_size=5)
    ids, g, _, sub = reference_grads(str(tmp_path / "rnafm.pth"), shards, cfg)
    fisher = (g[torch.from_numpy(sub)] ** 2).mean(0)
    cfg.damping = float(fisher.median())
    got = _score_diag(tmp_path, shards, str(tmp_path / "rnafm.pth"), cfg)
    expected = ((g**2) / (fisher + cfg.damping)).sum(1).numpy()
    np.testing.assert_allclose(_aligned(got, ids, "score"), expected, rtol=2e-4)


def test_dsub_mean_score_equals_dimension(pool, tmp_path):
    """sum_j F_j / (F_j + eps) over D_sub: the mean D_sub score is d (the paper's sanity check)."""
    _, shards, model = pool
    sc = _score_diag(tmp_path, shards, model, InfluenceConfig(subset_fraction=0.5))
    assert sc["score"][sc["in_subset"]].mean() == pytest.approx(64, rel=1e-3)
    assert sc["attrs"]["spearman_score_length"] == pytest.approx(
        float(__import__("scipy.stats").stats.spearmanr(sc["score"], sc["length"]).statistic))


# ----------------------------------------------------------------------------- projected parity
def _score_projected(tmp, shards, model, cfg, **merge):
    for k, p in enumerate(shards):
        sketch_shard(p, model, str(tmp / f"p{k}.h5"), cfg)
    merge_scores([str(tmp / f"p{k}.h5") for k in range(len(shards))], str(tmp / "pm.h5"), **merge)
    return read_scores(str(tmp / "pm.h5"))


def _loo_scores(s: torch.Tensor, sub: np.ndarray, lam_rel: float):
    """s^T (F + lambda I)^-1 s, F the mean outer product over D_sub, D_sub members left out of their own F."""
    m = int(sub.sum())
    f_sub = s[torch.from_numpy(sub)].T @ s[torch.from_numpy(sub)] / m
    lam = lam_rel * float(torch.linalg.eigvalsh(f_sub).clamp_min(0).mean())
    eye = torch.eye(s.shape[1], dtype=s.dtype)
    out = []
    for i in range(len(s)):
        f = f_sub - torch.outer(s[i], s[i]) / m if sub[i] else f_sub  # leave the member out of its own F
        out.append(float(s[i] @ torch.linalg.solve(f + lam * eye, s[i])))
    return np.array(out), lam


def test_projected_matches_reference_in_value(pool, tmp_path):
    """At sketch_dim 16 (a real projection of the 64-dim gradient), scores equal the reference built
    on the reference gradients projected by the same matrices: D_sub Fisher, averaging, relative
    damping and leave-one-out are all checked in value."""
    _, shards, model = pool
    cfg = InfluenceConfig(estimator="projected", loss="mlm_coverage", mask_draws=3, sketch_dim=16,
                          subset_fraction=0.5, subset_seed=2, seed=5, batch_size=16, relative_damping=0.3)
    ids, g, _, sub = reference_grads(model, shards, cfg)
    proj = KroneckerProjector({"lm_head.dense.weight": (8, 8)}, 16, cfg.seed, torch.device("cpu"))
    p_out, p_in = (t.double() for t in proj.mats["lm_head.dense.weight"])
    s = torch.einsum("ao,noi,bi->nab", p_out, g.view(-1, 8, 8), p_in).flatten(1)
    expected, lam = _loo_scores(s, sub, 0.3)
    got = _score_projected(tmp_path, shards, model, cfg)
    np.testing.assert_allclose(_aligned(got, ids, "score"), expected, rtol=1e-4)
    assert got["attrs"]["damping_effective"] == pytest.approx(lam, rel=1e-4)
    assert got["attrs"]["relative_damping"] == 0.3 and got["attrs"]["dsub_leave_one_out"]


def test_projected_is_exact_at_full_sketch_size(pool, tmp_path):
    """With k = d the projection is orthogonal, so the projected score equals the exact full-gradient
    g^T (F + lambda I)^-1 g (F the mean over D_sub, members left out; lambda relative) in value."""
    _, shards, model = pool
    cfg = InfluenceConfig(estimator="projected", loss="reconstruction", sketch_dim=64, subset_fraction=0.5,
                          batch_size=16, relative_damping=0.05)
    ids, g, _, sub = reference_grads(model, shards, cfg)
    expected, lam = _loo_scores(g, sub, 0.05)
    got = _score_projected(tmp_path, shards, model, cfg)
    np.testing.assert_allclose(_aligned(got, ids, "score"), expected, rtol=1e-4)
    assert got["attrs"]["damping_effective"] == pytest.approx(lam, rel=1e-5)


# ----------------------------------------------------------------------------- determinism, errors
def test_scores_bit_identical_on_rerun(pool, tmp_path):
    _, shards, model = pool
    cfg = InfluenceConfig(subset_fraction=0.5, loss="mlm_coverage", mask_draws=2)
    runs = []
    for r in range(2):
        (tmp_path / f"r{r}").mkdir()
        runs.append(_score_diag(tmp_path / f"r{r}", shards, model, cfg)["score"])
    assert runs[0].tobytes() == runs[1].tobytes()


def test_unknown_param_is_a_config_error(pool, tmp_path):
    _, shards, model = pool
    with pytest.raises(BiopruneError, match="influence.params"):
        fit_diag_fisher(shards, model, str(tmp_path / "c.h5"), InfluenceConfig(params=["nope.weight"]))


@pytest.mark.parametrize("key,value", [("loss", "mlm30"), ("reduction", "max"), ("normalize", "l2"),
                                       ("estimator", "kfac"), ("mask_draws", 0)])
def test_bad_setting_is_a_config_error(key, value):
    with pytest.raises(BiopruneError, match=f"influence.{key}"):
        InfluenceConfig(**{key: value})


@pytest.fixture
def nan_model(pool, tmp_path):
    model = build_model("rna", 1, 8, 2, seed=1)
    with torch.no_grad():
        model.lm_head.dense.weight[0, 0] = float("nan")
    save_checkpoint(tmp_path / "bad.pt", model, "rna")
    return str(tmp_path / "bad.pt")


def test_nan_in_curvature_names_sequence_and_stage(pool, tmp_path, nan_model):
    _, shards, _ = pool
    with pytest.raises(NumericalError, match=r"sequence (seq|short)\d+ \(stage curvature\)"):
        fit_diag_fisher(shards, nan_model, str(tmp_path / "c.h5"), InfluenceConfig(subset_fraction=1.0))
    assert not (tmp_path / "c.h5").exists()


def test_nan_in_sketch_names_sequence_and_stage(pool, tmp_path, nan_model):
    _, shards, _ = pool
    with pytest.raises(NumericalError, match=r"sequence (seq|short)\d+ \(stage sketch\)"):
        sketch_shard(shards[0], nan_model, str(tmp_path / "s.h5"), InfluenceConfig(estimator="projected", sketch_dim=16))
    assert not (tmp_path / "s.h5").exists()


def test_curvature_of_another_dsub_is_refused(pool, tmp_path):
    """The in_subset flag and the Fisher must describe the same D_sub (subset_fraction, subset_seed)."""
    _, shards, model = pool
    fit_diag_fisher(shards, model, str(tmp_path / "c.h5"), InfluenceConfig(subset_fraction=0.5))
    for other in (dict(subset_fraction=0.1), dict(subset_fraction=0.5, subset_seed=1),
                  dict(subset_fraction=0.5, loss="reconstruction")):
        with pytest.raises(BiopruneError, match="re-run the curvature stage"):
            sketch_shard(shards[0], model, str(tmp_path / "s.h5"), InfluenceConfig(**other), str(tmp_path / "c.h5"))


def test_token_budget_batches_give_the_same_scores(pool, tmp_path):
    """influence.max_tokens changes only the batching: per-sample scores stay the same."""
    from bioprune.ingest import read_shard

    _, shards, model = pool
    longest = max(len(s) for p in shards for s in read_shard(p)[1]) + 2
    base = dict(estimator="diag_fisher", params=["lm_head.dense.weight"], subset_fraction=0.5, damping=1e-3)
    for d in "abc":
        (tmp_path / d).mkdir()
    a = _score_diag(tmp_path / "a", shards, model, InfluenceConfig(**base, batch_size=7))
    b = _score_diag(tmp_path / "b", shards, model, InfluenceConfig(**base, max_tokens=3 * longest))
    assert a["id"] == b["id"]
    np.testing.assert_allclose(a["score"], b["score"], rtol=1e-4)
    with pytest.raises(BiopruneError, match="influence.max_tokens"):
        _score_diag(tmp_path / "c", shards, model, InfluenceConfig(**base, max_tokens=longest - 1))
