"""The package's import rules, read from the source (a small AST walk, nothing is imported):
every arrow between two folders of ``rnnpool_nas`` is in :data:`ALLOWED`, and no module imports
itself around a circle. Imports inside functions count: a lazy import is still an arrow.

The rule of the house (README, "Architecture"): imports point inward, ``cli`` -> ``search`` /
``finalize`` / ``report`` / ``export`` / ``measure`` -> ``run`` / ``train`` / ``cost`` / ``data``
-> ``lower`` / ``quant`` / ``arch`` -> ``ops``; ``report`` and ``export`` never import ``search``,
``search`` never imports ``report`` (the CLI wires the report refresher to the search's record
callback); the cost model and the integer reference never import torch.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "rnnpool_nas"

#: Leaf modules every folder may import.
COMMON = {"errors", "units", "resources", "cluster", "__init__"}

#: Folder -> the folders it may import (besides :data:`COMMON`). The one table of the rules.
ALLOWED: dict[str, set[str]] = {
    "ops": set(),
    "arch": {"ops"},
    "lower": {"arch", "ops"},
    "cost": {"arch", "ops", "lower"},
    "quant": {"arch", "ops", "lower"},
    "data": set(),
    "detect": {"arch"},
    "run": {"arch", "cost"},
    "train": {"arch", "ops", "quant", "data", "detect", "cost"},
    "search": {"run", "train", "cost", "data", "arch", "ops"},
    "finalize": {"run", "train", "cost", "data", "arch", "quant", "detect"},
    "report": {"run", "cost", "arch"},
    "export": {"run", "train", "quant", "lower", "cost", "data", "detect", "arch", "ops"},
    "measure": {"export", "lower", "cost", "arch", "ops", "quant"},
    "cli": {"search", "finalize", "report", "export", "measure", "run", "train", "quant", "cost", "data", "detect",
            "arch", "ops", "lower"},
    "__main__": {"cli"},
    "errors": set(),
    "units": set(),
    "resources": set(),
    "cluster": set(),
}

#: Modules that must load without torch (checked on their import closure inside the package).
TORCH_FREE = ("rnnpool_nas.cost", "rnnpool_nas.quant.reference", "rnnpool_nas.quant.native", "rnnpool_nas.run",
              "rnnpool_nas.data")


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path, top_level_only: bool = False) -> dict[str, int]:
    """The package's modules ``name`` imports (a ``from . import x`` of a submodule counts as
    that submodule), each with the line of its first import."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: dict[str, int] = {}
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else (node.module or "")
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.setdefault(target, node.lineno)
    return found


def _folder(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


EDGES = {name: _imports(name, path) for name, path in MODULES.items()}


def test_every_folder_is_in_the_table():
    unknown = sorted({_folder(m) for m in MODULES} - set(ALLOWED) - {"__init__"})
    assert not unknown, f"add {unknown} to ALLOWED in tests/test_imports.py (which folders may they import?)"


def test_no_forbidden_arrow_between_folders():
    bad = []
    for module, targets in EDGES.items():
        source = _folder(module)
        allowed = ALLOWED.get(source, set()) | COMMON | {source}
        for target, line in targets.items():
            if _folder(target) not in allowed:
                bad.append(f"{MODULES[module].relative_to(PACKAGE.parent)}:{line}: {source} -> {_folder(target)} "
                           f"({target})")
    assert not bad, "imports the rules forbid:\n" + "\n".join(bad)


def test_the_table_itself_has_no_circle():
    assert _cycle({k: set(v) for k, v in ALLOWED.items()}) is None


def test_no_module_imports_itself_around_a_circle():
    graph = {module: set(targets) for module, targets in EDGES.items()}
    # a submodule importing its own package's __init__ is how packages re-export; the package's
    # __init__ importing its submodules is not a circle with that
    for module in graph:
        graph[module] = {t for t in graph[module] if not module.startswith(t + ".")}
    assert _cycle(graph) is None, f"import circle: {' -> '.join(_cycle(graph))}"


def test_the_cost_model_the_integer_reference_and_the_run_directory_never_import_torch():
    seen, todo = set(), list(TORCH_FREE)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        tree = ast.parse(MODULES[module].read_text())
        for node in tree.body:  # module level: what loading it runs
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            assert not any(n == "torch" or n.startswith("torch.") for n in names), f"{module} imports torch"
        todo += list(_imports(module, MODULES[module], top_level_only=True))
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(2, len(parts)) if ".".join(parts[:i]) in MODULES]


def _own_variables() -> dict[str, str]:
    """The package's own environment variables (string constants ``RNNPOOL_NAS_*``) -> a module."""
    found = {}
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                    re.fullmatch(r"RNNPOOL_NAS_[A-Z0-9_]+", node.value):
                found.setdefault(node.value, name)
    return found


def test_every_environment_variable_the_package_reads_is_a_documented_setting():
    """No test-only switch in production code (issue 17: a failure-injection variable was read by
    the search); tests inject through parameters and fixtures. A variable the package reads is a
    user's setting, so the README names it."""
    readme = (PACKAGE.parent / "README.md").read_text()
    variables = _own_variables()
    assert "RNNPOOL_NAS_EXT_DIR" in variables  # the walk sees them
    undocumented = {v: m for v, m in variables.items() if v not in readme}
    assert not undocumented, f"read by the package but not in the README: {undocumented}"


def test_the_checker_sees_circles_and_forbidden_arrows():
    """Not blind: a circle is found, and so is the arrow that the issue found (search -> report)."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    assert "report" not in ALLOWED["search"] and "search" not in ALLOWED["report"] | ALLOWED["export"]


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of ``graph`` as a path that ends where it starts, or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None
