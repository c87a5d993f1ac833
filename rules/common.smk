# Helpers shared by every rule: config validation (JSON schema with defaults), paths, params.
import os
import sys
from pathlib import Path

# HDF5 file locks fail on NFS/Lustre; bioprune never has two writers per file, so locking is off
os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")

# the workflow's own folder (this file's parent's parent), also when bioprune is used as a module
WORKFLOW_DIR = Path(workflow.current_basedir.get_path_or_uri(secret_free=True)).parent
sys.path.insert(0, str(WORKFLOW_DIR))

from bioprune.config import (  # noqa: E402
    DEMO_CONFIG,
    benchmark_params,
    corpus_files,
    full_seeds,
    kmer_params,
    leakage_params,
    split_params,
    dump_resolved,
    ensemble_params,
    influence_params,
    ingest_params,
    ingest_spans,
    preflight,
    pretrain_params,
    reference_params,
    selection_params,
    resolve_config,
)
from bioprune.errors import BiopruneError  # noqa: E402
from bioprune.training.gpumem import gpu_mem_mb  # noqa: E402
from bioprune.runtime import corpus_residue_bound  # noqa: E402
from bioprune.ingest.ranges import part_name  # noqa: E402

# One resolved config (bioprune.config.resolve_config, the same function the CLI uses): schema
# defaults <- --configfile(s) in order <- --config overrides; the demo only when no file is named.
# Used as a module (`module bioprune: ... config: config`), the host's config mapping is the input.
# A config error, or a check that can be made before the first job (bioprune.config.preflight: corpus
# files exist, corpus.molecule fits their residues, device: cuda has a GPU), stops here with one line.
try:
    if len(workflow.modifier_stack) > 1:
        CONFIG_FILES, CONFIG_OVERRIDES = [], {}
        _resolved = resolve_config(data=dict(config))
    else:
        CONFIG_FILES = [str(p) for p in workflow.config_settings.configfiles] or [str(DEMO_CONFIG)]
        CONFIG_OVERRIDES = dict(workflow.config_settings.config or {})
        _resolved = resolve_config(CONFIG_FILES, CONFIG_OVERRIDES)
    if workflow.is_main_process:
        preflight(_resolved, " + ".join(CONFIG_FILES) or "config", local=workflow.local_exec)
except BiopruneError as _e:
    print(f"bioprune: error: {_e}", file=sys.stderr)
    sys.exit(1)
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
CORPUS_RESIDUES = corpus_residue_bound(config)  # upper bound of the pool's residues (pretrain runtimes)
# per input file, the byte ranges of its route jobs (corpus.split_mb; sizes read now, at planning)
INGEST_SPANS = ingest_spans(config)


wildcard_constraints:
    strategy="|".join(["top_influence", "cci", "random", "random_10x", "grad_norm", "cluster", "degenerate"]),
    model_strategy="|".join(
        ["top_influence", "cci", "random", "random_10x", "grad_norm", "cluster", "degenerate", "full"]
    ),
    budget=r"[0-9.e-]+",
    seed=r"\d+",
    rseed=r"\d+",
    iseed=r"\d+",
    task="rna_ss|rna_type|protein_ss|protein_loc",


# Threads and resources of every rule, declared in the rules (threads, mem_mb, runtime in minutes),
# memory and time scaled by the retry attempt; a profile's set-threads / set-resources overrides them
# for a site. Locally Snakemake caps threads at --cores; torch uses exactly the job's threads.
JOB_RESOURCES = {
    "ingest_route": (1, 2000, 120),  # one input file or byte range; memory bounded by block buffers
    "ingest_gather": (1, 4000, 60),  # one shard; about 60 bytes per record of the shard
    "leakage_gate": (4, 8000, 120),
    "holdout_eval": (2, 4000, 60),
    "probe_split": (2, 4000, 30),
    "nearest_neighbour": (1, 4000, 30),
    "kmer_baseline": (1, 8000, 30),
    "reference": (4, 16000, 240),
    "curvature": (4, 16000, 240),
    "sketch": (4, 16000, 240),
    "scores": (1, 8000, 60),
    "stability": (1, 4000, 30),
    "cluster": (4, 16000, 120),
    "select": (1, 4000, 30),
    "pretrain": (4, 32000, None),  # runtime from the FLOPs model: pretrain_runtime()
    "benchmark": (2, 16000, 120),
    "rnafold": (2, 4000, 60),
    "versions": (1, 1000, 10),
    "ledger": (1, 4000, 30),
}


def job_gpu_mem_mb(stage):
    """GPU memory a GPU job declares (bioprune.training.gpumem: estimate from the config); with
    `--resources gpu=4 gpu_mem_mb=76000` several jobs share one GPU without running out of memory."""
    return gpu_mem_mb(config, stage) if GPU else 0


