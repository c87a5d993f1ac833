"""One entry point per workflow stage, shared by the Snakemake scripts and the `bioprune` CLI.

Each takes input paths, output paths and the stage's params dict (as built by bioprune.config.params, the
dict a rule's `params:` carries) and turns that dict into the stage's typed dataclass here, once
(`typed`): the packages below take dataclasses, never the raw dict.
"""
from __future__ import annotations

import csv
import json
import logging

from bioprune.errors import BiopruneError
from bioprune.h5io import atomic_path

log = logging.getLogger(__name__)


def typed(cls, params: dict, **overrides):
    """The dataclass `cls` from a stage's params dict: its fields only (other keys belong to other stages or
    to the rule), `overrides` (e.g. the job's threads) last."""
    import dataclasses

    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in {**params, **overrides}.items() if k in fields})


def write_text(path: str, text: str) -> None:
    """Write a small text output (the resolved config) atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as fh:
            fh.write(text)


def ingest(fasta: str | list[str], shards: list[str], holdout: str, stats: str, params: dict) -> None:
    """All of ingest in one process (the CLI); fasta = a file, a glob or a list of either."""
    from bioprune.ingest import IngestOptions, ingest as _ingest

    _ingest(fasta, shards, holdout, typed(IngestOptions, params), stats)


def ingest_route(fasta: str, part: str, file_index: int, n_shards: int, params: dict, span: dict | None = None) -> None:
    """Workflow scatter job: one input file, or one byte range of it (`span`), -> one part file
    grouped by destination shard."""
    from bioprune.ingest import IngestOptions, route_file

    route_file(fasta, part, file_index, n_shards, typed(IngestOptions, params), span)


def ingest_gather(parts: list[str], out: str, dest: int, n_shards: int) -> None:
    """Workflow gather job: shard `dest` (0-based; n_shards = the held-out file) from all parts."""
    from bioprune.ingest import gather_shard

    log.info("gather %s: %s", out, gather_shard(parts, out, dest, n_shards))


def ingest_summary(parts: list[str], shards: list[str], holdout: str, stats: str, params: dict,
                   files: list[str] | None = None) -> None:
    """Sum the route and gather stats into ingest.json; stop (writing nothing) when no sequence survived
    the filters, or none is left for the pool, naming the filter, its config key and the counts."""
    from bioprune.ingest import IngestOptions, check_counts, summarise

    check_counts(summarise(parts, shards, holdout, None), typed(IngestOptions, params), files)
    summarise(parts, shards, holdout, stats)


def check_budgets(pool: int, selection: dict) -> None:
    """Every selection.budgets x strategy asks for at least one sequence of a pool of `pool` (and random_10x
    for no more than the pool): checked after the leakage gate, before any scoring job (budget_size's error)."""
    from bioprune.selection.strategies import budget_size

    for b in selection["budgets"]:
        for strategy in selection["strategies"]:
            budget_size(pool, float(b), strategy)


def leakage_gate(raw_shards: list[str], eval_files: list[str], out_shards: list[str], excluded: str, report: str,
                 params: dict, threads: int = 1, selection: dict | None = None) -> None:
    """Drop pool sequences that near-copy an evaluation sequence; params = leakage_params(config).
    `selection` (the config's selection section): stop when a budget is under one sequence of the gated pool."""
    import h5py

    from bioprune.leakage import GateConfig, filter_shards, read_excluded, run_gate, write_gate

    if params["enabled"]:
        run_gate(raw_shards, eval_files, excluded, report, typed(GateConfig, params, threads=threads))
    else:
        write_gate(set(), [], excluded, report)
        log.warning("leakage gate disabled (leakage.enabled: false): evaluation near-copies stay in the pool")
    if selection:
        n = 0
        for p in raw_shards:
            with h5py.File(p, "r", locking=False) as f:
                n += int(f["id"].shape[0])
        check_budgets(n - len(read_excluded(excluded)), selection)
    filter_shards(raw_shards, out_shards, excluded)


def holdout_eval(holdout: str, shards: list[str], out: str, excluded: str, report: str, params: dict,
                 threads: int = 1) -> None:
    """The held-out evaluation file without held-out sequences near-copied in the gated pool; params =
    leakage_params(config) (leakage.holdout false or leakage.enabled false: a plain copy, nothing dropped)."""
    from bioprune.leakage import GateConfig, clean_holdout

    clean_holdout(holdout, shards, out, excluded, report, typed(GateConfig, params, threads=threads))


def probe_split(task: str, eval_path: str, out: str, params: dict, threads: int = 1) -> None:
    from bioprune.benchmarks import BenchParams
    from bioprune.benchmarks.splits import build_split

    build_split(task, eval_path, out, BenchParams.from_dict(params), threads)


def nearest_neighbour(out: str, params: dict) -> None:
    from bioprune.benchmarks import BenchParams, nearest_neighbour_reference

    write_metrics(out, "nearest_neighbour", "", 0, nearest_neighbour_reference(BenchParams.from_dict(params)))


def kmer_baseline(shards: list[str], holdout: str, out: str, params: dict) -> None:
    """params = kmer_params: benchmark_params plus `validation_filter` (the held-out filter's rule, or None)."""
    from bioprune.benchmarks import BenchParams
    from bioprune.benchmarks.kmer import kmer_baseline_rows
    from bioprune.leakage import GateConfig

    vf = params.get("validation_filter")
    rows = kmer_baseline_rows(shards, BenchParams.from_dict(params, holdout), typed(GateConfig, vf) if vf else None)
    write_metrics(out, "kmer_baseline", "", 0, rows)


def reference(shards: list[str], model: str, curves: str, params: dict) -> None:
    from bioprune.influence import ReferenceConfig, build_reference

    build_reference(shards, model, curves, ReferenceConfig.from_params(params))


def _influence_cfg(params: dict):
    from bioprune.influence import InfluenceConfig

    return typed(InfluenceConfig, params)


def curvature(shards: list[str], model: str, out: str, params: dict) -> None:
    from bioprune.influence.sketches import fit_diag_fisher

    cfg = _influence_cfg(params)
    if cfg.estimator != "diag_fisher":
        raise BiopruneError("curvature stage is only used by influence.estimator diag_fisher")
    fit_diag_fisher(shards, model, out, cfg)


def sketch(shard: str, model: str, out: str, params: dict, curvature: str | None = None) -> None:
    from bioprune.influence.sketches import sketch_shard

    sketch_shard(shard, model, out, _influence_cfg(params), curvature)


def scores(sketches: list[str], out: str, params: dict) -> None:
    """Merge shard sketches; params = what the merge applies (projected: damping, relative_damping,
    leave_one_out); diag_fisher scores were finished per shard, so params is empty there."""
    from bioprune.influence.scores import merge_scores

    merge_scores(sketches, out, **params)


def ensemble_scores(members: list[str], out: str, params: dict) -> None:
    """Average the member runs' scores (reference.ensemble > 1; bioprune.influence.ensemble); params = ensemble_params."""
    from bioprune.influence.ensemble import ensemble_scores as _ensemble

    if len(members) != int(params["size"]):
        raise BiopruneError(f"config key reference.ensemble: {params['size']} members expected, {len(members)} given")
    _ensemble(members, out, params["normalize"], int(params["seed"]))


def copy_file(src: str, dst: str) -> None:
    """Copy a finished output to a stable name atomically (results/influence/scores.h5)."""
    import shutil

    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def stability(primary: str, influence_seed: str, reference_seed: str, selections: dict[str, str],
              out_csv: str, out_png: str, budgets: list[float]) -> None:
    from bioprune.influence.stability import run_stability

    run_stability(primary, influence_seed, reference_seed, selections, out_csv, out_png, budgets)


def cluster(shards: list[str], out: str, params: dict, threads: int = 1, members: str | None = None) -> None:
    """MMseqs2 representatives (`out`) and, with `members`, the representative<TAB>member table
    (stratify_by: cluster)."""
    import tempfile

    from bioprune.ingest import load_sequences
    from bioprune.selection.strategies import mmseqs_representatives

    ids, seqs = load_sequences(shards, None)
    with tempfile.NamedTemporaryFile("w", suffix=".fa") as fh:
        for i, s in zip(ids, seqs):
            fh.write(f">{i}\n{s}\n")
        fh.flush()
        n = mmseqs_representatives(fh.name, out, params["identity"], params["coverage"], threads, members)
    log.info("cluster: %d representatives of %d sequences at identity %.2f", n, len(ids), params["identity"])


def pool_complexity(shards: list[str], ids: list[str], k: int) -> np.ndarray:
    """k-mer entropy (selections.kmer_entropy) of every scored id, in the scores' order, read from the shards."""
    import numpy as np

    from bioprune.alphabets import PROTEIN_STANDARD, RNA_STANDARD
    from bioprune.ingest import load_sequences
    from bioprune.selection.strategies import kmer_entropy
    from bioprune.ingest import shard_molecule

    letters = RNA_STANDARD if shard_molecule(shards[0]) == "rna" else PROTEIN_STANDARD
    s_ids, seqs = load_sequences(shards, None)
    ent = dict(zip(s_ids, kmer_entropy(seqs, k, letters)))
    missing = [i for i in ids if i not in ent]
    if missing:
        raise BiopruneError(f"degenerate: {len(missing)} scored ids are not in the shards (e.g. {missing[:3]})")
    return np.array([ent[i] for i in ids])


def strata_labels(scores_path: str, cfg, members: str | None = None):
    """Categorical strata (selection.LabelPlan) of the scored ids when the strategy's stratify_by is source or
    cluster (None otherwise): sources from selection.source_map or the ids, clusters from `members`.
    cfg = the strategy's SelectionConfig."""
    from bioprune.h5io import open_h5, read_str
    from bioprune.selection import LabelPlan, cluster_labels, source_labels

    by = cfg.stratify_by
    if by not in ("source", "cluster"):
        return None
    with open_h5(scores_path, "scores", ["id"]) as f:
        ids = read_str(f["id"])
    if by == "source":
        return LabelPlan.of(source_labels(ids, cfg.source_map))
    if not members:
        raise BiopruneError(f"config key selection.{cfg.strategy}.stratify_by: cluster needs the MMseqs2 "
                            "cluster members table (the cluster rule's cluster_members.tsv)")
    return LabelPlan.of(cluster_labels(ids, members))


def select(scores_path: str, shards: list[str], out: str, fasta: str, params: dict, budget: float, seed: int,
           representatives: str | None = None, table: str | None = None, export: dict | None = None,
           members: str | None = None) -> None:
    """Select on the scores' numeric columns read block by block (ids only for `cluster`), then write
    the selection and its FASTA streaming from the shards: memory O(k) for Top-I, GraNd and CCI
    (O(pool) with length strata, random_10x or cluster), no Python object per sequence.
    params = selection_params (typed here as a SelectionConfig; its JSON is stored in the selection's attrs).
    `table` (ids + scores for the user's own trainer) reads the whole scores file, ids included.
    stratify_by source / cluster reads the ids (strata_labels; `members` = the MMseqs2 members table).
    `export` = {"files": corpus files, "ingest": ingest_params}: also write the user's original records of
    the chosen ids beside the FASTA (`.original.fa`, bioprune.selection.export) and their lengths into the table."""
    from bioprune.influence import read_scores
    from bioprune.selection import SelectionConfig, score_columns, select_indices, write_selection_streaming

    cfg = SelectionConfig.from_params(params)
    strategy = cfg.strategy
    reps = open(representatives).read().split() if representatives else None
    kw = dict(top_influence=cfg.top_influence, length_strata=cfg.length_strata,
              labels=strata_labels(scores_path, cfg, members))
    if strategy in ("cluster", "degenerate"):
        sc = read_scores(scores_path)
        n, sc_attrs = len(sc["id"]), sc["attrs"]
        if strategy == "degenerate":
            sc["complexity"] = pool_complexity(shards, sc["id"], cfg.degenerate_k)
        idx = select_indices(strategy, sc, n, budget, seed, cfg.cci, reps, **kw)
    else:
        with score_columns(scores_path) as (sc, n, sc_attrs):
            idx = select_indices(strategy, sc, n, budget, seed, cfg.cci, reps, **kw)
    attrs = {"strategy": strategy, "budget": budget, "seed": seed, "pool_size": n,
             "scores": scores_path, "reference_seed": int(sc_attrs.get("subset_seed", -1)),
             "parameters": json.dumps(params, sort_keys=True)}
    write_selection_streaming(out, fasta, scores_path, shards, idx, **attrs)
    if table:  # ids + scores (+ the original records) for the user's own trainer (bioprune.selection.export)
        from bioprune.ingest import IngestOptions
        from bioprune.selection import original_fasta_path, read_selection, write_original_records, write_selection_table

        chosen = read_selection(out)
        original, lengths = None, None
        if export and export.get("files"):
            original = original_fasta_path(fasta)
            lengths = write_original_records(export["files"], chosen, original)
        ingest = (export or {}).get("ingest")
        write_selection_table(table, chosen, sc if strategy == "cluster" else read_scores(scores_path), lengths,
                              typed(IngestOptions, ingest) if ingest else None, original)
    log.info("select %s budget %g seed %d: %d of %d sequences", strategy, budget, seed, len(idx), n)


def pretrain(shards: list[str], holdout: str, model: str, curves: str, params: dict, seed: int,
             selection: str | None = None, label: str = "") -> None:
    """params = pretrain_params (the pretrain section, device, gpus): a TrainConfig with this arm's seed."""
    from bioprune.training import TrainConfig, pretrain as _pretrain

    _pretrain(shards, holdout, model, curves, typed(TrainConfig, params, seed=seed), int(params.get("gpus") or 1),
              selection, label)


def write_metrics(path: str, strategy: str, budget, seed, rows) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["strategy", "budget", "seed", "task", "metric", "value"])
            for task, metric, value in rows:
                w.writerow([strategy, budget, seed, task, metric, repr(float(value))])


