"""Checkpoints: bioprune and fair-esm ESM-2 formats load as fair-esm objects; bad files give clear errors."""
from __future__ import annotations

from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import torch
from esm.model.esm2 import ESM2

import bioprune
from bioprune.errors import BiopruneError
from bioprune.models import build_model, model_checksum, save_checkpoint
from bioprune.influence.sketches import InfluenceConfig, sketch_shard


def test_roundtrip_bioprune_checkpoint(tmp_path):
    m = build_model("rna", 1, 16, 2, seed=3)
    save_checkpoint(tmp_path / "m.pt", m, "rna")
    model, alphabet = bioprune.load_model(tmp_path / "m.pt")
    assert isinstance(model, ESM2) and alphabet.get_idx("U") == 7
    for k, v in m.state_dict().items():
        assert torch.equal(v, model.state_dict()[k])


def test_same_model_gives_the_same_checkpoint_bytes(tmp_path):
    """The temp file's random name must not reach the archive: same weights, same bytes."""
    m = build_model("rna", 1, 16, 2, seed=3)
    save_checkpoint(tmp_path / "a.pt", m, "rna", meta={"seed": 3})
    save_checkpoint(tmp_path / "b.pt", m, "rna", meta={"seed": 3})
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()


def fair_esm_file(path, layers=1, dim=32, heads=2):
    """A small model saved in the layout fair-esm's ESM-2 files use (cfg + prefixed state dict)."""
    m = build_model("protein", layers, dim, heads, seed=0)
    state = {f"encoder.sentence_encoder.{k}": v for k, v in m.state_dict().items()}
    cfg = SimpleNamespace(encoder_layers=layers, encoder_embed_dim=dim, encoder_attention_heads=heads, token_dropout=True)
    torch.save({"cfg": {"model": cfg}, "model": state}, path)
    return m


def sketch_of(path):
    with h5py.File(path) as f:
        return list(f["id"].asstr()), f["sketch"][()], str(f.attrs["model_sha256"])


def test_fair_esm_esm2_file_loads_and_scores(tmp_path):
    ref = fair_esm_file(tmp_path / "esm2_t1_tiny.pt")
    model, alphabet = bioprune.load_model(tmp_path / "esm2_t1_tiny.pt", molecule="protein")
    toks = torch.tensor([[alphabet.cls_idx] + [alphabet.get_idx(c) for c in "MKTAYIAK"] + [alphabet.eos_idx]])
    with torch.no_grad():
        assert torch.allclose(model(toks)["logits"], ref.eval()(toks)["logits"])
    # the workflow scores a protein shard with it exactly as with the same weights in bioprune's format,
    # and differently from other weights
    from bioprune.ingest import IngestOptions, ingest, read_shard

    fa = tmp_path / "p.fa"
    fa.write_text(">z1\nMKTAYIAKQRQISFVKSHFSRQ\n>a2\nMVLSPADKTNVKAAW\n>m3\nMADEEKLPPGWEKRMSRSSG\n")
    shard = str(tmp_path / "1-of-1.h5")
    ingest(fa, [shard], str(tmp_path / "h.h5"), IngestOptions(molecule="protein", holdout_fraction=0.001))
    save_checkpoint(tmp_path / "same.pt", ref, "protein")
    save_checkpoint(tmp_path / "other.pt", build_model("protein", 1, 32, 2, seed=1), "protein")
    cfg = InfluenceConfig(estimator="projected", sketch_dim=16)
    got = {}
    for name in ("esm2_t1_tiny.pt", "same.pt", "other.pt"):
        sketch_shard(shard, str(tmp_path / name), str(tmp_path / f"s_{name}.h5"), cfg)
        got[name] = sketch_of(tmp_path / f"s_{name}.h5")
    ids, sk, sha = got["esm2_t1_tiny.pt"]
    assert ids == read_shard(shard)[0] == ["z1", "a2", "m3"] and sk.shape == (3, 16)
    assert np.isfinite(sk).all() and (np.abs(sk).sum(1) > 0).all()
    assert sha == model_checksum(ref) == got["same.pt"][2]
    np.testing.assert_array_equal(sk, got["same.pt"][1])
    assert sha != got["other.pt"][2] and not np.allclose(sk, got["other.pt"][1])


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


def esm1b_file(path, alphabet, layers=1, dim=16, heads=2):
    """A small ESM-1b (roberta_large) model saved in the released layout: args with `encoder_` names and
    `encoder.sentence_encoder.` state prefixes (RNA-FM's files, with RNA-FM's alphabet; fair-esm's ESM-1b)."""
    from argparse import Namespace

    from esm.model.esm1 import ProteinBertModel

    args = Namespace(arch="roberta_large", layers=layers, embed_dim=dim, ffn_embed_dim=2 * dim,
                     attention_heads=heads, max_positions=300)
    torch.manual_seed(0)
    m = ProteinBertModel(args, alphabet).eval()
    saved = Namespace(arch="roberta_large", encoder_layers=layers, encoder_embed_dim=dim,
                      encoder_ffn_embed_dim=2 * dim, encoder_attention_heads=heads, max_positions=300)
    torch.save({"args": saved, "model": {f"encoder.sentence_encoder.{k}": v for k, v in m.state_dict().items()}}, path)
    return m


def rnafm_file(path, layers=1, dim=16, heads=2):
    """A small model in the released RNA-FM layout: ESM-1b on RNA-FM's alphabet."""
    from bioprune.models import rnafm_alphabet

    return esm1b_file(path, rnafm_alphabet(), layers, dim, heads)


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


