# Helpers shared by every rule: config validation (JSON schema with defaults), paths, params.
import os
import sys
from pathlib import Path

# HDF5 file locks fail on NFS/Lustre; bioprune never has two writers per file, so locking is off
os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")

sys.path.insert(0, str(Path(workflow.basedir)))

from bioprune.config import (  # noqa: E402
    DEMO_CONFIG,
    benchmark_params,
    corpus_files,
    full_seeds,
    leakage_params,
    split_params,
    dump_resolved,
    influence_params,
    ingest_params,
    pretrain_params,
    reference_params,
    selection_params,
    resolve_config,
)

# One resolved config (bioprune.config.resolve_config, the same function the CLI uses): schema
# defaults <- --configfile(s) in order <- --config overrides; the demo only when no file is named.
CONFIG_FILES = [str(p) for p in workflow.config_settings.configfiles] or [str(DEMO_CONFIG)]
CONFIG_OVERRIDES = dict(workflow.config_settings.config or {})
_resolved = resolve_config(CONFIG_FILES, CONFIG_OVERRIDES)
config.clear()
config.update(_resolved)
RESOLVED_YAML = dump_resolved(config, CONFIG_FILES, CONFIG_OVERRIDES)

R = config["results"]
SEEDS = config["seeds"]
STRATEGIES = config["selection"]["strategies"]
BUDGETS = [f"{b:g}" for b in config["selection"]["budgets"]]
ESTIMATOR = config["influence"]["estimator"]
MOLECULE = config["corpus"]["molecule"]
# GPU stages declare gpu=1 unless the config pins the CPU (then no GPU is requested from SLURM)
GPU = 0 if config["device"] == "cpu" else 1
FULL_SEEDS = full_seeds(config)
CORPUS_FILES = corpus_files(config)


wildcard_constraints:
    strategy="|".join(["top_influence", "cci", "random", "random_10x", "grad_norm", "cluster"]),
    model_strategy="|".join(["top_influence", "cci", "random", "random_10x", "grad_norm", "cluster", "full"]),
    budget=r"[0-9.e-]+",
    seed=r"\d+",
    rseed=r"\d+",
    iseed=r"\d+",
    task="rna_ss|rna_type|protein_ss|protein_loc",


def local_threads():
    """All local cores (capped at 8) for the single big jobs; a cluster executor defines no total core
    count, so there the profile's `set-threads` decides (1 when it does not)."""
    try:
        cores = workflow.cores
    except Exception:  # snakemake raises when --cores is not given (cluster executors)
        return 1
    return max(1, min(8, cores)) if isinstance(cores, int) else 1


def ingest_parts():
    """Part files of the ingest route jobs, one per input file (in corpus.path order)."""
    return [f"{R}/ingest/parts/{k}.h5" for k in range(len(CORPUS_FILES))]


def shard_files():
    return gather.shards(f"{R}/shards/{{scatteritem}}.h5")


# (reference seed, influence seed) of the primary scoring run: what results/influence/scores.h5 holds
PRIMARY = (config["reference"]["seed"], config["influence"]["seed"])
REFERENCE_SEEDS = config["selection"]["reference_seeds"]
STABILITY = config["stability"]
INFLUENCE_STRATEGIES = {"top_influence", "cci", "grad_norm"}


def score_file(rseed, iseed):
    return f"{R}/influence/ref{rseed}_inf{iseed}/scores.h5"


def sketch_files(wildcards):
    return gather.shards(f"{R}/sketches/ref{wildcards.rseed}_inf{wildcards.iseed}/{{scatteritem}}.h5")


def reference_inputs(wildcards):
    ck = config["reference"]["checkpoint"]
    return {"shards": shard_files(), **({"checkpoint": ck} if ck else {})}


def sketch_inputs(wildcards):
    d = {"shard": f"{R}/shards/{wildcards.scatteritem}.h5", "model": f"{R}/reference/seed{wildcards.rseed}/model.pt"}
    if ESTIMATOR == "diag_fisher":
        d["curvature"] = f"{R}/curvature/ref{wildcards.rseed}_inf{wildcards.iseed}.h5"
    return d


