"""The labelled benchmark tasks end to end through run_benchmarks: rna_ss (pair head and the RNAfold row),
protein_ss (Q3/Q8) and protein_loc, on the bundled evaluation sets (content: metric names, ranges, test-set
sizes, the homology split) and on planted sets whose answer is known (the probe must find a planted
signal and must not find one in shuffled labels). Models are tiny and untrained."""
from __future__ import annotations

import gzip
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from bioprune.benchmarks import protein_loc, protein_ss, rna_ss, rnafold_reference, run_benchmarks
from bioprune.benchmarks.common import BenchParams, read_tsv
from bioprune.benchmarks.splits import build_split, read_split
from bioprune.models import build_model, save_checkpoint

pytestmark = pytest.mark.requires_tool("mmseqs")  # every probe split is an MMseqs2 search
ROOT = Path(__file__).resolve().parents[2]
FILES = {"rna_ss": "rna/ss_eval.tsv.gz", "protein_ss": "protein/ss_eval.tsv.gz",
         "protein_loc": "protein/loc_eval.tsv.gz"}
COMP = {"A": "U", "U": "A", "G": "C", "C": "G"}
AA = "ACDEFGHIKLMNPQRSTVWY"


def write_tsv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = list(rows[0])
    with gzip.open(path, "wt") as fh:
        fh.write("\t".join(cols) + "\n" + "".join("\t".join(r[c] for c in cols) + "\n" for r in rows))


def params(res: Path, molecule: str, task: str, **kw) -> dict:
    """What bioprune.config.benchmark_params builds, for one task."""
    p = {"molecule": molecule, "tasks": [task], "resources": str(res), "max_eval": 40, "device": "cpu",
         "test_families": [], "split_identity": None, "split_coverage": 0.8, "split_dir": None}
    return {**p, **kw}


def stored_split(p: dict, splits: Path) -> dict:
    """Build and store the task's split once (as the probe_split stage does), so later calls reuse it."""
    task = p["tasks"][0]
    p = {**p, "split_dir": str(splits)}
    if not (splits / f"{task}.tsv").exists():
        build_split(task, str(Path(p["resources"]) / FILES[task]), str(splits / f"{task}.tsv"), BenchParams.from_dict(p))
    return p


def metrics(rows: list[tuple[str, str, float]], task: str) -> dict[str, float]:
    assert {t for t, _, _ in rows} == {task}
    return {m: v for _, m, v in rows}


# independent of bioprune.benchmarks.metrics: base-pair F1 and dot-bracket parsing
def f1(pred: set, true: set) -> float:
    if not pred and not true:
        return 1.0
    tp = len(pred & true)
    return 0.0 if tp == 0 else 2 * tp / (len(pred) + len(true))


def bracket_pairs(db: str) -> set:
    stack, out = [], set()
    for i, c in enumerate(db):
        if c == "(":
            stack.append(i)
        elif c == ")":
            out.add((stack.pop(), i))
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    """Untrained 1-layer models; `protein_perturbed` differs from `protein` only in its transformer layer."""
    d = tmp_path_factory.mktemp("models")
    out = {}
    for mol in ("rna", "protein"):
        out[mol] = str(d / f"{mol}.pt")
        save_checkpoint(out[mol], build_model(mol, 1, 16, 2, seed=0), mol)
    model = build_model("protein", 1, 16, 2, seed=0)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("layers."):
                p.add_(0.5 * torch.randn(p.shape, generator=gen))
    out["protein_perturbed"] = str(d / "protein_perturbed.pt")
    save_checkpoint(out["protein_perturbed"], model, "protein")
    return out


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> Path:
    """The bundled rna_ss set whole; 6 rows per label of protein_loc and 60 protein_ss chains (MMseqs2 time);
    their homology splits stored in <dir>/splits as the probe_split stage does."""
    d = tmp_path_factory.mktemp("real")
    res = d / "res"
    (res / "rna").mkdir(parents=True)
    shutil.copy(ROOT / "resources" / FILES["rna_ss"], res / FILES["rna_ss"])
    loc = read_tsv(ROOT / "resources" / FILES["protein_loc"])
    labels = sorted({r["label"] for r in loc})
    write_tsv(res / FILES["protein_loc"], [r for lab in labels for r in [x for x in loc if x["label"] == lab][:6]])
    write_tsv(res / FILES["protein_ss"], read_tsv(ROOT / "resources" / FILES["protein_ss"])[:60])
    for task in FILES:  # rna_ss holds out tRNA (the split's fingerprint includes the test families)
        p = params(res, task.split("_")[0], task, test_families=["tRNA"] if task == "rna_ss" else [])
        build_split(task, str(res / FILES[task]), str(d / f"splits/{task}.tsv"), BenchParams.from_dict(p))
    return d


def stored(real: Path, task: str):
    return read_split(str(real / f"splits/{task}.tsv"))[1].set_index("id")