def pretrain_runtime(wildcards, attempt):
    """Minutes of one pretraining job from the FLOPs model (bioprune.runtime), times the retry attempt:
    the arm trains on its budget's fraction of the pool (10x for random_10x, all for full)."""
    from bioprune.runtime import pretrain_runtime_min

    s, b = wildcards.model_strategy, float(wildcards.budget)
    fraction = 1.0 if s == "full" else min(1.0, b * (10 if s == "random_10x" else 1))
    return pretrain_runtime_min(config, fraction, CORPUS_RESIDUES) * attempt


# pretrain.gpus: N -> each pretraining job asks for N GPUs (torchrun, one node)
PRETRAIN_GPUS = GPU * int(config["pretrain"]["gpus"])


def job_threads(rule):
    return JOB_RESOURCES[rule][0]


def job_mem_mb(rule):
    base = JOB_RESOURCES[rule][1]
    return lambda wildcards, attempt: base * attempt


def job_runtime(rule):
    base = JOB_RESOURCES[rule][2]
    return lambda wildcards, attempt: base * attempt


def ingest_parts():
    """Part files of the ingest route jobs, one per input file or byte range of a large file, in
    (corpus.path order, range) order: the order the gather reads them in."""
    return [f"{R}/ingest/parts/{part_name(k, s)}" for k, spans in enumerate(INGEST_SPANS) for s in spans]


def ingest_span(wildcards):
    """Byte range of one route job (None: the whole file)."""
    return INGEST_SPANS[int(wildcards.file)][int(wildcards.span)]


def shard_files():
    return gather.shards(f"{R}/shards/{{scatteritem}}.h5")


# (reference seed, influence seed) of the primary scoring run: what results/influence/scores.h5 holds
PRIMARY = (config["reference"]["seed"], config["influence"]["seed"])
REFERENCE_SEEDS = config["selection"]["reference_seeds"]
STABILITY = config["stability"]
INFLUENCE_STRATEGIES = {"top_influence", "cci", "grad_norm"}


# reference.ensemble R > 1: a scoring run (r, i) averages R member runs (bioprune.influence.ensemble.member_seeds(r, R),
# member 0 = r); each member is an ordinary run, so shards and shared members are built once.
ENSEMBLE = config["reference"]["ensemble"]


def member_seeds_of(rseed):
    from bioprune.influence.ensemble import member_seeds

    return member_seeds(int(rseed), ENSEMBLE)


def member_score_file(rseed, iseed):
    return f"{R}/influence/ref{rseed}_inf{iseed}/scores.h5"


def score_file(rseed, iseed):
    """Scores of run (r, i) as selections and the stability stage read them: one reference model's, or
    with reference.ensemble > 1 the ensemble average of its members'."""
    if ENSEMBLE > 1:
        return f"{R}/influence/ensemble{ENSEMBLE}/ref{rseed}_inf{iseed}/scores.h5"
    return member_score_file(rseed, iseed)


def ensemble_inputs(wildcards):
    return [member_score_file(m, wildcards.iseed) for m in member_seeds_of(wildcards.rseed)]


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
    by = config["selection"].get(wildcards.strategy, {}).get("stratify_by", "none")
    if by == "cluster":  # stratify_by: cluster (selection.top_influence / selection.cci)
        d["members"] = f"{R}/selection/cluster_members.tsv"
    if by == "source" and config["selection"]["source_map"]:
        d["source_map"] = config["selection"]["source_map"]
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


def model_labels(wildcards):
    """Report labels of one model arm's items."""
    return {"strategy": wildcards.model_strategy, "budget": wildcards.budget, "seed": wildcards.seed}


def pretrain_selection(wildcards):
    if wildcards.model_strategy == "full":
        return []
    return f"{R}/selection/{wildcards.model_strategy}_{wildcards.budget}_seed{wildcards.seed}.h5"


from bioprune.config.resolve import EVAL_FILES  # noqa: E402  (task -> file under benchmark.resources)


def eval_files():
    """Evaluation sets the configured tasks read for this molecule: inputs, so a rebuilt set re-runs benchmarks."""
    res = config["benchmark"]["resources"]
    return [
        f"{res}/{EVAL_FILES[t]}"
        for t in config["benchmark"]["tasks"]
        if t in EVAL_FILES and t.split("_")[0] == MOLECULE
    ]


def leakage_eval_files():
    """What the leakage gate checks the pool against: the configured tasks' evaluation sets of this
    molecule plus the user's own leakage.eval_sets."""
    return eval_files() + list(config["leakage"]["eval_sets"])


LABELLED_TASKS = [t for t in config["benchmark"]["tasks"] if t in EVAL_FILES and t.split("_")[0] == MOLECULE]


def split_files():
    """Stored homology-aware probe splits of the configured labelled tasks."""
    return [f"{R}/benchmark/splits/{t}.tsv" for t in LABELLED_TASKS]


def metric_files():
    files = [f"{R}/metrics/{s}_{b}_seed{seed}.csv" for s, b, seed in model_ids()]
    if config["benchmark"]["nearest_neighbour"] and LABELLED_TASKS:
        files.append(f"{R}/metrics/nearest_neighbour.csv")
    if config["benchmark"]["kmer_baseline"] and ("perplexity" in config["benchmark"]["tasks"] or LABELLED_TASKS):
        files.append(f"{R}/metrics/kmer_baseline.csv")
    if MOLECULE == "rna" and config["benchmark"]["rnafold"] and "rna_ss" in config["benchmark"]["tasks"]:
        files.append(f"{R}/metrics/rnafold.csv")
    return files


