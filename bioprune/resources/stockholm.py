"""Stockholm alignments (Rfam seeds, curated test data) and their WUSS / dot-bracket structures."""
from __future__ import annotations

import collections
from pathlib import Path

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
