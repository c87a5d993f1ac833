"""Benchmarks package: homology-aware probe splits, the nearest-neighbour baseline, the task registry."""
from __future__ import annotations

import gzip
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from bioprune.benchmarks import TASKS, nearest_neighbour_reference, run_benchmarks
from bioprune.benchmarks.nearest import nearest, nn_classification, nn_rna_ss
from bioprune.benchmarks.splits import SplitParams, assign_clusters, build_split, compute_split
from bioprune.errors import BiopruneError

ROOT = Path(__file__).resolve().parents[1]
needs_mmseqs = pytest.mark.skipif(shutil.which("mmseqs") is None, reason="needs MMseqs2")
COMP = {"A": "U", "U": "A", "G": "C", "C": "G"}


def rand(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("ACGU") for _ in range(n))


def mutate(rng: random.Random, s: str, k: int) -> str:
    out = list(s)
    for p in rng.sample(range(5, len(s) - 5), k):
        out[p] = {"A": "C", "C": "G", "G": "U", "U": "A"}[out[p]]
    return "".join(out)


def type_rows(seed: int = 0) -> list[dict]:
    """4 labels x 3 clusters x 3 members (a random 80-mer and two ~95% copies); clusters unrelated."""
    rng = random.Random(seed)
    rows = []
    for lab in "wxyz":
        for c in range(3):
            base = rand(rng, 80)
            for m, s in enumerate([base, mutate(rng, base, 4), mutate(rng, base, 4)]):
                rows.append({"id": f"{lab}{c}.{m}", "label": lab, "sequence": s})
    return rows


def hairpin(rng: random.Random, stem: int = 8, loop: int = 6, flank: int = 10) -> tuple[str, str]:
    left = rand(rng, stem)
    seq = rand(rng, flank) + left + rand(rng, loop) + "".join(COMP[c] for c in reversed(left)) + rand(rng, flank)
    pairs = ";".join(f"{flank + i},{flank + 2 * stem + loop - 1 - i}" for i in range(stem))
    return seq, pairs


