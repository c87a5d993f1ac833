"""Reference ensembles (issue 27): member seeds, per-model normalisation, the average, R = 1 unchanged,
the DAG (members are ordinary scoring runs) and the ledger's R-fold scoring cost."""
from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bioprune.config import ensemble_params, influence_params, reference_params, validate_config
from bioprune.influence.ensemble import combine, ensemble_scores, member_seeds, normalize_member
from bioprune.errors import BiopruneError
from bioprune.influence.scores import read_scores

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def _scores(ids, score, length=None, sq=None, sub=None, seed=0):
    n = len(ids)
    return {"id": list(ids), "score": np.asarray(score, dtype=float),
            "length": np.asarray(length if length is not None else np.arange(10, 10 + n)),
            "grad_sqnorm": np.asarray(sq if sq is not None else np.ones(n), dtype=float),
            "loss": np.ones(n), "in_subset": np.asarray(sub if sub is not None else np.zeros(n, bool)),
            "attrs": {"subset_seed": seed, "estimator": "diag_fisher", "loss": "reconstruction"}}


def test_member_zero_is_the_seed_and_members_are_distinct_and_independent_across_seeds():
    assert member_seeds(0, 1) == [0] and member_seeds(7, 1) == [7]
    a, b = member_seeds(0, 5), member_seeds(1, 5)
    assert a[0] == 0 and b[0] == 1
    assert len(set(a)) == 5 and len(set(b)) == 5
    assert not set(a) & set(b)  # two reference seeds: two independent ensembles
    assert all(s >= 2**31 for s in a[1:] + b[1:])  # never a seed a user writes (0, 1, 2, ...)
    assert member_seeds(0, 3) == a[:3]  # a larger ensemble extends a smaller one: members are reused
    assert member_seeds(0, 5) == a  # deterministic
    with pytest.raises(BiopruneError, match="reference.ensemble"):
        member_seeds(0, 0)


def test_rank_normalisation_averages_ranks_on_hand_made_scores():
    # member 1 ranks a<b<c<d, member 2 (scale 1000x, reversed order of c/d) a<b<d<c
    m1 = _scores("abcd", [1.0, 2.0, 3.0, 4.0])
    m2 = _scores("abcd", [1000.0, 2000.0, 9000.0, 4000.0])
    got = combine([m1, m2], "rank")
    assert np.allclose(got["score"], [(0.25 + 0.25) / 2, (0.5 + 0.5) / 2, (0.75 + 1.0) / 2, (1.0 + 0.75) / 2])
    raw = combine([m1, m2], "none")  # without normalisation the larger-scale member decides
    assert np.allclose(raw["score"], [500.5, 1001.0, 4501.5, 2002.0])
    z = combine([m1, m2], "zscore")
    z1 = (m1["score"] - 2.5) / m1["score"].std()
    z2 = (m2["score"] - m2["score"].mean()) / m2["score"].std()
    assert np.allclose(z["score"], (z1 + z2) / 2)
    assert np.allclose(normalize_member([5.0, 5.0, 5.0], "zscore"), 0.0)  # std 0: no NaN
    assert np.allclose(normalize_member([3.0, 1.0, 3.0], "rank"), [2.5 / 3, 1 / 3, 2.5 / 3])  # ties: average rank
    with pytest.raises(BiopruneError, match="reference.ensemble_normalize"):
        normalize_member([1.0], "minmax")


def test_combine_aligns_members_by_id_and_keeps_dsub_of_any_member():
    m1 = _scores("abc", [1.0, 2.0, 3.0], sq=[1.0, 2.0, 3.0], sub=[True, False, False])
    m2 = _scores("cab", [30.0, 10.0, 20.0], sq=[9.0, 5.0, 7.0], sub=[False, False, True])
    got = combine([m1, m2], "none")
    assert got["id"] == ["a", "b", "c"]
    assert np.allclose(got["score"], [5.5, 11.0, 16.5])
    assert np.allclose(got["grad_sqnorm"], [3.0, 4.5, 6.0])
    assert got["in_subset"].tolist() == [True, True, False]
    with pytest.raises(BiopruneError, match="different sequences"):
        combine([m1, _scores("abx", [1.0, 2.0, 3.0])], "rank")


