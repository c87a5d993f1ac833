"""Hugging Face masked LMs as reference models (bioprune.backbones.hf): tokenisation, logits, diag-Fisher
parity against the brute-force reference of test_influence, and reference -> curvature -> sketch -> scores."""
from __future__ import annotations

import numpy as np
import pytest
import torch

try:  # an optional extra: the tests skip (a failure under CI=true, see conftest.py), the module still collects
    import transformers
except ImportError:
    transformers = None
pytestmark = pytest.mark.skipif(transformers is None, reason="transformers not installed (pip install 'bioprune[hf]')")

from bioprune.errors import BiopruneError  # noqa: E402
from bioprune.models import load_model, save_checkpoint  # noqa: E402
from bioprune.influence.scores import merge_scores, read_scores  # noqa: E402
from bioprune.ingest import IngestOptions, ingest  # noqa: E402
from bioprune.influence.sketches import InfluenceConfig, fit_diag_fisher, resolve_params, sketch_shard  # noqa: E402
from helpers import write_fasta  # noqa: E402
from test_influence import _aligned, _score_diag, pool, reference_grads  # noqa: E402,F401

# an RNA vocabulary in another order than bioprune's, with tokens bioprune lacks (T, -, <null>)
RNA_VOCAB = ["<pad>", "<mask>", "<cls>", "<eos>", "<unk>", "U", "G", "T", "C", "A", "N", "-", "<null>"]
PROTEIN_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list("ACDEFGHIKLMNPQRSTVWY")