def ss_rows(seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for fam in ("famA", "famB", "famC"):
        for k in range(6):
            s, p = hairpin(rng)
            rows.append({"id": f"{fam}.{k}", "family": fam, "label": fam, "sequence": s, "pairs": p})
    rows[0] = dict(rows[0], sequence=rows[12]["sequence"], pairs=rows[12]["pairs"])  # famA.0 copies famC.0
    return rows


def write_tsv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = list(rows[0])
    with gzip.open(path, "wt") as fh:
        fh.write("\t".join(cols) + "\n" + "".join("\t".join(r[c] for c in cols) + "\n" for r in rows))


@needs_mmseqs
def test_split_keeps_clusters_whole_and_is_deterministic():
    rows = type_rows()
    sp = SplitParams("rna", 0.8)
    df = compute_split("rna_type", rows, sp)
    split = dict(zip(df["id"], df["split"]))
    groups: dict[str, set] = {}
    for i, s in split.items():
        groups.setdefault(i.split(".")[0], set()).add(s)
    assert all(len(sides) == 1 for sides in groups.values())  # never both sides within a planted cluster
    assert df["cluster"].nunique() == 12  # the planted clusters, found by MMseqs2
    assert set(split.values()) == {"train", "test"}
    shuffled = rows[::-1]
    again = compute_split("rna_type", shuffled, sp)
    assert dict(zip(again["id"], again["split"])) == split  # independent of row order


def test_assign_clusters_respects_quota_and_seed():
    ids = [f"s{i}" for i in range(40)]
    labels = ["a"] * 20 + ["b"] * 20
    cluster = np.array([i // 2 for i in range(40)])  # 20 clusters of two
    s0 = assign_clusters(ids, labels, cluster, 0.3, 0)
    assert s0 == assign_clusters(ids, labels, cluster, 0.3, 0)
    for lab in "ab":
        assert sum(s == "test" for s, l in zip(s0, labels) if l == lab) == 6  # round(0.3 x 20)
    assert all(s0[2 * k] == s0[2 * k + 1] for k in range(20))
    assert any(assign_clusters(ids, labels, cluster, 0.3, seed) != s0 for seed in (1, 2, 3))


@needs_mmseqs
def test_rna_ss_split_drops_training_homologs_of_test_families():
    rows = ss_rows()
    df = compute_split("rna_ss", rows, SplitParams("rna", 0.8, test_families=["famC"]))
    split = dict(zip(df["id"], df["split"]))
    assert split["famA.0"] == "excluded" and split["famA.1"] == "train" and split["famC.3"] == "test"


def test_nearest_neighbour_picks_the_most_identical():
    rng = random.Random(3)
    train = [rand(rng, 70) for _ in range(6)]
    test = [mutate(rng, train[4], 3), mutate(rng, train[1], 6), rand(rng, 70)]
    nn = nearest(test, train, "rna")
    assert [j for j, _ in nn[:2]] == [4, 1]
    assert nearest(["AAAA"], ["CCCC"], "rna") == [(-1, {})]  # no local alignment: no neighbour
    tr = [{"label": lab, "sequence": s} for lab, s in zip("aabbcc", train)]
    te = [{"label": "c", "sequence": test[0]}, {"label": "a", "sequence": test[1]}]
    assert nn_classification(tr, te, "rna") == [("accuracy", 1.0), ("macro_f1", 1.0)]
    s, p = hairpin(rng)
    shifted = "GGGGG" + s  # same structure five bases later
    pairs = ";".join(f"{int(a) + 5},{int(b) + 5}" for a, b in (x.split(",") for x in p.split(";")))
    f1 = nn_rna_ss([{"sequence": s, "pairs": p}], [{"sequence": shifted, "pairs": pairs}])
    assert f1[0] == ("bp_f1", 1.0)


def test_registry_matches_the_config_schema():
    schema = yaml.safe_load((ROOT / "schemas/config.schema.yaml").read_text())
    enum = schema["properties"]["benchmark"]["properties"]["tasks"]["items"]["enum"]
    assert set(TASKS) == set(enum)
    with pytest.raises(BiopruneError, match="benchmark.tasks"):
        run_benchmarks("unused.pt", "", {"tasks": ["rna_fold"], "molecule": "rna"})


@needs_mmseqs
def test_models_and_baseline_share_the_stored_split(tmp_path):
    from bioprune.models import build_model, save_checkpoint

    res = tmp_path / "res"
    write_tsv(res / "rna/type_eval.tsv.gz", type_rows())
    write_tsv(res / "rna/ss_eval.tsv.gz", ss_rows())
    params = {"tasks": ["rna_type", "rna_ss"], "molecule": "rna", "resources": str(res), "max_eval": 100,
              "device": "cpu", "test_families": ["famC"], "split_dir": str(tmp_path / "splits")}
    for task, f in (("rna_type", "type"), ("rna_ss", "ss")):
        build_split(task, str(res / f"rna/{f}_eval.tsv.gz"), str(tmp_path / f"splits/{task}.tsv"), params)
    model = tmp_path / "m.pt"
    save_checkpoint(model, build_model("rna", 1, 16, 2, seed=0), "rna")
    rows = run_benchmarks(str(model), "", params)
    nn = nearest_neighbour_reference(params)
    assert {(t, m) for t, m, _ in nn} == {("rna_type", "accuracy"), ("rna_type", "macro_f1"), ("rna_ss", "bp_f1"),
                                          ("rna_ss", "n_test")}
    assert {(t, m) for t, m, _ in nn} <= {(t, m) for t, m, _ in rows}
    assert dict(((t, m), v) for t, m, v in nn)[("rna_ss", "n_test")] == 6
    write_tsv(res / "rna/type_eval.tsv.gz", type_rows(seed=5))  # new content: the stored split is stale
    with pytest.raises(BiopruneError, match="rna_type.tsv: stored split"):
        nearest_neighbour_reference(params)