def test_rna_ss_on_held_out_trna_and_the_rnafold_row(real, models):
    RNA = pytest.importorskip("RNA", reason="ViennaRNA (RNAfold) Python bindings not installed")
    p = params(real / "res", "rna", "rna_ss", max_eval=30, test_families=["tRNA"], split_dir=str(real / "splits"))
    got = metrics(run_benchmarks(models["rna"], BenchParams.from_dict(p)), "rna_ss")
    assert set(got) == {"bp_f1", "threshold", "n_test"}
    assert 0.0 <= got["bp_f1"] <= 1.0 and np.isclose(np.linspace(0.05, 0.95, 19), got["threshold"]).any()
    assert got["n_test"] == 30  # max_eval of the 120 tRNAs
    train, test = rna_ss.sets(BenchParams.from_dict(p))
    split = stored(real, "rna_ss")["split"]
    assert len({r["id"] for r in test}) == 30 and {r["label"] for r in test} == {"tRNA"}
    assert (split[[r["id"] for r in test]] == "test").all()
    assert 0 < len(train) <= 300 and "tRNA" not in {r["label"] for r in train}
    assert (split[[r["id"] for r in train]] == "train").all()

    fold = dict(rnafold_reference(str(real / "res"), 30, ["tRNA"]))
    assert set(fold) == {"bp_f1", "n_test"} and fold["n_test"] == 30
    truth = [{tuple(int(x) for x in pr.split(",")) for pr in r["pairs"].split(";") if pr} for r in test]
    mine = np.mean([f1(bracket_pairs(RNA.fold(r["sequence"])[0]), t) for r, t in zip(test, truth)])
    assert fold["bp_f1"] == pytest.approx(mine, abs=1e-12)  # RNAfold on the pair heads' own test sequences
    assert fold["bp_f1"] > 0.5 and fold["bp_f1"] > got["bp_f1"] + 0.2  # MFE folds tRNAs; an untrained head cannot
    assert dict(rnafold_reference(str(real / "res"), 10_000, ["tRNA"]))["n_test"] == 120  # every tRNA


def hairpins(seed: int = 0) -> list[dict]:
    """5 families x 16 random hairpins (0-based pairs); B0 is a copy of test hairpin E0 (a training homolog)."""
    rng = random.Random(seed)

    def rand(n: int) -> str:
        return "".join(rng.choice("ACGU") for _ in range(n))

    rows = []
    for fam in "ABCDE":
        for k in range(16):
            f1_, stem, loop, f2 = rng.randint(5, 15), rng.randint(7, 10), rng.randint(4, 8), rng.randint(5, 15)
            left = rand(stem)
            seq = rand(f1_) + left + rand(loop) + "".join(COMP[c] for c in reversed(left)) + rand(f2)
            pairs = ";".join(f"{f1_ + i},{f1_ + 2 * stem + loop - 1 - i}" for i in range(stem))
            rows.append({"id": f"{fam}{k}", "family": fam, "label": f"fam{fam}", "sequence": seq, "pairs": pairs})
    rows[16] = dict(rows[16], sequence=rows[64]["sequence"], pairs=rows[64]["pairs"])
    return rows


def test_rna_ss_pair_head_finds_planted_hairpins_and_not_shuffled_pairs(tmp_path, models):
    rows = hairpins()
    # shuffled: every row carries the pairs of the next row (those inside its length)
    shuffled = [dict(r, pairs=";".join(pr for pr in rows[(k + 1) % len(rows)]["pairs"].split(";")
                                       if int(pr.split(",")[1]) < len(r["sequence"]))) for k, r in enumerate(rows)]
    f1s = {}
    for name, data in (("planted", rows), ("shuffled", shuffled)):
        write_tsv(tmp_path / name / FILES["rna_ss"], data)
        p = stored_split(params(tmp_path / name, "rna", "rna_ss", max_eval=12, test_families=["famE"]),
                         tmp_path / "splits")  # one split for both: same ids, labels and sequences
        got = metrics(run_benchmarks(models["rna"], BenchParams.from_dict(p)), "rna_ss")
        assert got["n_test"] == 12
        f1s[name] = got["bp_f1"]
        train, test = rna_ss.sets(BenchParams.from_dict(p))
        ids = {r["id"] for r in train}
        assert "B0" not in ids and len(ids) == 63  # B0 shares a cluster with test E0: purged; 64 - 1
        assert {r["label"] for r in test} == {"famE"}
    assert f1s["planted"] > 0.25 and f1s["shuffled"] < 0.1, f1s


