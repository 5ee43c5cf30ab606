"""Reading code structurally with tree-sitter: which language a file is, the symbols it defines
(classes, functions, methods, types, top-level variables, with line ranges) and where a name
occurs as an identifier. Works on bytes already read (bounded) by the caller; the grammars are
the per-language wheels, compiled in, so nothing is fetched at run time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import PurePath

import tree_sitter_go
import tree_sitter_javascript
import tree_sitter_python
import tree_sitter_typescript
from tree_sitter import Language, Node, Parser, Tree

MAX_DEPTH = 32
"""Definitions nested deeper than this (classes in classes in ...) are not listed."""
MAX_HEADER_CHARS = 160

EXTENSIONS = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
}
LANGUAGES = ("python", "javascript", "typescript", "tsx", "go")


@dataclass(frozen=True)
class Grammar:
    """What the walker needs of one language."""

    load: Callable[[], object]
    definitions: dict[str, str]
    """node type → the kind of symbol it defines."""
    wrappers: frozenset[str]
    """node types walked through to reach definitions (export, decorators, declarations)."""
    identifiers: frozenset[str]
    """node types that are a name in the source (what references are made of)."""


_JS_DEFINITIONS = {
    "function_declaration": "function",
    "generator_function_declaration": "function",
    "class_declaration": "class",
    "method_definition": "method",
    "variable_declarator": "variable",
}
_JS_WRAPPERS = frozenset({"export_statement", "lexical_declaration", "variable_declaration"})
_JS_IDENTIFIERS = frozenset(
    {
        "identifier",
        "property_identifier",
        "shorthand_property_identifier",
        "shorthand_property_identifier_pattern",
        "private_property_identifier",
    }
)
_TS_DEFINITIONS = {
    **_JS_DEFINITIONS,
    "abstract_class_declaration": "class",
    "interface_declaration": "interface",
    "type_alias_declaration": "type",
    "enum_declaration": "enum",
    "internal_module": "namespace",
    "module": "namespace",
    "function_signature": "function",
    "method_signature": "method",
    "abstract_method_signature": "method",
}
_TS_WRAPPERS = _JS_WRAPPERS | {"ambient_declaration", "expression_statement"}  # namespace A {}: a statement
_TS_IDENTIFIERS = _JS_IDENTIFIERS | {"type_identifier"}

GRAMMARS = {
    "python": Grammar(
        tree_sitter_python.language,
        {"class_definition": "class", "function_definition": "function", "assignment": "variable"},
        frozenset({"decorated_definition", "expression_statement"}),
        frozenset({"identifier"}),
    ),
    "javascript": Grammar(tree_sitter_javascript.language, _JS_DEFINITIONS, _JS_WRAPPERS, _JS_IDENTIFIERS),
    "typescript": Grammar(tree_sitter_typescript.language_typescript, _TS_DEFINITIONS, _TS_WRAPPERS, _TS_IDENTIFIERS),
    "tsx": Grammar(tree_sitter_typescript.language_tsx, _TS_DEFINITIONS, _TS_WRAPPERS, _TS_IDENTIFIERS),
    "go": Grammar(
        tree_sitter_go.language,
        {
            "function_declaration": "function",
            "method_declaration": "method",
            "type_spec": "type",
            "type_alias": "type",
            "const_spec": "constant",
            "var_spec": "variable",
        },
        frozenset({"type_declaration", "const_declaration", "var_declaration", "var_spec_list"}),
        frozenset({"identifier", "type_identifier", "field_identifier", "package_identifier"}),
    ),
}
_CONTAINERS = frozenset(
    {"class_definition", "class_declaration", "abstract_class_declaration", "interface_declaration"}
    | {"internal_module", "module"}
)
_FUNCTION_VALUES = frozenset({"arrow_function", "function_expression", "function", "generator_function"})
_GO_TYPE_KINDS = {"struct_type": "struct", "interface_type": "interface"}


@dataclass(frozen=True)
class Symbol:
    """One definition in a file; lines are 1-based and inclusive (decorators included)."""

    name: str
    kind: str
    start: int
    end: int
    line: int
    """The line of the name itself."""
    depth: int
    container: str | None
    header: str

    @property
    def qualified(self) -> str:
        return f"{self.container}.{self.name}" if self.container else self.name


def language_of(path: str | PurePath) -> str | None:
    """The language of a file by its extension, or None when none is supported."""
    return EXTENSIONS.get(PurePath(path).suffix.lower())


@cache
def _language(name: str) -> Language:
    return Language(GRAMMARS[name].load())


def parse(language: str, source: bytes) -> Tree:
    return Parser(_language(language)).parse(source)  # a parser per call: tools run in threads


def symbols(language: str, source: bytes, tree: Tree | None = None) -> list[Symbol]:
    """The file's definitions, in source order, nested ones after their container."""
    tree = tree or parse(language, source)
    walker = _Walker(GRAMMARS[language], language, source.split(b"\n"))  # rows end at \n only
    walker.walk(tree.root_node, None, 0, None)
    return walker.found


