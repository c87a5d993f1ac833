"""The protein build: localization and DSSP evaluation sets, then the protein pool without their sequences."""
from __future__ import annotations

import collections
import csv
import gzip
import random
from pathlib import Path

from bioprune.ingest import iter_fasta
from bioprune.resources.files import fasta_text, tsv_text, write_gz_text
from bioprune.resources.sources import LOCALIZATION, METASTUDENT

def build_protein(raw: Path, out: Path, prof: dict, rng: random.Random, pdb_tsv: Path) -> dict:
    """Protein SS (PDB/DSSP) and localization (Swiss-Prot GO CC) sets, then the Swiss-Prot pool."""
    std = set("ACDEFGHIKLMNPQRSTVWY")
    chains = []
    with gzip.open(pdb_tsv, "rt") as fh:
        r = csv.reader(fh, delimiter="\t")
        header = next(r)
        for row in r:
            d = dict(zip(header, row))
            if 30 <= len(d["sequence"]) <= prof["pdb_max"]:
                chains.append((f"{d['pdb_id']}_{d['chain']}", d["sequence"], d["dssp8"]))
    seen, uniq = set(), []
    for c in chains:
        if c[1] not in seen:
            seen.add(c[1])
            uniq.append(c)
    rng.shuffle(uniq)
    pdb = uniq[: prof["pdb_chains"]] if prof["pdb_chains"] else uniq
    used = {c[1] for c in pdb}
    annot = {}
    for line in open(raw / METASTUDENT / "CCO/goasp_annot.dat"):
        p = line.rstrip("\n").split("\t")
        locs = {LOCALIZATION[g] for g in p[1:] if g in LOCALIZATION}
        if len(locs) == 1:
            annot[p[0]] = locs.pop()
    sprot: dict[str, str] = {}
    seqset: set[str] = set()
    for o in ("CCO", "MFO", "BPO"):
        for _, title, s in iter_fasta(raw / f"fa/swissprot2014_{o}.fa"):
            acc = title.split("|")[0]
            if acc not in sprot and set(s) <= std and s not in seqset:
                sprot[acc] = s
                seqset.add(s)
    loc_by = collections.defaultdict(list)
    for acc, cls in annot.items():
        s = sprot.get(acc)
        if s and 30 <= len(s) <= prof["protein_max"] and s not in used:
            loc_by[cls].append((acc, s))
    loc_rows = []
    for cls in sorted(loc_by):
        rs = sorted(loc_by[cls])
        rng.shuffle(rs)
        for acc, s in rs[: prof["loc_per_class"]]:
            loc_rows.append((acc, cls, s))
            used.add(s)
    cands = sorted((a, s) for a, s in sprot.items() if 30 <= len(s) <= prof["protein_max"] and s not in used)
    rng.shuffle(cands)
    pool = cands[: prof["protein_pool"]] if prof["protein_pool"] else cands
    (out / "protein").mkdir(parents=True, exist_ok=True)
    write_gz_text(out / "protein/pool.fa.gz", fasta_text(pool))
    write_gz_text(out / "protein/loc_eval.tsv.gz", tsv_text(["id", "label", "sequence"], loc_rows))
    write_gz_text(out / "protein/ss_eval.tsv.gz", tsv_text(["id", "sequence", "dssp8"], pdb))
    return {"protein_pool": len(pool), "protein_loc_eval": len(loc_rows), "protein_loc_classes": len(loc_by),
            "protein_ss_chains": len(pdb)}