def test_protein_ss_on_real_chains_uses_the_last_layer(real, models):
    p = params(real / "res", "protein", "protein_ss", max_eval=40, split_dir=str(real / "splits"))
    got = metrics(run_benchmarks(models["protein"], BenchParams.from_dict(p)), "protein_ss")
    assert set(got) == {"q3", "q8"} and all(0.0 < v <= 1.0 for v in got.values())
    train, test = protein_ss.sets(BenchParams.from_dict(p))
    assert len(train) + len(test) == 40 and 0 < len(test) < len(train)  # max_eval chains; ~30% test
    split = stored(real, "protein_ss")
    assert (split.loc[[r["id"] for r in test], "split"] == "test").all()
    assert not set(split.loc[[r["id"] for r in test], "cluster"]) & set(split.loc[[r["id"] for r in train], "cluster"])
    # only the transformer layer differs: features from the embedding layer would not notice
    other = metrics(run_benchmarks(models["protein_perturbed"], BenchParams.from_dict(p)), "protein_ss")
    assert other != got


HELIX, STRAND, COIL = "AEL", "VI", "KGS"


def ss_chains(seed: int = 0) -> list[dict]:
    """DSSP states planted by residue: helix residues get H/G/I, strand E/B, coil C/T/S (at random within)."""
    rng = random.Random(seed)
    rows = []
    for k in range(60):
        seq = "".join(rng.choice(HELIX + STRAND + COIL) for _ in range(rng.randint(40, 120)))
        dssp = "".join(rng.choice("HGI" if c in HELIX else "EB" if c in STRAND else "CTS") for c in seq)
        rows.append({"id": f"c{k}", "sequence": seq, "dssp8": dssp})
    return rows


def test_protein_ss_probe_reads_planted_states_per_residue(tmp_path, models):
    rows = ss_chains()
    rng = random.Random(1)
    shuffled = [dict(r, dssp8="".join(rng.sample(r["dssp8"], len(r["dssp8"])))) for r in rows]
    got = {}
    for name, data in (("planted", rows), ("shuffled", shuffled)):
        write_tsv(tmp_path / name / FILES["protein_ss"], data)
        p = stored_split(params(tmp_path / name, "protein", "protein_ss", max_eval=60, split_identity=0.95),
                         tmp_path / "splits")  # one split for both: same ids and sequences
        got[name] = metrics(run_benchmarks(models["protein"], BenchParams.from_dict(p)), "protein_ss")
    # 3 states follow the residue exactly; the 8 states only up to a random choice within the state
    assert got["planted"]["q3"] > 0.95 and got["planted"]["q8"] < 0.6, got
    assert got["shuffled"]["q3"] < 0.55, got  # no signal left: about the majority state


def test_protein_loc_on_real_rows_splits_by_cluster(real, models):
    p = params(real / "res", "protein", "protein_loc", max_eval=40, split_dir=str(real / "splits"))
    got = metrics(run_benchmarks(models["protein"], BenchParams.from_dict(p)), "protein_loc")
    assert set(got) == {"accuracy", "macro_f1"} and all(0.0 <= v <= 1.0 for v in got.values())
    train, test = protein_loc.sets(BenchParams.from_dict(p))
    assert len(train) + len(test) == 44  # balanced: ceil(40 / 11 labels) = 4 of each label's 6 rows
    assert len(test) < len(train) and len({r["label"] for r in train}) >= 2
    split = stored(real, "protein_loc")
    assert (split.loc[[r["id"] for r in test], "split"] == "test").all()
    assert not set(split.loc[[r["id"] for r in test], "cluster"]) & set(split.loc[[r["id"] for r in train], "cluster"])


def loc_rows(seed: int = 0) -> list[dict]:
    """Three labels told apart by composition alone (30% K, W or E), random lengths 30-120."""
    rng = random.Random(seed)
    return [{"id": f"{lab}{k}", "label": lab,
             "sequence": "".join(res if rng.random() < 0.3 else rng.choice(AA) for _ in range(rng.randint(30, 120)))}
            for lab, res in (("nucleus", "K"), ("membrane", "W"), ("secreted", "E")) for k in range(20)]


def test_protein_loc_probe_finds_planted_labels_and_not_shuffled_ones(tmp_path, models):
    rows = loc_rows()
    labels = [r["label"] for r in rows]
    random.Random(2).shuffle(labels)
    got = {}
    for name, data in (("planted", rows), ("shuffled", [dict(r, label=lab) for r, lab in zip(rows, labels)])):
        write_tsv(tmp_path / name / FILES["protein_loc"], data)
        p = stored_split(params(tmp_path / name, "protein", "protein_loc", max_eval=60, split_identity=0.95),
                         tmp_path / name / "splits")  # labels differ: a split each
        got[name] = metrics(run_benchmarks(models["protein"], BenchParams.from_dict(p)), "protein_loc")
        train, test = protein_loc.sets(BenchParams.from_dict(p))
        assert len(test) == 18 and len(train) == 42  # round(0.3 x 20) per label; no planted homologs
    assert got["planted"]["accuracy"] >= 0.9 and got["planted"]["macro_f1"] >= 0.9, got
    assert got["shuffled"]["accuracy"] < 0.6, got  # chance is 1/3
