"""Builder of the bundled real data: extracts pools and labelled evaluation sets from Debian/PyPI packages.

Run `workflow_scripts/fetch_raw.sh RAW` first, then `bioprune build-resources --raw RAW --out resources`.
Evaluation sets are built first; every pool then drops any sequence that occurs (exactly) in an
evaluation set, so benchmarks never test on pretraining data.
"""
from __future__ import annotations

import collections
import csv
import glob
import gzip
import hashlib
import io
import json
import logging
import random
from pathlib import Path

from .errors import BiopruneError
from .h5io import atomic_path, sha256_file
from .shards import iter_fasta

log = logging.getLogger(__name__)

INFERNAL = "x/infernal/usr/share/doc/infernal/examples/testsuite"
RNATOOLS = "x/rna_tools/rna_tools/tools/rna_alignment/test_data"
OPTIMIR = "x/optimir/usr/lib/python3/dist-packages/optimir/resources/fasta"
METASTUDENT = "x/metastudent-data/usr/share/metastudent-data/dataset_201401"

# (file, family id in file or None for all, RNA type class); per-sequence #=GR SS is used when present
STOCKHOLM = [
    (f"{INFERNAL}/tRNA1415G.sto", None, "tRNA"),
    (f"{INFERNAL}/4.sto", "tRNA", "tRNA"),
    (f"{INFERNAL}/4.sto", "Vault", "Vault"),
    (f"{INFERNAL}/4.sto", "Plant_SRP", "SRP"),
    (f"{INFERNAL}/srp-euk.sto", None, "SRP"),
    (f"{INFERNAL}/3.4.12.rf.stk", "U1", "U1"),
    (f"{INFERNAL}/3.4.12.rf.stk", "U2", "U2"),
    (f"{INFERNAL}/3.4.12.rf.stk", "U3", "U3"),
    (f"{INFERNAL}/rnaseP-eubact.sto", None, "RNaseP"),
    (f"{RNATOOLS}/RF00001.blocked.stk", None, "5S_rRNA"),
    (f"{RNATOOLS}/RF00002.stockholm.stk", None, "5.8S_rRNA"),
    (f"{RNATOOLS}/u6_isl_rfam.sto", None, "U6"),
    (f"{RNATOOLS}/RF00379.stockholm.stk", None, "riboswitch"),
    (f"{RNATOOLS}/RF01831.stockholm.sto", None, "riboswitch"),
    (f"{RNATOOLS}/RF00167.stockholm.sto", None, "riboswitch"),
    (f"{RNATOOLS}/IA1.gissd.sto", None, "group_I_intron"),
    (f"{RNATOOLS}/IE2.gissd.sto", None, "group_I_intron"),
    (f"{RNATOOLS}/xrrna_rfam.sto", None, "xrRNA"),
    (f"{RNATOOLS}/RF02221.stockholm.sto", None, "sRNA_Xcc1"),
]
LOCALIZATION = {
    "GO:0005737": "Cytoplasm", "GO:0005886": "Cell_membrane", "GO:0005634": "Nucleus",
    "GO:0005576": "Extracellular", "GO:0005739": "Mitochondrion", "GO:0009507": "Plastid",
    "GO:0005783": "ER", "GO:0005794": "Golgi", "GO:0005773": "Vacuole", "GO:0005764": "Lysosome",
    "GO:0005777": "Peroxisome",
}
PROFILES = {
    # sizes of the committed demo subset and of the full on-demand build
    "demo": {"rna_rrna_windows": 8000, "rna_mirna": 7000, "rna_trna": 6000, "rna_max": 256, "rna_min": 30,
             "type_per_class": 100, "ss_per_family": 60, "ss_max": 400, "protein_pool": 20000,
             "protein_max": 400, "loc_per_class": 150, "pdb_chains": 2500, "pdb_max": 400},
    "medium": {"rna_rrna_windows": 45000, "rna_mirna": None, "rna_trna": None, "rna_max": 512, "rna_min": 30,
               "type_per_class": 200, "ss_per_family": 150, "ss_max": 512, "protein_pool": 100000,
               "protein_max": 512, "loc_per_class": 500, "pdb_chains": 6000, "pdb_max": 512},
    "full": {"rna_rrna_windows": None, "rna_mirna": None, "rna_trna": None, "rna_max": 1024, "rna_min": 30,
             "type_per_class": 300, "ss_per_family": 400, "ss_max": 1024, "protein_pool": None,
             "protein_max": 1024, "loc_per_class": 2000, "pdb_chains": None, "pdb_max": 1024},
}
_OPEN = {"<": ">", "(": ")", "[": "]", "{": "}"}
_CLOSE = {v: k for k, v in _OPEN.items()}


