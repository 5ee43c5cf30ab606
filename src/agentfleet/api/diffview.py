"""A task's patch as HTML: one table per file, each line with its old and new numbers, marked
added, removed or context, and its code coloured by Pygments with the lexer of the file's type.

Server-side, so the page is complete without JavaScript and needs no front-end package; Pygments'
formatter escapes every character of the patch (it is the agent's, hence hostile). The colours are
CSS classes (a strict Content-Security-Policy refuses inline styles), their rules from STYLE_CSS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from markupsafe import Markup, escape
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import TextLexer, get_lexer_for_filename
from pygments.util import ClassNotFound

MAX_HIGHLIGHTED_LINES = 5000
"""Lines coloured in one patch; the rest are shown plain (escaped) to bound the page's cost."""
_HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@")
_FORMATTER = HtmlFormatter(nowrap=True, classprefix="tok-")
STYLE_CSS = HtmlFormatter(style="default", classprefix="tok-").get_style_defs(".diff .code")
"""The token colours (served as /console/static/pygments.css)."""


@dataclass(frozen=True)
class Line:
    kind: str
    """add, del, context, hunk or meta"""
    old: int | None
    new: int | None
    html: Markup


@dataclass
class FileDiff:
    path: str
    lines: list[Line] = field(default_factory=list)
    added: int = 0
    removed: int = 0


def _lexer(path: str) -> Lexer:
    try:
        return get_lexer_for_filename(path, stripnl=False, ensurenl=False)
    except ClassNotFound:
        return TextLexer(stripnl=False, ensurenl=False)


def _path_of(header: str) -> str:
    """The file a `diff --git a/X b/X` header names (its b/ side)."""
    _, _, rest = header.partition(" b/")
    return rest or header.removeprefix("diff --git ").strip()


def _split(patch: str) -> list[tuple[str, list[str]]]:
    files: list[tuple[str, list[str]]] = []
    for raw in patch.splitlines():
        if raw.startswith("diff --git ") or not files:
            files.append((_path_of(raw) if raw.startswith("diff --git ") else "", []))
        files[-1][1].append(raw)
    return files


def _classify(raw: str, in_hunk: bool) -> str:
    if raw.startswith("@@"):
        return "hunk"
    if not in_hunk:
        return "meta"
    return {"+": "add", "-": "del", " ": "context"}.get(raw[:1], "meta")


def _render(path: str, raws: list[str], budget: int) -> FileDiff:
    diff = FileDiff(path)
    kinds, in_hunk = [], False
    for raw in raws:
        kind = _classify(raw, in_hunk)
        in_hunk = in_hunk or kind == "hunk"
        kinds.append(kind)
    code = [raw[1:] if kind in ("add", "del", "context") else "" for raw, kind in zip(raws, kinds, strict=True)]
    if budget > 0:
        coloured = highlight("\n".join(code) + "\n", _lexer(path), _FORMATTER).split("\n")
    else:
        coloured = [str(escape(text)) for text in code]
    old = new = 0
    for raw, kind, html in zip(raws, kinds, coloured, strict=False):
        if kind == "hunk" and (match := _HUNK.match(raw)):
            old, new = int(match[1]), int(match[2])
        if kind in ("hunk", "meta"):
            diff.lines.append(Line(kind, None, None, escape(raw)))
            continue
        shown_old = old if kind != "add" else None
        shown_new = new if kind != "del" else None
        old += kind != "add"
        new += kind != "del"
        diff.added += kind == "add"
        diff.removed += kind == "del"
        diff.lines.append(Line(kind, shown_old, shown_new, Markup(html)))  # Pygments escaped it
    return diff


def render_patch(patch: str) -> list[FileDiff]:
    """The patch's files, each line classified, numbered and coloured."""
    budget = MAX_HIGHLIGHTED_LINES
    files = []
    for path, raws in _split(patch):
        files.append(_render(path, raws, budget))
        budget -= len(raws)
    return files
