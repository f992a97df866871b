"""Every module of both packages imports on its own, and the import graph has no cycles.

The graph counts every import statement (module level or inside a function): ``import a.b.c`` and
``from a.b import c`` depend on ``a.b.c``; a name imported from a package is followed to the
module that defines it (``from .. import load_caffe`` depends on ``converters.convert``); an
``if __name__ == "__main__":`` block is not counted (it runs only in the program's entry module); a
module depends on the packages it enters (``converters.solver``'s ``__init__`` runs when
``converters.solver.fillers`` is imported), except its own ancestors, which are initialised first.
"""
import ast
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("converters", "reproduce")


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for f in sorted((REPO / pkg).rglob("*.py")):
            parts = list(f.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if parts[-1] == "__main__":
                continue
            mods[".".join(parts)] = f
    return mods


MODULES = _modules()


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _defining_module(pkg: str, attr: str) -> str | None:
    if f"{pkg}.{attr}" in MODULES:
        return f"{pkg}.{attr}"
    obj = getattr(importlib.import_module(pkg), attr, None)
    owner = getattr(obj, "__module__", None)
    return owner if owner in MODULES else pkg


def _imports(mod: str, path: Path) -> set[str]:
    is_pkg = path.name == "__init__.py"
    targets: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    # an ``if __name__ == "__main__":`` block runs only when the module is the program (then it is
    # ``__main__``, not its package name): an entry point may import the CLI that imports it
    for node in list(tree.body):
        if (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
                and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__"):
            tree.body.remove(node)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(a.name for a in node.names if a.name in MODULES)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                pkg = ".".join(base + ([node.module] if node.module else []))
            else:
                pkg = node.module or ""
            if pkg not in MODULES:
                continue
            for alias in node.names:
                targets.add(_defining_module(pkg, alias.name) if alias.name != "*" else pkg)
    own = set(_ancestors(mod)) | {mod}
    deps = set()
    for t in targets:
        deps.update(x for x in [t] + _ancestors(t) if x in MODULES and x not in own)
    return deps


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_imports(module):
    importlib.import_module(module)


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_package_import_graph_has_no_cycles():
    graph = {mod: _imports(mod, path) for mod, path in MODULES.items()}
    cycles = _cycles(graph)
    detail = ["  " + " / ".join(f"{m} -> {sorted(d for d in graph[m] if d in c)}" for m in c) for c in cycles]
    assert not cycles, "import cycles:\n" + "\n".join(detail)
