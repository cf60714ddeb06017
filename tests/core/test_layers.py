"""Dependencies go one way: every import of every module, read with ``ast``.

Layers, bottom up (a package may import its own layer's packages only as listed, and
anything below it; nothing above):

0. ``fedzoo`` (the numpy/scipy core) and ``fedzoo_proto`` (generated gRPC code): each
   imports only itself;
1. ``fedzoo_attack``: the attack and metric experiments, on the core;
2. ``fedzoo_server``, ``fedzoo_client`` and ``fedzoo_oracle``: the Flower app and the gRPC
   oracle (``fedzoo_client`` reads the run-config through ``fedzoo_server.settings``, the
   records through ``fedzoo_server.records`` and uses ``fedzoo_oracle``'s adapter;
   ``fedzoo_server`` and ``fedzoo_oracle`` never import ``fedzoo_client``);
3. ``fedzoo_launch``: local Flower processes, the attack through a local simulation;
4. ``fedzoo_cli``: the ``fedzoo`` command line;
5. ``simulations``: experiments and benchmarks.

Every import statement counts: at module level, inside functions (lazy imports), under
``try`` or ``if TYPE_CHECKING``. The package-level import graph must have no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: package -> its directory (relative to the repository root)
PACKAGES = {
    "fedzoo": "fedzoo",
    "fedzoo_proto": "proto/fedzoo_proto",
    "fedzoo_attack": "fedzoo_attack",
    "fedzoo_server": "fedzoo_server",
    "fedzoo_client": "fedzoo_client",
    "fedzoo_oracle": "fedzoo_oracle",
    "fedzoo_launch": "fedzoo_launch",
    "fedzoo_cli": "fedzoo_cli",
    "simulations": "simulations",
}

#: package -> the project's packages it may import (besides itself)
ALLOWED = {
    "fedzoo": set(),
    "fedzoo_proto": set(),
    "fedzoo_attack": {"fedzoo"},
    "fedzoo_server": {"fedzoo", "fedzoo_attack", "fedzoo_proto"},
    "fedzoo_oracle": {"fedzoo", "fedzoo_attack", "fedzoo_proto"},
    "fedzoo_client": {"fedzoo", "fedzoo_attack", "fedzoo_proto", "fedzoo_server", "fedzoo_oracle"},
    "fedzoo_launch": {"fedzoo", "fedzoo_attack", "fedzoo_proto", "fedzoo_server", "fedzoo_client",
                      "fedzoo_oracle"},
    "fedzoo_cli": {"fedzoo", "fedzoo_attack", "fedzoo_proto", "fedzoo_server", "fedzoo_client",
                   "fedzoo_oracle", "fedzoo_launch"},
    "simulations": {"fedzoo", "fedzoo_attack", "fedzoo_proto", "fedzoo_server", "fedzoo_client",
                    "fedzoo_oracle", "fedzoo_launch", "fedzoo_cli"},
}


def _modules(package: str) -> list[tuple[str, Path]]:
    """(dotted module name, path) of every .py file of ``package``."""
    base = ROOT / PACKAGES[package]
    out = []
    for path in sorted(base.rglob("*.py")):
        parts = list(path.relative_to(base).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join([package, *parts]), path))
    return out


def imported_modules(name: str, path: Path) -> list[tuple[str, int]]:
    """(absolute module name, line) of every import in the file, wherever it sits."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                parts = name.split(".")
                keep = len(parts) - node.level + (1 if is_package else 0)
                base = ".".join(parts[:keep])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.append((target, node.lineno))
    return found


def package_of(module: str) -> str | None:
    top = module.split(".", 1)[0]
    return top if top in PACKAGES else None


def import_edges() -> dict[str, dict[str, list[str]]]:
    """package -> imported package -> where ("module:line")."""
    edges: dict[str, dict[str, list[str]]] = {p: {} for p in PACKAGES}
    for package in PACKAGES:
        for name, path in _modules(package):
            for target, line in imported_modules(name, path):
                other = package_of(target)
                if other is not None and other != package:
                    edges[package].setdefault(other, []).append(f"{name}:{line} imports {target}")
    return edges


def test_every_package_is_scanned():
    for package, directory in PACKAGES.items():
        assert (ROOT / directory).is_dir(), package
        assert _modules(package), package
    # a new top-level package must be given a layer here
    tops = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert tops - {"tests"} <= set(PACKAGES), sorted(tops - set(PACKAGES))


@pytest.mark.parametrize("package", list(PACKAGES))
def test_no_package_imports_upward(package):
    edges = import_edges()[package]
    bad = [where for other, wheres in sorted(edges.items()) if other not in ALLOWED[package]
           for where in wheres]
    assert bad == [], f"{package} may import only {sorted(ALLOWED[package])}:\n" + "\n".join(bad)


def test_the_package_import_graph_has_no_cycle():
    edges = {p: set(targets) for p, targets in import_edges().items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for other in sorted(edges[node]):
            if state.get(other) == 1:
                cycle = [*path[path.index(other):], other]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if other not in state:
                visit(other, [*path, other])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])


def test_the_scanner_sees_function_level_and_relative_imports(tmp_path):
    pkg = tmp_path / "fedzoo" / "sub"
    pkg.mkdir(parents=True)
    code = ("import os\n"
            "def f():\n"
            "    from fedzoo_server.settings import parse_run_config\n"
            "    try:\n"
            "        import fedzoo_cli.main\n"
            "    except ImportError:\n"
            "        pass\n"
            "from . import sibling\n"
            "from ..core import thing\n")
    (pkg / "mod.py").write_text(code)
    found = imported_modules("fedzoo.sub.mod", pkg / "mod.py")
    assert sorted(m for m, _ in found) == [
        "fedzoo.core", "fedzoo.sub", "fedzoo_cli.main", "fedzoo_server.settings", "os"
    ]
    (pkg / "__init__.py").write_text("from .mod import f\nfrom .. import x\n")
    found = imported_modules("fedzoo.sub", pkg / "__init__.py")
    assert sorted(m for m, _ in found) == ["fedzoo", "fedzoo.sub.mod"]


def test_no_method_name_is_compared_outside_the_method_modules():
    """Capabilities, not names: code outside ``fedzoo/methods/`` never compares a method
    name (``== "fo"``, ``in ("fzoos", ...)``, a dict keyed by a method name); it asks the
    registry (``exact_gradients``, ``has_sync``, ``attack_variant``, ...)."""
    from fedzoo.methods import method_names

    names = set(method_names())
    found = []
    for package in ("fedzoo", "fedzoo_attack", "fedzoo_server", "fedzoo_client", "fedzoo_oracle",
                    "fedzoo_launch", "fedzoo_cli"):
        for path in sorted((ROOT / PACKAGES[package]).rglob("*.py")):
            if path.is_relative_to(ROOT / "fedzoo" / "methods"):
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                consts = []
                if isinstance(node, ast.Compare):
                    for side in (node.left, *node.comparators):
                        elts = side.elts if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [side]
                        consts += [e for e in elts if isinstance(e, ast.Constant)]
                elif isinstance(node, ast.Dict):
                    consts += [k for k in node.keys if isinstance(k, ast.Constant)]
                for c in consts:
                    if isinstance(c.value, str) and c.value in names:
                        found.append(f"{path.relative_to(ROOT)}:{c.lineno} {c.value!r}")
    assert not found, found