def wuss_pairs(ss: str) -> dict[int, int]:
    """Base pairs of a WUSS / dot-bracket string (pseudoknot letters Aa included)."""
    stacks: dict[str, list[int]] = collections.defaultdict(list)
    pairs: dict[int, int] = {}
    for i, c in enumerate(ss):
        if c in _OPEN:
            stacks[c].append(i)
        elif c in _CLOSE and stacks[_CLOSE[c]]:
            j = stacks[_CLOSE[c]].pop()
            pairs[j], pairs[i] = i, j
        elif c.isalpha():
            if c.isupper():
                stacks[c].append(i)
            elif stacks[c.upper()]:
                j = stacks[c.upper()].pop()
                pairs[j], pairs[i] = i, j
    return pairs


def read_stockholm(path: Path):
    """Yield (family, {name: aligned}, {name: per-sequence SS}, SS_cons) per alignment block."""
    seqs: dict[str, str] = collections.OrderedDict()
    gr: dict[str, str] = {}
    sscons, fam = "", None
    for line in open(path, errors="replace"):
        line = line.rstrip("\n")
        if line.startswith("//"):
            yield fam, seqs, gr, sscons
            seqs, gr, sscons, fam = collections.OrderedDict(), {}, "", None
        elif line.startswith("#=GF ID"):
            fam = line.split()[2]
        elif line.startswith("#=GC SS_cons"):
            sscons += line.split()[2]
        elif line.startswith("#=GR"):
            p = line.split()
            if len(p) >= 4 and p[2] == "SS":
                gr[p[1]] = gr.get(p[1], "") + p[3]
        elif line.startswith("#") or not line.strip():
            continue
        else:
            p = line.split()
            if len(p) == 2:
                seqs[p[0]] = seqs.get(p[0], "") + p[1]


def stockholm_records(path: Path, family: str | None):
    """Yield (name, ungapped RNA sequence, pairs [(i, j)], structure source) from one Stockholm file."""
    for fam, seqs, gr, sscons in read_stockholm(path):
        if family is not None and fam != family:
            continue
        for name, aln in seqs.items():
            ss = gr.get(name, sscons)
            keep = [i for i, c in enumerate(aln) if c not in ".-~_"]
            idx = {c: k for k, c in enumerate(keep)}
            seq = "".join(aln[i] for i in keep).upper().replace("T", "U")
            pairs = []
            if ss and len(ss) == len(aln):
                P = wuss_pairs(ss)
                pairs = sorted((idx[i], idx[j]) for i, j in P.items() if i < j and i in idx and j in idx)
            yield name, seq, pairs, ("GR" if name in gr else "SS_cons")


def _clean_rna(seq: str) -> str | None:
    s = seq.upper().replace("T", "U")
    s = "".join(c if c in "ACGU" else "N" for c in s if c.isalpha())
    return s if s and s.count("N") <= 0.05 * len(s) else None


def _write_gz_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:  # reproducible bytes
                gz.write(text.encode())


def _fasta_text(records) -> str:
    return "".join(f">{i}\n{s}\n" for i, s in records)


