"""Benchmarks package: homology-aware probe splits, the nearest-neighbour baseline, the task registry."""
from __future__ import annotations

import gzip
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from bioprune.benchmarks import TASKS, BenchParams, nearest_neighbour_reference, run_benchmarks
from bioprune.benchmarks.nearest import nearest, nn_classification, nn_rna_ss
from bioprune.benchmarks.splits import SplitParams, assign_clusters, build_split, compute_split
from bioprune.errors import BiopruneError

ROOT = Path(__file__).resolve().parents[2]
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


def test_nearest_neighbour_classification_falls_back_to_the_majority_label():
    """Train: five unrelated sequences over C, G, U labelled x, m, m, m, y (majority m). Test: a ~95% copy of
    train[0] (label x: its neighbour is index 0, not a miss), and two poly-A sequences (labels m and y) that
    share no residue with any train sequence, so have no neighbour and take the majority m. Predictions
    x, m, m, m against truth x, m, y, m: accuracy 3/4; F1 per class x 1, m 4/5 (P 2/3, R 1), y 0: macro
    F1 3/5."""
    rng = random.Random(7)
    train = ["".join(rng.choice("CGU") for _ in range(70)) for _ in range(5)]
    tr = [{"label": lab, "sequence": s} for lab, s in zip("xmmmy", train)]
    te = [{"label": "x", "sequence": mutate(rng, train[0], 3)}, {"label": "m", "sequence": "A" * 40},
          {"label": "y", "sequence": "A" * 50}, {"label": "m", "sequence": "A" * 30}]
    assert [j for j, _ in nearest([r["sequence"] for r in te], train, "rna")] == [0, -1, -1, -1]
    (acc_name, acc), (f1_name, f1) = nn_classification(tr, te, "rna")
    assert (acc_name, f1_name) == ("accuracy", "macro_f1")
    assert acc == pytest.approx(3 / 4) and f1 == pytest.approx(3 / 5)


def _profile_by_hand(s: str, molecule: str) -> np.ndarray:
    """The documented k-mer profile, counted with a dict: k 5 over ACGU (T read as U) for RNA, k 3 over the
    20 amino acids for protein, case ignored, windows with another letter skipped, scaled to unit length."""
    letters, k = ("ACGU", 5) if molecule == "rna" else ("ACDEFGHIKLMNPQRSTVWY", 3)
    s = s.upper().replace("T", "U") if molecule == "rna" else s.upper()
    v = np.zeros(len(letters) ** k)
    for i in range(len(s) - k + 1):
        w = s[i:i + k]
        if all(c in letters for c in w):
            v[sum(letters.index(c) * len(letters) ** (k - 1 - p) for p, c in enumerate(w))] += 1
    n = np.linalg.norm(v)
    return v / n if n > 0 else v


def test_kmer_profiles_equal_a_count_by_hand():
    from bioprune.benchmarks.nearest import kmer_profiles

    rng = random.Random(2)
    rna = ["ACGU", "acguaNNacgtt" + rand(rng, 30), "ACGUA", "NNNNNNNN", rand(rng, 50).replace("U", "T"),
           "GGGGGGG"]
    protein = ["AC", "mkwvhlXXacdACD", "ACDEFGHIKLMNPQRSTVWY", "ACD", "BZJOU"]
    for molecule, seqs in (("rna", rna), ("protein", protein)):
        got = kmer_profiles(seqs, molecule)
        want = np.stack([_profile_by_hand(s, molecule) for s in seqs])
        np.testing.assert_allclose(got, want, atol=1e-6)
    assert kmer_profiles(["ACGUACGU"], "rna") @ kmer_profiles(["acgtacgt"], "rna").T == pytest.approx(1.0)


