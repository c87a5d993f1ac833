"""Summarise a mutmut 3 run (`make mutants`): per module, mutants checked, killed, survived, with
the surviving mutant names. Reads mutants/**/*.meta; works on a partial (interrupted) run too.

    python tests/mutmut_summary.py [mutants_dir]
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 36: "timeout",
          24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout", 37: "type check", None: "not checked"}


def summarise(root: Path) -> tuple[dict[str, Counter], dict[str, list[str]]]:
    counts: dict[str, Counter] = {}
    survivors: dict[str, list[str]] = {}
    for meta in sorted(root.rglob("*.py.meta")):
        module = str(meta.relative_to(root))[: -len(".meta")]
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        counts[module] = Counter(STATUS.get(c, "suspicious") for c in codes.values())
        survivors[module] = sorted((k for k, c in codes.items() if c == 0),
                                   key=lambda k: (k.rsplit("__mutmut_", 1)[0], int(k.rsplit("_", 1)[1])))
    return counts, survivors


def main(argv: list[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else "mutants")
    counts, survivors = summarise(root)
    if not counts:
        print(f"no mutmut results under {root}/ (run `make mutants` first)")
        return 1
    cols = ["killed", "survived", "timeout", "no tests", "not checked"]
    print(f"| module | mutants | {' | '.join(cols)} |")
    print("|---" * (len(cols) + 2) + "|")
    total: Counter = Counter()
    for module, c in counts.items():
        total += c
        print(f"| {module} | {sum(c.values())} | {' | '.join(str(c[k]) for k in cols)} |")
    print(f"| all | {sum(total.values())} | {' | '.join(str(total[k]) for k in cols)} |")
    checked = sum(total.values()) - total["not checked"]
    print(f"\nmutation score (killed+timeout of checked): "
          f"{(total['killed'] + total['timeout']) / max(checked, 1):.1%} of {checked} checked")
    for module, names in survivors.items():
        if names:
            print(f"\nsurvivors in {module} ({len(names)}):")
            for n in names:
                print(f"  {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