TRAINING_COUNTS = ("tokens_seen", "unique_tokens", "unique_sequences")


def training_rows(model: str) -> list[tuple[str, str, float]]:
    """Task `training` rows: the tokens the model was pretrained on (with repeats), the tokens and number
    of the distinct sequences, from its checkpoint's meta (absent in checkpoints of older versions)."""
    import torch

    meta = torch.load(model, map_location="cpu", weights_only=False).get("meta") or {}
    return [("training", k, float(meta[k])) for k in TRAINING_COUNTS if k in meta]


def benchmark(model: str, holdout: str, out: str, params: dict, strategy: str, budget, seed) -> None:
    from bioprune.benchmarks import BenchParams, run_benchmarks

    rows = run_benchmarks(model, BenchParams.from_dict(params, holdout)) + training_rows(model)
    write_metrics(out, strategy, budget, seed, rows)


def rnafold(out: str, params: dict) -> None:
    from bioprune.benchmarks import rnafold_reference

    rows = [("rna_ss", m, v) for m, v in rnafold_reference(params["resources"], params["max_eval"], params["test_families"])]
    write_metrics(out, "rnafold", "", 0, rows)


def ledger(benchmark_tsvs: list[str], out: str, cluster_strata: list[str] | tuple[str, ...] = ()) -> None:
    """`out` is <results>/benchmark/ledger.csv; the stage files it reads lie under <results>.
    `cluster_strata`: the influence strategies selected with stratify_by cluster (charged the clustering)."""
    from pathlib import Path

    from bioprune.report.ledger import write_ledger

    table = write_ledger(str(Path(out).parents[1]), benchmark_tsvs, out, tuple(cluster_strata))
    log.info("compute ledger: %d arms -> %s", len(table), out)