def _member_files(tmp_path, seeds, n=20, rng_seed=0):
    """One scores.h5 per member seed: n sequences s0..s{n-1} of lengths 20..20+n-1, random scores."""
    from bioprune.h5io import STR, atomic_h5

    rng = np.random.default_rng(rng_seed)
    paths = []
    for j, seed in enumerate(seeds):
        p = tmp_path / f"m{j}.h5"
        with atomic_h5(p, "scores", estimator="diag_fisher", subset_seed=seed, loss="reconstruction") as f:
            f.create_dataset("id", data=np.array([f"s{i}" for i in range(n)], dtype=object), dtype=STR)
            f.create_dataset("score", data=rng.random(n))
            f.create_dataset("length", data=np.arange(20, 20 + n, dtype=np.int32))
            f.create_dataset("loss", data=np.ones(n))
            f.create_dataset("grad_sqnorm", data=rng.random(n) + 1)
            f.create_dataset("in_subset", data=np.zeros(n, dtype=bool))
        paths.append(str(p))
    return paths


def test_ensemble_scores_file_reads_like_a_scores_file(tmp_path):
    paths = _member_files(tmp_path, member_seeds(3, 3))
    ensemble_scores(paths, str(tmp_path / "e.h5"), "rank", 3)
    sc = read_scores(str(tmp_path / "e.h5"))
    members = [read_scores(p) for p in paths]
    want = np.mean([normalize_member(m["score"], "rank") for m in members], axis=0)
    assert np.allclose(sc["score"], want) and sc["id"] == members[0]["id"]
    assert int(sc["attrs"]["subset_seed"]) == 3 and int(sc["attrs"]["ensemble"]) == 3
    assert list(sc["attrs"]["member_seeds"]) == member_seeds(3, 3)


def test_ensemble_of_one_is_the_member(tmp_path):
    m = _scores("abc", [3.0, 1.0, 2.0])
    assert np.array_equal(combine([m], "none")["score"], m["score"])


def test_r1_leaves_every_stage_params_as_before():
    """reference.ensemble defaults to 1, and the reference / influence params (what Snakemake re-runs on)
    carry no ensemble key: today's configs keep their jobs, files and scores."""
    import yaml

    cfg = validate_config(yaml.safe_load((ROOT / "config.yaml").read_text()))  # the RNA demo
    assert cfg["reference"]["ensemble"] == 1 and cfg["reference"]["ensemble_normalize"] == "rank"
    r = reference_params(cfg)
    assert "ensemble" not in r and "ensemble_normalize" not in r
    assert set(r) == {"checkpoint", "finetune", "subset_fraction", "seed", "layers", "embed_dim", "heads", "lr",
                      "batch_size", "epochs", "device"}
    other = copy.deepcopy(cfg)
    other["reference"].update(ensemble=4, ensemble_normalize="zscore")
    assert reference_params(other, 5) == reference_params(cfg, 5)
    for stage in ("curvature", "sketch", "scores"):
        assert influence_params(other, stage, 5, 0) == influence_params(cfg, stage, 5, 0)
    assert ensemble_params(other, 2) == {"size": 4, "normalize": "zscore", "seed": 2}


