"""The code assistant MCP server, in-process through the official MCP client, on a small repository
in four languages; once over streamable HTTP on loopback."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client

from agentfleet.mcp_servers import code_assistant
from agentfleet.mcp_servers.code_assistant import CodeAssistant, build_server
from tests.mcp_servers.servers import http_server

PY = '''"""Shapes."""
import math

UNIT = 1.0


@dataclass
class Circle:
    radius: float

    def area(self) -> float:
        return math.pi * self.radius**2

    @staticmethod
    def unit() -> "Circle":
        return Circle(UNIT)


def total_area(shapes):
    # area of every shape; "area" in a string is not a reference
    return sum(s.area() for s in shapes)
'''
JS = """import { total } from './lib.js';

export function render(items) {
  return items.map(format).join('\\n');
}

const format = (item) => `${item.name}: ${item.price}`;

class Cart {
  constructor() {
    this.items = [];
  }

  add(item) {
    this.items.push(item);
    return render(this.items);
  }
}
"""
TS = """export interface Priced {
  price: number;
  label(): string;
}

export type Currency = "EUR" | "USD";

export enum Tier { Free, Pro }

export class Invoice implements Priced {
  constructor(public price: number) {}

  label(): string {
    return `${this.price}`;
  }
}

export const double = (p: Priced): number => p.price * 2;
"""
TSX = """import { Invoice } from './types';

export function InvoiceView(props: { invoice: Invoice }) {
  return <div className="invoice">{props.invoice.label()}</div>;
}

export const Page = () => <InvoiceView invoice={new Invoice(3)} />;
"""
GO = """package server

import "fmt"

type Server struct {
	Name string
	Port int
}

type Handler interface {
	Serve(s *Server) error
}

const DefaultPort = 8080

func (s *Server) Start() error {
	fmt.Println("start", s.Name)
	return nil
}