def random_protein(n, seed=0, lo=20, hi=60):
    import random

    rng = random.Random(seed)
    return [(f"p{i}", "".join(rng.choice("ACDEFGHIKLMNPQRSTVWY") for _ in range(rng.randint(lo, hi)))) for i in range(n)]


def finetuned_reference(tmp_path, molecule, finetune=True):
    """Ingest 80 random sequences, write an ESM-1b-layout source checkpoint, build the reference from it."""
    from bioprune.alphabets import get_alphabet
    from bioprune.models import rnafm_alphabet
    from bioprune.influence.reference import ReferenceConfig, build_reference
    from bioprune.ingest import IngestOptions, ingest

    from helpers import random_rna, write_fasta

    src = tmp_path / "src.pth"
    esm1b_file(src, rnafm_alphabet() if molecule == "rna" else get_alphabet("protein"))
    recs = random_rna(80, seed=4) if molecule == "rna" else random_protein(80, seed=4)
    fa = write_fasta(tmp_path / "a.fa", recs)
    shard = str(tmp_path / "1-of-1.h5")
    ingest(fa, [shard], str(tmp_path / "h.h5"), IngestOptions(molecule=molecule, holdout_fraction=0.01))
    params = {"checkpoint": str(src), "finetune": finetune, "subset_fraction": 0.5, "seed": 0,
              "layers": 1, "embed_dim": 16, "heads": 2, "lr": 1e-3, "batch_size": 8, "epochs": 1, "device": "cpu"}
    info = build_reference([shard], str(tmp_path / "ref.pt"), str(tmp_path / "c.h5"), ReferenceConfig.from_params(params))
    return shard, src, info


@pytest.mark.parametrize("molecule", ["rna", "protein"])
def test_esm1b_reference_finetune_changes_the_weights(tmp_path, molecule):
    """The paper's post-hoc setting (RNA-FM / ESM-1b checkpoint fine-tuned one epoch on D_sub): the
    reference keeps the architecture, moves every trained tensor a little (a fine-tune, not a re-init)
    and records the run; with finetune off it is the source's weights unchanged."""
    from bioprune.influence.reference import dsub_sequences

    shard, src, info = finetuned_reference(tmp_path, molecule)
    source, _ = bioprune.load_model(src, molecule)
    model, _ = bioprune.load_model(tmp_path / "ref.pt", molecule)
    assert type(model).__name__ == "ProteinBertModel"
    a, b = source.state_dict(), model.state_dict()
    assert a.keys() == b.keys()
    trained = [k for k in a if "contact_head" not in k]
    changed = [k for k in trained if not torch.equal(a[k], b[k])]
    assert changed == trained, f"not fine-tuned: {sorted(set(trained) - set(changed))[:5]}"
    for k in ("lm_head.dense.weight", "layers.0.self_attn.q_proj.weight", "embed_tokens.weight"):
        step = (a[k] - b[k]).abs().max().item()
        assert 0 < step < 0.01, f"{k} moved {step}: not a small fine-tune step from the source"
    n_dsub = len(dsub_sequences([shard], 0.5, 0)[1])
    steps = -(-n_dsub // 8)
    assert info["steps"] == steps
    meta = torch.load(tmp_path / "ref.pt", weights_only=False)["meta"]
    assert meta["finetuned"] is True and meta["dsub_size"] == n_dsub and meta["source"] == str(src)
    with h5py.File(tmp_path / "c.h5") as f:
        assert list(f["step"][()]) == list(range(steps)) and np.isfinite(f["loss"][()]).all()
        assert max(f["lr"][()]) <= 1e-4  # fine-tuning caps the learning rate

    (tmp_path / "off").mkdir()
    _, _, info = finetuned_reference(tmp_path / "off", molecule, finetune=False)
    kept, _ = bioprune.load_model(tmp_path / "off" / "ref.pt", molecule)
    assert all(torch.equal(v, kept.state_dict()[k]) for k, v in a.items()) and info["finetuned"] is False


def test_rnafm_reference_scores_all_linear(tmp_path):
    """Scores of a fine-tuned RNA-FM reference: one finite score per shard sequence, and the
    parameter set scored matters (lm_head only vs all linear layers)."""
    from bioprune.influence.scores import merge_scores, read_scores
    from bioprune.ingest import read_shard

    shard, _, _ = finetuned_reference(tmp_path, "rna")
    got = {}
    for name, params_ in (("head", ["lm_head.dense.weight"]), ("all", "all_linear")):
        cfg = InfluenceConfig(estimator="projected", params=params_, sketch_dim=64, subset_fraction=1.0)
        sketch_shard(shard, str(tmp_path / "ref.pt"), str(tmp_path / f"s_{name}.h5"), cfg)
        merge_scores([str(tmp_path / f"s_{name}.h5")], str(tmp_path / f"sc_{name}.h5"), 1e-3)
        got[name] = read_scores(str(tmp_path / f"sc_{name}.h5"))
        with h5py.File(tmp_path / f"s_{name}.h5") as f:
            n_params = len(f.attrs["params"])
        assert (n_params == 1) == (name == "head") and n_params >= 1
    for sc in got.values():
        assert sorted(sc["id"]) == sorted(read_shard(shard)[0])
        assert np.isfinite(sc["score"]).all() and np.ptp(sc["score"]) > 0
    pos = {i: k for k, i in enumerate(got["all"]["id"])}
    order = [pos[i] for i in got["head"]["id"]]
    assert not np.allclose(got["head"]["score"], np.asarray(got["all"]["score"])[order])
