"""Tiny generated inputs for unit tests (never used by the demo)."""
from __future__ import annotations

import random
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]


def write_fasta(path: Path, records: list[tuple[str, str]]) -> Path:
    path.write_text("".join(f">{i} test record\n{s}\n" for i, s in records))
    return path


def random_rna(n: int, seed: int = 0, lo: int = 20, hi: int = 80) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    return [(f"seq{i}", "".join(rng.choice("ACGU") for _ in range(rng.randint(lo, hi)))) for i in range(n)]


def typed_selection_kw(kw: dict) -> dict:
    """select()/select_indices() keyword arguments with the option dicts (as selection_oracle, the old
    implementation, takes them) turned into the typed options the package takes."""
    from bioprune.selection import CCIOptions, TopOptions

    out = dict(kw)
    if out.get("cci") is not None:
        out["cci"] = CCIOptions(**out["cci"])
    if out.get("top_influence") is not None:
        out["top_influence"] = TopOptions(**out["top_influence"])
    return out
