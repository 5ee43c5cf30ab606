"""The memory model: what a workspace keeps of the tasks that ran on it, and the notes its agents
chose to keep, as bounded entries; the search terms both memory backends index; and the digest a
later task's prompt shows.

Every entry is bounded when it is made (`MemoryEntry.clipped`): a query, an answer, a note, a setup
script are cut at a fixed size and say so; at most `MAX_LIST` files and commands are kept, each
cut too. A store keeps at most `KEEP_PER_WORKSPACE` entries of a workspace (the oldest go first).

Search is over words: `terms(text)` lowercases the text, splits it into runs of letters, digits and
`_`, drops one-letter words and a plural `s` (`tests` finds `test`); an entry matches a query when
they share a term; the best entries share the most. Both backends index the same terms, so they
find the same entries.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agentfleet.tasks import utcnow

KEEP_PER_WORKSPACE = 200
"""The most entries a store keeps for one workspace; a new one past that removes the oldest."""
MAX_TEXT = 1500
"""The most characters of a query, an answer or a note kept in an entry."""
MAX_SETUP = 600
MAX_LIST = 20
"""The most files, checks or commands kept in an entry."""
MAX_ITEM = 300
MAX_TERMS = 400
"""The most distinct search terms an entry is indexed under (the first ones in its text)."""
MAX_QUERY_TERMS = 30
"""The most terms of a search that count (Firestore's `array_contains_any` takes 30)."""
DIGEST_CHARS = 3000
"""The most characters of the memory digest a prompt shows."""

_WORD = re.compile(r"[^\W_]+(?:_[^\W_]+)*|\d+", re.UNICODE)


def clip(text: str, most: int) -> str:
    """`text` stripped and, when longer than `most`, cut with a mark saying so."""
    text = text.strip()
    return text if len(text) <= most else text[: most - 12].rstrip() + " … [cut]"


def terms(text: str, most: int = MAX_TERMS) -> list[str]:
    """The search terms of `text`, distinct, in order of first appearance."""
    seen: dict[str, None] = {}
    for match in _WORD.finditer(text.lower()):
        word = match.group()
        if len(word) < 2:
            continue
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        seen.setdefault(word[:64], None)
        if len(seen) >= most:
            break
    return list(seen)


class MemoryEntry(BaseModel):
    """One thing a workspace keeps: a finished task (`kind="task"`) or a note (`kind="note"`)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    workspace_id: str
    kind: Literal["task", "note"]
    task_id: str | None = Field(None, description="The task it came from (the one that kept the note)")
    created_at: datetime = Field(default_factory=utcnow)
    status: str = Field("", description="How the task ended: SUCCEEDED or FAILED")
    query: str = ""
    answer: str = Field("", description="The task's final answer")
    note: str = Field("", description="What the agent chose to keep (remember)")
    files: list[str] = Field(default_factory=list, description="Files the task changed")
    setup: str = Field("", description="The setup that prepared the checkout (script, or where it came from)")
    checks: list[str] = Field(default_factory=list, description="Acceptance checks run, with how they ended")
    commands: list[str] = Field(default_factory=list, description="Test commands the agent ran")

    def clipped(self) -> MemoryEntry:
        """This entry within the bounds a store keeps."""
        return self.model_copy(
            update={
                "query": clip(self.query, MAX_TEXT),
                "answer": clip(self.answer, MAX_TEXT),
                "note": clip(self.note, MAX_TEXT),
                "setup": clip(self.setup, MAX_SETUP),
                "files": _clip_list(self.files),
                "checks": _clip_list(self.checks),
                "commands": _clip_list(self.commands),
            }
        )

    def text(self) -> str:
        """Everything searchable of the entry, as one text."""
        return "\n".join([self.query, self.answer, self.note, self.setup, *self.files, *self.checks, *self.commands])

    def terms(self) -> list[str]:
        return terms(self.text())

    def render(self) -> str:
        """The entry as a few lines for a prompt or a tool result."""
        when = self.created_at.strftime("%Y-%m-%d %H:%M")
        if self.kind == "note":
            return f"- note ({when}): {self.note}"
        lines = [f"- task {self.task_id or '?'} ({when}, {self.status or 'ended'}): {self.query}"]
        if self.answer:
            lines.append(f"  answer: {self.answer}")
        if self.files:
            lines.append(f"  changed: {', '.join(self.files)}")
        if self.setup:
            lines.append(f"  setup: {self.setup}")
        for check in self.checks:
            lines.append(f"  check: {check}")
        if self.commands:
            lines.append(f"  ran: {'; '.join(self.commands)}")
        return "\n".join(lines)


def _clip_list(items: Iterable[str]) -> list[str]:
    kept = [clip(item, MAX_ITEM) for item in items if item.strip()]
    if len(kept) > MAX_LIST:
        kept = [*kept[: MAX_LIST - 1], f"… and {len(kept) - MAX_LIST + 1} more"]
    return kept


def rank(entries: Iterable[MemoryEntry], query: str, limit: int) -> list[MemoryEntry]:
    """The entries that share a term with `query`, most shared terms first, then newest first."""
    wanted = set(terms(query, MAX_QUERY_TERMS))
    scored = [(len(wanted.intersection(e.terms())), e) for e in entries]
    scored = [(score, e) for score, e in scored if score]
    scored.sort(key=lambda pair: (pair[0], pair[1].created_at), reverse=True)
    return [e for _, e in scored[:limit]]


def digest(relevant: list[MemoryEntry], recent: list[MemoryEntry], most_chars: int = DIGEST_CHARS) -> str:
    """The prompt's view of a workspace's memory: the relevant entries first, then the most recent
    others, within `most_chars` (what did not fit is counted); '' when there is nothing."""
    chosen = list({e.id: e for e in [*relevant, *recent]}.values())
    shown: list[str] = []
    used = 0
    for entry in chosen:
        text = entry.render()
        if used + len(text) > most_chars:
            text = clip(text, most_chars - used) if not shown else ""
        if not text:
            break
        shown.append(text)
        used += len(text) + 1
    left = len(chosen) - len(shown)
    if left:
        shown.append(f"(… {left} more entries not shown: recall finds them)")
    return "\n".join(shown)