def test_aligner_scores_are_the_documented_schemes():
    """RNA: match 2, mismatch -3, gap open -5 then -2 per extra position (Biopython's open score counts the
    first gap position); protein: BLOSUM62 with gap -11, -1; both local (flanks cost nothing)."""
    from bioprune.benchmarks.nearest import _aligner

    rng = random.Random(4)
    rna = _aligner("rna")
    s = rand(rng, 40)
    assert rna.align(s, "GGG" + s + "CCC")[0].score == 2 * 40  # local: unaligned flanks are free
    mm = s[:20] + COMP[s[20]] + s[21:]
    assert rna.align(s, mm)[0].score == 2 * 39 - 3
    for gap, cost in ((1, 5), (2, 7), (3, 9)):
        assert rna.align(s, s[:20] + "A" * gap + s[20:])[0].score == 2 * 40 - cost
    prot = _aligner("protein")
    aa = "ACDEFGHIKLMNPQRSTVWY"  # BLOSUM62 diagonal: 4 9 6 5 6 6 8 4 5 4 5 6 7 5 5 4 5 4 11 7
    diag = 116
    assert prot.align(aa, "WWW" + aa + "WWW")[0].score == diag
    assert prot.align("IIIIII", "VVVVVV")[0].score == 6 * 3  # I-V = 3
    assert prot.align(aa, aa[:10] + "G" + aa[10:])[0].score == diag - 11
    assert prot.align(aa, aa[:10] + "GG" + aa[10:])[0].score == diag - 12


def test_nearest_neighbour_edge_cases():
    """A candidate without an alignment does not end the search; one identity is a neighbour; a protein
    alignment with a positive score but no identity (I-V) is not; among equally identical copies the first
    train sequence wins."""
    rng = random.Random(6)
    s = "".join(rng.choice("AG") for _ in range(40))
    no_hit = "".join(rng.choice("CU") for _ in range(40))
    assert [j for j, _ in nearest([s], [no_hit, mutate(rng, s, 2)], "rna")] == [1]
    assert nearest(["ACCC"], ["AGGG"], "rna") == [(0, {0: 0})]
    assert nearest(["IIIIII"], ["VVVVVV"], "protein") == [(-1, {})]
    t = rand(rng, 60)
    assert [j for j, _ in nearest([t], [rand(rng, 60)] + [t] * 5, "rna")] == [1]


def test_nearest_neighbour_protein_ss_transfers_states_and_falls_back_to_the_majority():
    """Train: P (30 residues, DSSP HHHHHHHHHHHHGGGGEEEEEEEETTTTTT) and Q (20, GGGGGGGGGGTTTTTTTTTT): Q8 counts
    H 12, G 14, E 8, T 16 (majority T); Q3 H 26, E 8, C 16 (majority H). Test: a copy of P (its states
    transferred through the alignment, 30 right in both schemes) five positions later, after WWWWW (true T,
    unaligned: the majority, 5 right in Q8, 0 in Q3), and W x 20 (no W, F or Y in train: no positive
    alignment, so the majority), true TTTTTTTTHHHHHHHHHHHH: Q8 8 right (T), Q3 12 right (H).
    Q8 43/55, Q3 42/55."""
    from bioprune.benchmarks.nearest import nn_protein_ss

    rng = random.Random(8)
    letters = "ACDEGHIKLMNPQRST"
    p = "".join(rng.choice(letters) for _ in range(30))
    q = "".join(rng.choice(letters) for _ in range(20))
    train = [{"sequence": p, "dssp8": "H" * 12 + "G" * 4 + "E" * 8 + "T" * 6},
             {"sequence": q, "dssp8": "G" * 10 + "T" * 10}]
    test = [{"sequence": "W" * 5 + p, "dssp8": "T" * 5 + train[0]["dssp8"]},
            {"sequence": "W" * 20, "dssp8": "T" * 8 + "H" * 12}]
    out = dict(nn_protein_ss(train, test))
    assert set(out) == {"q3", "q8"}
    assert out["q8"] == pytest.approx(43 / 55) and out["q3"] == pytest.approx(42 / 55)


def test_registry_matches_the_config_schema():
    schema = yaml.safe_load((ROOT / "schemas/config.schema.yaml").read_text())
    enum = schema["properties"]["benchmark"]["properties"]["tasks"]["items"]["enum"]
    assert set(TASKS) == set(enum)
    with pytest.raises(BiopruneError, match="benchmark.tasks"):
        run_benchmarks("unused.pt", BenchParams.from_dict({"tasks": ["rna_fold"], "molecule": "rna"}))