def selection_scores(strategy, seed):
    """Scores a selection reads: with selection.reference_seeds, seed i of an influence strategy uses
    the scores of its own reference model (reference_seeds[i]); otherwise the primary scores. Random
    and cluster baselines only need the pool's ids, from the primary scores."""
    if REFERENCE_SEEDS and strategy in INFLUENCE_STRATEGIES:
        return score_file(REFERENCE_SEEDS[SEEDS.index(int(seed))], PRIMARY[1])
    return score_file(*PRIMARY)


def selection_inputs(wildcards):
    d = {"scores": selection_scores(wildcards.strategy, wildcards.seed), "shards": shard_files()}
    if wildcards.strategy == "cluster":
        d["representatives"] = f"{R}/selection/cluster_representatives.txt"
    return d


def stability_inputs(wildcards):
    """Primary scores, a rescoring with another influence.seed, one with another reference.seed, and
    the first seed's selections (for their composition by source)."""
    return {
        "primary": score_file(*PRIMARY),
        "influence_seed": score_file(PRIMARY[0], STABILITY["influence_seed"]),
        "reference_seed": score_file(STABILITY["reference_seed"], PRIMARY[1]),
        "selections": list(plot_selections().values()),
    }


def model_ids():
    """(strategy, budget, seed) of every model: each strategy x budget x seed, plus the full pool."""
    ids = [(s, b, seed) for s in STRATEGIES for b in BUDGETS for seed in SEEDS]
    return ids + [("full", "1", seed) for seed in FULL_SEEDS]


def pretrain_selection(wildcards):
    if wildcards.model_strategy == "full":
        return []
    return f"{R}/selection/{wildcards.model_strategy}_{wildcards.budget}_seed{wildcards.seed}.h5"


EVAL_FILES = {"rna_ss": "rna/ss_eval.tsv.gz", "rna_type": "rna/type_eval.tsv.gz",
              "protein_ss": "protein/ss_eval.tsv.gz", "protein_loc": "protein/loc_eval.tsv.gz"}


def eval_files():
    """Evaluation sets the configured tasks read for this molecule: inputs, so a rebuilt set re-runs benchmarks."""
    res = config["benchmark"]["resources"]
    return [f"{res}/{EVAL_FILES[t]}" for t in config["benchmark"]["tasks"]
            if t in EVAL_FILES and t.split("_")[0] == MOLECULE]


LABELLED_TASKS = [t for t in config["benchmark"]["tasks"] if t in EVAL_FILES and t.split("_")[0] == MOLECULE]


def split_files():
    """Stored homology-aware probe splits of the configured labelled tasks."""
    return [f"{R}/benchmark/splits/{t}.tsv" for t in LABELLED_TASKS]


def metric_files():
    files = [f"{R}/metrics/{s}_{b}_seed{seed}.csv" for s, b, seed in model_ids()]
    if config["benchmark"]["nearest_neighbour"] and LABELLED_TASKS:
        files.append(f"{R}/metrics/nearest_neighbour.csv")
    if MOLECULE == "rna" and config["benchmark"]["rnafold"] and "rna_ss" in config["benchmark"]["tasks"]:
        files.append(f"{R}/metrics/rnafold.csv")
    return files


def curve_files():
    return {f"{s}_{b}_seed{seed}": f"{R}/models/{s}_{b}_seed{seed}/curves.h5" for s, b, seed in model_ids() if seed == SEEDS[0]}


def plot_selections():
    return {f"{s}_{b}": f"{R}/selection/{s}_{b}_seed{SEEDS[0]}.h5" for s in STRATEGIES for b in BUDGETS}


def all_targets():
    return [
        f"{R}/config.resolved.yaml",
        f"{R}/leakage/report.csv",
        f"{R}/shards/ingest.json",
        f"{R}/benchmark/summary.csv",
        f"{R}/benchmark/table.csv",
        f"{R}/benchmark/versions.csv",
        f"{R}/plots/score_histogram.png",
        f"{R}/plots/score_vs_length.png",
        *([f"{R}/influence/stability.csv", f"{R}/plots/stability.png"] if STABILITY["enabled"] else []),
        f"{R}/influence/scores.h5",
        f"{R}/plots/metrics.png",
        f"{R}/plots/pruning_curves.png",
        f"{R}/plots/training_curves.png",
    ]
