"""AntiBERTy's released weights (PyPI antiberty 0.1.3, MIT) as the reference model: real antibody V domains
(resources/antibody/pool.fa.gz, built by workflow_scripts/antibody_corpus.py) must look far more likely
to it than the same chains shuffled, and the weights go through reference -> curvature -> sketch -> scores."""
from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

SPEC = importlib.util.find_spec("antiberty")
pytestmark = pytest.mark.skipif(
    SPEC is None or importlib.util.find_spec("transformers") is None,
    reason="antiberty/transformers not installed (pip install 'bioprune[antiberty]'; make test installs it)")
POOL = Path(__file__).resolve().parents[2] / "resources" / "antibody" / "pool.fa.gz"


def antiberty_dir() -> Path:
    return Path(SPEC.origin).parent / "trained_models" / "AntiBERTy_md_smooth"


def v_domains(n: int, prefix: str = "ab_") -> list[tuple[str, str]]:
    text = gzip.open(POOL, "rt").read().split(">")[1:]
    recs = [(r.split("\n")[0], "".join(r.split("\n")[1:])) for r in text]
    return [r for r in recs if r[0].startswith(prefix)][:n]


@pytest.fixture(scope="module")
def antiberty():
    from bioprune.models import load_model

    return load_model(antiberty_dir(), "protein")[0]


def test_real_chains_are_far_more_likely_than_shuffled(antiberty):
    from bioprune.training.batching import mask_by_id, pad_batch, per_sample_ce

    # the heavy-like V domains (FR4 WGxG: VH and nanobodies); light-like ones include TCR V domains,
    # which AntiBERTy (trained on antibodies only) finds about as unlikely as shuffled chains
    recs = v_domains(40, "ab_heavy_")
    rng = np.random.default_rng(0)
    shuffled = [(i, "".join(rng.permutation(list(s)))) for i, s in recs]
    losses = []
    for rs in (recs, shuffled):
        ids, seqs = [r[0] for r in rs], [r[1] for r in rs]
        inputs, targets = mask_by_id(pad_batch(seqs, "protein"), ids, "protein", seed=0)
        with torch.no_grad():
            losses.append(per_sample_ce(antiberty(inputs)["logits"], targets).mean().item())
    real, shuf = losses
    assert real < 1.5 and shuf > 2.5 and real < 0.45 * shuf, losses  # uniform over 20 residues: 3.0 nats


def test_antiberty_through_curvature_sketch_scores(antiberty, tmp_path):
    from bioprune.influence.reference import ReferenceConfig, build_reference
    from bioprune.ingest import IngestOptions, ingest
    from bioprune.influence.sketches import InfluenceConfig
    from helpers import write_fasta
    from test_influence import _score_diag

    shards = [str(tmp_path / "1-of-1.h5")]
    ingest(write_fasta(tmp_path / "p.fa", v_domains(8)), shards, str(tmp_path / "ho.h5"),
           IngestOptions(molecule="protein", holdout_fraction=0.001))
    params = dict(subset_fraction=0.5, seed=0, layers=1, embed_dim=8, heads=2, lr=1e-3, batch_size=8, epochs=1,
                  device="cpu", checkpoint=str(antiberty_dir()), finetune=False)
    build_reference(shards, str(tmp_path / "ref.pt"), str(tmp_path / "curves.h5"), ReferenceConfig.from_params(params))
    assert (tmp_path / "curves.h5").exists()  # the reference rule declares it, even with no training
    sc = _score_diag(tmp_path, shards, str(tmp_path / "ref.pt"), InfluenceConfig(subset_fraction=0.5, batch_size=4))
    assert len(sc["id"]) == 8 and np.isfinite(sc["score"]).all()
    assert sc["attrs"]["params"].tolist() == ["net.cls.predictions.transform.dense.weight"]
    # diag-Fisher identity over D_sub: mean score = d = 512 x 512 (damping 1e-8 is negligible)
    assert sc["score"][sc["in_subset"]].mean() == pytest.approx(512 * 512, rel=1e-2)
