"""The package's layering, read from its imports (lazy ones included, type-only ones not)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "agentfleet"


def imports_of(path: Path) -> set[str]:
    """The agentfleet modules `path` imports, anywhere in it but under `if TYPE_CHECKING:` (the
    project writes absolute imports only)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("agentfleet"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("agentfleet"):
            assert node.level == 0, f"{path}: a relative import"
            found.add(str(node.module))
            if node.module == "agentfleet":  # from agentfleet import local
                found.update(f"agentfleet.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        name = ".".join(("agentfleet", *path.relative_to(SRC).with_suffix("").parts)).removesuffix(".__init__")
        found[name] = path
    return found


def test_the_seams_import_no_implementation_and_no_settings() -> None:
    allowed = {"agentfleet.tasks", "agentfleet.memory"}  # the models the seams speak in
    imported = {name for name in imports_of(SRC / "ports.py") if name.split(".")[1] not in ("ports",)}
    assert {".".join(name.split(".")[:2]) for name in imported} <= allowed, imported


def unit(module: str) -> str:
    """The part of the package a module belongs to: a subpackage, or a top-level module."""
    return module.split(".")[1] if module.count(".") >= 1 else module


def package_graph() -> dict[str, set[str]]:
    """unit → the units it imports. Entry points (`__main__` modules) compose everything and are
    left out: the layering is of what they compose."""
    graph: dict[str, set[str]] = {}
    for name, path in modules().items():
        if name == "agentfleet" or path.name == "__main__.py":
            continue
        deps = {unit(m) for m in imports_of(path) if m != "agentfleet"} - {unit(name)}
        graph.setdefault(unit(name), set()).update(deps)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle's units, found by a depth-first walk (each cycle once, from its smallest unit)."""
    found: list[list[str]] = []

    def walk(path: list[str]) -> None:
        for nxt in sorted(graph.get(path[-1], ())):
            if nxt == path[0]:
                found.append(path)
            elif nxt not in path and nxt > path[0]:
                walk([*path, nxt])

    for start in sorted(graph):
        walk([start])
    return found


def test_no_two_parts_of_the_package_import_each_other() -> None:
    assert cycles(package_graph()) == []


def test_the_cycle_finder_finds_cycles_and_only_them() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_readme_structure_tree_names_every_module() -> None:
    readme = (SRC.parents[1] / "README.md").read_text()
    tree = readme.split("## Structure", 1)[1].split("## Make targets", 1)[0]
    named, folder = set(), ""
    for line in tree.splitlines():
        entry = line.strip().split(" ", 1)[0]
        if line.startswith("  ") and not line.startswith("    ") and entry.endswith("/"):
            folder = entry
        elif line.startswith("  ") and entry.endswith((".py", ".json")):
            named.add((folder if line.startswith("    ") else "") + entry)
    named.update(f"testing/fake_cloud_run/{m}" for m in ("service.py", "resources.py", "processes.py"))
    modules = {
        path.relative_to(SRC).as_posix()
        for path in SRC.rglob("*.py")
        if path.name != "__main__.py" and (path.name != "__init__.py" or path.parent.name == "cli")
    }
    assert modules - named == set(), "modules the README's tree does not name"
