"""ESM-C parity: bioprune.backbones.esmc against logits and hidden states computed by EvolutionaryScale's
`esm` 3.x ESMC class (fixture written by workflow_scripts/make_esmc_fixture.py; no network, no `esm` 3.x)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bioprune.alphabets import get_alphabet
from bioprune.batching import pad_batch
from bioprune.errors import BiopruneError
from bioprune.models import load_model, save_checkpoint
from bioprune.sketches import resolve_params

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="module")
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

    from bioprune.shards import IngestOptions, ingest
    from bioprune.sketches import InfluenceConfig
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
