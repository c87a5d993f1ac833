"""Checkpoints: bioprune and fair-esm ESM-2 formats load as fair-esm objects; bad files give clear errors."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from esm.model.esm2 import ESM2

import bioprune
from bioprune.errors import BiopruneError
from bioprune.models import build_model, save_checkpoint
from bioprune.sketches import InfluenceConfig, sketch_shard


def test_roundtrip_bioprune_checkpoint(tmp_path):
    m = build_model("rna", 1, 16, 2, seed=3)
    save_checkpoint(tmp_path / "m.pt", m, "rna")
    model, alphabet = bioprune.load_model(tmp_path / "m.pt")
    assert isinstance(model, ESM2) and alphabet.get_idx("U") == 7
    for k, v in m.state_dict().items():
        assert torch.equal(v, model.state_dict()[k])


def fair_esm_file(path, layers=1, dim=32, heads=2):
    """A small model saved in the layout fair-esm's ESM-2 files use (cfg + prefixed state dict)."""
    m = build_model("protein", layers, dim, heads, seed=0)
    state = {f"encoder.sentence_encoder.{k}": v for k, v in m.state_dict().items()}
    cfg = SimpleNamespace(encoder_layers=layers, encoder_embed_dim=dim, encoder_attention_heads=heads, token_dropout=True)
    torch.save({"cfg": {"model": cfg}, "model": state}, path)
    return m


def test_fair_esm_esm2_file_loads_and_scores(tmp_path):
    ref = fair_esm_file(tmp_path / "esm2_t1_tiny.pt")
    model, alphabet = bioprune.load_model(tmp_path / "esm2_t1_tiny.pt", molecule="protein")
    toks = torch.tensor([[alphabet.cls_idx] + [alphabet.get_idx(c) for c in "MKTAYIAK"] + [alphabet.eos_idx]])
    with torch.no_grad():
        assert torch.allclose(model(toks)["logits"], ref.eval()(toks)["logits"])
    # the workflow can score a protein shard with it
    from bioprune.shards import IngestOptions, ingest

    fa = tmp_path / "p.fa"
    fa.write_text(">p1\nMKTAYIAKQRQISFVKSHFSRQ\n>p2\nMVLSPADKTNVKAAW\n")
    ingest(fa, [str(tmp_path / "1-of-1.h5")], str(tmp_path / "h.h5"), IngestOptions(molecule="protein", holdout_fraction=0.001))
    cfg = InfluenceConfig(estimator="projected", sketch_dim=16)
    sketch_shard(str(tmp_path / "1-of-1.h5"), str(tmp_path / "esm2_t1_tiny.pt"), str(tmp_path / "s.h5"), cfg)
    assert (tmp_path / "s.h5").exists()


def test_alphabet_mismatch_is_an_error(tmp_path):
    fair_esm_file(tmp_path / "prot.pt")
    with pytest.raises(BiopruneError, match="corpus.molecule"):
        bioprune.load_model(tmp_path / "prot.pt", molecule="rna")


@pytest.mark.parametrize("content", [b"not a checkpoint at all", b"\x89PNG\r\n\x1a\n" + bytes(100)])
def test_not_a_checkpoint(tmp_path, content):
    p = tmp_path / "bad.pt"
    p.write_bytes(content)
    with pytest.raises(BiopruneError, match=r"bad\.pt: not a PyTorch checkpoint"):
        bioprune.load_model(p)


def test_wrong_dict_is_not_a_model(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "x.pt")
    with pytest.raises(BiopruneError, match="unrecognised checkpoint"):
        bioprune.load_model(tmp_path / "x.pt")