def _tsv_text(header: list[str], rows) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def build_rna(raw: Path, out: Path, prof: dict, rng: random.Random) -> dict:
    """RNA evaluation sets (structure, type) and the RNA pretraining pool, disjoint by sequence."""
    stock = []  # (class, file-family tag, name, seq, pairs, source)
    for rel, fam, cls in STOCKHOLM:
        tag = f"{Path(rel).name}:{fam or '*'}"
        for name, seq, pairs, src in stockholm_records(raw / rel, fam):
            s = _clean_rna(seq)
            if s and prof["rna_min"] <= len(s):
                stock.append((cls, tag, name, s, pairs, src))
    # dedupe by sequence, keeping the first occurrence (per-sequence GR structures come first)
    seen, uniq = set(), []
    for r in stock:
        if r[3] not in seen:
            seen.add(r[3])
            uniq.append(r)
    mirna = [(i, _clean_rna(s)) for _, i, s in iter_fasta(raw / OPTIMIR / "hsa_hairpins_miRBase_v22.fa")]
    by_class = collections.defaultdict(list)
    for r in uniq:
        if len(r[3]) <= prof["ss_max"]:
            by_class[r[0]].append(r)
    type_rows, ss_rows = [], []
    used = set()
    for cls in sorted(by_class):
        rs = by_class[cls][:]
        rng.shuffle(rs)
        for cls_, tag, name, s, pairs, src in rs[: prof["type_per_class"]]:
            type_rows.append((f"{cls}|{name}", cls, s))
            used.add(s)
    mi = [(i, s) for i, s in mirna if s and prof["rna_min"] <= len(s) <= prof["ss_max"] and s not in used]
    rng.shuffle(mi)
    taken = 0
    for i, s in mi:  # miRBase lists some hairpin sequences under two ids: keep each sequence once
        if taken == prof["type_per_class"]:
            break
        if s not in used:
            type_rows.append((f"pre_miRNA|{i}", "pre_miRNA", s))
            used.add(s)
            taken += 1
    by_fam = collections.defaultdict(list)
    for r in uniq:
        if r[4] and len(r[3]) <= prof["ss_max"]:
            by_fam[r[1]].append(r)
    for tag in sorted(by_fam):
        rs = by_fam[tag][:]
        rng.shuffle(rs)
        for cls, tag_, name, s, pairs, src in rs[: prof["ss_per_family"]]:
            ss_rows.append((f"{cls}|{name}", tag, cls, s, ";".join(f"{i},{j}" for i, j in pairs), src))
            used.add(s)
    # pool: remaining Rfam/seed sequences, tRNA genes, miRCarta hairpins, cropped rRNA windows
    pool: dict[str, str] = {}
    seqset: set[str] = set()

    def add_fast(seq_id, s):
        if s and s not in used and s not in seqset and prof["rna_min"] <= len(s) <= prof["rna_max"]:
            seqset.add(s)
            pool[seq_id] = s

    def add_shuffled(items, cap):
        """Add `items` in a seeded random order until `cap` new sequences (None = all) are in."""
        rng.shuffle(items)
        n0 = len(pool)
        for i, s in items:
            if cap and len(pool) - n0 >= cap:
                break
            add_fast(i, s)

    for cls, tag, name, s, pairs, src in uniq:
        add_fast(f"rfam_{cls}_{name}", s)
    trna = []
    for fa in sorted(glob.glob(str(raw / "x/mimseq/mimseq/data/*/*-tRNAs*.fa"))):
        for _, i, s in iter_fasta(fa):
            trna.append((f"trna_{Path(fa).parent.name}_{i}", _clean_rna(s)))
    add_shuffled(trna, prof["rna_trna"])
    mc = [(f"mircarta_{i}", _clean_rna(s)) for _, i, s in iter_fasta(raw / OPTIMIR / "hsa_hairpins_miRCarta_v1.1.fa")]
    add_shuffled(mc, prof["rna_mirna"])
    n0 = len(pool)
    rrna_fa = raw / "fa/ncbi_combined_rrna.fa"
    target = prof["rna_rrna_windows"]
    # reservoir-free streaming: keep each record with a probability that yields about `target` windows
    p_keep = 1.0 if target is None else min(1.0, 1.3 * target / 220243)
    for _, i, s in iter_fasta(rrna_fa):
        if target and len(pool) - n0 >= target:
            break
        if rng.random() > p_keep:
            continue
        s = _clean_rna(s)
        if not s:
            continue
        w = rng.randint(max(prof["rna_min"], 64), prof["rna_max"])
        start = rng.randint(0, max(0, len(s) - w))
        add_fast(f"rrna_{i.replace('|', '_')}_{start}", s[start : start + w])
    items = list(pool.items())
    rng.shuffle(items)
    (out / "rna").mkdir(parents=True, exist_ok=True)
    _write_gz_text(out / "rna/pool.fa.gz", _fasta_text(items))
    _write_gz_text(out / "rna/type_eval.tsv.gz", _tsv_text(["id", "label", "sequence"], type_rows))
    _write_gz_text(out / "rna/ss_eval.tsv.gz",
                   _tsv_text(["id", "family", "label", "sequence", "pairs", "structure_source"], ss_rows))
    kinds = collections.Counter(i.split("_")[0] for i, _ in items)
    return {"rna_pool": len(items), "rna_pool_by_source": dict(kinds), "rna_type_eval": len(type_rows),
            "rna_type_classes": len({r[1] for r in type_rows}), "rna_ss_eval": len(ss_rows),
            "rna_ss_families": len({r[1] for r in ss_rows})}


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
    _write_gz_text(out / "protein/pool.fa.gz", _fasta_text(pool))
    _write_gz_text(out / "protein/loc_eval.tsv.gz", _tsv_text(["id", "label", "sequence"], loc_rows))
    _write_gz_text(out / "protein/ss_eval.tsv.gz", _tsv_text(["id", "sequence", "dssp8"], pdb))
    return {"protein_pool": len(pool), "protein_loc_eval": len(loc_rows), "protein_loc_classes": len(loc_by),
            "protein_ss_chains": len(pdb)}


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
    _write_provenance(out_p, stats, sums, raw_p)
    return stats


