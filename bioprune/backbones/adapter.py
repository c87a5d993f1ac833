"""Run a foreign masked LM (Hugging Face, ESM-C) behind fair-esm ESM2's interface.

The rest of bioprune speaks token ids of its own alphabets (bioprune.alphabets) and calls
`model(tokens, repr_layers=[...])["logits"]`. `VocabAdapter` translates: each bioprune token is mapped
to the checkpoint's id for the same residue (the checkpoint's own per-residue vocabulary: the
sequence is tokenised as its tokenizer would, one token per residue, with its CLS/EOS/PAD/MASK ids),
and the checkpoint's logits are gathered back onto bioprune's alphabet. Checkpoint tokens with no
bioprune counterpart are not dropped from the softmax: their log-sum-exp goes to one spare bioprune
slot, so the masked-LM loss equals the checkpoint's own loss over its full vocabulary.
"""
from __future__ import annotations

import torch
from torch import nn

from bioprune.alphabets import get_alphabet
from bioprune.errors import BiopruneError

NEG = -1e4  # logit of bioprune tokens the checkpoint cannot predict (softmax weight exactly 0)
SPECIALS = {"<cls>": "cls", "<pad>": "pad", "<eos>": "eos", "<unk>": "unk", "<mask>": "mask"}


class VocabAdapter(nn.Module):
    """Base class: subclasses set `self.net` and implement `_run`.

    `vocab`: checkpoint token string -> id (single residues are looked up here); `specials`: ids of
    cls, pad, eos, unk, mask; `n_vocab`: the checkpoint's output size; `spec`: what `rebuild` needs.
    """

    kind = "foreign"
    param_aliases: dict[str, str] = {}

    def __init__(self, molecule: str, vocab: dict[str, int], specials: dict[str, int], n_vocab: int,
                 spec: dict, num_layers: int, embed_dim: int, source: str = "checkpoint"):
        super().__init__()
        self.molecule, self.spec, self.source = molecule, spec, source
        self.num_layers, self.embed_dim = num_layers, embed_dim
        a = get_alphabet(molecule)
        self.padding_idx = a.padding_idx
        to_ck = torch.full((len(a),), -1, dtype=torch.long)
        for tok, idx in a.tok_to_idx.items():
            ck = specials.get(SPECIALS[tok]) if tok in SPECIALS else vocab.get(tok) if len(tok) == 1 else None
            if ck is not None and 0 <= ck < n_vocab:
                to_ck[idx] = ck
        self.tokens_missing = {tok for tok, idx in a.tok_to_idx.items() if len(tok) == 1 and to_ck[idx] < 0}
        mapped = to_ck >= 0
        rest_cols = sorted(set(range(n_vocab)) - set(to_ck[mapped].tolist()))
        free = (~mapped).nonzero()[:, 0]
        rest_slot = int(free[0]) if len(rest_cols) and len(free) else -1
        self.register_buffer("to_ck", to_ck, persistent=False)
        self.register_buffer("gather_idx", to_ck.clamp_min(0), persistent=False)
        self.register_buffer("mapped", mapped, persistent=False)
        self.register_buffer("rest_cols", torch.tensor(rest_cols, dtype=torch.long), persistent=False)
        rest = torch.zeros(len(a), dtype=torch.bool)
        if rest_slot >= 0:
            rest[rest_slot] = True
        self.register_buffer("rest_slot", rest, persistent=False)

    # ------------------------------------------------------------------ what subclasses provide
    def _run(self, ids: torch.Tensor, attention_mask: torch.Tensor, hidden: bool, attentions: bool):
        """(logits over the checkpoint vocabulary, [hidden state per layer 0..L] or None, [attn per layer] or None)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ fair-esm ESM2 interface
    def arch(self) -> dict:
        """Stored in bioprune checkpoints (models.arch_of): enough to rebuild this model."""
        return {"type": "backbone", "kind": self.kind, "molecule": self.molecule, **self.spec}

    def missing_chars(self, seq: str) -> set[str]:
        """Characters of `seq` the checkpoint's vocabulary lacks."""
        return set(seq) & self.tokens_missing if self.tokens_missing else set()

    def to_checkpoint_ids(self, tokens: torch.Tensor) -> torch.Tensor:
        ids = self.to_ck[tokens]
        if (ids < 0).any():
            a = get_alphabet(self.molecule)
            bad = sorted({a.get_tok(int(t)) for t in tokens[ids < 0].unique()})
            raise BiopruneError(f"{self.source}: tokens {bad} are not in the checkpoint's vocabulary")
        return ids

    def forward(self, tokens: torch.Tensor, repr_layers=(), need_head_weights: bool = False,
                return_contacts: bool = False) -> dict:
        ids = self.to_checkpoint_ids(tokens)
        logits, hidden, att = self._run(ids, tokens != self.padding_idx, bool(repr_layers), need_head_weights)
        out = {"logits": self.to_alphabet(logits),
               "representations": {int(k): hidden[int(k)] for k in repr_layers} if repr_layers else {}}
        if need_head_weights:
            out["attentions"] = torch.stack(att, 1)
        return out

    def to_alphabet(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, T, V_checkpoint) -> (B, T, len(bioprune alphabet)), normaliser kept (module doc)."""
        g = logits.index_select(-1, self.gather_idx)
        fill = torch.full_like(g, NEG)
        if self.rest_cols.numel() and self.rest_slot.any():
            rest = torch.logsumexp(logits.index_select(-1, self.rest_cols).float(), -1, keepdim=True).to(g.dtype)
            fill = torch.where(self.rest_slot, rest.expand_as(g), fill)
        return torch.where(self.mapped, g, fill)


def check_vocab(model, ids: list[str], seqs: list[str], where: str) -> None:
    """Raise naming the first record with a character the model's vocabulary lacks (no-op for ESM models)."""
    if not isinstance(model, VocabAdapter) or not model.tokens_missing:
        return
    for i, s in zip(ids, seqs):
        bad = model.missing_chars(s)
        if bad:
            raise BiopruneError(
                f"{where}: record {i} has characters {''.join(sorted(bad))!r} that the vocabulary of "
                f"{model.source} (config key reference.checkpoint) lacks; drop such records "
                "(corpus.ambiguous: drop) or use a checkpoint whose tokenizer has them")