def _dry(tmp_path: Path, extra: list[str]) -> dict[str, int]:
    res = subprocess.run([SNAKEMAKE, "-n", "-s", str(ROOT / "Snakefile"), "--directory", str(ROOT), "coreset",
                          "--configfile", str(ROOT / "tests/config/tiny.yaml"), "--config",
                          f"results={tmp_path / 'r'}", *extra], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr + res.stdout
    block = res.stdout.split("Job stats:")[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", block, re.M)}


def test_dag_trains_r_members_per_reference_seed_and_shares_shards(tmp_path):
    one = _dry(tmp_path, [])
    same = _dry(tmp_path, ["reference={'ensemble': 1}"])
    assert one == same and "ensemble_scores" not in one
    three = _dry(tmp_path, ["reference={'ensemble': 3}"])
    assert three["reference"] == 3 * one["reference"]  # primary + stability reference seed, R members each
    assert three["ensemble_scores"] == one["scores"]  # one average per scoring run
    assert three["scores"] == 3 * one["scores"]  # every scoring run (primary, influence seed, reference seed) x R
    assert three["ingest_route"] == one["ingest_route"]  # shards built once


def test_ledger_charges_every_member(tmp_path):
    from bioprune.report.ledger import ledger

    def tsv(name, s):
        p = tmp_path / f"{name.replace('/', '_')}.tsv"
        p.write_text(f"s\th:m:s\n{s}\t0:00:01\n")
        return str(p)

    keys = {"reference/seed0": tsv("r0", 10), "scores/ref0_inf0": tsv("s0", 1), "pretrain/top_influence_0.1_seed0":
            tsv("p", 100)}
    base = ledger(keys)["scoring_s"].iloc[0]
    members = dict(keys, **{"reference/seed9": tsv("r9", 10), "scores/ref9_inf0": tsv("s9", 1),
                            "ensemble/ref0_inf0": tsv("e", 0.5)})
    assert base == 11 and ledger(members)["scoring_s"].iloc[0] == 22.5


def test_length_rank_is_the_percentile_within_length_deciles():
    from bioprune.influence.gradients import InfluenceConfig
    from bioprune.influence.scores import length_rank
    from bioprune.influence.stability import spearman

    rng = np.random.default_rng(1)
    length = rng.integers(30, 400, size=2000)
    score = 1.0 / length + rng.random(2000) * 1e-4  # a score that is mostly 1/length
    r = length_rank(score, length)
    assert spearman(score, length) < -0.9 and abs(spearman(r, length)) < 0.1
    assert r.min() > 0 and r.max() == 1.0
    # within one length value the order of the raw scores is kept
    same = length == length[0]
    assert np.array_equal(np.argsort(r[same], kind="stable"), np.argsort(score[same], kind="stable"))
    # hand-made: two length strata of two sequences each
    assert np.allclose(length_rank([5.0, 1.0, 3.0, 7.0], [10, 10, 50, 50], n_strata=2), [1.0, 0.5, 0.5, 1.0])
    assert InfluenceConfig(normalize="length_rank").normalize == "length_rank"


def test_cli_ensemble_scores_matches_the_stage_and_checks_the_member_count(tmp_path, capsys):
    """`bioprune ensemble-scores` (the workflow's ensemble_scores rule outside Snakemake) writes the rank
    average of its members; a member count other than reference.ensemble stops naming that key."""
    from bioprune.cli import main

    paths = _member_files(tmp_path, member_seeds(0, 2), n=12, rng_seed=1)
    rc = main(["ensemble-scores", "--set", "reference.ensemble=2", "--members", *paths, "--out", str(tmp_path / "e.h5")])
    assert rc in (0, None)
    sc = read_scores(str(tmp_path / "e.h5"))
    want = np.mean([normalize_member(read_scores(p)["score"], "rank") for p in paths], axis=0)
    assert np.allclose(sc["score"], want) and int(sc["attrs"]["ensemble"]) == 2
    assert main(["ensemble-scores", "--set", "reference.ensemble=3", "--members", *paths,
                 "--out", str(tmp_path / "f.h5")]) == 1
    assert "config key reference.ensemble: 3 members expected, 2 given" in capsys.readouterr().err
    assert not (tmp_path / "f.h5").exists()
