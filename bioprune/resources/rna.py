"""The RNA build: structure and type evaluation sets, then the RNA pool without their sequences."""
from __future__ import annotations

import collections
import glob
import random
from pathlib import Path

from bioprune.ingest import iter_fasta
from bioprune.resources.files import clean_rna, fasta_text, tsv_text, write_gz_text
from bioprune.resources.sources import OPTIMIR, STOCKHOLM
from bioprune.resources.stockholm import stockholm_records

def build_rna(raw: Path, out: Path, prof: dict, rng: random.Random) -> dict:
    """RNA evaluation sets (structure, type) and the RNA pretraining pool, disjoint by sequence."""
    stock = []  # (class, file-family tag, name, seq, pairs, source)
    for rel, fam, cls in STOCKHOLM:
        tag = f"{Path(rel).name}:{fam or '*'}"
        for name, seq, pairs, src in stockholm_records(raw / rel, fam):
            s = clean_rna(seq)
            if s and prof["rna_min"] <= len(s):
                stock.append((cls, tag, name, s, pairs, src))
    # dedupe by sequence, keeping the first occurrence (per-sequence GR structures come first)
    seen, uniq = set(), []
    for r in stock:
        if r[3] not in seen:
            seen.add(r[3])
            uniq.append(r)
    mirna = [(i, clean_rna(s)) for _, i, s in iter_fasta(raw / OPTIMIR / "hsa_hairpins_miRBase_v22.fa")]
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
            trna.append((f"trna_{Path(fa).parent.name}_{i}", clean_rna(s)))
    add_shuffled(trna, prof["rna_trna"])
    mc = [(f"mircarta_{i}", clean_rna(s)) for _, i, s in iter_fasta(raw / OPTIMIR / "hsa_hairpins_miRCarta_v1.1.fa")]
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
        s = clean_rna(s)
        if not s:
            continue
        w = rng.randint(max(prof["rna_min"], 64), prof["rna_max"])
        start = rng.randint(0, max(0, len(s) - w))
        add_fast(f"rrna_{i.replace('|', '_')}_{start}", s[start : start + w])
    items = list(pool.items())
    rng.shuffle(items)
    (out / "rna").mkdir(parents=True, exist_ok=True)
    write_gz_text(out / "rna/pool.fa.gz", fasta_text(items))
    write_gz_text(out / "rna/type_eval.tsv.gz", tsv_text(["id", "label", "sequence"], type_rows))
    write_gz_text(out / "rna/ss_eval.tsv.gz",
                   tsv_text(["id", "family", "label", "sequence", "pairs", "structure_source"], ss_rows))
    kinds = collections.Counter(i.split("_")[0] for i, _ in items)
    return {"rna_pool": len(items), "rna_pool_by_source": dict(kinds), "rna_type_eval": len(type_rows),
            "rna_type_classes": len({r[1] for r in type_rows}), "rna_ss_eval": len(ss_rows),
            "rna_ss_families": len({r[1] for r in ss_rows})}
