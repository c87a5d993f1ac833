"""ESM-C parity: bioprune.backbones.esmc against logits and hidden states computed by EvolutionaryScale's
`esm` 3.x ESMC class (fixture written by workflow_scripts/make_esmc_fixture.py; no network, no `esm` 3.x)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bioprune.alphabets import get_alphabet
from bioprune.training.batching import pad_batch
from bioprune.errors import BiopruneError
from bioprune.models import load_model, save_checkpoint
from bioprune.influence.sketches import resolve_params

DATA = Path(__file__).resolve().parents[1] / "data"


# function scope: mutmut attributes the loader and the constructors to every test that uses the model (with
# module scope only the first test "calls" them, and a layout mutant survives the parity test)
@pytest.fixture
def fixture():
    return load_model(DATA / "esmc_tiny.pth", "protein")[0], torch.load(DATA / "esmc_tiny_expected.pt")


def test_tokenisation_matches_esmc_tokenizer(fixture):
    model, exp = fixture
    toks = pad_batch(exp["sequences"], "protein")
    toks[0, 5] = get_alphabet("protein").mask_idx
    assert model.to_checkpoint_ids(toks).tolist() == exp["tokens"].tolist()


def test_logits_and_hidden_states_match_esm_package(fixture):
    model, exp = fixture
    ids = exp["tokens"]
    with torch.no_grad():
        logits, hidden, _ = model.net(ids, ids != 1)
    valid = ids != 1  # the package leaves padding rows to attend among themselves; compare real tokens
    torch.testing.assert_close(logits[valid], exp["logits"][valid], atol=1e-4, rtol=1e-4)
    for i in range(1, len(hidden) - 1):  # block outputs (the package's hidden_states, before the final norm)
        torch.testing.assert_close(hidden[i][valid], exp["hidden_states"][i - 1][valid], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(hidden[-1][valid], exp["embeddings"][valid], atol=1e-4, rtol=1e-4)


def test_bioprune_interface_gives_esmc_probabilities(fixture, tmp_path):
    """Through the fair-esm interface on bioprune's alphabet: the same log-probabilities of the residues,
    attention maps sum to one, and a bioprune checkpoint of it rebuilds the same model."""
    model, exp = fixture
    a = get_alphabet("protein")
    toks = pad_batch(exp["sequences"], "protein")
    toks[0, 5] = a.mask_idx
    with torch.no_grad():
        out = model(toks, repr_layers=[2], need_head_weights=True)
    ref = torch.log_softmax(exp["logits"], -1)
    got = torch.log_softmax(out["logits"], -1)
    letters = "ACDEFGHIKLMNPQRSTVWY"
    from bioprune.backbones.esmc import VOCAB

    valid = toks != a.padding_idx
    torch.testing.assert_close(got[..., [a.get_idx(c) for c in letters]][valid],
                               ref[..., [VOCAB.index(c) for c in letters]][valid], atol=1e-4, rtol=1e-4)
    assert out["attentions"].shape == (3, 2, 2, toks.shape[1], toks.shape[1])
    torch.testing.assert_close(out["attentions"].sum(-1), torch.ones(3, 2, 2, toks.shape[1]))
    assert resolve_params(model, ["lm_head.dense.weight"]) == ["net.sequence_head.0.weight"]
    assert len(resolve_params(model, "all_linear")) == 2 * 4 + 2
    save_checkpoint(tmp_path / "c.pt", model, "protein")
    again, _ = load_model(tmp_path / "c.pt", "protein")
    with torch.no_grad():
        torch.testing.assert_close(again(toks)["logits"], out["logits"])


def test_esmc_refuses_rna_and_broken_files(fixture, tmp_path):
    with pytest.raises(BiopruneError, match="corpus.molecule"):
        load_model(DATA / "esmc_tiny.pth", "rna")
    state = torch.load(DATA / "esmc_tiny.pth")
    del state["sequence_head.3.bias"]
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(BiopruneError, match="released layout"):
        load_model(tmp_path / "bad.pth")


def test_esmc_checkpoint_scores_through_curvature_and_sketch(tmp_path):
    """The released-layout file as reference.checkpoint: curvature -> sketch -> scores with all_linear;
    the mean D_sub score is the number of weights (the diag-Fisher identity)."""
    import numpy as np

    from bioprune.ingest import IngestOptions, ingest
    from bioprune.influence.sketches import InfluenceConfig
    from helpers import write_fasta
    from test_influence import _score_diag

    rng = np.random.default_rng(0)
    recs = [(f"p{i}", "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), 8 + i))) for i in range(16)]
    shards = [str(tmp_path / "1-of-1.h5")]
    ingest(write_fasta(tmp_path / "p.fa", recs), shards, str(tmp_path / "ho.h5"),
           IngestOptions(molecule="protein", holdout_fraction=0.001))
    sc = _score_diag(tmp_path, shards, str(DATA / "esmc_tiny.pth"),
                     InfluenceConfig(params="all_linear", subset_fraction=1.0, batch_size=5))
    model, _ = load_model(DATA / "esmc_tiny.pth")
    d = sum(dict(model.named_parameters())[n].numel() for n in resolve_params(model, "all_linear"))
    assert np.isfinite(sc["score"]).all() and sc["score"].mean() == pytest.approx(d, rel=1e-3)


def test_rotary_embedding_equals_the_closed_form_rotation():
    """GPT-NeoX half rotation with base 10000: channel pair (i, i + Dh/2) of the token at position p is turned
    by the angle p x 10000^(-2i/Dh). Computed here in float64 from that formula, at positions up to 4095
    (where a base of 10001 turns some pairs by ~0.016 rad more)."""
    from bioprune.backbones.esmc import Attention

    torch.manual_seed(0)
    attn = Attention(128, 2)  # heads of width 64, as the released models
    L, dh = 4096, 64
    x = torch.randn(1, L, 2, dh)
    half = dh // 2
    pos = torch.arange(L, dtype=torch.float64)[:, None]
    i = torch.arange(half, dtype=torch.float64)[None, :]
    angle = (pos * 10000.0 ** (-2.0 * i / dh))[None, :, None, :]  # (1, L, 1, Dh/2)
    x1, x2 = x[..., :half].double(), x[..., half:].double()
    expected = torch.cat((x1 * angle.cos() - x2 * angle.sin(), x2 * angle.cos() + x1 * angle.sin()), dim=-1)
    torch.testing.assert_close(attn._rotary(x).double(), expected, atol=2e-3, rtol=0)


@pytest.mark.parametrize("d_model,heads", [(32, 1), (64, 1), (128, 2), (192, 3)])
def test_released_format_files_get_heads_of_width_64(d_model, heads):
    """The head count is not in the file: heads = d_model / 64 (the released models' width), and one head
    when the model is narrower than 64. The rebuilt arch and every block use that count."""
    from bioprune.backbones.esmc import ESMCNet, load_esmc

    torch.manual_seed(0)
    state = ESMCNet(d_model, heads, 2).state_dict()
    model = load_esmc(state)
    assert model.arch()["n_heads"] == heads
    for blk in model.net.transformer.blocks:
        assert (blk.attn.heads, blk.attn.d_head) == (heads, d_model // heads)
