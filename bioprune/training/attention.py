"""Fused attention for fair-esm models without changing their format.

`use_sdpa(model)` switches every fair-esm `MultiheadAttention` of a model (ESM-2 with rotary
embeddings, ESM-1b / RNA-FM with learned positions) to `SDPAMultiheadAttention`, a subclass whose
forward calls `torch.nn.functional.scaled_dot_product_attention` (flash / memory-efficient kernels
on CUDA). Only the class of each module changes: parameters, buffers and state-dict keys are the
same, so checkpoints stay loadable by fair-esm and `bioprune.load_model`. Whenever attention weights
are requested (`need_head_weights`, i.e. contacts or attention maps) or a fairseq feature the fused
path does not cover is in use (incremental state, static kv, bias_kv, zero attention, before_softmax),
the stock forward runs. fair-esm's layers always pass `need_weights=True` (and `self_attention=False`, with key = value = query) but only ESM2/ESM-1b with
`need_head_weights` read the weights, so the fused path returns `None` for them.

Key padding is exact: padded keys get -inf before the softmax as in the stock code; rotary
embeddings are applied to q and k before the product as in the stock code (the 1/sqrt(d) scaling
commutes with the rotation).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from esm.multihead_attention import MultiheadAttention


class SDPAMultiheadAttention(MultiheadAttention):
    """fair-esm MultiheadAttention whose self-attention runs through scaled_dot_product_attention."""

    def forward(self, query, key, value, key_padding_mask=None, incremental_state=None, need_weights=True,
                static_kv=False, attn_mask=None, before_softmax=False, need_head_weights=False):
        if (need_head_weights or before_softmax or incremental_state is not None or static_kv
                or self.bias_k is not None or self.add_zero_attn or key is None or value is None):
            return super().forward(query, key, value, key_padding_mask, incremental_state, need_weights,
                                   static_kv, attn_mask, before_softmax, need_head_weights)
        tgt_len, bsz, embed_dim = query.size()
        h, d = self.num_heads, self.head_dim

        def heads(x: torch.Tensor) -> torch.Tensor:  # (T, B, E) -> (B, H, T, D)
            return x.view(x.size(0), bsz, h, d).permute(1, 2, 0, 3)

        q, k, v = heads(self.q_proj(query)), heads(self.k_proj(key)), heads(self.v_proj(value))
        if self.rot_emb:  # fair-esm's rotary tables are fp32: bring q, k back to v's (autocast) dtype
            q, k = self.rot_emb(q, k)
            q, k = q.to(v.dtype), k.to(v.dtype)
        mask = None
        if key_padding_mask is not None and key_padding_mask.dim() != 0:
            mask = ~key_padding_mask.to(torch.bool)[:, None, None, :]  # True = attend
        if attn_mask is not None:  # fairseq: additive float mask (T, S)
            add = attn_mask.to(q.dtype)
            mask = add if mask is None else add.masked_fill(~mask, float("-inf"))
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                              dropout_p=self.dropout if self.training else 0.0,
                                              scale=self.scaling)
        attn = attn.permute(2, 0, 1, 3).reshape(tgt_len, bsz, embed_dim)
        return self.out_proj(attn), None


def use_sdpa(model: torch.nn.Module, enabled: bool = True) -> torch.nn.Module:
    """Switch `model`'s fair-esm attention modules to the fused path (or back, `enabled=False`); in place."""
    for m in model.modules():
        if isinstance(m, MultiheadAttention):
            m.__class__ = SDPAMultiheadAttention if enabled else MultiheadAttention
    return model


def uses_sdpa(model: torch.nn.Module) -> bool:
    """True when every attention module of `model` runs the fused path."""
    mods = [m for m in model.modules() if isinstance(m, MultiheadAttention)]
    return bool(mods) and all(type(m) is SDPAMultiheadAttention for m in mods)