def _write_provenance(out: Path, stats: dict, sums: dict, raw: Path) -> None:
    versions = (raw / "versions.txt").read_text() if (raw / "versions.txt").exists() else ""
    text = PROVENANCE_TEMPLATE.format(stats=json.dumps(stats, indent=2),
                                      sums="\n".join(f"| `{k}` | `{v}` |" for k, v in sums.items()))
    with atomic_path(out / "PROVENANCE.md") as tmp:
        Path(tmp).write_text(text)


PROVENANCE_TEMPLATE = """# Provenance of the bundled data

Built by `bioprune build-resources` (bioprune/resources.py) from the raw packages that
`workflow_scripts/fetch_raw.sh` downloads. Rebuild: `make resources` (needs root for apt-get).
Every evaluation sequence was removed from every pool by exact sequence (tested in tests/test_resources.py).

| file | source package (version) | licence | content |
|---|---|---|---|
| `rna/pool.fa.gz` | Debian `ncbi-rrna-data` 6.1.20170106+dfsg1-10 (SILVA SSU/LSURef r93 + NCBI 16S: cropped windows, `rrna_*`); PyPI `mimseq` 1.3.11 (GtRNAdb tRNA genes, `trna_*`); Debian `optimir` 1.2-1 (miRCarta v1.1 human hairpins, `mircarta_*`); Debian `infernal` 1.1.4-1 test suite and PyPI `rna-tools` 3.28 test data (Rfam seed sequences not used for evaluation, `rfam_*`) | SILVA r93: research use, cite SILVA; NCBI: public domain; mimseq: GPL-3; optimir: GPL-3; Rfam: CC0; infernal: BSD-3 | RNA pretraining pool |
| `rna/type_eval.tsv.gz` | Rfam seeds / curated alignments from `infernal` and `rna-tools` (as above); miRBase v22 hairpins from `optimir` | CC0 / BSD-3 / GPL-3 | RNA type labels (family of origin) |
| `rna/ss_eval.tsv.gz` | same Stockholm files: per-sequence `#=GR SS` where present (tRNA1415G, srp-euk), else `SS_cons` projected on the sequence (pairs with a gap dropped) | CC0 / BSD-3 | base pairs `i,j;...` (0-based) |
| `protein/pool.fa.gz` | Debian `metastudent-data` 2.0.1-8 (UniProtKB/Swiss-Prot 2014_01) | Swiss-Prot CC BY 4.0 (package GPL-2+) | protein pretraining pool |
| `protein/loc_eval.tsv.gz` | same, GO cellular-component annotations (`CCO/goasp_annot.dat`), proteins with exactly one of 11 location terms | CC BY 4.0 | localization label |
| `protein/ss_eval.tsv.gz` | `../shared/data/pdb_chains_dssp.tsv.gz`: Debian `promod3-data` 3.2.1 structure DB export (PDB chains, DSSP 8-state) | Apache-2.0 (PDB-derived) | per-residue DSSP8 |

## Counts and settings
```json
{stats}
```

## sha256
| file | sha256 |
|---|---|
{sums}
"""
