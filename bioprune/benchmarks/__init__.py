"""Downstream benchmarks on frozen models with light heads: the representation is what is compared.

One module per task (perplexity, rna_ss, rna_type, protein_ss, protein_loc), each with run(model, bp);
splits.py (homology-aware probe splits), nearest.py (nearest-neighbour baseline), stats.py (paired
statistics). Splits depend only on the evaluation sets and fixed seeds, never on the model, so every
model and every reference row sees the same split.
"""
from __future__ import annotations

import logging

from bioprune.errors import BiopruneError
from bioprune.benchmarks import perplexity, protein_loc, protein_ss, rna_ss, rna_type
from bioprune.benchmarks.common import EVAL_FILES, TASK_MOLECULE, BenchParams, balanced_subset, read_tsv
from bioprune.benchmarks.nearest import nearest_neighbour_reference
from bioprune.benchmarks.rna_ss import decode_pairs, rnafold_reference, ss_split

log = logging.getLogger(__name__)
TASKS = {"perplexity": perplexity.run, "rna_ss": rna_ss.run, "rna_type": rna_type.run,
         "protein_ss": protein_ss.run, "protein_loc": protein_loc.run}

__all__ = ["TASKS", "EVAL_FILES", "TASK_MOLECULE", "BenchParams", "run_benchmarks", "rnafold_reference",
           "nearest_neighbour_reference", "read_tsv", "balanced_subset", "decode_pairs", "ss_split"]


def run_benchmarks(model_path: str, bp: BenchParams) -> list[tuple[str, str, float]]:
    """All configured tasks for one model: rows of (task, metric, value); bp.holdout = the held-out file."""
    from bioprune.models import load_model, pick_device

    unknown = [t for t in bp.tasks if t not in TASKS]
    if unknown:
        raise BiopruneError(f"config key benchmark.tasks: unknown task(s) {unknown}; known: {sorted(TASKS)}")
    from bioprune.training.attention import use_sdpa

    model, _ = load_model(model_path, bp.molecule)
    use_sdpa(model)  # fused attention where no attention maps are asked for (bioprune.training.attention)
    model.to(pick_device(bp.device)).eval()
    rows: list[tuple[str, str, float]] = []
    for task in bp.tasks:
        if TASK_MOLECULE.get(task, bp.molecule) != bp.molecule:
            log.info("benchmark: skipping %s (a %s task) for a %s model", task, TASK_MOLECULE[task], bp.molecule)
            continue
        log.info("benchmark %s: %s", model_path, task)
        vals = TASKS[task](model, bp)
        rows += [(task, m, float(v)) for m, v in vals]
        log.info("benchmark %s: %s", task, ", ".join(f"{m}={v:.4f}" for m, v in vals))
    return rows
