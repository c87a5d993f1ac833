"""The package layout (issue 25): one subpackage per stage, a short top level, no import cycle.

Walks every `import` / `from ... import` statement of bioprune's modules (function-local and TYPE_CHECKING
imports included: a cycle there is still a cycle of the design), resolving relative imports and
`from package import submodule`, and checks the module graph and the graph between top-level packages."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "bioprune"
STAGE_PACKAGES = ("ingest", "leakage", "influence", "selection", "training", "benchmarks", "report")
MAX_TOP_LEVEL = 12


def modules(pkg_dir: Path = PKG) -> dict[str, tuple[Path, bool]]:
    """dotted name -> (file, is a package __init__)."""
    out = {}
    for p in sorted(pkg_dir.rglob("*.py")):
        parts = list(p.relative_to(pkg_dir.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (p, is_pkg)
    return out


def import_graph(mods: dict[str, tuple[Path, bool]]) -> dict[str, set[str]]:
    """module -> the bioprune modules it imports (a `from pkg import name` of a non-module name is an edge
    to pkg, i.e. its __init__)."""
    edges: dict[str, set[str]] = {}
    for name, (path, is_pkg) in mods.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_pkg else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)] + ([node.module] if node.module else [])
                    target = ".".join(base)
                else:
                    target = node.module or ""
                if target.split(".")[0] != "bioprune":
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    deps.add(sub if sub in mods else target)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.split(".")[0] == "bioprune"}
        deps.discard(name)
        unknown = {d for d in deps if d not in mods}
        assert not unknown, f"{name} imports modules that do not exist: {sorted(unknown)}"
        edges[name] = deps
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str]:
    """One cycle as a path [a, b, ..., a], or [] when the graph is acyclic (iterative DFS)."""
    state: dict[str, int] = {}
    for start in sorted(edges):
        if state.get(start):
            continue
        stack = [(start, iter(sorted(edges.get(start, ()))))]
        path = [start]
        state[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, iter(sorted(edges.get(nxt, ())))))
    return []


def package_of(module: str) -> str:
    """bioprune.influence.scores -> influence; bioprune.stages -> stages; bioprune -> bioprune."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "bioprune"


def package_graph(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for a, deps in edges.items():
        pa = package_of(a)
        out.setdefault(pa, set()).update(package_of(d) for d in deps if package_of(d) != pa)
    return out


def test_find_cycle_finds_a_planted_cycle_and_none_in_a_dag():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"x": {"y"}, "y": {"y2"}, "y2": {"y"}}) == ["y", "y2", "y"]


def test_import_graph_resolves_relative_and_submodule_imports(tmp_path):
    pkg = tmp_path / "bioprune"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "errors.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "a.py").write_text("from . import b\nfrom ..errors import E\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from bioprune.sub import a\n")
    edges = import_graph(modules(pkg))
    assert edges["bioprune.sub.a"] == {"bioprune.sub.b", "bioprune.errors"}
    assert edges["bioprune.sub.b"] == {"bioprune.sub.a"}
    assert find_cycle(edges) == ["bioprune.sub.a", "bioprune.sub.b", "bioprune.sub.a"]


def test_no_import_cycle_between_modules():
    edges = import_graph(modules())
    assert find_cycle(edges) == []


def test_no_import_cycle_between_packages():
    """Stage packages depend on each other in one direction only (ingest and leakage at the bottom,
    stages, cli and tools at the top)."""
    graph = package_graph(import_graph(modules()))
    assert find_cycle(graph) == []
    for low in ("ingest", "leakage"):
        assert not graph.get(low, set()) & {"influence", "selection", "training", "benchmarks", "report"}, low
    for top in ("stages", "cli", "tools"):
        assert not any(top in deps for pkg, deps in graph.items() if pkg not in ("stages", "cli", "tools")), top


def test_top_level_is_short_and_every_stage_has_a_package():
    top = sorted(p.stem for p in PKG.glob("*.py") if p.stem != "__init__")
    assert len(top) <= MAX_TOP_LEVEL, top
    for name in STAGE_PACKAGES + ("backbones", "config", "resources", "tools"):
        assert (PKG / name / "__init__.py").is_file(), name


@pytest.mark.parametrize("package", ["leakage", "influence", "selection", "training", "report", "tools"])
def test_stage_package_surface_resolves_lazily(package):
    """Each name in a stage package's __all__ resolves (from the module it names); unknown names raise."""
    mod = importlib.import_module(f"bioprune.{package}")
    assert mod.__all__ and sorted(mod.__all__) == sorted(dir(mod))
    for name in mod.__all__:
        assert getattr(mod, name) is not None, name
    with pytest.raises(AttributeError):
        getattr(mod, "no_such_name")


def test_tests_mirror_the_packages():
    """tests/<package>/ for each subpackage (tests/workflow/ runs whole DAGs; tests/data holds fixtures)."""
    tests = Path(__file__).resolve().parent
    dirs = {p.name for p in tests.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))}
    packages = {p.parent.name for p in PKG.glob("*/__init__.py")}
    assert dirs - {"workflow", "data"} <= packages, sorted(dirs - packages)
    missing = [p for p in STAGE_PACKAGES if not list((tests / p).glob("test_*.py"))]
    assert not missing, missing
