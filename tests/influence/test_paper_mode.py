"""Paper mode against an independent re-implementation of the official bio-coreset semantics.

The reference below follows coreset/get_inf.py + influence.py + model_override.py: tokens from the
fm batch converter layout, cut to the window or padded with id 1; the model's own fair-esm forward
with `self_attn_padding_mask` forced to None in every layer (the official wrapper's one change);
nn.CrossEntropyLoss() over the whole window, target = input; one torch.func.grad per sequence.
"""
from __future__ import annotations

import random
from argparse import Namespace

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch.func import functional_call, grad

from bioprune.alphabets import get_alphabet
from bioprune.models import build_model, save_checkpoint
from bioprune.influence.paper import paper_batch_losses, paper_logits, paper_tokens
from bioprune.influence.sketches import GradCapture, InfluenceConfig, per_sample_grads

WINDOW = 64
PARAM = "lm_head.dense.weight"
DAMPING = 1e-8


def _seqs(n: int = 12, seed: int = 0) -> tuple[list[str], list[str]]:
    """Lengths around the window: padded, exactly filling it (61+2+1 pad, 62+2), and cropped."""
    rng = random.Random(seed)
    lengths = [3, 61, 62, 63, 90] + [rng.randint(5, 70) for _ in range(n - 5)]
    seqs = ["".join(rng.choice("ACGU") for _ in range(L)) for L in lengths]
    return [f"s{i}" for i in range(n)], seqs


def esm2_model():
    m = build_model("rna", layers=1, embed_dim=16, heads=2, seed=0)  # token_dropout on
    with torch.no_grad():  # a non-zero <pad> row, so zeroing pad embeddings is observable
        m.embed_tokens.weight[m.padding_idx].normal_(generator=torch.Generator().manual_seed(1))
    return m.eval()


def esm1b_model():
    """ESM-1b / RNA-FM layout (ProteinBertModel, roberta_large) with emb LN before and token dropout."""
    from esm.model.esm1 import ProteinBertModel

    args = Namespace(arch="roberta_large", layers=1, embed_dim=16, ffn_embed_dim=32, attention_heads=2,
                     max_positions=WINDOW, emb_layer_norm_before=True, token_dropout=True)
    torch.manual_seed(0)
    m = ProteinBertModel(args, get_alphabet("rna"))
    with torch.no_grad():
        m.emb_layer_norm_before.bias.normal_()  # pads are non-zero before the official zeroing
        m.embed_tokens.weight[m.padding_idx].normal_()
    return m.eval()


MODELS = {"esm2": esm2_model, "esm1b": esm1b_model}


def official_tokens(seqs: list[str], window: int) -> torch.Tensor:
    """get_inf.preprocess_data with fm's BatchConverter: [cls] seq [eos], pad with 1 or cut to window."""
    a = get_alphabet("rna")
    rows = []
    for s in seqs:
        ids = [a.cls_idx] + [a.get_idx(c) for c in s] + [a.eos_idx]
        rows.append(ids + [1] * (window - len(ids)) if len(ids) < window else ids[:window])
    return torch.tensor(rows)


