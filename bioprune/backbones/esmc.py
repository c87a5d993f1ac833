"""ESM-C (EvolutionaryScale, 2024) natively: reads the released `esmc_300m_2024_12_v0.pth` /
`esmc_600m_2024_12_v0.pth` state dicts without the `esm` 3.x package (which clashes with fair-esm).

Architecture (module names = the released state dict's keys): token embedding (64 rows); blocks of
pre-norm attention (LayerNorm -> one Linear to q, k, v; LayerNorm over q and k, no bias; rotary
embedding, GPT-NeoX half rotation, base 10000; padding attends only to padding) and a pre-norm SwiGLU
feed-forward (hidden width round_up(8/3 d, 256)); both residual branches divided by sqrt(L / 36); a
final LayerNorm (no bias); the sequence head Linear -> GELU -> LayerNorm -> Linear to 64 logits.
Head count is not stored in the file: the released models use heads of width 64 (300M: 960 = 15 x 64,
600M: 1152 = 18 x 64), so heads = d_model / 64. Tokenizer: ESM-C's per-residue vocabulary (`VOCAB`).
`influence.params: [lm_head.dense.weight]` means `sequence_head.0.weight` (the head's first Linear).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from bioprune.errors import BiopruneError
from bioprune.backbones.adapter import VocabAdapter

# esm 3.x esm/utils/constants/esm3.py SEQUENCE_VOCAB (ids 0..32 of 64 embedding rows)
VOCAB = ["<cls>", "<pad>", "<eos>", "<unk>", *"LAGVSERTIDPKQNFYMHWCXBUZO.-|", "<mask>"]
HEAD_DIM = 64


def is_esmc_state(data) -> bool:
    return isinstance(data, dict) and "embed.weight" in data and any(
        isinstance(k, str) and k.startswith("transformer.blocks.") for k in data)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Attention(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads, self.d_head = heads, d // heads
        self.layernorm_qkv = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 3 * d, bias=False))
        self.out_proj = nn.Linear(d, d, bias=False)
        self.q_ln = nn.LayerNorm(d, bias=False)
        self.k_ln = nn.LayerNorm(d, bias=False)
        self.register_buffer("inv_freq", 1.0 / 10000.0 ** (torch.arange(0, self.d_head, 2).float() / self.d_head),
                             persistent=False)

    def _rotary(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, L, H, Dh)
        t = torch.arange(x.shape[1], device=x.device, dtype=torch.float32)
        freqs = torch.outer(t, self.inv_freq.to(x.device))
        cos = freqs.cos().to(x.dtype).repeat(1, 2)[:, None, :]
        sin = freqs.sin().to(x.dtype).repeat(1, 2)[:, None, :]
        return x * cos + _rotate_half(x) * sin

    def forward(self, x: torch.Tensor, mask: torch.Tensor, weights: bool = False):
        q, k, v = self.layernorm_qkv(x).chunk(3, dim=-1)
        q, k = self.q_ln(q).to(q.dtype), self.k_ln(k).to(q.dtype)
        B, L, _ = x.shape
        q, k, v = (t.unflatten(-1, (self.heads, self.d_head)) for t in (q, k, v))
        q, k = self._rotary(q), self._rotary(k)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, L, Dh)
        allowed = (mask[:, :, None] == mask[:, None, :])[:, None]  # padding attends only to padding
        if weights:
            s = (q @ k.transpose(-1, -2)) / math.sqrt(self.d_head)
            p = s.masked_fill(~allowed, float("-inf")).softmax(-1)
            ctx = p @ v
        else:
            p, ctx = None, F.scaled_dot_product_attention(q, k, v, allowed)
        return self.out_proj(ctx.transpose(1, 2).flatten(2)), p


class SwiGLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=-1)
        return F.silu(a) * b


class Block(nn.Module):
    def __init__(self, d: int, heads: int, n_layers: int):
        super().__init__()
        hidden = int(((8 / 3 * d) + 255) // 256 * 256)
        self.attn = Attention(d, heads)
        self.ffn = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 2 * hidden, bias=False), SwiGLU(),
                                 nn.Linear(hidden, d, bias=False))
        self.scale = math.sqrt(n_layers / 36)

    def forward(self, x, mask, weights=False):
        r, p = self.attn(x, mask, weights)
        x = x + r / self.scale
        return x + self.ffn(x) / self.scale, p


class Stack(nn.Module):
    def __init__(self, d: int, heads: int, n_layers: int):
        super().__init__()
        self.blocks = nn.ModuleList([Block(d, heads, n_layers) for _ in range(n_layers)])
        self.norm = nn.LayerNorm(d, bias=False)


class ESMCNet(nn.Module):
    """The ESM-C network; forward returns (logits (B, L, 64), [embedding, block 1 .. L-1 outputs, final norm], attn)."""

    def __init__(self, d_model: int, n_heads: int, n_layers: int, n_tokens: int = 64):
        super().__init__()
        self.embed = nn.Embedding(n_tokens, d_model)
        self.transformer = Stack(d_model, n_heads, n_layers)
        self.sequence_head = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.LayerNorm(d_model),
                                           nn.Linear(d_model, n_tokens))

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, weights: bool = False):
        x = self.embed(ids)
        hidden, att = [x], []
        for blk in self.transformer.blocks:
            x, p = blk(x, mask, weights)
            hidden.append(x)
            att.append(p)
        x = self.transformer.norm(x)
        hidden[-1] = x  # the last representation is after the final norm (as fair-esm ESM-2's)
        return self.sequence_head(x), hidden, att


class ESMC(VocabAdapter):
    """ESM-C behind the fair-esm interface (adapter.VocabAdapter)."""

    kind = "esmc"

    def __init__(self, d_model: int, n_heads: int, n_layers: int, n_tokens: int = 64, source: str = "checkpoint"):
        vocab = {t: i for i, t in enumerate(VOCAB)}
        specials = {r: vocab[f"<{r}>"] for r in ("cls", "pad", "eos", "unk", "mask")}
        spec = {"d_model": d_model, "n_heads": n_heads, "n_layers": n_layers, "n_tokens": n_tokens}
        super().__init__("protein", vocab, specials, n_tokens, spec, n_layers, d_model, source)
        self.net = ESMCNet(d_model, n_heads, n_layers, n_tokens)
        self.param_aliases = {"lm_head.dense.weight": "net.sequence_head.0.weight"}

    def _run(self, ids, attention_mask, hidden, attentions):
        return self.net(ids, attention_mask, attentions)


def load_esmc(state: dict, source: str = "checkpoint", n_heads: int | None = None) -> ESMC:
    """An ESMC from a released-format state dict (module doc), in eval mode."""
    n_tokens, d = state["embed.weight"].shape
    n_layers = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("transformer.blocks."))
    heads = n_heads or max(1, d // HEAD_DIM)
    if d % heads:
        raise BiopruneError(f"{source}: ESM-C width {d} is not a multiple of the head width {HEAD_DIM}")
    model = ESMC(d, heads, n_layers, n_tokens, source)
    try:
        model.net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise BiopruneError(f"{source}: not an ESM-C state dict of the released layout: {str(e)[:300]}") from None
    return model.eval()


def rebuild_esmc(arch: dict, source: str) -> ESMC:
    return ESMC(arch["d_model"], arch["n_heads"], arch["n_layers"], arch["n_tokens"], source).eval()