@needs_mmseqs
def test_models_and_baseline_share_the_stored_split(tmp_path):
    from bioprune.models import build_model, save_checkpoint

    res = tmp_path / "res"
    write_tsv(res / "rna/type_eval.tsv.gz", type_rows())
    write_tsv(res / "rna/ss_eval.tsv.gz", ss_rows())
    params = {"tasks": ["rna_type", "rna_ss"], "molecule": "rna", "resources": str(res), "max_eval": 100,
              "device": "cpu", "test_families": ["famC"], "split_dir": str(tmp_path / "splits")}
    for task, f in (("rna_type", "type"), ("rna_ss", "ss")):
        build_split(task, str(res / f"rna/{f}_eval.tsv.gz"), str(tmp_path / f"splits/{task}.tsv"),
                    BenchParams.from_dict(params))
    model = tmp_path / "m.pt"
    save_checkpoint(model, build_model("rna", 1, 16, 2, seed=0), "rna")
    rows = run_benchmarks(str(model), BenchParams.from_dict(params))
    nn = nearest_neighbour_reference(BenchParams.from_dict(params))
    assert {(t, m) for t, m, _ in nn} == {("rna_type", "accuracy"), ("rna_type", "macro_f1"), ("rna_ss", "bp_f1"),
                                          ("rna_ss", "n_test")}
    assert {(t, m) for t, m, _ in nn} <= {(t, m) for t, m, _ in rows}
    assert dict(((t, m), v) for t, m, v in nn)[("rna_ss", "n_test")] == 6
    # the values are those of the baseline on each task's own probe split (the rows the models saw)
    from bioprune.benchmarks import rna_ss, rna_type

    bp = BenchParams.from_dict(params)
    expected = [("rna_type", m, v) for m, v in nn_classification(*rna_type.sets(bp), "rna")]
    expected += [("rna_ss", m, v) for m, v in nn_rna_ss(*rna_ss.sets(bp))]
    assert sorted(nn) == sorted(expected) and len(nn) == 4
    assert all(type(v) is float for _, _, v in nn)
    mixed = dict(params, tasks=["perplexity", "protein_loc", "rna_type", "protein_ss", "rna_ss"])
    assert [t for t, _, _ in nearest_neighbour_reference(BenchParams.from_dict(mixed))] == ["rna_type"] * 2 + ["rna_ss"] * 2
    write_tsv(res / "rna/type_eval.tsv.gz", type_rows(seed=5))  # new content: the stored split is stale
    with pytest.raises(BiopruneError, match="rna_type.tsv: stored split"):
        nearest_neighbour_reference(BenchParams.from_dict(params))


def test_nearest_neighbour_ranks_by_identities_before_alignment_score():
    """P holds all 60 test residues, split by four 3-base insertions (score 120 - 4 x 9 = 84, 60 identities);
    Q is an exact copy of the first 45 (score 90, 45 identities). The neighbour is P, the most identical,
    though Q scores higher; its map sends P's positions to identical test residues, every test residue once."""
    rng = random.Random(11)
    s = rand(rng, 60)
    ins = ["GGG", "CCC", "AAA", "UUU"]
    p = "".join(s[12 * i:12 * i + 12] + (ins[i] if i < 4 else "") for i in range(5))
    q = s[:45]
    from bioprune.benchmarks.nearest import _aligner

    al = _aligner("rna")
    assert al.align(s, q)[0].score > al.align(s, p)[0].score  # the case separates score from identity
    for train in ([p, q], [q, p]):
        (j, m), = nearest([s], train, "rna")
        assert train[j] == p
        assert sorted(m.values()) == list(range(60)) and all(p[a] == s[b] for a, b in m.items())


def test_nearest_neighbour_aligns_the_most_similar_kmer_profiles():
    """With more train sequences than the candidates aligned, the k-mer pre-filter keeps the most similar
    profiles: a ~95% copy among 59 unrelated sequences is found with 20 candidates and with 1."""
    rng = random.Random(5)
    train = [rand(rng, 80) for _ in range(60)]
    test = [mutate(rng, train[k], 4) for k in (7, 33, 58)]
    assert [j for j, _ in nearest(test, train, "rna")] == [7, 33, 58]
    assert [j for j, _ in nearest(test, train, "rna", k=1)] == [7, 33, 58]