def official_grads(model, seqs: list[str], window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample (loss, flattened lm_head.dense.weight gradient), as ParamInf._fnet_single."""
    hooks = [layer.register_forward_pre_hook(
        lambda mod, args, kw: (args, {**kw, "self_attn_padding_mask": None}), with_kwargs=True)
        for layer in model.layers]
    params = {k: v.detach() for k, v in model.named_parameters()}
    ce = torch.nn.CrossEntropyLoss()

    def loss_fn(w, x):
        y_hat = functional_call(model, {**params, PARAM: w}, (x,))["logits"]
        return ce(y_hat.view(-1, y_hat.size(-1)), x.view(-1))

    losses, grads = [], []
    try:
        for x in official_tokens(seqs, window):
            x = x[None]
            losses.append(loss_fn(params[PARAM], x).detach())
            grads.append(grad(loss_fn)(params[PARAM], x).flatten().double())
    finally:
        for h in hooks:
            h.remove()
    return torch.stack(losses).double(), torch.stack(grads)


def ours_grads(model, ids, seqs, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """paper_batch_losses in one batch, per-sample gradients from sketches.GradCapture's hooks."""
    for p in model.parameters():
        p.requires_grad_(False)
    cfg = InfluenceConfig(loss="reconstruction_padded", pad_to=window, damping=DAMPING, params=[PARAM])
    capture = GradCapture(model, [PARAM])
    try:
        losses = paper_batch_losses(model, ids, seqs, "rna", cfg, torch.device("cpu"))
        losses.sum().backward()
        g = per_sample_grads(capture.x[PARAM].float(), capture.gy[PARAM].float())
    finally:
        capture.close()
    return losses.detach().double(), g.flatten(1).double()


def scores(g: torch.Tensor, g_fisher: torch.Tensor) -> np.ndarray:
    """bioprune sign: s = sum_j g_j^2 / (F_j + 1e-8), F = sum over the Fisher set of g^2 / num."""
    fisher = (g_fisher**2).sum(0) / len(g_fisher)
    return ((g**2) / (fisher + DAMPING)).sum(1).numpy()


def assert_scores_match(ours: np.ndarray, ref: np.ndarray) -> None:
    assert spearmanr(ours, ref).statistic >= 0.999
    assert np.max(np.abs(ours - ref) / np.abs(ref)) <= 1e-3


def test_paper_tokens_follow_official_crop_and_padding():
    a = get_alphabet("rna")
    _, seqs = _seqs()
    toks = paper_tokens(seqs, "rna", WINDOW)
    assert torch.equal(toks, official_tokens(seqs, WINDOW))
    assert toks.shape == (len(seqs), WINDOW)
    assert toks[1, 62] == a.eos_idx and toks[1, 63] == a.padding_idx  # 61 residues + cls/eos + 1 pad
    assert toks[2, 63] == a.eos_idx  # 62 residues fill the window exactly
    for row in (3, 4):  # longer: <cls> + first 63 residues, <eos> dropped
        assert toks[row, 0] == a.cls_idx and a.eos_idx not in toks[row].tolist()
        assert toks[row, 1:].tolist() == [a.get_idx(c) for c in seqs[row][: WINDOW - 1]]


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_paper_grads_match_official_semantics(kind):
    model = MODELS[kind]()
    ids, seqs = _seqs()
    ref_loss, ref_g = official_grads(model, seqs, WINDOW)
    loss, g = ours_grads(model, ids, seqs, WINDOW)
    assert torch.allclose(loss, ref_loss, rtol=1e-5)
    assert ((g - ref_g).norm(dim=1) / ref_g.norm(dim=1)).max() <= 1e-4
    assert_scores_match(scores(g, g), scores(ref_g, ref_g))


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_paper_forward_attends_pads_and_zeroes_pad_embeddings(kind):
    """A mutant that masks pads in attention, or leaves pad embeddings non-zero, fails here."""
    model = MODELS[kind]()
    _, seqs = _seqs()
    toks = paper_tokens(seqs, "rna", WINDOW)
    seen = {}

    def keep_first(mod, args):
        seen.setdefault("x", args[0].detach().clone())

    h = model.layers[0].register_forward_pre_hook(keep_first)
    with torch.no_grad():
        ours = paper_logits(model, toks)
        masked = model(toks)["logits"]  # fair-esm's forward: pads masked out of attention
    h.remove()
    pad = toks.eq(model.padding_idx)
    x0 = seen["x"].transpose(0, 1)  # (B, T, E) input of layer 0
    assert x0[pad].abs().max() == 0 and x0[~pad].abs().amax(-1).min() > 0
    assert model.embed_tokens.weight[model.padding_idx].abs().max() > 0  # so zeroing is not a no-op
    full = ~pad.any(1)  # rows without pads: both forwards must agree exactly
    assert full.sum() >= 3
    assert torch.allclose(ours[full], masked[full], atol=1e-5)
    diff = (ours - masked).abs().amax(-1)[~full][~pad[~full]]  # real tokens of padded rows
    assert diff.min() > 1e-4


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_paper_exact_scoring_path_matches_official(tmp_path, kind):
    """End to end through bioprune.influence.sketches (fit_diag_fisher + sketch_shard with paper_exact)."""
    from bioprune.influence.scores import merge_scores, read_scores
    from bioprune.ingest import IngestOptions, ingest, read_shard
    from bioprune.influence.sketches import fit_diag_fisher, sketch_shard
    from helpers import write_fasta

    ids, seqs = _seqs(16, seed=3)
    write_fasta(tmp_path / "pool.fa", list(zip(ids, seqs)))
    shards = [str(tmp_path / f"{i}-of-2.h5") for i in (1, 2)]
    ingest(tmp_path / "pool.fa", shards, str(tmp_path / "holdout.h5"),
           IngestOptions(max_length=200, holdout_fraction=0.0))
    model = MODELS[kind]()
    save_checkpoint(tmp_path / "ref.pt", model, "rna")
    cfg = InfluenceConfig(paper_exact=True, loss="reconstruction_padded", pad_to=WINDOW, damping=DAMPING,
                          params=[PARAM], subset_fraction=1.0, batch_size=5, device="cpu")
    fit_diag_fisher(shards, str(tmp_path / "ref.pt"), str(tmp_path / "curv.h5"), cfg)
    for i, s in enumerate(shards):
        sketch_shard(s, str(tmp_path / "ref.pt"), str(tmp_path / f"sk{i}.h5"), cfg, str(tmp_path / "curv.h5"))
    merge_scores([str(tmp_path / f"sk{i}.h5") for i in range(2)], str(tmp_path / "scores.h5"), DAMPING)
    got = read_scores(str(tmp_path / "scores.h5"))

    pool = [(i, s) for p in shards for i, s in zip(*read_shard(p)[:2])]
    _, ref_g = official_grads(model, [s for _, s in pool], WINDOW)  # Fisher set = pool (official)
    ref = scores(ref_g, ref_g)
    ours = got["score"][[got["id"].index(i) for i, _ in pool]]
    assert_scores_match(ours, ref)
    assert (ours > 0).all()  # bioprune sign: the official stores -ours
    assert bool(got["attrs"]["paper_exact"])
