"""Tokenise, pad and mask batches: the one place that defines MLM masking (15%, 80/10/10).

Two scoring masks, both drawn per row from a generator seeded by (sequence id, seed) over the row's
own residues only, so a row's mask does not depend on its batch, its position or the padding:
- `mask_by_id`: one random 15% mask (at least one position), as in training;
- `coverage_mask_by_id`: K complementary masks: a seeded permutation of the row's maskable positions
  cut into K near-equal consecutive groups (sizes differ by at most one, the first m mod K groups get
  the extra position), so over draws 0..K-1 every residue is masked exactly once. A row with m < K
  residues has empty draws m..K-1 (targets all -100). Each masked position is replaced 80/10/10 by
  <mask> / a random standard residue / itself, from the same generator.
"""
from __future__ import annotations

import numpy as np
import torch

from bioprune.alphabets import encode, get_alphabet, standard_token_ids
from bioprune.hashing import int_hash

MASK_PROB = 0.15
IGNORE = -100


def pad_batch(seqs: list[str], molecule: str, pad_to: int | None = None) -> torch.Tensor:
    """(B, T) token ids with BOS/EOS, padded with the alphabet's pad id to the longest (or `pad_to`)."""
    a = get_alphabet(molecule)
    toks = [encode(s, molecule) for s in seqs]
    T = max(len(t) for t in toks) if pad_to is None else max(pad_to, max(len(t) for t in toks))
    out = np.full((len(toks), T), a.padding_idx, dtype=np.int64)
    for i, t in enumerate(toks):
        out[i, : len(t)] = t
    return torch.from_numpy(out)


def maskable(tokens: torch.Tensor, molecule: str) -> torch.Tensor:
    """Boolean (B, T): positions that hold a residue (not BOS, EOS or pad)."""
    a = get_alphabet(molecule)
    return (tokens != a.padding_idx) & (tokens != a.cls_idx) & (tokens != a.eos_idx)


def _apply_mask(tokens: torch.Tensor, chosen: torch.Tensor, u: torch.Tensor, rand_tok: torch.Tensor,
                molecule: str) -> tuple[torch.Tensor, torch.Tensor]:
    a = get_alphabet(molecule)
    targets = torch.where(chosen, tokens, torch.full_like(tokens, IGNORE))
    inputs = torch.where(chosen & (u < 0.8), torch.full_like(tokens, a.mask_idx), tokens)  # where: no sync
    inputs = torch.where(chosen & (u >= 0.8) & (u < 0.9), rand_tok, inputs)
    return inputs, targets


def mask_with_generator(tokens: torch.Tensor, molecule: str, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """MLM-mask a batch with one generator (training): returns (inputs, targets with -100 elsewhere).

    Runs on the tokens' device (the generator must live there) without a host-device sync.
    """
    dev = tokens.device
    can = maskable(tokens, molecule)
    p = torch.rand(tokens.shape, generator=gen, device=dev)
    chosen = can & (p < MASK_PROB)
    # every sequence gets at least one masked position (its first maskable minimum of p), so its loss is defined
    none = ~chosen.any(1, keepdim=True)
    first = torch.where(can, p, torch.full_like(p, 2.0)).argmin(1, keepdim=True)
    chosen = chosen | (none & torch.zeros_like(chosen).scatter_(1, first, True))
    u = torch.rand(tokens.shape, generator=gen, device=dev)
    std = torch.tensor(standard_token_ids(molecule), device=dev)
    rand_tok = std[torch.randint(len(std), tokens.shape, generator=gen, device=dev)]
    return _apply_mask(tokens, chosen, u, rand_tok, molecule)


def mask_by_id(tokens: torch.Tensor, ids: list[str], molecule: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """MLM-mask each row with a generator seeded by (sequence id, seed): the same mask in any batch.

    Random draws cover only the row's own tokens, so padding to another batch length changes nothing.
    """
    a = get_alphabet(molecule)
    inputs = tokens.clone()
    targets = torch.full_like(tokens, IGNORE)
    for i, seq_id in enumerate(ids):
        n = int((tokens[i] != a.padding_idx).sum())
        g = torch.Generator().manual_seed(int_hash(seq_id, "mlm", seed))
        inp, tgt = mask_with_generator(tokens[i : i + 1, :n], molecule, g)
        inputs[i, :n] = inp[0]
        targets[i, :n] = tgt[0]
    return inputs, targets


def coverage_draw_of(n_residues: int, seq_id: str, seed: int, k: int) -> torch.Tensor:
    """Draw index (0..k-1) in which each of a row's `n_residues` maskable positions is masked."""
    g = torch.Generator().manual_seed(int_hash(seq_id, "mlm_coverage", seed))
    perm = torch.randperm(n_residues, generator=g)
    draw = torch.empty(n_residues, dtype=torch.long)
    for j, part in enumerate(torch.tensor_split(perm, k)):
        draw[part] = j
    return draw


def coverage_masks_by_id(tokens: torch.Tensor, ids: list[str], molecule: str, seed: int,
                         k: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """All K = `k` complementary coverage masks of a batch (see module doc): [(inputs, targets)] per draw."""
    a = get_alphabet(molecule)
    can = maskable(tokens, molecule)
    std = torch.tensor(standard_token_ids(molecule))
    out = [(tokens.clone(), torch.full_like(tokens, IGNORE)) for _ in range(k)]
    for i, seq_id in enumerate(ids):
        pos = can[i].nonzero()[:, 0]
        m = len(pos)
        which = coverage_draw_of(m, seq_id, seed, k)
        g = torch.Generator().manual_seed(int_hash(seq_id, "mlm_coverage_replace", seed))
        u = torch.rand(m, generator=g)
        rand_tok = std[torch.randint(len(std), (m,), generator=g)]
        tok = tokens[i, pos]
        new = torch.where(u < 0.8, torch.full_like(pos, a.mask_idx), torch.where(u < 0.9, rand_tok, tok))
        for j, (inputs, targets) in enumerate(out):
            sel = which == j
            targets[i, pos[sel]] = tok[sel]
            inputs[i, pos[sel]] = new[sel]
    return out


def coverage_mask_by_id(tokens: torch.Tensor, ids: list[str], molecule: str, seed: int, k: int,
                        draw: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw `draw` (0..k-1) of the K complementary coverage masks: (inputs, targets)."""
    if not 0 <= draw < k:
        raise ValueError(f"coverage mask draw {draw} outside 0..{k - 1}")
    return coverage_masks_by_id(tokens, ids, molecule, seed, k)[draw]


def reconstruction_targets(tokens: torch.Tensor, molecule: str, count_pad: bool = False) -> torch.Tensor:
    """Targets = input for every non-pad token (BOS/EOS included); with count_pad, pads count too."""
    if count_pad:
        return tokens.clone()
    a = get_alphabet(molecule)
    return torch.where(tokens == a.padding_idx, torch.full_like(tokens, IGNORE), tokens)


REDUCTIONS = ("mean", "sum")


def per_sample_ce(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Per-sample cross-entropy over positions whose target is not -100, shape (B,).

    reduction "mean": average over those positions (0 for a row with none); "sum": their sum.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction {reduction!r} is not one of {REDUCTIONS}")
    ce = torch.nn.functional.cross_entropy(
        logits.float().transpose(1, 2), targets.clamp_min(0), reduction="none"
    )
    valid = (targets != IGNORE).to(ce.dtype)
    total = (ce * valid).sum(1)
    return total if reduction == "sum" else total / valid.sum(1).clamp_min(1.0)
