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
    allowed = {"agentfleet.tasks"}
    imported = {name for name in imports_of(SRC / "ports.py") if name.split(".")[1] not in ("ports",)}
    assert {".".join(name.split(".")[:2]) for name in imported} <= allowed, imported