def curve_files():
    return {
        f"{s}_{b}_seed{seed}": f"{R}/models/{s}_{b}_seed{seed}/curves.h5"
        for s, b, seed in model_ids()
        if seed == SEEDS[0]
    }


def plot_selections():
    return {f"{s}_{b}": f"{R}/selection/{s}_{b}_seed{SEEDS[0]}.h5" for s in STRATEGIES for b in BUDGETS}


def cluster_strata_strategies():
    """The selected strategies whose budget is split over MMseqs2 clusters (stratify_by: cluster)."""
    return [s for s in STRATEGIES if config["selection"].get(s, {}).get("stratify_by", "none") == "cluster"]


def ledger_inputs():
    """Benchmark files of every stage an arm is charged for: the scoring runs its selection read (the primary
    one and selection.reference_seeds'), clustering, and each arm's select, pretrain and benchmark jobs."""
    b = f"{R}/benchmarks"
    files = []
    if INFLUENCE_STRATEGIES & set(STRATEGIES):
        runs = {PRIMARY} | {(r, PRIMARY[1]) for r in REFERENCE_SEEDS}
        if ENSEMBLE > 1:  # R-fold: every member's reference, curvature, sketches and scores, plus the average
            files += [f"{b}/ensemble/ref{r}_inf{i}.tsv" for r, i in sorted(runs)]
            runs = {(m, i) for r, i in runs for m in member_seeds_of(r)}
        for r, i in sorted(runs):
            files += [f"{b}/reference/seed{r}.tsv", f"{b}/scores/ref{r}_inf{i}.tsv"]
            files += gather.shards(f"{b}/sketch/ref{r}_inf{i}/{{scatteritem}}.tsv")
            if ESTIMATOR == "diag_fisher":
                files.append(f"{b}/curvature/ref{r}_inf{i}.tsv")
    if "cluster" in STRATEGIES or cluster_strata_strategies():
        files.append(f"{b}/cluster.tsv")
    for s, bud, seed in model_ids():
        label = f"{s}_{bud}_seed{seed}"
        files += [f"{b}/pretrain/{label}.tsv", f"{b}/benchmark/{label}.tsv"]
        if s != "full":
            files.append(f"{b}/select/{label}.tsv")
    return files


def selection_tables():
    """(label, TSV) of every selection: each strategy x budget x seed."""
    return [
        (f"{s}_{b}_seed{seed}", f"{R}/selection/{s}_{b}_seed{seed}.tsv")
        for s in STRATEGIES
        for b in BUDGETS
        for seed in SEEDS
    ]


def coreset_summary_inputs(wildcards):
    d = {
        "ingest": f"{R}/shards/ingest.json",
        "leakage": f"{R}/leakage/report.csv",
        "scores": f"{R}/influence/scores.h5",
        "tables": [t for _, t in selection_tables()],
        "reference": f"{R}/reference/seed{PRIMARY[0]}/curves.h5",  # member 0 with reference.ensemble > 1
    }
    if STABILITY["enabled"]:
        d["stability"] = f"{R}/influence/stability.csv"
    return d


def coreset_targets():
    """What `snakemake coreset` makes: every selection with its exports, the score plots, stability,
    and the coreset summary; no pretraining or benchmark job."""
    files = [
        f"{R}/config.resolved.yaml",
        f"{R}/shards/ingest.json",
        f"{R}/leakage/report.csv",
        f"{R}/influence/scores.h5",
        f"{R}/plots/score_histogram.png",
        f"{R}/plots/score_vs_length.png",
        f"{R}/coreset/summary.md",
    ]
    if STABILITY["enabled"]:
        files += [f"{R}/influence/stability.csv", f"{R}/plots/stability.png"]
    for _, tsv in selection_tables():
        stem = tsv[: -len(".tsv")]
        files += [f"{stem}.h5", f"{stem}.fa", tsv, f"{stem}.original.fa"]
    return files


def all_targets():
    return [
        f"{R}/config.resolved.yaml",
        f"{R}/leakage/report.csv",
        f"{R}/shards/ingest.json",
        f"{R}/benchmark/summary.csv",
        f"{R}/benchmark/table.csv",
        f"{R}/benchmark/ledger.csv",
        f"{R}/benchmark/versions.csv",
        f"{R}/plots/score_histogram.png",
        f"{R}/plots/score_vs_length.png",
        *([f"{R}/influence/stability.csv", f"{R}/plots/stability.png"] if STABILITY["enabled"] else []),
        f"{R}/influence/scores.h5",
        f"{R}/plots/metrics.png",
        f"{R}/plots/pruning_curves.png",
        f"{R}/plots/training_curves.png",
        f"{R}/coreset/summary.md",
        f"{R}/report/verdict.html",
    ]
