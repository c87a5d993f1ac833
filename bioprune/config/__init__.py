"""Workflow config: one resolution used by the Snakefile and every `bioprune` subcommand.

resolve_config(files, overrides) = schema defaults <- the user's YAML file(s), merged in order <-
command-line overrides (`snakemake --config k=v`, `bioprune ... --set k=v`), coerced to the schema's
types and validated once (config.resolve). The bundled demo (`config.yaml` beside the Snakefile) is
used only when no file is named; it is never merged under a user's file. The per-stage dicts
(config.params) are what Snakemake rules carry in `params:` (so a config edit re-runs exactly the
stages that use the edited value) and what the `bioprune` subcommands pass to the library.
"""
from __future__ import annotations

from bioprune.config.params import (
    benchmark_params, corpus_files, ensemble_params, full_seeds, influence_params, ingest_params, ingest_spans,
    kmer_params, leakage_params, pretrain_params, reference_params, selection_params, split_params,
)
from bioprune.config.preflight import check_corpus, check_device, preflight
from bioprune.config.resolve import (
    DEMO_CONFIG, DEMO_PATH_KEYS, PAPER_INFLUENCE, ROOT, SCHEMA, apply_paper_mode, check_semantics,
    coerce, deep_merge, dump_resolved, load_config, parse_override, read_yaml, resolve_config,
    schema_markdown, shipped_path, validate_config,
)

__all__ = [
    "check_corpus", "check_device", "preflight",
    "DEMO_CONFIG", "DEMO_PATH_KEYS", "PAPER_INFLUENCE", "ROOT", "SCHEMA", "apply_paper_mode",
    "benchmark_params", "kmer_params", "check_semantics", "coerce", "corpus_files", "deep_merge", "dump_resolved",
    "ensemble_params", "full_seeds", "influence_params", "ingest_params", "ingest_spans", "leakage_params",
    "load_config", "parse_override", "pretrain_params", "read_yaml", "reference_params",
    "resolve_config", "schema_markdown", "selection_params", "shipped_path", "split_params",
    "validate_config",
]