def occurrences(language: str, tree: Tree, name: str) -> Iterator[Node]:
    """The identifier nodes spelling `name` (no string, no comment), in source order."""
    kinds, wanted = GRAMMARS[language].identifiers, name.encode()
    cursor = tree.walk()
    while True:  # iterative pre-order walk: a deep tree cannot exhaust the stack
        node = cursor.node
        if node is not None and node.type in kinds and node.text == wanted:
            yield node
        if cursor.goto_first_child() or cursor.goto_next_sibling():
            continue
        while cursor.goto_parent():
            if cursor.goto_next_sibling():
                break
        else:
            return


class _Walker:
    def __init__(self, grammar: Grammar, language: str, lines: list[bytes]) -> None:
        self.grammar, self.lines = grammar, lines
        self.python = language == "python"
        self.found: list[Symbol] = []

    def walk(self, node: Node, container: str | None, depth: int, start: int | None) -> None:
        if depth > MAX_DEPTH:
            return
        for child in node.named_children:
            if child.type in self.grammar.definitions:
                self.define(child, container, depth, start)
            elif child.type in self.grammar.wrappers and not self.attribute(child, container):
                own = child.type in ("decorated_definition", "export_statement")  # the symbol starts there
                self.walk(child, container, depth, child.start_point.row if own else start)

    def attribute(self, wrapper: Node, container: str | None) -> bool:
        """A Python statement in a class body: its attributes are not listed (its methods are)."""
        return self.python and container is not None and wrapper.type == "expression_statement"

    def define(self, node: Node, container: str | None, depth: int, start: int | None) -> None:
        kind = self.grammar.definitions[node.type]
        names = [(n, _text(n)) for n in self.names(node)]
        if not names:
            return
        if node.type == "method_declaration":  # Go: a method belongs to its receiver's type
            container = _receiver_type(node) or container
        elif node.type == "variable_declarator":
            value = node.child_by_field_name("value")
            if value is not None and value.type in _FUNCTION_VALUES:
                kind = "function"
            elif container is not None:
                return
        elif node.type == "type_spec":
            kind = _GO_TYPE_KINDS.get(getattr(node.child_by_field_name("type"), "type", ""), "type")
        if kind == "function" and container is not None and self.python:
            kind = "method"
        first = node.start_point.row if start is None else min(start, node.start_point.row)
        header = self.lines[node.start_point.row].decode("utf-8", "replace").strip() if self.lines else ""
        end, header = node.end_point.row + 1, header[:MAX_HEADER_CHARS]
        for name_node, name in names:
            line = name_node.start_point.row + 1
            self.found.append(Symbol(name, kind, first + 1, end, line, depth, container, header))
        if node.type in _CONTAINERS:
            body = node.child_by_field_name("body")
            if body is not None:
                self.walk(body, names[0][1], depth + 1, None)

    def names(self, node: Node) -> list[Node]:
        if node.type == "assignment":  # Python: `NAME = ...` and `NAME: T = ...` only
            left = node.child_by_field_name("left")
            return [left] if left is not None and left.type == "identifier" else []
        return [n for n in node.children_by_field_name("name") if n.type in self.grammar.identifiers and n.text]


def _receiver_type(method: Node) -> str | None:
    receiver = method.child_by_field_name("receiver")
    stack = [receiver] if receiver is not None else []
    while stack:
        node = stack.pop(0)
        if node.type == "type_identifier":
            return _text(node)
        stack.extend(node.named_children)
    return None


def _text(node: Node) -> str:
    return (node.text or b"").decode("utf-8", "replace")
