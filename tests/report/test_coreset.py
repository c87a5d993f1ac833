"""The coreset a user came for (issue 30): the `coreset` target runs no pretraining or benchmark job,
exports give the user's own records back (`.original.fa`, `original_length`, `cropped`, `#` lines
stating crop, masking and duplicate collapse), and the coreset summary states the numbers."""
from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from Bio.SeqIO.FastaIO import SimpleFastaParser

from bioprune import stages
from bioprune.selection.export import COLUMNS
from bioprune.h5io import atomic_h5, write_str
from bioprune.ingest import IngestOptions, ingest, read_shard

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
AA = "ACDEFGHIKLMNPQRSTVWY"


def protein_records(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """(header, sequence): lengths 20..90, some lower case, some with ambiguity codes, a stop *, and an
    exact duplicate of an earlier sequence under another id."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        s = "".join(rng.choice(AA) for _ in range(rng.randint(20, 90)))
        if i % 7 == 0:
            s = s[:5] + "B" + s[6:]
        if i % 5 == 0:
            s = s.lower()
        if i % 9 == 0:
            s += "*"
        out.append((f"P{i:03d} some description {i} OS=Test", s))
    out.append(("P999 duplicate of P001", out[1][1]))
    return out


def write_records(path: Path, recs, width: int = 60) -> Path:
    with open(path, "w") as fh:
        for h, s in recs:
            fh.write(f">{h}\n" + "".join(s[k:k + width] + "\n" for k in range(0, len(s), width)))
    return path


def fake_scores(path: Path, shards: list[str], seed: int = 0) -> tuple[list[str], np.ndarray]:
    ids, seqs = [], []
    for p in shards:
        i, s, _ = read_shard(p)
        ids += i
        seqs += s
    score = np.random.default_rng(seed).random(len(ids))
    with atomic_h5(str(path), "scores") as f:
        write_str(f, "id", ids)
        f.create_dataset("score", data=score)
        f.create_dataset("loss", data=score)
        f.create_dataset("length", data=np.array([len(s) for s in seqs], dtype=np.int32))
        f.create_dataset("grad_sqnorm", data=score)
        f.create_dataset("in_subset", data=np.zeros(len(ids), dtype=bool))
    return ids, score


def test_export_gives_the_users_original_records_in_input_order(tmp_path):
    recs = protein_records(80)
    fasta = write_records(tmp_path / "user.fa", recs)
    opts = IngestOptions(molecule="protein", max_length=40, min_length=10, holdout_fraction=0.001)
    shards = [str(tmp_path / f"{i}-of-2.h5") for i in (1, 2)]
    ingest(str(fasta), shards, str(tmp_path / "ho.h5"), opts)
    fake_scores(tmp_path / "scores.h5", shards)
    export = {"files": [str(fasta)], "ingest": opts.as_dict()}
    stages.select(str(tmp_path / "scores.h5"), shards, str(tmp_path / "s.h5"), str(tmp_path / "s.fa"),
                  {"strategy": "top_influence"}, 0.5, 0, table=str(tmp_path / "s.tsv"), export=export)
    tab = pd.read_csv(tmp_path / "s.tsv", sep="\t", comment="#")
    assert tuple(tab.columns) == COLUMNS
    chosen = tab["id"].tolist()
    # the original records: exactly the input records of the chosen ids (header and sequence), in input order
    with open(tmp_path / "s.original.fa") as fh:
        got = list(SimpleFastaParser(fh))
    want = [(h, s) for h, s in recs if h.split()[0] in set(chosen)]
    want = [r for k, r in enumerate(want) if r[0].split()[0] not in {w[0].split()[0] for w in want[:k]}]
    assert got == want and len(got) == len(chosen)
    orig = {h.split()[0]: s for h, s in recs[::-1]}  # first occurrence wins
    for row in tab.itertuples():
        residues = orig[row.id].rstrip("*")
        assert row.original_length == len(residues)
        assert row.cropped == int(len(residues) > 40) and row.length == min(len(residues), 40)
    assert tab["cropped"].sum() > 0 and (tab["length"] <= 40).all()
    head = [line for line in open(tmp_path / "s.tsv") if line.startswith("#")]
    text = "".join(head)
    assert "corpus.max_length = 40" in text and "masked to X" in text and "first id" in text
    assert "input order" in text and "s.original.fa" in text


def test_export_names_an_id_missing_from_the_corpus(tmp_path):
    from bioprune.errors import BiopruneError
    from bioprune.selection.export import write_original_records

    fasta = write_records(tmp_path / "a.fa", [("x1", "ACDE"), ("x2", "KLMN")])
    with pytest.raises(BiopruneError, match="selection id nope .*corpus.path"):
        write_original_records([str(fasta)], ["x2", "nope"], str(tmp_path / "o.fa"))
    assert not (tmp_path / "o.fa").exists()


def _job_counts(out: str) -> dict[str, int]:
    block = out.split("Job stats:")[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", block, re.M)}


def test_coreset_target_runs_no_pretraining_or_benchmark_job(tmp_path):
    res = subprocess.run([SNAKEMAKE, "-n", "-s", str(ROOT / "Snakefile"), "--directory", str(ROOT), "coreset",
                          "--configfile", str(ROOT / "tests/config/tiny.yaml"), "--config",
                          f"results={tmp_path / 'r'}"], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr + res.stdout
    jobs = _job_counts(res.stdout)
    for stage in ("ingest_route", "leakage_gate", "reference", "sketch", "scores", "stability", "select",
                  "coreset_summary"):
        assert jobs.get(stage, 0) >= 1, (stage, jobs)
    assert not {"pretrain", "benchmark", "aggregate", "probe_split", "ledger"} & set(jobs), jobs
    # the CLI runs the same target
    from bioprune.cli import build_parser, coreset_command

    args = build_parser().parse_args(["coreset", "--configfile", "u.yaml", "--cores", "3", "-n"])
    cmd = coreset_command(args)
    assert "coreset" in cmd and "-n" in cmd and cmd[cmd.index("--cores") + 1] == "3"
    assert cmd[cmd.index("--configfile") + 1] == "u.yaml"


def test_summary_states_pool_gate_scores_and_composition_and_warns_on_length(tmp_path):
    from bioprune.report.coreset import write_summary

    recs = protein_records(60, seed=3)
    fasta = write_records(tmp_path / "user.fa", recs)
    opts = IngestOptions(molecule="protein", max_length=40, min_length=10, holdout_fraction=0.001)
    shards = [str(tmp_path / "1-of-1.h5")]
    ingest(str(fasta), shards, str(tmp_path / "ho.h5"), opts, str(tmp_path / "ingest.json"))
    ids, _ = fake_scores(tmp_path / "scores.h5", shards)
    import h5py

    with h5py.File(tmp_path / "scores.h5", "a") as f:
        f.attrs["spearman_score_length"] = 0.8
    stages.select(str(tmp_path / "scores.h5"), shards, str(tmp_path / "s.h5"), str(tmp_path / "s.fa"),
                  {"strategy": "top_influence"}, 0.2, 0, table=str(tmp_path / "s.tsv"),
                  export={"files": [str(fasta)], "ingest": opts.as_dict()})
    pd.DataFrame([{"eval_set": "all", "source": "all", "pool_sequences": len(ids), "removed": 2,
                   "eval_sequences": 5, "eval_with_hit": 1}]).to_csv(tmp_path / "leak.csv", index=False)
    text = write_summary(str(tmp_path / "summary.md"), str(tmp_path / "ingest.json"), str(tmp_path / "leak.csv"),
                         str(tmp_path / "scores.h5"), {"top_influence_0.2_seed0": str(tmp_path / "s.tsv")})
    stats = json.loads((tmp_path / "ingest.json").read_text())
    tab = pd.read_csv(tmp_path / "s.tsv", sep="\t", comment="#")
    assert f"records read: {stats['records']}" in text and f"cropped to corpus.max_length: {stats['cropped']}" in text
    assert f"2 of {len(ids)} pool sequences removed" in text
    assert "Spearman(score, length) = 0.8" in text and "**warning:**" in text
    row = [line for line in text.splitlines() if line.startswith("| top_influence_0.2_seed0")][0]
    assert f"| {len(tab)} |" in row and f"| {int(tab['cropped'].sum())} |" in row
    assert (tmp_path / "summary.md").read_text() == text


# --- mistakes that stop before any job (items 3-5): one line naming the key or file, no traceback ---------

def _dry(tmp_path: Path, cfg: dict, target: str = "coreset") -> subprocess.CompletedProcess:
    import yaml

    (tmp_path / "u.yaml").write_text(yaml.safe_dump(cfg))
    return subprocess.run([SNAKEMAKE, "-n", "-s", str(ROOT / "Snakefile"), target, "--configfile", "u.yaml"],
                          cwd=tmp_path, capture_output=True, text=True)


def _rna_records(n: int) -> list[tuple[str, str]]:
    rng = random.Random(1)
    return [(f"r{i}", "".join(rng.choice("ACGU") for _ in range(60))) for i in range(n)]


CASES = {
    "typo": ({"corpus": {"max_lenght": 30}}, "unknown config key corpus.max_lenght (did you mean corpus.max_length?)"),
    "top-level typo": ({"leakge": {"enabled": False}}, "unknown config key leakge (did you mean leakage?)"),
    "missing corpus": ({"corpus": {"path": "nope/missing.fa"}}, "key corpus.path: nope/missing.fa: file not found"),
    "rna as protein": ({"corpus": {"molecule": "protein"}, "leakage": {"enabled": False}}, "key corpus.molecule is protein"),
    "protein as rna": ({"corpus": {"path": "prot.fa"}}, "key corpus.molecule is rna"),
    "no eval set": ({"corpus": {"path": "prot.fa", "molecule": "protein"}},
                    "benchmark.tasks (perplexity, rna_ss, rna_type) has no protein task"),
    "missing eval set": ({"leakage": {"eval_sets": ["mine.fa"]}}, "key leakage.eval_sets: mine.fa: file not found"),
    "cuda": ({"device": "cuda"}, "key device is cuda, but no CUDA device is visible"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_mistake_stops_before_any_job_with_one_line(tmp_path, case):
    import copy

    from bioprune.config import deep_merge

    if case == "cuda":
        torch = pytest.importorskip("torch")
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    write_records(tmp_path / "pool.fa", _rna_records(100))
    write_records(tmp_path / "prot.fa", protein_records(100))
    base = {"corpus": {"path": "pool.fa", "molecule": "rna"}}
    update, message = CASES[case]
    res = _dry(tmp_path, deep_merge(copy.deepcopy(base), update))
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    assert message in out, out
    errors = [line for line in out.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("bioprune: error: ") and "u.yaml: " in errors[0], out
    assert "Traceback" not in out and 'File "' not in out and "MissingInputException" not in out
    assert not (tmp_path / "results").exists()


def test_molecule_check_override_and_own_eval_set_pass(tmp_path):
    write_records(tmp_path / "pool.fa", _rna_records(100))
    write_records(tmp_path / "mine.fa", _rna_records(5))
    res = _dry(tmp_path, {"corpus": {"path": "pool.fa", "molecule": "protein", "molecule_check": False},
                          "leakage": {"eval_sets": ["mine.fa"]}})
    assert res.returncode == 0, res.stdout + res.stderr
    assert "leakage_gate" in res.stdout


def test_budget_under_one_sequence_stops_in_the_leakage_gate_before_scoring(tmp_path):
    from bioprune.errors import BiopruneError

    shards = [str(tmp_path / "1-of-1.h5")]
    ingest(str(write_records(tmp_path / "p.fa", _rna_records(50))), shards, str(tmp_path / "ho.h5"),
           IngestOptions(holdout_fraction=0.001))
    params = {"enabled": False, "molecule": "rna", "max_identity": 0.9, "min_coverage": 0.8, "eval_sets": []}
    with pytest.raises(BiopruneError, match=r"selection.budgets: 0.001 of a pool of \d+ .*raise it to at least"):
        stages.leakage_gate(shards, [], [str(tmp_path / "out.h5")], str(tmp_path / "ex.txt"), str(tmp_path / "r.csv"),
                            params, selection={"budgets": [0.1, 0.001], "strategies": ["top_influence"]})
    assert not (tmp_path / "out.h5").exists()
    stages.leakage_gate(shards, [], [str(tmp_path / "out.h5")], str(tmp_path / "ex.txt"), str(tmp_path / "r.csv"),
                        params, selection={"budgets": [0.1], "strategies": ["top_influence"]})
    assert (tmp_path / "out.h5").exists()


def test_gate_with_an_empty_eval_set_stops_naming_the_keys(tmp_path):
    from bioprune.errors import BiopruneError
    from bioprune.leakage.gate import GateConfig, run_gate

    (tmp_path / "empty.tsv").write_text("id\tsequence\n")
    with pytest.raises(BiopruneError, match="no evaluation sequence .*leakage.eval_sets"):
        run_gate([], [str(tmp_path / "empty.tsv")], str(tmp_path / "ex.txt"), str(tmp_path / "r.csv"),
                 GateConfig(molecule="rna"))


@pytest.mark.slow
@pytest.mark.requires_tool("mmseqs")
def test_user_protein_coreset_end_to_end(tmp_path):
    """Issue 30's "done when": a user's protein FASTA (sequences longer than max_length) and their own
    evaluation FASTA; `snakemake --cores 2 coreset` runs no pretraining job, removes the planted
    near-copies of the evaluation set, and exports records identical to the input records of the chosen ids."""
    import shutil

    import yaml

    if not shutil.which("mmseqs"):
        pytest.skip("mmseqs not on PATH")
    rng = random.Random(7)
    evals = [(f"E{i}", "".join(rng.choice(AA) for _ in range(90))) for i in range(8)]
    recs = [(f"U{i:03d} user protein {i}", "".join(rng.choice(AA) for _ in range(rng.randint(40, 160))))
            for i in range(300)]
    planted = []
    for k, (_, e) in enumerate(evals[:4]):  # 97% identical copies of four evaluation sequences
        s = list(e)
        for j in (10, 40, 70):
            s[j] = "W" if s[j] != "W" else "Y"
        planted.append(f"PLANT{k}")
        recs.insert(50 * k + 3, (f"PLANT{k} near-copy of E{k}", "".join(s)))
    write_records(tmp_path / "user.fa", recs)
    write_records(tmp_path / "my_eval.fa", evals)
    cfg = {"results": "res", "seeds": [0], "device": "cpu",
           "corpus": {"path": "user.fa", "molecule": "protein", "max_length": 100, "min_length": 20,
                      "holdout_fraction": 0.02, "shards": 1},
           "leakage": {"eval_sets": ["my_eval.fa"]},
           "reference": {"subset_fraction": 0.3, "layers": 1, "embed_dim": 16, "heads": 2, "epochs": 1, "batch_size": 16},
           "influence": {"batch_size": 32},
           "selection": {"budgets": [0.1], "strategies": ["top_influence", "random"]},
           "stability": {"enabled": False},
           "benchmark": {"tasks": ["perplexity"]}}
    (tmp_path / "user.yaml").write_text(yaml.safe_dump(cfg))
    res = subprocess.run([SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--cores", "2", "coreset", "--configfile",
                          "user.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=1200)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert "pretrain" not in _job_counts(out) and not (tmp_path / "res/models").exists()
    excluded = (tmp_path / "res/leakage/excluded.txt").read_text().split()
    assert set(planted) <= set(excluded), excluded
    originals = {h.split()[0]: (h, s) for h, s in recs}
    cropped = 0
    for tsv in (tmp_path / "res/selection").glob("*.tsv"):
        tab = pd.read_csv(tsv, sep="\t", comment="#")
        assert not set(planted) & set(tab["id"])
        with open(tsv.with_suffix(".original.fa")) as fh:
            got = list(SimpleFastaParser(fh))
        assert sorted(h.split()[0] for h, _ in got) == sorted(tab["id"])
        assert all(originals[h.split()[0]] == (h, s) for h, s in got)  # identical to the input records
        order = [h.split()[0] for h, _ in got]
        assert order == sorted(order, key=lambda i: int(i[1:]) if i.startswith("U") else -1)  # input order
        cropped += int(tab["cropped"].sum())
    assert cropped > 0
    summary = (tmp_path / "res/coreset/summary.md").read_text()
    assert f"{len(set(excluded))} of " in summary and "my_eval" in summary


def test_reference_no_better_than_unigram_warns_in_log_and_summary(tmp_path, caplog):
    import h5py

    from bioprune.report.coreset import reference_warning
    from bioprune.influence.reference import check_against_unigram, unigram_loss

    seqs = ["ACGU" * 10, "AAAACCCC" * 3]
    p = np.array([22, 22, 10, 10]) / 64  # A, C, G, U

    assert unigram_loss(seqs) == pytest.approx(float(-(p * np.log(p)).sum()))
    for loss, warns in ((3.5, True), (0.5, False)):
        curves = tmp_path / f"c{loss}.h5"
        with h5py.File(curves, "w") as f:
            f.create_dataset("loss", data=np.full(20, loss))
        caplog.clear()
        with caplog.at_level("INFO", logger="bioprune.influence.reference"):
            check_against_unigram(seqs, str(curves))
        warned = [r for r in caplog.records if r.levelname == "WARNING" and "unigram" in r.getMessage()]
        assert bool(warned) == warns
        assert bool(reference_warning(str(curves))) == warns


def test_cli_has_a_subcommand_for_every_workflow_stage():
    from bioprune.cli import build_parser

    rules = set()
    for f in (ROOT / "rules").glob("*.smk"):
        rules |= set(re.findall(r"^(?:rule|use rule \w+ as) (\w+)", f.read_text(), re.M))
    # glue rules: ingest's scatter/gather parts run in `bioprune ingest`; copies, plots and the report
    # summary belong to the workflow's bookkeeping
    glue = {"ingest_route", "ingest_gather", "ingest_holdout", "ingest_summary", "primary_scores", "plot_scores",
            "plot_results", "versions", "resolved_config", "coreset_summary", "coreset", "report_pages", "all"}
    sub = next(a for a in build_parser()._actions if a.dest == "cmd")
    missing = sorted(r for r in rules - glue if r.replace("_", "-") not in sub.choices)
    assert not missing, missing


@pytest.mark.requires_tool("mmseqs")
def test_cli_leakage_gate_removes_near_copies_of_the_users_eval_set(tmp_path):
    import shutil

    import yaml

    from bioprune.cli import main

    if not shutil.which("mmseqs"):
        pytest.skip("mmseqs not on PATH")
    rng = random.Random(3)
    evals = [(f"E{i}", "".join(rng.choice(AA) for _ in range(80))) for i in range(3)]
    recs = [(f"U{i}", "".join(rng.choice(AA) for _ in range(80))) for i in range(40)] + [("PLANT", evals[0][1])]
    write_records(tmp_path / "pool.fa", recs)
    write_records(tmp_path / "mine.fa", evals)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"corpus": {"path": str(tmp_path / "pool.fa"), "molecule": "protein"},
                                                    "leakage": {"eval_sets": [str(tmp_path / "mine.fa")]},
                                                    "selection": {"budgets": [0.05]}}))
    shards = [str(tmp_path / "ing/1-of-1.h5")]
    assert main(["ingest", "--config", str(tmp_path / "c.yaml"), "--out-dir", str(tmp_path / "ing"), "--shards", "1"]) == 0
    assert main(["leakage-gate", "--config", str(tmp_path / "c.yaml"), "--shards", *shards, "--out-shards",
                 str(tmp_path / "gated.h5"), "--excluded", str(tmp_path / "ex.txt"), "--report",
                 str(tmp_path / "r.csv")]) == 0
    assert (tmp_path / "ex.txt").read_text().split() == ["PLANT"]
    ids = read_shard(str(tmp_path / "gated.h5"))[0]
    assert "PLANT" not in ids and len(ids) == len(read_shard(shards[0])[0]) - 1


def test_bioprune_coreset_stops_before_snakemake_on_a_missing_corpus(tmp_path, capsys, monkeypatch):
    import yaml

    from bioprune.cli import main

    (tmp_path / "u.yaml").write_text(yaml.safe_dump({"corpus": {"path": "gone.fa", "molecule": "rna"}}))
    monkeypatch.chdir(tmp_path)
    assert main(["coreset", "--configfile", "u.yaml", "-n"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["bioprune coreset: error: u.yaml: key corpus.path: gone.fa: file not found"]
    assert not (tmp_path / ".snakemake").exists()
