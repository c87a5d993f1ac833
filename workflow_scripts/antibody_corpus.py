#!/usr/bin/env python
"""Build the small real antibody corpus of experiments/antibody_antiberty.yaml, and link AntiBERTy's weights.

Rule (documented in resources/PROVENANCE.md): from the PDB chain export (`pdb_chains_dssp.tsv.gz`,
columns pdb_id chain start_resnum sequence dssp8), a chain is an immunoglobulin-like V domain when
its first 170 residues match the V-domain framework motif

    C .{10,17} W[VIFLYA][RKQ][QKR] .{30,70} Y[YFHL]C .{2,35} [WF]G.G       (match starting before residue 35)

(FR1 cysteine, FR2 tryptophan, FR3 "YYC", FR4 "WGxG" heavy-like / "FGxG" light-like). The record is
the V domain: the sequence cut 8 residues after the FR4 motif (constant domains dropped, as in
AntiBERTy's training data); ids `ab_heavy_<pdb><chain>` (W-G-x-G) or `ab_light_<pdb><chain>` (F-G-x-G),
TCR V domains included (they match the same fold). A background of `--background` other chains
(60-250 residues, 20 standard residues, seeded choice) is added as `bg_<pdb><chain>`, so that the
selection has something to prune. Duplicated sequences are kept once (first in file order).

    python workflow_scripts/antibody_corpus.py --pdb-tsv ../shared/data/pdb_chains_dssp.tsv.gz \
        --out resources/antibody/pool.fa.gz --link resources/antibody/antiberty

`--link` makes a symlink to the installed `antiberty` package's `trained_models` folder (pip install
'bioprune[antiberty]'), so `reference.checkpoint: resources/antibody/antiberty/AntiBERTy_md_smooth`
is AntiBERTy's released BERT directory (config.json, pytorch_model.bin; vocab.txt one folder up).
"""
from __future__ import annotations

import argparse
import csv
import gzip
import random
import re
import sys
from pathlib import Path

V_DOMAIN = re.compile(r"C.{10,17}W[VIFLYA][RKQ][QKR].{30,70}Y[YFHL]C.{2,35}([WF])G.G")
STANDARD = set("ACDEFGHIKLMNPQRSTVWY")


def build(tsv: str, background: int, seed: int) -> list[tuple[str, str]]:
    """(id, sequence) records: V domains by the module's rule, then the seeded background."""
    ab, rest, seen = [], [], set()
    with gzip.open(tsv, "rt") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            name, seq = row["pdb_id"] + row["chain"], row["sequence"]
            m = V_DOMAIN.search(seq[:170])
            if m and m.start() < 35:
                dom = seq[: m.end() + 8]
                if dom not in seen and set(dom) <= STANDARD:
                    seen.add(dom)
                    ab.append((f"ab_{'heavy' if m.group(1) == 'W' else 'light'}_{name}", dom))
            elif 60 <= len(seq) <= 250 and set(seq) <= STANDARD:
                rest.append((f"bg_{name}", seq))
    rest = [r for r in rest if r[1] not in seen]
    bg = random.Random(seed).sample(rest, min(background, len(rest)))
    return ab + sorted(bg)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pdb-tsv", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--background", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--link", help="symlink to create to the antiberty package's trained_models folder")
    a = ap.parse_args(argv)
    recs = build(a.pdb_tsv, a.background, a.seed)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(out, "wb", mtime=0) as f:  # mtime 0: the same bytes on every rebuild
        f.write("".join(f">{i}\n{s}\n" for i, s in recs).encode())
    n_ab = sum(i.startswith("ab_") for i, _ in recs)
    print(f"{out}: {n_ab} V domains ({sum(i.startswith('ab_heavy') for i, _ in recs)} heavy-like), "
          f"{len(recs) - n_ab} background chains")
    if a.link:
        import importlib.util

        spec = importlib.util.find_spec("antiberty")  # located, not imported (no torch import here)
        if spec is None or spec.origin is None:
            print("antiberty is not installed: pip install 'bioprune[antiberty]'", file=sys.stderr)
            return 2
        link = Path(a.link)
        if link.is_symlink():
            link.unlink()
        link.symlink_to(Path(spec.origin).resolve().parent / "trained_models", target_is_directory=True)
        print(f"{link} -> {link.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
