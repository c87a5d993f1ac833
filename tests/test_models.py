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


def rnafm_file(path, layers=1, dim=16, heads=2):
    """A small model in the released RNA-FM layout: ESM-1b (roberta_large) on RNA-FM's alphabet,
    args with `encoder_` names and `encoder.sentence_encoder.` state prefixes."""
    from argparse import Namespace

    from esm.model.esm1 import ProteinBertModel

    from bioprune.models import rnafm_alphabet

    args = Namespace(arch="roberta_large", layers=layers, embed_dim=dim, ffn_embed_dim=2 * dim,
                     attention_heads=heads, max_positions=300)
    torch.manual_seed(0)
    m = ProteinBertModel(args, rnafm_alphabet()).eval()
    saved = Namespace(arch="roberta_large", encoder_layers=layers, encoder_embed_dim=dim,
                      encoder_ffn_embed_dim=2 * dim, encoder_attention_heads=heads, max_positions=300)
    torch.save({"args": saved, "model": {f"encoder.sentence_encoder.{k}": v for k, v in m.state_dict().items()}}, path)
    return m


def test_rnafm_checkpoint_maps_onto_bioprune_alphabet(tmp_path):
    from bioprune.alphabets import get_alphabet
    from bioprune.models import rnafm_alphabet

    ref = rnafm_file(tmp_path / "RNA-FM_tiny.pth")
    model, alphabet = bioprune.load_model(tmp_path / "RNA-FM_tiny.pth", molecule="rna")
    assert alphabet is get_alphabet("rna")
    seq = "GGACUUCGGUCCAN"
    src = rnafm_alphabet()
    t_src = torch.tensor([[src.cls_idx] + [src.get_idx(c) for c in seq] + [src.eos_idx]])
    t_our = torch.tensor([[alphabet.cls_idx] + [alphabet.get_idx(c) for c in seq] + [alphabet.eos_idx]])
    with torch.no_grad():
        a = ref(t_src, repr_layers=[1])
        b = model(t_our, repr_layers=[1])
    assert torch.allclose(a["representations"][1], b["representations"][1], atol=1e-5)
    # logits of the shared tokens are the same; RNA-FM's ambiguity-code logits are dropped
    cols = [(src.tok_to_idx[t], alphabet.tok_to_idx[t]) for t in ["A", "C", "G", "U", "N", "<eos>"]]
    assert torch.allclose(a["logits"][..., [c[0] for c in cols]], b["logits"][..., [c[1] for c in cols]], atol=1e-5)
    with pytest.raises(BiopruneError, match="corpus.molecule"):
        bioprune.load_model(tmp_path / "RNA-FM_tiny.pth", molecule="protein")


def test_rnafm_reference_finetunes_and_scores_all_linear(tmp_path):
    """The paper's post-hoc setting: RNA-FM checkpoint, fine-tuned one epoch on D_sub, then scored."""
    from bioprune.reference import build_reference
    from bioprune.scores import merge_scores, read_scores
    from bioprune.shards import IngestOptions, ingest

    from helpers import random_rna, write_fasta

    rnafm_file(tmp_path / "rnafm.pth")
    fa = write_fasta(tmp_path / "a.fa", random_rna(80, seed=4))
    shard = str(tmp_path / "1-of-1.h5")
    ingest(fa, [shard], str(tmp_path / "h.h5"), IngestOptions(holdout_fraction=0.01))
    params = {"checkpoint": str(tmp_path / "rnafm.pth"), "finetune": True, "subset_fraction": 0.5, "seed": 0,
              "layers": 1, "embed_dim": 16, "heads": 2, "lr": 1e-3, "batch_size": 8, "epochs": 1, "device": "cpu"}
    build_reference([shard], str(tmp_path / "ref.pt"), str(tmp_path / "c.h5"), params)
    model, _ = bioprune.load_model(tmp_path / "ref.pt", "rna")
    assert type(model).__name__ == "ProteinBertModel"
    for params_ in (["lm_head.dense.weight"], "all_linear"):
        cfg = InfluenceConfig(estimator="projected", params=params_, sketch_dim=64, subset_fraction=1.0)
        sketch_shard(shard, str(tmp_path / "ref.pt"), str(tmp_path / "s.h5"), cfg)
        merge_scores([str(tmp_path / "s.h5")], str(tmp_path / "sc.h5"), 1e-3)
        sc = read_scores(str(tmp_path / "sc.h5"))
        assert len(sc["id"]) > 70 and (sc["score"] > 0).all()
