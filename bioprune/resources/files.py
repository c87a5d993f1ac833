"""Reproducible gzip text files (FASTA, TSV) and PROVENANCE.md of the bundled data."""
from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

from bioprune.h5io import atomic_path


def clean_rna(seq: str) -> str | None:
    s = seq.upper().replace("T", "U")
    s = "".join(c if c in "ACGU" else "N" for c in s if c.isalpha())
    return s if s and s.count("N") <= 0.05 * len(s) else None


def write_gz_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:  # reproducible bytes
                gz.write(text.encode())


def fasta_text(records) -> str:
    return "".join(f">{i}\n{s}\n" for i, s in records)


def tsv_text(header: list[str], rows) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def write_provenance(out: Path, stats: dict, sums: dict, raw: Path) -> None:
    text = PROVENANCE_TEMPLATE.format(stats=json.dumps(stats, indent=2),
                                      sums="\n".join(f"| `{k}` | `{v}` |" for k, v in sums.items()))
    with atomic_path(out / "PROVENANCE.md") as tmp:
        Path(tmp).write_text(text)


PROVENANCE_TEMPLATE = """# Provenance of the bundled data

Built by `bioprune build-resources` (bioprune/resources/) from the raw packages that
`workflow_scripts/fetch_raw.sh` downloads. Rebuild: `make resources` (needs root for apt-get).
Every evaluation sequence was removed from every pool by exact sequence (tested in tests/resources/test_resources.py).

| file | source package (version) | licence | content |
|---|---|---|---|
| `rna/pool.fa.gz` | Debian `ncbi-rrna-data` 6.1.20170106+dfsg1-10 (SILVA SSU/LSURef r93 + NCBI 16S: cropped windows, `rrna_*`); PyPI `mimseq` 1.3.11 (GtRNAdb tRNA genes, `trna_*`); Debian `optimir` 1.2-1 (miRCarta v1.1 human hairpins, `mircarta_*`); Debian `infernal` 1.1.4-1 test suite and PyPI `rna-tools` 3.28 test data (Rfam seed sequences not used for evaluation, `rfam_*`) | SILVA r93: research use, cite SILVA; NCBI: public domain; mimseq: GPL-3; optimir: GPL-3; Rfam: CC0; infernal: BSD-3 | RNA pretraining pool |
| `rna/type_eval.tsv.gz` | Rfam seeds / curated alignments from `infernal` and `rna-tools` (as above); miRBase v22 hairpins from `optimir` | CC0 / BSD-3 / GPL-3 | RNA type labels (family of origin) |
| `rna/ss_eval.tsv.gz` | same Stockholm files: per-sequence `#=GR SS` where present (tRNA1415G, srp-euk), else `SS_cons` projected on the sequence (pairs with a gap dropped) | CC0 / BSD-3 | base pairs `i,j;...` (0-based) |
| `protein/pool.fa.gz` | Debian `metastudent-data` 2.0.1-8 (UniProtKB/Swiss-Prot 2014_01) | Swiss-Prot CC BY 4.0 (package GPL-2+) | protein pretraining pool |
| `protein/loc_eval.tsv.gz` | same, GO cellular-component annotations (`CCO/goasp_annot.dat`), proteins with exactly one of 11 location terms | CC BY 4.0 | localization label |
| `protein/ss_eval.tsv.gz` | `../shared/data/pdb_chains_dssp.tsv.gz`: Debian `promod3-data` 3.2.1 structure DB export (PDB chains, DSSP 8-state) | Apache-2.0 (PDB-derived) | per-residue DSSP8 |
| `antibody/pool.fa.gz` | `../shared/data/pdb_chains_dssp.tsv.gz` (as above), built by `workflow_scripts/antibody_corpus.py` (not by build-resources): 29 immunoglobulin-like V domains by the framework-motif rule in the script's docstring (cut after FR4; ids `ab_heavy_*` / `ab_light_*`) and 200 other chains of 60-250 aa (seed 0; `bg_*`) | Apache-2.0 (PDB-derived) | antibody pool of experiments/antibody_antiberty.yaml |

## Counts and settings
```json
{stats}
```

## sha256
| file | sha256 |
|---|---|
{sums}
"""