def test_homology_clusters_join_chains_whatever_order_the_hits_arrive(monkeypatch):
    """Single linkage over hits that arrive one direction at a time, in every order: the chain 0~3~1~2 (0
    and 2 share nothing; 3, the largest index, links two others) and the star 8~{5,6,7} are each one
    cluster, 4 stays alone, labelled by their smallest member. A hit that arrives after its ends were
    joined to others must join their clusters (find), whichever end is the larger root (parent[max] = min)."""
    import itertools

    import pandas as pd

    import bioprune.leakage.gate as leakage
    from bioprune.benchmarks.splits import homology_clusters

    chain, star = [(0, 3), (3, 1), (1, 2)], [(8, 5), (8, 6), (8, 7)]
    below = [(0, 2, 0.5)]  # a hit under the identity threshold joins nothing
    seen = set()
    for order in itertools.permutations(chain):
        for flips in itertools.product((False, True), repeat=3):
            edges = [(t, q) if f else (q, t) for (q, t), f in zip(order, flips)]
            stars = [(t, q) if f else (q, t) for (q, t), f in zip(star, flips)]
            for arrangement in (edges + stars, stars[::-1] + edges[::-1]):
                hits = pd.DataFrame([(q, t, 0.95, 1.0) for q, t in arrangement] + [(q, t, i, 1.0) for q, t, i in below],
                                    columns=["q", "t", "fident", "cov"])
                monkeypatch.setattr(leakage, "search", lambda *a, h=hits, **k: h)
                got = homology_clusters(["ACGU"] * 9, "rna", 0.9, 0.8).tolist()
                assert got == [0, 0, 0, 0, 4, 5, 5, 5, 5], arrangement
                seen.add(tuple(arrangement))
    assert len(seen) == 96


@needs_mmseqs
def test_split_keeps_a_homology_chain_on_one_side():
    """A~B and B~C at >= 92% identity, A and C 84% (under the 0.9 split identity): MMseqs2 finds no A-C hit,
    so only transitivity puts A and C in one cluster, and the split never separates them. B, the link,
    comes last (the largest index of its cluster), so its hits arrive after A's and C's."""
    from bioprune.benchmarks.splits import homology_clusters
    from bioprune.leakage.gate import near_copies, search

    rng = random.Random(21)
    rows = []
    for c in range(8):
        b = rand(rng, 150)
        a = "".join(x if k % 6 != 3 or k >= 72 else {"A": "C", "C": "G", "G": "U", "U": "A"}[x] for k, x in enumerate(b))
        cc = "".join(x if k % 6 != 3 or k < 78 else {"A": "G", "C": "U", "G": "A", "U": "C"}[x] for k, x in enumerate(b))
        rows += [{"id": f"c{c}.{m}", "label": "xy"[c % 2], "sequence": s} for m, s in enumerate((a, cc, b))]
    seqs = [r["sequence"] for r in rows]
    edges = near_copies(search(seqs, seqs, "rna", 0.9, evalue=1e-3), 0.9, 0.8)
    pairs = {(q, t) for q, t in zip(edges.q, edges.t) if q != t}
    pairs |= {(t, q) for q, t in pairs}
    for c in range(8):
        a, cc, b = 3 * c, 3 * c + 1, 3 * c + 2
        assert {(a, b), (b, cc)} <= pairs and (a, cc) not in pairs
    cl = homology_clusters(seqs, "rna", 0.9, 0.8)
    assert cl.tolist() == [3 * (k // 3) for k in range(24)]
    df = compute_split("rna_type", rows, SplitParams("rna", 0.9, test_fraction=0.5))
    sides = df.groupby(df["id"].str.split(".").str[0])["split"].agg(set)
    assert all(len(s) == 1 for s in sides) and {x for s in sides for x in s} == {"train", "test"}


def test_held_out_families_are_a_seeded_third_of_distinct_classes():
    """Without benchmark.test_families the rna_ss test classes are len // 3 distinct families (at least one),
    the same for the same seed; configured families are used as given, unknown ones refused."""
    from bioprune.benchmarks.splits import held_out_families

    for n_fam, size in ((2, 1), (3, 1), (9, 3), (12, 4)):
        labels = [f"fam{i}" for i in range(n_fam) for _ in range(3)]
        picks = [held_out_families(labels, [], seed) for seed in range(20)]
        assert all(len(p) == size and p <= set(labels) for p in picks)
        assert picks == [held_out_families(labels, [], seed) for seed in range(20)]
        if n_fam >= 9:
            assert len({frozenset(p) for p in picks}) > 1  # the seed matters
    assert held_out_families(["a", "b", "c"], ["b"], 0) == {"b"}
    with pytest.raises(BiopruneError, match="unknown families \\['z'\\]"):
        held_out_families(["a", "b", "c"], ["b", "z"], 0)
