"""Influence core: hooked per-sample sketches against brute-force torch.func gradients."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch.func import functional_call, grad

from bioprune.batching import mask_by_id, pad_batch, per_sample_ce, reconstruction_targets
from bioprune.errors import BiopruneError, NumericalError
from bioprune.hashing import in_subset
from bioprune.models import load_model
from bioprune.scores import merge_scores, read_scores
from bioprune.shards import read_shard
from bioprune.sketches import InfluenceConfig, fit_diag_fisher, resolve_params, sketch_shard


def brute_force_grads(model, ids, seqs, cfg, names):
    """One unbatched torch.func.grad call per sequence (no padding at all): the reference."""
    params = {k: v.detach() for k, v in model.named_parameters()}
    out = []
    for i, s in zip(ids, seqs):
        toks = pad_batch([s], "rna")
        if cfg.loss == "mlm":
            inp, tgt = mask_by_id(toks, [i], "rna", cfg.seed)
        else:
            inp, tgt = toks, reconstruction_targets(toks, "rna")

        def loss_fn(sub):
            return per_sample_ce(functional_call(model, {**params, **sub}, (inp,))["logits"], tgt)[0]

        g = grad(loss_fn)({n: params[n] for n in names})
        out.append(torch.cat([g[n].flatten() for n in names]).double())
    return torch.stack(out)


def assert_matches_brute_force(tmp, shards, ref, cfg):
    fit_diag_fisher(shards, str(ref), str(tmp / "curv.h5"), cfg)
    sketch_shard(shards[0], str(ref), str(tmp / "sk.h5"), cfg, str(tmp / "curv.h5"))
    merge_scores([str(tmp / "sk.h5")], str(tmp / "scores.h5"), cfg.damping)
    got = read_scores(str(tmp / "scores.h5"))

    model, _ = load_model(ref, "rna")
    names = resolve_params(model, cfg.params)
    all_ids, all_seqs = [], []
    for p in shards:
        i, s, _ = read_shard(p)
        all_ids += i
        all_seqs += s
    sub = [k for k, i in enumerate(all_ids) if in_subset(i, cfg.subset_fraction, cfg.seed)]
    g_sub = brute_force_grads(model, [all_ids[k] for k in sub], [all_seqs[k] for k in sub], cfg, names)
    fisher = (g_sub**2).mean(0)
    ids, seqs, _ = read_shard(shards[0])
    g = brute_force_grads(model, ids, seqs, cfg, names)
    expected = ((g**2) / (fisher + cfg.damping)).sum(1).numpy()
    order = [got["id"].index(i) for i in ids]
    ours = got["score"][order]
    assert spearmanr(ours, expected).statistic >= 0.999
    assert np.max(np.abs(ours - expected) / np.abs(expected)) <= 1e-4
    assert np.allclose(got["grad_sqnorm"][order], (g**2).sum(1).numpy(), rtol=1e-4)


@pytest.mark.parametrize("loss,params", [("mlm", ["lm_head.dense.weight"]), ("reconstruction", "all_linear")])
def test_diag_fisher_matches_brute_force(tiny_workdir, loss, params):
    tmp, shards = tiny_workdir
    cfg = InfluenceConfig(estimator="diag_fisher", params=params, loss=loss, subset_fraction=0.5, batch_size=7)
    assert_matches_brute_force(tmp, shards, tmp / "ref.pt", cfg)


def test_diag_fisher_matches_brute_force_on_rnafm_esm1b(tiny_workdir):
    """ESM-1b attention can bypass q/k/v Linear modules; the hooks must still see every weight."""
    from test_models import rnafm_file

    tmp, shards = tiny_workdir
    rnafm_file(tmp / "rnafm.pth")
    cfg = InfluenceConfig(estimator="diag_fisher", params="all_linear", loss="mlm", subset_fraction=0.5, batch_size=5)
    assert_matches_brute_force(tmp, shards, tmp / "rnafm.pth", cfg)


def test_projected_matches_exact_inverse(tiny_workdir):
    tmp, shards = tiny_workdir
    damping = 1e-3
    cfg = InfluenceConfig(estimator="projected", params=["lm_head.dense.weight"], subset_fraction=1.0,
                          sketch_dim=256, batch_size=16)
    for k, p in enumerate(shards):
        sketch_shard(p, str(tmp / "ref.pt"), str(tmp / f"sk{k}.h5"), cfg)
    merge_scores([str(tmp / f"sk{k}.h5") for k in range(2)], str(tmp / "scores.h5"), damping)
    got = read_scores(str(tmp / "scores.h5"))
    model, _ = load_model(tmp / "ref.pt", "rna")
    ids, seqs = [], []
    for p in shards:
        i, s, _ = read_shard(p)
        ids += i
        seqs += s
    g = brute_force_grads(model, ids, seqs, cfg, ["lm_head.dense.weight"])
    fisher = g.T @ g / len(ids)
    exact = (g @ torch.linalg.solve(fisher + damping * torch.eye(g.shape[1], dtype=g.dtype), g.T)).diagonal()
    order = [got["id"].index(i) for i in ids]
    assert spearmanr(got["score"][order], exact.numpy()).statistic >= 0.95


def test_scores_bit_identical_on_rerun(tiny_workdir):
    tmp, shards = tiny_workdir
    cfg = InfluenceConfig(subset_fraction=0.5)
    runs = []
    for r in range(2):
        fit_diag_fisher(shards, str(tmp / "ref.pt"), str(tmp / f"c{r}.h5"), cfg)
        sketch_shard(shards[1], str(tmp / "ref.pt"), str(tmp / f"s{r}.h5"), cfg, str(tmp / f"c{r}.h5"))
        merge_scores([str(tmp / f"s{r}.h5")], str(tmp / f"m{r}.h5"), cfg.damping)
        runs.append(read_scores(str(tmp / f"m{r}.h5"))["score"])
    assert runs[0].tobytes() == runs[1].tobytes()


def test_unknown_param_is_a_config_error(tiny_workdir):
    tmp, shards = tiny_workdir
    with pytest.raises(BiopruneError, match="influence.params"):
        fit_diag_fisher(shards, str(tmp / "ref.pt"), str(tmp / "c.h5"), InfluenceConfig(params=["nope.weight"]))


def test_nan_gradient_names_sequence(tiny_workdir):
    tmp, shards = tiny_workdir
    model, _ = load_model(tmp / "ref.pt", "rna")
    with torch.no_grad():
        model.lm_head.dense.weight[0, 0] = float("nan")
    from bioprune.models import save_checkpoint

    save_checkpoint(tmp / "bad.pt", model, "rna")
    with pytest.raises(NumericalError, match=r"sequence seq\d+"):
        fit_diag_fisher(shards, str(tmp / "bad.pt"), str(tmp / "c.h5"), InfluenceConfig(subset_fraction=1.0))
    assert not (tmp / "c.h5").exists()


def test_dsub_mean_score_equals_dimension(tiny_workdir):
    """sum_j F_j / (F_j + eps) over D_sub: the mean D_sub score is d (the paper's sanity check)."""
    tmp, shards = tiny_workdir
    cfg = InfluenceConfig(subset_fraction=0.5)
    fit_diag_fisher(shards, str(tmp / "ref.pt"), str(tmp / "c.h5"), cfg)
    for k, p in enumerate(shards):
        sketch_shard(p, str(tmp / "ref.pt"), str(tmp / f"s{k}.h5"), cfg, str(tmp / "c.h5"))
    merge_scores([str(tmp / f"s{k}.h5") for k in range(2)], str(tmp / "m.h5"), cfg.damping)
    sc = read_scores(str(tmp / "m.h5"))
    d = 16 * 16  # lm_head.dense of the embed_dim=16 reference
    assert sc["score"][sc["in_subset"]].mean() == pytest.approx(d, rel=1e-3)
    assert (sc["score"] > 0).all()
