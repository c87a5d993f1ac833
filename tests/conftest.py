"""Fixtures shared by the tests."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import random_rna, write_fasta  # noqa: E402


@pytest.fixture
def rna_fasta(tmp_path: Path) -> Path:
    return write_fasta(tmp_path / "pool.fa", random_rna(200))


@pytest.fixture
def tiny_workdir(tmp_path: Path, rna_fasta: Path):
    """Ingested shards plus a tiny trained reference model."""
    from bioprune.ingest import IngestOptions, ingest, read_shard
    from bioprune.training.loop import TrainConfig, train_mlm

    shards = [str(tmp_path / f"{i}-of-2.h5") for i in (1, 2)]
    ingest(rna_fasta, shards, str(tmp_path / "holdout.h5"), IngestOptions(max_length=100, holdout_fraction=0.05))
    seqs = [s for p in shards for s in read_shard(p)[1]]
    train_mlm(seqs, "rna", TrainConfig(layers=1, embed_dim=16, heads=2, epochs=2, batch_size=16),
              tmp_path / "ref.pt")
    return tmp_path, shards


# --- optional tests: loud in CI -------------------------------------------------------------------
# A test that needs a system tool is marked `@pytest.mark.requires_tool("mmseqs")` (or is marked
# `slurm`, or skips with a reason naming one of OPTIONAL_WORDS). Locally a missing tool skips it.
# With CI=true such a skip is a FAILURE (a missing install step must not pass silently), unless the
# tool is listed in BIOPRUNE_ALLOW_SKIP (comma-separated, e.g. "slurm"). Either way the run ends with
# a section listing which optional tests ran and which did not, and the line
# "optional tests: N ran, M skipped". A test module skipped whole at collection is listed too and,
# with CI=true, is a collection error (see pytest_make_collect_report).
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402

OPTIONAL_WORDS = ("mmseqs", "slurm", "rnafold", "transformers", "antiberty")  # tools, or optional Python extras
_optional_results: dict[str, tuple[str, str]] = {}


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def _allowed_skips() -> set[str]:
    return {w.strip().lower() for w in os.environ.get("BIOPRUNE_ALLOW_SKIP", "").split(",") if w.strip()}


def _tools_of(item) -> list[str]:
    """The system tools an item is marked as needing ([] when it is not an optional test)."""
    tools = [t for m in item.iter_markers("requires_tool") for t in m.args]
    if item.get_closest_marker("slurm"):
        tools.append("slurm")
    return tools


def _skip_reason(rep) -> str:
    lr = rep.longrepr
    return str(lr[2] if isinstance(lr, tuple) and len(lr) == 3 else lr).removeprefix("Skipped: ")


def pytest_configure(config):
    config.addinivalue_line("markers", "requires_tool(*names): needs these programs on PATH (mmseqs, "
                                       "RNAfold, ...); skipped when missing, a failure under CI=true")


def pytest_runtest_setup(item):
    missing = [t for t in _tools_of(item) if t != "slurm" and shutil.which(t) is None]
    if missing:
        pytest.skip(f"system tool not on PATH: {', '.join(missing)} (apt-get install, or `make sysdeps`)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    rep = (yield).get_result()
    tools = _tools_of(item)
    reason = _skip_reason(rep) if rep.skipped else ""
    if not tools and rep.skipped and re.search("|".join(OPTIONAL_WORDS), reason, re.I):
        tools = [w for w in OPTIONAL_WORDS if w in reason.lower()]
    if not tools or hasattr(rep, "wasxfail"):
        return
    if rep.skipped:
        if _ci() and not {t.lower() for t in tools} <= _allowed_skips():
            rep.outcome = "failed"
            rep.longrepr = (f"CI=true: optional test needing {', '.join(tools)} did not run ({reason}); "
                            "install the tool in the CI path, or list it in BIOPRUNE_ALLOW_SKIP")
            _optional_results[item.nodeid] = ("failed (skipped in CI)", reason)
        else:
            _optional_results[item.nodeid] = ("skipped", reason)
    elif rep.when == "call" or rep.failed:
        _optional_results[item.nodeid] = ("ran, " + rep.outcome, ", ".join(tools))


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A whole module skipped at collection (module-level pytest.importorskip, pytest.skip(...,
    allow_module_level=True)) hides every test in it, so under CI=true it is a collection error
    (the run fails) unless its reason names only tools listed in BIOPRUNE_ALLOW_SKIP."""
    rep = (yield).get_result()
    if not rep.skipped:
        return
    reason = _skip_reason(rep)
    words = {w for w in OPTIONAL_WORDS if w in reason.lower()}
    if _ci() and not (words and words <= _allowed_skips()):
        rep.outcome = "failed"
        rep.longrepr = (f"CI=true: {rep.nodeid} was skipped at collection ({reason}), so none of its tests ran; "
                        "install what it needs in the CI path, or skip per test (a marker or a fixture)")
        _optional_results[rep.nodeid] = ("failed (module skipped in CI)", reason)
    else:
        _optional_results[rep.nodeid] = ("module skipped", reason)


def pytest_terminal_summary(terminalreporter):
    if not _optional_results:
        return
    tr = terminalreporter
    tr.section("optional tests (need system tools)")
    for nodeid, (status, detail) in sorted(_optional_results.items()):
        tr.write_line(f"{status:<24} {nodeid}  [{detail}]")
    ran = sum(s.startswith("ran") for s, _ in _optional_results.values())
    not_run = len(_optional_results) - ran
    tr.write_line(f"optional tests: {ran} ran, {not_run} did not run"
                  + (" (failures: CI=true)" if _ci() and not_run else ""))
