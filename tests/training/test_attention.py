"""Fused attention (SDPA) == fair-esm's stock attention: logits and gradients on padded batches
(ESM-2 with rotary embeddings, ESM-1b with learned positions); the checkpoint format is unchanged."""
from __future__ import annotations

import copy
from argparse import Namespace

import pytest
import torch
from esm.model.esm1 import ProteinBertModel
from esm.multihead_attention import MultiheadAttention

import bioprune
from bioprune.alphabets import get_alphabet
from bioprune.training.attention import SDPAMultiheadAttention, use_sdpa, uses_sdpa
from bioprune.training.batching import mask_with_generator, pad_batch, per_sample_ce
from bioprune.models import build_model, save_checkpoint

from helpers import random_rna


def _batch(molecule="rna"):
    seqs = [s for _, s in random_rna(6, seed=1, lo=5, hi=40)]
    toks = pad_batch(seqs, molecule)
    assert (toks == get_alphabet(molecule).padding_idx).any()  # padded rows present
    return mask_with_generator(toks, molecule, torch.Generator().manual_seed(0))


def _logits_and_grads(model, inputs, targets):
    model.zero_grad(set_to_none=True)
    logits = model(inputs)["logits"]
    per_sample_ce(logits, targets).mean().backward()
    return logits.detach(), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("kind", ["esm2", "esm1b"])
def test_sdpa_matches_stock_logits_and_gradients(kind):
    torch.manual_seed(0)
    if kind == "esm2":
        stock = build_model("rna", 2, 32, 4, seed=0)  # rotary embeddings
    else:
        args = Namespace(layers=2, embed_dim=32, ffn_embed_dim=64, attention_heads=4, max_positions=128,
                         dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, arch="roberta_large",
                         final_bias=True, emb_layer_norm_before=True, token_dropout=False)
        stock = ProteinBertModel(args, get_alphabet("rna"))
    stock.train()
    fused = use_sdpa(copy.deepcopy(stock))
    assert uses_sdpa(fused) and not uses_sdpa(stock)
    inputs, targets = _batch()
    la, ga = _logits_and_grads(stock, inputs, targets)
    lb, gb = _logits_and_grads(fused, inputs, targets)
    assert torch.allclose(la, lb, atol=1e-5, rtol=1e-5)
    assert ga.keys() == gb.keys() and len(ga) > 10
    for k in ga:
        assert torch.allclose(ga[k], gb[k], atol=1e-5, rtol=1e-4), k


def test_padding_is_exact_per_row():
    """A row's logits do not depend on how far it is padded (the key mask reaches the fused kernel)."""
    model = use_sdpa(build_model("rna", 2, 32, 4, seed=0)).eval()
    seq = "ACGUACGGUA"
    with torch.no_grad():
        alone = model(pad_batch([seq], "rna"))["logits"][0]
        padded = model(pad_batch([seq, seq * 4], "rna"))["logits"][0, : alone.shape[0]]
    assert torch.allclose(alone, padded, atol=1e-5)


def test_attention_maps_fall_back_to_stock_and_checkpoint_is_fair_esm(tmp_path):
    stock = build_model("rna", 1, 16, 2, seed=0).eval()
    fused = use_sdpa(copy.deepcopy(stock))
    toks = pad_batch(["ACGUAC", "ACG"], "rna")
    with torch.no_grad():
        a = stock(toks, need_head_weights=True)["attentions"]
        b = fused(toks, need_head_weights=True)["attentions"]
    assert torch.allclose(a, b)
    save_checkpoint(tmp_path / "m.pt", fused, "rna")
    loaded, _ = bioprune.load_model(tmp_path / "m.pt")
    assert all(type(m) is MultiheadAttention for m in loaded.modules() if isinstance(m, MultiheadAttention))
    assert loaded.state_dict().keys() == stock.state_dict().keys()
    use_sdpa(fused, enabled=False)
    assert not any(isinstance(m, SDPAMultiheadAttention) for m in fused.modules())


@pytest.mark.parametrize("rotary", [True, False])
def test_additive_mask_with_padding_matches_stock(rotary):
    """fairseq's additive float attn_mask (T, S) together with a key padding mask: the fused path adds the
    mask and sends padded keys to -inf, as the stock module does (ESM-2 passes no attn_mask today; the path
    is kept for fair-esm callers that do). The output of the rows' real positions and the gradients agree."""
    torch.manual_seed(0)
    t, b, e = 7, 3, 16
    stock = MultiheadAttention(e, 2, self_attention=True, use_rotary_embeddings=rotary).eval()
    fused = copy.deepcopy(stock)
    fused.__class__ = SDPAMultiheadAttention
    x = torch.randn(t, b, e)
    pad = torch.zeros(b, t, dtype=torch.bool)
    pad[1, 4:] = True
    pad[2, 6:] = True
    add = torch.randn(t, t)
    add[:, 2] = float("-inf")  # a key masked by the additive mask only
    outs = []
    for m in (stock, fused):
        xi = x.clone().requires_grad_(True)
        out, _ = m(xi, xi, xi, key_padding_mask=pad, attn_mask=add, need_weights=False)
        out.sum().backward()
        outs.append((out.detach(), xi.grad))
    (a, ga), (f, gf) = outs
    assert torch.isfinite(f).all()
    assert torch.allclose(a, f, atol=1e-5) and torch.allclose(ga, gf, atol=1e-5)
    with torch.no_grad():  # the padding changes the result (the padding mask is not dropped)
        unpadded, _ = fused(x, x, x, attn_mask=add, need_weights=False)
    assert not torch.allclose(unpadded[:, 1], f[:, 1], atol=1e-3)