def hf_esm_dir(path, vocab=RNA_VOCAB, seed=0):
    """A small random EsmForMaskedLM (rotary, token dropout: ESM-2 settings) with its EsmTokenizer."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = transformers.EsmTokenizer(vocab_file=str(path / "vocab.txt"))
    cfg = transformers.EsmConfig(vocab_size=len(vocab), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=16, position_embedding_type="rotary", token_dropout=True,
                                 mask_token_id=vocab.index("<mask>"), pad_token_id=vocab.index("<pad>"),
                                 max_position_embeddings=128, emb_layer_norm_before=False)
    torch.manual_seed(seed)
    net = transformers.EsmForMaskedLM(cfg)
    with torch.no_grad():  # HF initialises biases/norms to constants: randomise so every weight matters
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    net.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def hf_bert_dir(path, cls_name="BertForMaskedLM"):
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(PROTEIN_VOCAB) + "\n")
    kw = dict(vocab_size=len(PROTEIN_VOCAB), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
              intermediate_size=16, max_position_embeddings=130, pad_token_id=0)
    cfg = (transformers.BertConfig if cls_name == "BertForMaskedLM" else transformers.RobertaConfig)(**kw)
    torch.manual_seed(0)
    getattr(transformers, cls_name)(cfg).save_pretrained(path)
    return path


def test_logits_are_the_checkpoints_own_over_its_tokenisation(tmp_path):
    """Our token ids -> the tokenizer's ids; log-probabilities equal HF's over its full vocabulary."""
    d = hf_esm_dir(tmp_path / "esm")
    model, alphabet = load_model(d, "rna")
    tok = transformers.AutoTokenizer.from_pretrained(str(d))
    net = transformers.EsmForMaskedLM.from_pretrained(str(d)).eval()
    seq = "GGACUUCGNA"
    ids = torch.tensor([tok(seq)["input_ids"]])
    ours = torch.tensor([[alphabet.cls_idx] + [alphabet.get_idx(c) for c in seq] + [alphabet.eos_idx]])
    assert model.to_checkpoint_ids(ours).tolist() == ids.tolist()
    with torch.no_grad():
        ref = torch.log_softmax(net(input_ids=ids).logits, -1)
        got = torch.log_softmax(model(ours, repr_layers=[1])["logits"], -1)
    cols = [alphabet.get_idx(c) for c in "ACGUN"]
    want = ref[..., [tok.convert_tokens_to_ids(c) for c in "ACGUN"]]
    torch.testing.assert_close(got[..., cols], want, atol=1e-5, rtol=1e-5)
    # every probability mass HF gives is somewhere in ours: the tokens bioprune lacks are lumped, not dropped
    torch.testing.assert_close(got.exp().sum(-1), torch.ones(1, len(seq) + 2), atol=1e-5, rtol=0)
    assert model.num_layers == 1 and model(ours, repr_layers=[1])["representations"][1].shape == (1, len(seq) + 2, 8)


@pytest.mark.parametrize("loss,params", [("mlm", ["lm_head.dense.weight"]), ("reconstruction", "all_linear")])
def test_diag_fisher_matches_brute_force_on_hf_esm(pool, tmp_path, loss, params):
    _, shards, _ = pool
    d = str(hf_esm_dir(tmp_path / "esm"))
    cfg = InfluenceConfig(estimator="diag_fisher", params=params, loss=loss, subset_fraction=0.5, batch_size=6, seed=2)
    ids, g, ref_loss, sub = reference_grads(d, shards, cfg)
    fisher = (g[torch.from_numpy(sub)] ** 2).mean(0)
    cfg.damping = float(fisher.median())
    got = _score_diag(tmp_path, shards, d, cfg)
    np.testing.assert_allclose(_aligned(got, ids, "score"), ((g**2) / (fisher + cfg.damping)).sum(1).numpy(), rtol=2e-4)
    np.testing.assert_allclose(_aligned(got, ids, "loss"), ref_loss, rtol=1e-5)
    model, _ = load_model(d)
    names = resolve_params(model, params)
    assert got["attrs"]["params"].tolist() == names
    if params != "all_linear":
        assert names == ["net.lm_head.dense.weight"]
    else:  # q, k, v, attention output, intermediate, output, lm_head.dense; not the tied decoder nor contact head
        assert len(names) == 7 and not any("decoder" in n or "contact" in n for n in names)


def test_hf_reference_finetunes_and_scores(tmp_path):
    """reference (fine-tune from the HF directory) -> curvature -> sketch -> scores; the written reference
    is a bioprune checkpoint that rebuilds the same HF architecture."""
    from bioprune.influence.reference import ReferenceConfig, build_reference

    d = hf_esm_dir(tmp_path / "esm")
    recs = [(f"r{i}", "".join(np.random.default_rng(i).choice(list("ACGU"), 12 + i))) for i in range(24)]
    shards = [str(tmp_path / "1-of-1.h5")]
    ingest(write_fasta(tmp_path / "p.fa", recs), shards, str(tmp_path / "ho.h5"), IngestOptions(holdout_fraction=0.001))
    params = dict(subset_fraction=0.5, seed=0, layers=1, embed_dim=8, heads=2, lr=1e-3, batch_size=8, epochs=1,
                  device="cpu", checkpoint=str(d), finetune=True)
    build_reference(shards, str(tmp_path / "ref.pt"), str(tmp_path / "curves.h5"), ReferenceConfig.from_params(params))
    before, _ = load_model(d)
    after, _ = load_model(tmp_path / "ref.pt", "rna")
    assert type(after).__name__ == "HFMaskedLM"
    assert not torch.equal(before.net.lm_head.dense.weight, after.net.lm_head.dense.weight)  # it was trained
    cfg = InfluenceConfig(subset_fraction=0.5, batch_size=8)
    sc = _score_diag(tmp_path, shards, str(tmp_path / "ref.pt"), cfg)
    assert np.isfinite(sc["score"]).all() and len(sc["score"]) == len(sc["id"]) > 20
    # mean D_sub score = d (lm_head.dense has 8 x 8 weights): the diag-Fisher identity holds for HF too
    assert sc["score"][sc["in_subset"]].mean() == pytest.approx(64, rel=1e-3)


def test_characters_the_tokenizer_lacks_name_the_record(tmp_path):
    d = hf_esm_dir(tmp_path / "esm", vocab=[t for t in RNA_VOCAB if t != "N"])
    shards = [str(tmp_path / "1-of-1.h5")]
    ingest(write_fasta(tmp_path / "p.fa", [("ok", "ACGUACGU"), ("hasN", "ACGNNACG")]), shards,
           str(tmp_path / "ho.h5"), IngestOptions(holdout_fraction=0.001))
    with pytest.raises(BiopruneError, match=r"record hasN has characters 'N'.*reference.checkpoint"):
        fit_diag_fisher(shards, str(d), str(tmp_path / "c.h5"), InfluenceConfig(subset_fraction=1.0))


@pytest.mark.parametrize("cls_name,dense", [("BertForMaskedLM", "net.cls.predictions.transform.dense.weight"),
                                            ("RobertaForMaskedLM", "net.lm_head.dense.weight")])
def test_bert_and_roberta_load_with_their_head_as_default_param(tmp_path, cls_name, dense):
    d = hf_bert_dir(tmp_path / "m", cls_name)
    model, alphabet = load_model(d, "protein")
    assert resolve_params(model, ["lm_head.dense.weight"]) == [dense]
    names = resolve_params(model, "all_linear")
    assert dense in names and not any("decoder" in n for n in names)
    toks = torch.tensor([[alphabet.cls_idx] + [alphabet.get_idx(c) for c in "MKVLA"] + [alphabet.eos_idx]])
    assert model(toks)["logits"].shape == (1, 7, len(alphabet))
    with pytest.raises(BiopruneError, match="corpus.molecule"):
        load_model(d, "rna")
    save_checkpoint(tmp_path / "c.pt", model, "protein")
    again, _ = load_model(tmp_path / "c.pt", "protein")
    with torch.no_grad():
        torch.testing.assert_close(again(toks)["logits"], model(toks)["logits"])


def test_subword_tokenizers_are_refused(tmp_path):
    """A BPE tokenizer that merges residues ("A" + "C" -> "AC") is not per-residue: refused by name
    instead of silently mis-tokenised."""
    from tokenizers import Tokenizer, models

    d = hf_esm_dir(tmp_path / "esm")
    vocab = {t: i for i, t in enumerate(RNA_VOCAB + ["AC"])}
    bpe = Tokenizer(models.BPE(vocab=vocab, merges=[("A", "C")], unk_token="<unk>"))
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, cls_token="<cls>", eos_token="<eos>",
                                                pad_token="<pad>", unk_token="<unk>", mask_token="<mask>")
    (d / "vocab.txt").unlink()
    fast.save_pretrained(d)
    with pytest.raises(BiopruneError, match="one token per residue"):
        load_model(d, "rna")
