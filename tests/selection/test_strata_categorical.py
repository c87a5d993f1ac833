"""stratify_by source / cluster (issue 27): the budget split over categorical strata in proportion to the pool."""
from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bioprune.errors import BiopruneError
from bioprune.selection.stream import MANY_GROUPS, Column, kth_largest_by_group, top_by_group
from bioprune.selection.strategies import CCIOptions, SelectionConfig, TopOptions, select
from bioprune.selection.strata import LabelPlan, cluster_labels, source_labels

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def _pool():
    """100 sequences from three sources (50 rrna, 30 trna, 20 mircarta); mircarta holds the 20 highest scores."""
    ids = [f"rrna_{i}" for i in range(50)] + [f"trna_{i}" for i in range(30)] + [f"mircarta_{i}" for i in range(20)]
    score = np.concatenate([np.linspace(0, 1, 50), np.linspace(1, 2, 30), np.linspace(10, 11, 20)])
    return {"id": ids, "score": score, "length": np.full(100, 50), "grad_sqnorm": np.ones(100)}


def _source(i: str) -> str:
    return i.split("_")[0]


def test_top_influence_by_source_splits_the_budget_in_proportion_to_the_pool():
    sc = _pool()
    plain = select("top_influence", sc, 0.1, 0)
    assert Counter(map(_source, plain)) == {"mircarta": 10}  # unstratified: one source takes the whole budget
    labels = LabelPlan.of(source_labels(sc["id"]))
    chosen = select("top_influence", sc, 0.1, 0, top_influence=TopOptions(stratify_by="source"), labels=labels)
    assert Counter(map(_source, chosen)) == {"rrna": 5, "trna": 3, "mircarta": 2}
    # the highest scores within each source
    assert {"rrna_49", "rrna_45", "trna_29", "trna_27", "mircarta_19", "mircarta_18"} <= set(chosen)
    assert "rrna_44" not in chosen and "trna_26" not in chosen


def test_cci_by_source_splits_in_proportion_and_drops_each_sources_top():
    sc = _pool()
    labels = LabelPlan.of(source_labels(sc["id"]))
    chosen = select("cci", sc, 0.2, 3, cci=CCIOptions(beta=0.1, bins=4, stratify_by="source"), labels=labels)
    assert Counter(map(_source, chosen)) == {"rrna": 10, "trna": 6, "mircarta": 4}
    top = select("top_influence", sc, 0.1, 0, top_influence=TopOptions(stratify_by="source"), labels=labels)
    assert not set(chosen) & set(top)  # at budget beta the stratified Top-I and CCI are disjoint


def test_source_map_overrides_the_id_prefix_and_names_its_key(tmp_path):
    m = tmp_path / "map.tsv"
    m.write_text("# id\tsource\nP1\tswissprot\nP2\tswissprot\nP3\ttrembl\n")
    assert source_labels(["P1", "P3", "P2"], str(m)) == ["swissprot", "trembl", "swissprot"]
    assert source_labels(["P1", "x_2"]) == ["pool", "x"]  # no map: the prefix before the first _
    with pytest.raises(BiopruneError, match="selection.source_map.*1 scored ids.*P9"):
        source_labels(["P1", "P9"], str(m))
    with pytest.raises(BiopruneError, match="selection.source_map.*not found"):
        source_labels(["P1"], str(tmp_path / "nope.tsv"))


def test_cluster_strata_from_the_members_table(tmp_path):
    sc = _pool()
    members = tmp_path / "cluster_members.tsv"
    # cluster A: the 50 rrna, cluster B: 30 trna + 10 mircarta, cluster C: the other 10 mircarta
    rows = [("rrna_0", i) for i in sc["id"][:50]] + [("trna_0", i) for i in sc["id"][50:90]]
    rows += [("mircarta_10", i) for i in sc["id"][90:]]
    members.write_text("".join(f"{r}\t{m}\n" for r, m in rows))
    labels = LabelPlan.of(cluster_labels(sc["id"], str(members)))
    assert sorted(labels.sizes.tolist()) == [10, 40, 50]
    chosen = select("top_influence", sc, 0.1, 0, top_influence=TopOptions(stratify_by="cluster"), labels=labels)
    got = Counter(cluster_labels(chosen, str(members)))
    assert got == {"rrna_0": 5, "trna_0": 4, "mircarta_10": 1}
    with pytest.raises(BiopruneError, match="selection.cluster.*in no cluster"):
        cluster_labels(sc["id"] + ["new_1"], str(members))
    with pytest.raises(BiopruneError, match="selection.top_influence.stratify_by.*cluster"):
        select("top_influence", sc, 0.1, 0, top_influence=TopOptions(stratify_by="cluster"))
    with pytest.raises(BiopruneError, match="selection.cci.stratify_by"):
        select("cci", sc, 0.1, 0, cci=CCIOptions(stratify_by="family"))


