"""Workflow config: one resolution used by the Snakefile and every `bioprune` subcommand.

resolve_config(files, overrides) = schema defaults <- the user's YAML file(s), merged in order <-
command-line overrides (`snakemake --config k=v`, `bioprune ... --set k=v`), coerced to the schema's
types and validated once. The bundled demo (`config.yaml` beside the Snakefile) is used only when no
file is named; it is never merged under a user's file. The per-stage dicts below are what Snakemake
rules carry in `params:` (so a config edit re-runs exactly the stages that use the edited value) and
what the `bioprune` subcommands pass to the library.
"""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

from .errors import BiopruneError

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "schemas" / "config.schema.yaml"
DEMO_CONFIG = ROOT / "config.yaml"


def _schema() -> dict:
    return yaml.safe_load(SCHEMA.read_text())


def read_yaml(path: str | Path) -> dict:
    """A YAML mapping from a file; a missing file, bad YAML or a non-mapping names the file."""
    p = Path(path)
    if not p.exists():
        raise BiopruneError(f"{p}: config file not found")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise BiopruneError(f"{p}: not valid YAML ({e})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BiopruneError(f"{p}: a config file must be a YAML mapping, found {type(data).__name__}")
    return data


def deep_merge(base: dict, update: dict) -> dict:
    """base updated by update, recursing into mappings (lists and scalars are replaced); returns a copy."""
    out = copy.deepcopy(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_override(text: str) -> dict:
    """`a.b.c=value` (value as YAML) -> {"a": {"b": {"c": value}}}; used by the CLI's --set."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise BiopruneError(f"--set {text!r}: expected KEY=VALUE, e.g. --set reference.lr=0.001")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as e:
        raise BiopruneError(f"--set {key}: value {value!r} is not valid YAML ({e})") from None
    out: dict = {}
    node = out
    parts = key.strip().split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = parsed
    return out


def _types(schema: dict) -> list[str]:
    t = schema.get("type", [])
    if isinstance(t, str):
        t = [t]
    for alt in schema.get("oneOf", []) + schema.get("anyOf", []):
        t = t + _types(alt)
    return t


def coerce(value, schema: dict):
    """Command-line values arrive as strings (Snakemake's --config reads `seeds=[0]` as ['0']):
    re-read a string as YAML where the schema does not accept a string there, recursively."""
    types = _types(schema)
    if isinstance(value, str) and types and "string" not in types:
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
    if isinstance(value, dict) and "properties" in schema:
        return {k: coerce(v, schema["properties"].get(k, {})) for k, v in value.items()}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [coerce(v, schema["items"]) for v in value]
    if isinstance(value, list):
        for alt in schema.get("oneOf", []) + schema.get("anyOf", []):
            if isinstance(alt.get("items"), dict):
                return [coerce(v, alt["items"]) for v in value]
    return value


def resolve_config(files: list[str | Path] | None = None, overrides: dict | None = None,
                   source: str | None = None) -> dict:
    """The one resolved config: schema defaults <- files (in order) <- overrides, validated.

    With no file, the bundled demo config.yaml is the file. Missing required keys (`corpus.path`,
    `corpus.molecule`) stop with the key's name; every other missing key takes the schema default.
    """
    files = [str(f) for f in (files or [DEMO_CONFIG])]
    merged: dict = {}
    for f in files:
        merged = deep_merge(merged, read_yaml(f))
    if overrides:
        merged = deep_merge(merged, coerce(dict(overrides), _schema()))
    return validate_config(merged, source or " + ".join(files) + (" + overrides" if overrides else ""))


def dump_resolved(config: dict, files: list[str] | None = None, overrides: dict | None = None) -> str:
    """The resolved config as YAML with a header naming where it came from."""
    overrides = coerce(dict(overrides or {}), _schema())
    head = ["# bioprune resolved config: schema defaults <- files <- overrides (validated)",
            f"# files: {', '.join(str(f) for f in (files or [DEMO_CONFIG]))}",
            f"# overrides: {yaml.safe_dump(overrides or {}, default_flow_style=True).strip()}"]
    return "\n".join(head) + "\n" + yaml.safe_dump(config, sort_keys=True, default_flow_style=False)


def validate_config(config: dict, source: str = "config") -> dict:
    """Validate in place with defaults; a wrong key or type raises BiopruneError naming the key."""
    import jsonschema
    from snakemake.utils import validate

    schema = _schema()
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(config))
    if error is not None:
        key = ".".join(str(p) for p in error.absolute_path)
        if error.validator == "required":  # name the missing key itself, e.g. corpus.path
            missing = error.message.split("'")[1] if "'" in error.message else ""
            key = ".".join(x for x in (key, missing) if x)
            raise BiopruneError(f"{source}: missing required config key {key} ({error.message})")
        raise BiopruneError(f"{source}: invalid config: key {key or '(top level)'}: {error.message}")
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


def load_config(path: str | None = None, overrides: dict | None = None) -> dict:
    """Resolve one YAML config file (the demo when None) with optional overrides."""
    return resolve_config([path] if path else None, overrides, source=str(path) if path else None)


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
