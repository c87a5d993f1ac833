"""Paper-exact scoring: the per-sample loss exactly as the official bio-coreset code computes it.

Official code: github.com/victor-yifanwu/bio-coreset @ 5b05de4, folder coreset/. Each official choice
reproduced here, and how bioprune's default differs:

=====================  ==============================================  ==========================
choice                 official (file:line)                             bioprune default
=====================  ==============================================  ==========================
tokens                 fm BatchConverter: <cls> + residues + <eos>      same (alphabets.encode)
                       (get_inf.py:47, RNA-FM fm/data.py BatchConverter)
window                 1024 tokens (get_inf.py:43,67,116)               longest in batch (pad_to 0)
crop                   tokens[:1024]: <cls> + first 1023 residues, no   ingest crops residues at
                       <eos> (get_inf.py:52-57)                         corpus.max_length
padding                <pad> id 1 up to the window (get_inf.py:52-55)   same id, batch length
embeddings             pad rows zeroed after positions / emb LN         same (fair-esm forward)
                       (model_override.py:152-153)
attention              padding_mask = None: every token attends to the  pads masked out
                       pads in every layer (model_override.py:166-170)
loss                   CrossEntropyLoss() mean over all window tokens,  MLM, pads excluded
                       target = input, pads/cls/eos counted
                       (get_inf.py:70,85; influence.py:27-30)
precision              fp32, eval mode (influence.py:14)                bf16 autocast on CUDA
gradients              lm_head.dense.weight only (get_inf.py:74-76)     same by default
Fisher                 F = sum_i g_i^2 / num, num = number of Fisher    same (mean over D_sub);
                       sequences, i.e. the mean; Fisher set = the       D_sub = random fraction
                       scored file itself (influence.py:41-47,          (reference.subset_fraction;
                       get_inf.py:80-87)                                1.0 = official)
damping                1 / (F + 1e-8) (influence.py:51)                 same (influence.damping)
sign                   score = -sum_j g_j^2 / (F_j + 1e-8)              + sign: higher = more
                       (influence.py:65)                                influence
CCI bin edge           max * 1.0001 on the negative scores              inclusive edge
                       (get_coreset_index.py:59-64)                     (selection.cci.bin_edge)
=====================  ==============================================  ==========================

ESM-2 (fair-esm `ESM2`) is not in the official code; paper mode applies the same wrapper change to
it: ESM2.forward (token-dropout rescaling, pad zeroing) with `self_attn_padding_mask=None`.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from esm.model.esm1 import ProteinBertModel
from esm.model.esm2 import ESM2

from bioprune.alphabets import encode, get_alphabet
from bioprune.errors import BiopruneError

PAPER_WINDOW = 1024
# influence.* settings paper mode implies (the official values; see the table above)
# (the official Fisher set is the scored file itself, get_inf.py:80-87: reference.subset_fraction 1.0)
PAPER_SETTINGS = {"estimator": "diag_fisher", "params": ["lm_head.dense.weight"], "normalize": "none",
                  "loss": "reconstruction_padded", "damping": 1e-8, "pad_to": PAPER_WINDOW}
PAPER_NOTE = ("paper_exact: official bio-coreset scoring (1024-token window, <cls>+first 1023 residues "
              "when longer, pads counted in the loss, pad embeddings zeroed, pads attended in every "
              "layer, fp32, lm_head.dense.weight, F = mean g^2 over D_sub, damping 1e-8); score sign +, "
              "the official stores -score.")


def paper_tokens(seqs: list[str], molecule: str, window: int = PAPER_WINDOW) -> torch.Tensor:
    """(B, window) token ids as get_inf.preprocess_data builds them: <cls> seq <eos>, cut to the
    first `window` tokens (a long sequence loses its <eos>), padded with <pad> to the window."""
    a = get_alphabet(molecule)
    out = np.full((len(seqs), window), a.padding_idx, dtype=np.int64)
    for i, s in enumerate(seqs):
        t = encode(s, molecule)[:window]
        out[i, : len(t)] = t
    return torch.from_numpy(out)


def _token_dropout(model, x: torch.Tensor, tokens: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
    """fair-esm token dropout as both forwards do it: zero <mask> rows, rescale by 0.88 / (1 - ratio)."""
    x = x.masked_fill((tokens == model.mask_idx).unsqueeze(-1), 0.0)
    mask_ratio_train = 0.15 * 0.8
    src_lengths = (~padding_mask).sum(-1)
    observed = (tokens == model.mask_idx).sum(-1).to(x.dtype) / src_lengths
    return x * (1 - mask_ratio_train) / (1 - observed)[:, None, None]


def paper_logits(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """(B, T, V) logits as the official BioBertModel.forward computes them: embeddings with pad rows
    zeroed, then every transformer layer run with padding_mask=None (pads attended).

    Calls the model's own submodules (embeddings, layers, lm_head), so Linear hooks fire.
    """
    if tokens.ndim != 2:
        raise BiopruneError(f"paper mode: tokens must be (batch, window), got shape {tuple(tokens.shape)}")
    padding_mask = tokens.eq(model.padding_idx)
    x = model.embed_scale * model.embed_tokens(tokens)
    if isinstance(model, ProteinBertModel):
        if model.model_version != "ESM-1b":
            raise BiopruneError("paper mode: only ESM-1b ('roberta_large') ProteinBertModel checkpoints are supported")
        if tokens.shape[1] > model.embed_positions.max_positions:
            raise BiopruneError(f"config key influence.pad_to: window {tokens.shape[1]} exceeds the model's "
                                f"max_positions {model.embed_positions.max_positions}")
        if getattr(model.args, "token_dropout", False):  # model_override.py:139-145
            x = _token_dropout(model, x, tokens, padding_mask)
        x = x + model.embed_positions(tokens)  # model_override.py:147
        if model.emb_layer_norm_before:
            x = model.emb_layer_norm_before(x)
    elif isinstance(model, ESM2):
        if model.token_dropout:  # esm2.py ESM2.forward
            x = _token_dropout(model, x, tokens, padding_mask)
    else:
        raise BiopruneError(f"paper mode: unsupported model class {type(model).__name__} (ESM2 or ESM-1b)")
    x = x * (1 - padding_mask.unsqueeze(-1).type_as(x))  # model_override.py:152-153
    x = x.transpose(0, 1)  # (B, T, E) -> (T, B, E)
    for layer in model.layers:  # model_override.py:166-170: padding_mask = None
        x, _ = layer(x, self_attn_padding_mask=None, need_head_weights=False)
    x = model.emb_layer_norm_after(x).transpose(0, 1)
    return model.lm_head(x)


def paper_batch_losses(model: torch.nn.Module, ids: list[str], seqs: list[str], molecule: str, cfg,
                       device: torch.device) -> torch.Tensor:
    """Per-sample official losses (B,), graph kept: CrossEntropyLoss mean over all `cfg.pad_to or 1024`
    window positions, target = input (pads, <cls>, <eos> counted), fp32 with autocast off.

    `ids` is unused (no masking); it keeps the signature of sketches.batch_losses.
    """
    del ids
    window = int(getattr(cfg, "pad_to", 0) or PAPER_WINDOW)
    tokens = paper_tokens(seqs, molecule, window).to(device)
    with torch.autocast(device.type, enabled=False):
        logits = paper_logits(model, tokens).float()
    ce = F.cross_entropy(logits.transpose(1, 2), tokens, reduction="none")  # (B, T)
    return ce.mean(1)


def paper_deviations(cfg) -> list[str]:
    """`influence.<key>=value (official value)` for every setting that differs from PAPER_SETTINGS."""
    out = []
    for key, want in PAPER_SETTINGS.items():
        if not hasattr(cfg, key):
            continue
        have = getattr(cfg, key)
        if key == "pad_to" and not have:
            continue  # 0 means the official 1024 in paper mode
        if have != want:
            out.append(f"influence.{key}={have!r} (official {want!r})")
    return out
