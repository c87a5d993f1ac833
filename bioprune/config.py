"""Workflow config: validation against schemas/config.schema.yaml (defaults filled) and per-stage params.

The per-stage dicts are what Snakemake rules carry in `params:` (so a config edit re-runs exactly the
stages that use the edited value) and what the `bioprune` subcommands pass to the library.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from .errors import BiopruneError

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"


def validate_config(config: dict, source: str = "config") -> dict:
    """Validate in place with defaults; a wrong key or type raises BiopruneError naming the key."""
    import jsonschema
    from snakemake.utils import validate

    schema = yaml.safe_load(SCHEMA.read_text())
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(config))
    if error is not None:
        key = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        raise BiopruneError(f"{source}: invalid config: key {key}: {error.message}")
    validate(config, str(SCHEMA), set_default=True)  # fills in the schema's defaults
    check_semantics(config, source)
    return config


def check_semantics(config: dict, source: str = "config") -> None:
    """Checks a schema cannot express: budgets vs random_10x, heads vs width."""
    sel = config["selection"]
    if "random_10x" in sel["strategies"]:
        for b in sel["budgets"]:
            if b * 10 > 1:
                raise BiopruneError(f"{source}: key selection.budgets: {b} x 10 exceeds the pool, needed by random_10x")
    for sec in ("reference", "pretrain"):
        c = config[sec]
        if c["embed_dim"] % c["heads"]:
            raise BiopruneError(f"{source}: key {sec}.embed_dim ({c['embed_dim']}) must be divisible by {sec}.heads ({c['heads']})")


def load_config(path: str) -> dict:
    """Read a YAML config file and validate it (defaults filled)."""
    p = Path(path)
    if not p.exists():
        raise BiopruneError(f"{p}: config file not found")
    try:
        config = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise BiopruneError(f"{p}: not valid YAML ({e})") from None
    return validate_config(config, str(p))


def ingest_params(config: dict) -> dict:
    c = config["corpus"]
    return {k: c[k] for k in ("molecule", "ambiguous", "min_length", "max_length", "length_policy", "holdout_fraction")}


def reference_params(config: dict) -> dict:
    r = dict(config["reference"])
    r["device"] = config["device"]
    return r


def influence_params(config: dict, stage: str) -> dict:
    """Influence settings a stage depends on; per-shard projected sketches do not depend on damping."""
    i = dict(config["influence"])
    i["seed"] = config["reference"]["seed"]
    i["subset_fraction"] = config["reference"]["subset_fraction"]
    i["device"] = config["device"]
    if stage == "curvature":
        i.pop("damping")
        i.pop("sketch_dim")
    if stage == "sketch" and i["estimator"] == "projected":
        i.pop("damping")
    if stage == "sketch" and i["estimator"] == "diag_fisher":
        i.pop("sketch_dim")
        i.pop("subset_fraction")  # reaches the shard through the curvature file
    return i


def selection_params(config: dict, strategy: str) -> dict:
    s = config["selection"]
    p = {"strategy": strategy}
    if strategy == "cci":
        p["cci"] = dict(s["cci"])
    if strategy == "cluster":
        p["cluster"] = dict(s["cluster"])
    return p


def pretrain_params(config: dict) -> dict:
    p = dict(config["pretrain"])
    p.pop("include_full")
    p.pop("full_seeds")
    p["device"] = config["device"]
    return p


def benchmark_params(config: dict) -> dict:
    b = dict(config["benchmark"])
    b.pop("rnafold")
    b["molecule"] = config["corpus"]["molecule"]
    b["device"] = config["device"]
    return b