func NewServer(name string) *Server {
	s := &Server{Name: name, Port: DefaultPort}
	return s
}
"""
FILES = {
    "README.md": "# Shop\n",
    ".gitignore": "build/\n",
    "shop/shapes.py": PY,
    "web/cart.js": JS,
    "web/types.ts": TS,
    "web/view.tsx": TSX,
    "server/server.go": GO,
    "scripts/tool.rb": "def hello\n  puts 'hi'\nend\n",
    "build/generated.py": "def generated():\n    return Circle\n",
}


@pytest.fixture
def root(repo_factory) -> Path:
    return repo_factory(FILES)


def call(root: Path, tool: str, **arguments: object) -> tuple[str, bool]:
    return calls(root, (tool, arguments))[0]


def calls(root: Path, *requests: tuple[str, dict[str, object]]) -> list[tuple[str, bool]]:
    """Several calls on one server and one session, in order."""

    async def go() -> list[tuple[str, bool]]:
        out = []
        async with Client(build_server(root)) as client:
            for tool, arguments in requests:
                result = await client.call_tool(tool, arguments)
                out.append(("\n".join(getattr(b, "text", "") for b in result.content), bool(result.is_error)))
        return out

    return anyio.run(go)


def test_the_server_offers_the_four_tools(root) -> None:
    async def go() -> dict:
        async with Client(build_server(root)) as client:
            return {t.name: t.input_schema for t in (await client.list_tools()).tools}

    tools = anyio.run(go)
    assert set(tools) == {"repo_map", "outline", "find_definition", "find_references"}
    assert tools["outline"]["required"] == ["path"]
    assert tools["find_definition"]["required"] == ["symbol"]
    assert tools["repo_map"]["properties"]["page"]["default"] == 1


def test_the_repo_map_lists_files_languages_sizes_and_top_level_symbols(root) -> None:
    text, is_error = call(root, "repo_map")
    assert not is_error, text
    lines = text.splitlines()
    assert lines[0].startswith("# .: 8 files (")
    assert "python 1" in lines[0] and "go 1" in lines[0] and "tsx 1" in lines[0] and "other 3" in lines[0]
    by_file = {line.split("  ")[0]: line for line in lines[1:]}
    assert set(by_file) == set(FILES) - {"build/generated.py"}
    assert "build/generated.py" not in by_file, ".gitignore is respected"
    assert (
        by_file["shop/shapes.py"]
        == f"shop/shapes.py  python  {len(PY)} B  variable UNIT, class Circle, function total_area"
    )
    assert by_file["server/server.go"].endswith(
        "struct Server, interface Handler, constant DefaultPort, method Server.Start, function NewServer"
    )
    assert by_file["web/types.ts"].endswith(
        "interface Priced, type Currency, enum Tier, class Invoice, function double"
    )
    assert by_file["scripts/tool.rb"] == "scripts/tool.rb  26 B"


def test_a_big_repo_map_comes_in_pages_with_a_note(root, monkeypatch) -> None:
    monkeypatch.setattr(code_assistant, "MAP_PAGE_FILES", 3)
    first, second, past = calls(root, ("repo_map", {}), ("repo_map", {"page": 3}), ("repo_map", {"page": 4}))
    assert "page 1 of 3" in first[0] and len(first[0].splitlines()) == 5
    assert first[0].splitlines()[-1] == "… [more files: repo_map(path='.', page=2)]"
    assert "page 3 of 3" in second[0] and "more files" not in second[0]
    assert past[1] and "page 4 does not exist" in past[0]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (
            "shop/shapes.py",
            [
                "variable UNIT (line 4): UNIT = 1.0",
                "class Circle (lines 7-16): class Circle:",
                "  method area (lines 11-12): def area(self) -> float:",
                '  method unit (lines 14-16): def unit() -> "Circle":',
                "function total_area (lines 19-21): def total_area(shapes):",
            ],
        ),
        (
            "web/cart.js",
            [
                "function render (lines 3-5): export function render(items) {",
                "function format (line 7): const format = (item) => `${item.name}: ${item.price}`;",
                "class Cart (lines 9-18): class Cart {",
                "  method constructor (lines 10-12): constructor() {",
                "  method add (lines 14-17): add(item) {",
            ],
        ),
        (
            "web/types.ts",
            [
                "interface Priced (lines 1-4): export interface Priced {",
                "  method label (line 3): label(): string;",
                'type Currency (line 6): export type Currency = "EUR" | "USD";',
                "enum Tier (line 8): export enum Tier { Free, Pro }",
                "class Invoice (lines 10-16): export class Invoice implements Priced {",
                "  method constructor (line 11): constructor(public price: number) {}",
                "  method label (lines 13-15): label(): string {",
                "function double (line 18): export const double = (p: Priced): number => p.price * 2;",
            ],
        ),
        (
            "web/view.tsx",
            [
                "function InvoiceView (lines 3-5): export function InvoiceView(props: { invoice: Invoice }) {",
                "function Page (line 7): export const Page = () => <InvoiceView invoice={new Invoice(3)} />;",
            ],
        ),
        (
            "server/server.go",
            [
                "struct Server (lines 5-8): type Server struct {",
                "interface Handler (lines 10-12): type Handler interface {",
                "constant DefaultPort (line 14): const DefaultPort = 8080",
                "method Server.Start (lines 16-19): func (s *Server) Start() error {",
                "function NewServer (lines 21-24): func NewServer(name string) *Server {",
            ],
        ),
    ],
)
def test_an_outline_gives_each_definition_with_its_line_range(root, path, expected) -> None:
    text, is_error = call(root, "outline", path=path)
    assert not is_error, text
    head, *body = text.splitlines()
    assert head.startswith(f"{path} (")
    assert body == expected


def test_a_definition_comes_with_its_source_and_a_qualified_name_picks_one(root) -> None:
    text, is_error = call(root, "find_definition", symbol="Circle.area")
    assert not is_error, text
    assert text.splitlines() == [
        "shop/shapes.py:11-12 method Circle.area (python)",
        "    11\t    def area(self) -> float:",
        "    12\t        return math.pi * self.radius**2",
    ]
    both, _ = call(root, "find_definition", symbol="label")
    assert [line for line in both.splitlines() if not line[:1].isspace()] == [
        "web/types.ts:3-3 method Priced.label (typescript)",
        "",
        "web/types.ts:13-15 method Invoice.label (typescript)",
    ]
    go, _ = call(root, "find_definition", symbol="Server.Start", path="server")
    assert go.splitlines()[0] == "server/server.go:16-19 method Server.Start (go)"
    decorated, _ = call(root, "find_definition", symbol="Circle")
    assert decorated.splitlines()[1] == "     7\t@dataclass", "a definition's source starts at its decorators"


def test_references_come_from_identifiers_not_from_text(root) -> None:
    text, is_error = call(root, "find_references", symbol="area")
    assert not is_error, text
    assert text.splitlines() == [
        "2 occurrences of area in 1 files",
        "shop/shapes.py:11:9: (definition) def area(self) -> float:",
        "shop/shapes.py:21:18: return sum(s.area() for s in shapes)",
    ], "the comment and the string on line 20 are not references"
    invoice, _ = call(root, "find_references", symbol="Invoice", path="web")
    assert [line.split(":")[0:2] for line in invoice.splitlines()[1:]] == [
        ["web/types.ts", "10"],
        ["web/view.tsx", "1"],
        ["web/view.tsx", "3"],
        ["web/view.tsx", "7"],
    ]
    server, _ = call(root, "find_references", symbol="Server")
    assert server.splitlines()[0] == "5 occurrences of Server in 1 files"
    assert "server/server.go:5:6: (definition) type Server struct {" in server.splitlines()


def test_a_symbol_that_does_not_exist_is_a_clear_error_and_the_server_goes_on(root) -> None:
    missing, bad_name, refs, after = calls(
        root,
        ("find_definition", {"symbol": "NoSuchThing"}),
        ("find_definition", {"symbol": "a b; rm -rf"}),
        ("find_references", {"symbol": "NoSuchThing"}),
        ("outline", {"path": "shop/shapes.py"}),
    )
    assert missing[1] and "no definition of 'NoSuchThing' in 5 " in missing[0] and "case-sensitive" in missing[0]
    assert bad_name[1] and "is not a symbol name" in bad_name[0]
    assert refs[1] and "no identifier 'NoSuchThing'" in refs[0]
    assert not after[1] and "class Circle" in after[0]


@pytest.mark.parametrize("path", ["../outside.py", "/etc/passwd", "shop/../../x.py", "~/.bashrc"])
def test_a_path_outside_the_workspace_is_refused(root, path) -> None:
    for tool, arguments in [("outline", {"path": path}), ("repo_map", {"path": path})]:
        text, is_error = call(root, tool, **arguments)
        assert is_error and ("outside the workspace" in text or "absolute" in text), text


def test_a_symlink_pointing_out_is_never_followed(root, tmp_path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.py").write_text("def leaked_secret():\n    pass\n")
    os.symlink(outside / "secret.py", root / "shop" / "link.py")
    os.symlink(outside, root / "linked_dir")
    text, is_error = call(root, "outline", path="shop/link.py")
    assert is_error and "outside the workspace" in text
    text, is_error = call(root, "outline", path="linked_dir/secret.py")
    assert is_error and "outside the workspace" in text
    listing, _ = call(root, "repo_map")
    assert f"shop/link.py -> {outside / 'secret.py'}  (link, not followed)" in listing.splitlines()
    assert "leaked_secret" not in listing
    text, is_error = call(root, "find_definition", symbol="leaked_secret")
    assert is_error and "no definition" in text
    text, is_error = call(root, "find_references", symbol="leaked_secret")
    assert is_error


def test_an_unsupported_language_a_missing_file_and_a_directory_are_clear_errors(root) -> None:
    (text, is_error), (missing, missing_error), (folder, folder_error) = calls(
        root,
        ("outline", {"path": "scripts/tool.rb"}),
        ("outline", {"path": "shop/nope.py"}),
        ("outline", {"path": "shop"}),
    )
    assert is_error and "unsupported language (.rb)" in text and "Python" in text
    assert missing_error and "shop/nope.py does not exist" in missing
    assert folder_error and "is a directory" in folder


def test_binary_and_huge_files_are_skipped_with_a_note(root, monkeypatch) -> None:
    monkeypatch.setattr(code_assistant, "MAX_PARSE_BYTES", 4096)
    (root / "shop" / "blob.py").write_bytes(b"def x():\x00\x01\x02\n")
    (root / "shop" / "huge.py").write_text("def area():\n    pass\n" * 400)
    listing, _ = call(root, "repo_map", path="shop")
    assert "shop/blob.py  python  12 B  (not parsed: looks binary (a NUL byte))" in listing.splitlines()
    assert "shop/huge.py  python  8.2 KiB  (not parsed: is 8.2 KiB, over the 4.0 KiB parse limit)" in listing
    text, is_error = call(root, "outline", path="shop/huge.py")
    assert is_error and "over the 4.0 KiB parse limit" in text
    refs, is_error = call(root, "find_references", symbol="area", path="shop")
    assert not is_error and refs.endswith(
        "(2 files not read: shop/blob.py looks binary (a NUL byte); "
        "shop/huge.py is 8.2 KiB, over the 4.0 KiB parse limit)"
    )


def test_a_fifo_blocks_nothing(root) -> None:
    os.mkfifo(root / "shop" / "pipe.py")
    text, is_error = call(root, "find_definition", symbol="total_area")
    assert not is_error and text.startswith("shop/shapes.py:19-21")
    text, is_error = call(root, "outline", path="shop/pipe.py")
    assert is_error and "not a regular file" in text


def test_a_changed_file_is_parsed_again(root) -> None:
    assistant = CodeAssistant(root)
    assert "function total_area" in assistant.outline("shop/shapes.py")
    (root / "shop" / "shapes.py").write_text("def renamed_total():\n    return 0\n")
    assert assistant.outline("shop/shapes.py").splitlines()[1:] == [
        "function renamed_total (lines 1-2): def renamed_total():"
    ]


def test_the_server_runs_over_streamable_http_on_loopback(root) -> None:
    async def go(url: str) -> tuple[str, bool]:
        async with Client(url) as client:
            bad = await client.call_tool("find_definition", {"symbol": "Nope"})
            result = await client.call_tool("outline", {"path": "server/server.go"})
            assert bad.is_error
            return result.content[0].text, bool(result.is_error)  # type: ignore[union-attr]

    with http_server("code_assistant", "--root", str(root)) as url:
        text, is_error = anyio.run(go, url)
    assert not is_error and "method Server.Start (lines 16-19)" in text


def test_it_runs_over_stdio_beside_the_workspace_server_on_the_same_checkout(root) -> None:
    from mcp import StdioServerParameters

    env = {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else None

    def params(module: str) -> StdioServerParameters:
        return StdioServerParameters(command=sys.executable, args=["-m", module, "--root", str(root)], env=env)

    async def go() -> tuple[str, str]:
        async with (
            Client(params("agentfleet.mcp_servers.workspace")) as workspace,
            Client(params("agentfleet.mcp_servers.code_assistant")) as code,
        ):
            patch = "*** Begin Patch\n*** Add File: shop/extra.py\n+def added():\n+    return 1\n*** End Patch"
            await workspace.call_tool("apply_patch", {"patch": patch})
            outline = await code.call_tool("outline", {"path": "shop/extra.py"})
            listing = await workspace.call_tool("list_files", {"path": "shop"})
            return outline.content[0].text, listing.content[0].text  # type: ignore[union-attr]

    outline, listing = anyio.run(go)
    assert outline.splitlines() == ["shop/extra.py (python, 2 lines)", "function added (lines 1-2): def added():"]
    assert "shop/extra.py" in listing.splitlines()


def test_the_images_and_make_install_carry_the_grammars() -> None:
    import re
    import tomllib

    repo = Path(__file__).resolve().parents[2]
    extras = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {re.split(r"[<>=]", r)[0] for r in extras["mcp-code"]} == {
        "tree-sitter",
        *(f"tree-sitter-{lang}" for lang in ("go", "javascript", "python", "typescript")),
    }
    selves = [re.fullmatch(r"agentfleet\[([a-z0-9,-]+)\]", r) for r in extras["dev"]]
    brought = {extra for m in selves if m for extra in m.group(1).split(",")}
    assert "mcp-code" in brought, "make install (the dev extra) brings them for the tests"
    for image in ("mcp_servers", "agent_container"):
        dockerfile = (repo / image / "Dockerfile").read_text()
        default = re.search(r"^ARG EXTRAS=(\S+)$", dockerfile, re.M)
        assert default and "mcp-code" in default.group(1).split(","), image
        assert 'pip wheel --no-cache-dir --wheel-dir /wheels ".[${EXTRAS}]"' in dockerfile, image


def test_windows_line_endings_keep_lines_and_text_right(root) -> None:
    (root / "shop" / "crlf.py").write_bytes(b"X = 1\r\n\r\ndef f():\r\n    return X\r\n")
    outline, _ = call(root, "outline", path="shop/crlf.py")
    assert outline.splitlines()[1:] == ["variable X (line 1): X = 1", "function f (lines 3-4): def f():"]
    refs, _ = call(root, "find_references", symbol="X", path="shop/crlf.py")
    assert refs.splitlines()[1:] == ["shop/crlf.py:1:1: (definition) X = 1", "shop/crlf.py:4:12: return X"]
