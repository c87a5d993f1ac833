"""Conda envs: each parses, is pinned, and lists every package its rules import (transitively)."""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
# import name -> accepted package names (conda or pip)
PACKAGES = {"torch": {"torch"}, "esm": {"fair-esm"}, "h5py": {"h5py"}, "Bio": {"biopython"}, "numpy": {"numpy"},
            "pandas": {"pandas"}, "scipy": {"scipy"}, "sklearn": {"scikit-learn"}, "RNA": {"viennarna"},
            "yaml": {"pyyaml"}, "jsonschema": {"jsonschema"}, "matplotlib": {"matplotlib", "matplotlib-base"},
            "snakemake": {"snakemake", "snakemake-minimal"}}
STDLIB = set(sys.stdlib_module_names)


def module_path(module: str) -> Path | None:
    """bioprune/x.py, or bioprune/x/__init__.py for a package; None when neither exists."""
    base = ROOT / module.replace(".", "/")
    for p in (base.with_suffix(".py"), base / "__init__.py"):
        if p.exists():
            return p
    return None


def third_party_imports(module: str, seen: set[str]) -> set[str]:
    """Top-level non-stdlib imports of a bioprune module and of every bioprune module it imports."""
    if module in seen:
        return set()
    seen.add(module)
    path = module_path(module)
    is_package = path is not None and path.name == "__init__.py" and not module.endswith("__init__")
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import inside bioprune (a package's own modules are one level down)
                base = module if is_package else module.rsplit(".", 1)[0]
                for _ in range(node.level - 1):
                    base = base.rsplit(".", 1)[0]
                names = [f"{base}.{node.module}" if node.module else f"{base}.{a.name}" for a in node.names]
            else:
                names = [node.module]
        for n in names:
            top = n.split(".")[0]
            if top == "bioprune":
                sub = n if module_path(n) else n.rsplit(".", 1)[0]
                if module_path(sub):
                    out |= third_party_imports(sub, seen)
            elif top not in STDLIB:
                out.add(top)
    return out


def rules_with_env() -> list[tuple[str, str, str]]:
    """(rule, env file, script) for every rule in rules/*.smk that runs something (a target-only rule
    such as `coreset`, with input and no script, shell or run, needs no env)."""
    out = []
    for smk in sorted((ROOT / "rules").glob("*.smk")):
        for m in re.finditer(r"^rule (\w+):(.*?)(?=^rule |\Z)", smk.read_text(), re.S | re.M):
            body = m.group(2)
            if not re.search(r"^\s+(script|shell|run|wrapper|notebook):", body, re.M):
                continue
            env = re.search(r'conda:\s*\n\s*"\.\./(envs/[\w.]+)"', body)
            script = re.search(r'script:\s*\n\s*"\.\./(workflow_scripts/[\w.]+)"', body)
            out.append((m.group(1), env and env.group(1), script and script.group(1)))
    return out


def env_packages(path: Path) -> set[str]:
    spec = yaml.safe_load(path.read_text())
    pkgs = set()
    for dep in spec["dependencies"]:
        items = dep["pip"] if isinstance(dep, dict) else [dep]
        for d in items:
            if d.startswith("--"):
                continue
            assert re.search(r"[=<>]=?\d", d), f"{path.name}: {d} is not pinned"
            pkgs.add(re.split(r"[=<>]", d)[0].lower())
    return pkgs


def test_every_rule_has_a_parsing_env():
    rules = rules_with_env()
    assert len(rules) >= 12
    for rule, env, _ in rules:
        assert env, f"rule {rule} has no conda env"
        env_packages(ROOT / env)


@pytest.mark.parametrize("rule,env,script", [r for r in rules_with_env() if r[2]])
def test_env_lists_what_the_rule_imports(rule, env, script):
    imports = set()
    for node in ast.walk(ast.parse((ROOT / script).read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bioprune"):
            mod = node.module if node.module != "bioprune" else None
            targets = [mod] if mod else [f"bioprune.{a.name}" for a in node.names]
            for t in targets:
                imports |= third_party_imports(t, set())
    imports |= third_party_imports("bioprune.__init__", set())
    pkgs = env_packages(ROOT / env)
    missing = [i for i in sorted(imports) if not PACKAGES.get(i, {i}) & pkgs]
    assert not missing, f"rule {rule}: {env} lacks {missing}"
    if rule == "cluster":
        assert "mmseqs2" in pkgs


BIOCONDA = {"snakemake-minimal", "mmseqs2"}  # packages conda finds only on bioconda (which needs conda-forge)


@pytest.mark.parametrize("env", sorted(p.name for p in (ROOT / "envs").glob("*.yaml")))
def test_env_builds_where_snakemake_builds_it(env):
    """Snakemake builds an env under .snakemake/conda/<hash>/, so a pip path such as `--editable ..` resolves
    there, not to the workflow: envs carry only pinned index packages; the stage scripts import the
    workflow's own bioprune through Snakemake's script search path (rules/common.smk puts the workflow
    folder on it; tests/workflow/test_workflow_extras.py checks a module run imported the module's copy)."""
    spec = yaml.safe_load((ROOT / "envs" / env).read_text())
    pip = [p for d in spec["dependencies"] if isinstance(d, dict) for p in d.get("pip", [])]
    for p in pip:
        assert not re.search(r"^-|\.\.|/|^file:|^git\+", p), f"{env}: pip entry {p!r} is a path or an option"
        assert re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][0-9A-Za-z.+]*", p), f"{env}: pip entry {p!r} is not pinned"
    conda = {re.split(r"[=<>]", d)[0] for d in spec["dependencies"] if isinstance(d, str)}
    channels = spec["channels"]
    if conda & BIOCONDA:
        assert "bioconda" in channels and "conda-forge" in channels, f"{env}: {conda & BIOCONDA} need bioconda"
        assert channels.index("conda-forge") < channels.index("bioconda"), f"{env}: conda-forge must come first"
