"""RNA-FM parity: bioprune.models.load_model on a file in the released RNA-FM layout against the logits and
representations that PyPI `rna-fm`'s own model class and loader compute (fixture written by
workflow_scripts/make_rnafm_fixture.py; no network, no `rna-fm` needed)."""
from __future__ import annotations

from pathlib import Path

import torch

from bioprune.alphabets import get_alphabet
from bioprune.models import load_model

DATA = Path(__file__).resolve().parents[1] / "data"


def test_rnafm_logits_and_representations_match_rna_fm_package():
    exp = torch.load(DATA / "RNA-FM_tiny_expected.pt", weights_only=False)
    model, alphabet = load_model(DATA / "RNA-FM_tiny.pth", "rna")
    assert alphabet is get_alphabet("rna")
    src = exp["toks"]
    # the same batch on bioprune's alphabet (RNA-FM's ids -> ours by token)
    tokens = exp["tokens"].clone().apply_(lambda t: alphabet.get_idx(src[t]))
    with torch.no_grad():
        out = model(tokens, repr_layers=[0, 1, 2])
    valid = exp["tokens"] != src.index("<pad>")
    keep = [t for t in alphabet.all_toks if t in src]  # ACGUN and the specials; ambiguity codes are dropped
    ours = out["logits"][..., [alphabet.get_idx(t) for t in keep]]
    ref = exp["logits"][..., [src.index(t) for t in keep]]
    torch.testing.assert_close(ours[valid], ref[valid], atol=1e-4, rtol=1e-4)
    for layer in (0, 1, 2):
        torch.testing.assert_close(out["representations"][layer][valid], exp["representations"][layer][valid],
                                   atol=1e-4, rtol=1e-4)
