"""Config resolution: schema defaults <- the user's file(s) <- overrides, coerced and validated once
(the bundled demo config only when no file is named); paper mode; the config table of docs/CONFIGURATION.md."""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

from bioprune.errors import BiopruneError

ROOT = Path(__file__).resolve().parents[2]
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
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise BiopruneError(f"{p}: not valid YAML{where}: {problem}") from None
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


def shipped_path(rel: str | Path) -> str:
    """A file shipped with the workflow (beside the Snakefile), as a path the working directory can use:
    relative when the workflow lies inside the working directory (the usual checkout), else absolute
    (bioprune used as a Snakemake module, or `snakemake -s path/to/Snakefile` from elsewhere)."""
    target = (ROOT / rel).resolve()
    try:
        return str(target.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(target)


# path-valued keys of the bundled demo config, which are relative to the workflow (they name shipped files)
DEMO_PATH_KEYS = (("corpus", "path"), ("benchmark", "resources"), ("reference", "checkpoint"))


def _rebase_demo(data: dict) -> dict:
    """Relative paths in the bundled config.yaml name files shipped with the workflow; paths in a
    user's config files stay relative to the working directory, as Snakemake users expect."""
    for section, key in DEMO_PATH_KEYS:
        value = (data.get(section) or {}).get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            data[section][key] = shipped_path(value)
    return data


def resolve_config(files: list[str | Path] | None = None, overrides: dict | None = None,
                   source: str | None = None, data: dict | None = None) -> dict:
    """The one resolved config: schema defaults <- files (in order) <- overrides, validated.

    With no file (and no `data`), the bundled demo config.yaml is the file. `data` is a config mapping
    already read (the `config:` a host workflow hands to bioprune used as a Snakemake module); it is
    merged after the files. Missing required keys (`corpus.path`, `corpus.molecule`) stop with the
    key's name; every other missing key takes the schema default. `benchmark.resources: null` is the
    evaluation sets shipped with the workflow.
    """
    files = [str(f) for f in (files or ([] if data is not None else [DEMO_CONFIG]))]
    merged: dict = {}
    for f in files:
        layer = read_yaml(f)
        merged = deep_merge(merged, _rebase_demo(layer) if Path(f).resolve() == DEMO_CONFIG else layer)
    if data is not None:
        merged = deep_merge(merged, coerce(copy.deepcopy(dict(data)), _schema()))
    if overrides:
        merged = deep_merge(merged, coerce(dict(overrides), _schema()))
    source = source or " + ".join(files + (["module config"] if data is not None else [])) + (
        " + overrides" if overrides else "")
    config = validate_config(apply_paper_mode(merged, source), source)
    if config["benchmark"]["resources"] is None:
        config["benchmark"]["resources"] = shipped_path("resources")
    return config


def dump_resolved(config: dict, files: list[str] | None = None, overrides: dict | None = None) -> str:
    """The resolved config as YAML with a header naming where it came from."""
    overrides = coerce(dict(overrides or {}), _schema())
    head = ["# bioprune resolved config: schema defaults <- files <- overrides (validated)",
            f"# files: {', '.join(str(f) for f in (files or [DEMO_CONFIG]))}",
            f"# overrides: {yaml.safe_dump(overrides or {}, default_flow_style=True).strip()}"]
    return "\n".join(head) + "\n" + yaml.safe_dump(config, sort_keys=True, default_flow_style=False)


def unknown_key_message(config: dict, schema: dict, path: list) -> str:
    """`unknown config key corpus.max_lenght (did you mean corpus.max_length?)` for the first key at `path`
    that the schema does not know."""
    import difflib

    node, sch = config, schema
    for p in path:
        node = node[p]
        sch = sch.get("properties", {}).get(p, {})
    known = list(sch.get("properties", {}))
    prefix = "".join(f"{p}." for p in path)
    bad = [k for k in node if k not in known]
    k = bad[0] if bad else "?"
    near = difflib.get_close_matches(str(k), known, n=1, cutoff=0.6)
    hint = f" (did you mean {prefix}{near[0]}?)" if near else f" (known keys: {', '.join(known)})"
    return f"unknown config key {prefix}{k}{hint}"


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
        if error.validator == "additionalProperties":  # an unknown key: name it, with the nearest known one
            raise BiopruneError(f"{source}: {unknown_key_message(config, schema, list(error.absolute_path))}")
        raise BiopruneError(f"{source}: invalid config: key {key or '(top level)'}: {error.message}")
    validate(config, str(SCHEMA), set_default=True)  # fills in the schema's defaults
    check_semantics(config, source)
    return config


# influence.paper_exact: true applies these (the official bio-coreset scoring; bioprune.influence.paper reproduces
# its forward, window and loss). A conflicting value set in the user's config is an error naming it.
PAPER_INFLUENCE = {"estimator": "diag_fisher", "params": ["lm_head.dense.weight"], "normalize": "none",
                   "loss": "reconstruction_padded", "reduction": "mean", "damping": 1e-8, "pad_to": 1024}


def apply_paper_mode(config: dict, source: str = "config") -> dict:
    """Before defaults are filled: paper_exact sets the official influence settings; a user value
    that contradicts one of them stops with the key's name."""
    inf = config.get("influence") or {}
    if not isinstance(inf, dict) or inf.get("paper_exact") is not True:
        return config
    for key, want in PAPER_INFLUENCE.items():
        if key in inf and inf[key] != want:
            raise BiopruneError(f"{source}: key influence.{key}: {inf[key]!r} contradicts influence.paper_exact "
                                f"(the official code uses {want!r}); remove the key or set paper_exact: false")
        inf[key] = copy.deepcopy(want)
    config["influence"] = inf
    return config


def check_semantics(config: dict, source: str = "config") -> None:
    """Checks a schema cannot express: budgets vs random_10x, heads vs width."""
    sel = config["selection"]
    if sel["reference_seeds"] and len(sel["reference_seeds"]) != len(config["seeds"]):
        raise BiopruneError(f"{source}: key selection.reference_seeds: {len(sel['reference_seeds'])} seeds given, "
                            f"need one per entry of seeds ({len(config['seeds'])}) or none")
    st = config["stability"]
    if st["enabled"] and (st["influence_seed"] == config["influence"]["seed"]
                          or st["reference_seed"] == config["reference"]["seed"]):
        raise BiopruneError(f"{source}: keys stability.influence_seed / stability.reference_seed must differ from "
                            "influence.seed / reference.seed (the stage compares two different draws)")
    if "random_10x" in sel["strategies"]:
        for b in sel["budgets"]:
            if b * 10 > 1:
                raise BiopruneError(f"{source}: key selection.budgets: {b} x 10 exceeds the pool, needed by random_10x")
    for sec in ("reference", "pretrain"):
        c = config[sec]
        if c["embed_dim"] % c["heads"]:
            raise BiopruneError(f"{source}: key {sec}.embed_dim ({c['embed_dim']}) must be divisible by {sec}.heads ({c['heads']})")


# labelled benchmark tasks and the molecule of their evaluation sets (the gate checks each against the pool)
TASK_MOLECULE = {"rna_ss": "rna", "rna_type": "rna", "protein_ss": "protein", "protein_loc": "protein"}
# their evaluation files under benchmark.resources (the workflow's eval_files(), the CLI's leakage-gate)
EVAL_FILES = {"rna_ss": "rna/ss_eval.tsv.gz", "rna_type": "rna/type_eval.tsv.gz",
              "protein_ss": "protein/ss_eval.tsv.gz", "protein_loc": "protein/loc_eval.tsv.gz"}


def check_leakage_sets(config: dict, source: str = "config") -> None:
    """With the gate on, it must have something to check: an evaluation set of a benchmark task of the
    corpus's molecule, or a file in leakage.eval_sets (each of which must exist)."""
    leak = config["leakage"]
    for f in leak["eval_sets"]:
        if not Path(f).is_file():
            raise BiopruneError(f"{source}: key leakage.eval_sets: {f}: file not found")
    if not leak["enabled"]:
        return
    mol = config["corpus"]["molecule"]
    if not leak["eval_sets"] and not any(TASK_MOLECULE.get(t) == mol for t in config["benchmark"]["tasks"]):
        raise BiopruneError(
            f"{source}: the leakage gate would check the {mol} corpus against no evaluation sequence: "
            f"benchmark.tasks ({', '.join(config['benchmark']['tasks']) or 'none'}) has no {mol} task; add one "
            f"({', '.join(t for t, m in TASK_MOLECULE.items() if m == mol)}), name your own evaluation files in "
            "leakage.eval_sets, or set leakage.enabled: false")


def load_config(path: str | None = None, overrides: dict | None = None) -> dict:
    """Resolve one YAML config file (the demo when None) with optional overrides."""
    return resolve_config([path] if path else None, overrides, source=str(path) if path else None)


def schema_markdown() -> str:
    """docs/CONFIGURATION.md's configuration table (key | default | meaning), generated from the schema so the
    two cannot drift apart (tests/config/test_config.py compares them)."""
    rows = ["| key | default | meaning |", "|---|---|---|"]

    def walk(props: dict, prefix: str = "", required=()):
        for k, v in props.items():
            if v.get("type") == "object" and "properties" in v:
                walk(v["properties"], f"{prefix}{k}.", v.get("required", []))
                continue
            default = "required" if k in required else \
                f"`{yaml.safe_dump(v.get('default'), default_flow_style=True).strip().removesuffix('...').strip()}`"
            desc = " ".join(str(v.get("description", "")).split()).replace("|", "\\|")
            rows.append(f"| `{prefix}{k}` | {default} | {desc} |")

    walk(_schema()["properties"])
    return "\n".join(rows) + "\n"