def test_many_strata_sort_in_memory_and_agree_with_a_plain_sort():
    rng = np.random.default_rng(5)
    n, groups = 3000, MANY_GROUPS * 4
    x = np.round(rng.normal(size=n), 2)  # ties
    labels = LabelPlan.of([f"c{g:04d}" for g in rng.integers(0, groups, size=n)])
    src = labels.grouped(Column(x, block=257))
    ks = np.minimum(labels.sizes, rng.integers(0, 4, size=len(labels.sizes)))
    thr = kth_largest_by_group(src, ks)
    for s in range(len(ks)):
        v = np.sort(x[labels.labels == s])[::-1]
        assert thr[s] == (v[ks[s] - 1] if ks[s] else np.inf)
    idx = top_by_group(src, ks)
    assert len(idx) == ks.sum() and np.array_equal(np.bincount(labels.labels[idx], minlength=len(ks)), ks)
    for s in np.flatnonzero(ks):
        mine = x[labels.labels == s]
        assert np.sort(x[idx[labels.labels[idx] == s]]).tolist() == np.sort(mine)[::-1][:ks[s]][::-1].tolist()


def test_strata_labels_of_a_scores_file(tmp_path):
    from bioprune.h5io import STR, atomic_h5
    from bioprune.stages import strata_labels

    p = tmp_path / "scores.h5"
    with atomic_h5(p, "scores") as f:
        f.create_dataset("id", data=np.array(["a_1", "b_1", "a_2"], dtype=object), dtype=STR)
        for k in ("score", "length", "grad_sqnorm"):
            f.create_dataset(k, data=np.ones(3))
    def cfg(strategy, by):
        return SelectionConfig.from_params({"strategy": strategy, strategy: {"stratify_by": by}})

    assert strata_labels(str(p), cfg("top_influence", "length")) is None
    plan = strata_labels(str(p), cfg("cci", "source"))
    assert plan.names == ["a", "b"] and plan.labels.tolist() == [0, 1, 0]
    with pytest.raises(BiopruneError, match="selection.cci.stratify_by: cluster needs"):
        strata_labels(str(p), cfg("cci", "cluster"))


def test_dag_runs_mmseqs_once_for_cluster_strata(tmp_path):
    res = subprocess.run([SNAKEMAKE, "-n", "-s", str(ROOT / "Snakefile"), "--directory", str(ROOT), "coreset",
                          "--configfile", str(ROOT / "tests/config/tiny.yaml"), "--config", f"results={tmp_path / 'r'}",
                          "selection={'top_influence': {'stratify_by': 'cluster'}, 'cci': {'stratify_by': 'source'}}"],
                          capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr + res.stdout
    jobs = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", res.stdout.split("Job stats:")[1], re.M)}
    assert jobs.get("cluster") == 1


def _ledger_jobs(tmp_path, selection: str) -> dict[str, int]:
    res = subprocess.run([SNAKEMAKE, "-n", "-s", str(ROOT / "Snakefile"), "--directory", str(ROOT),
                          str(tmp_path / "r/benchmark/ledger.csv"), "--configfile", str(ROOT / "tests/config/tiny.yaml"),
                          "--config", f"results={tmp_path / 'r'}", selection], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr + res.stdout
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", res.stdout.split("Job stats:")[1], re.M)}


def test_ledger_charges_the_clustering_to_cluster_stratified_arms(tmp_path):
    """The ledger reads cluster.tsv when an influence strategy is stratified by cluster (and not otherwise)."""
    assert "cluster" not in _ledger_jobs(tmp_path, "selection={'top_influence': {'stratify_by': 'none'}}")
    assert _ledger_jobs(tmp_path, "selection={'cci': {'stratify_by': 'cluster'}}").get("cluster") == 1
