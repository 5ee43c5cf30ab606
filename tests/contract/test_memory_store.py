"""The MemoryStore contract, against SQLite FTS5 and Firestore (emulator) alike."""

from __future__ import annotations

from datetime import timedelta

import pytest

from agentfleet import memory
from agentfleet.memory import MemoryEntry
from agentfleet.ports import MemoryStore
from agentfleet.tasks import utcnow

WS, OTHER = "calc-0123456789", "other-0123456789"


def task_entry(query: str, answer: str, workspace: str = WS, minutes_ago: int = 0, **fields: object) -> MemoryEntry:
    when = utcnow() - timedelta(minutes=minutes_ago)
    return MemoryEntry(workspace_id=workspace, kind="task", query=query, answer=answer, created_at=when, **fields)


def test_an_entry_is_found_by_a_word_it_holds_and_only_in_its_workspace(memory_store: MemoryStore) -> None:
    kept = memory_store.add(
        task_entry("Fix the failing test", "add() subtracted", files=["calc.py"], commands=["pytest -q"])
    )
    memory_store.add(task_entry("Fix the failing test", "elsewhere", workspace=OTHER))
    found = memory_store.search(WS, "why does calc.py subtract?")
    assert [e.id for e in found] == [kept.id]
    assert found[0] == kept and found[0].files == ["calc.py"] and found[0].commands == ["pytest -q"]
    assert memory_store.search(WS, "pytest") == [kept], "the commands are searched too"
    assert memory_store.search(WS, "tests") == [kept], "a plural finds the singular"
    assert memory_store.search(WS, "unrelated words only") == []
    assert memory_store.search(WS, "?! -- ") == [], "a query with no words finds nothing"


def test_the_best_match_comes_first_then_the_newest(memory_store: MemoryStore) -> None:
    one = memory_store.add(task_entry("rename the config loader", "done", minutes_ago=3))
    both = memory_store.add(task_entry("config loader cache", "cached the config", minutes_ago=2))
    newer = memory_store.add(task_entry("document the loader", "done", minutes_ago=1))
    assert [e.id for e in memory_store.search(WS, "loader cache")] == [both.id, newer.id, one.id]
    assert [e.id for e in memory_store.search(WS, "loader", limit=2)] == [newer.id, both.id]


def test_recent_lists_newest_first_and_clear_forgets_one_workspace(memory_store: MemoryStore) -> None:
    old = memory_store.add(task_entry("first", "a", minutes_ago=2))
    note = memory_store.add(MemoryEntry(workspace_id=WS, kind="note", note="run `make check` before pushing"))
    other = memory_store.add(task_entry("first", "b", workspace=OTHER))
    assert [e.id for e in memory_store.recent(WS)] == [note.id, old.id]
    assert [e.id for e in memory_store.recent(WS, limit=1)] == [note.id]
    assert memory_store.search(WS, "make check") == [note]
    assert memory_store.clear(WS) == 2
    assert memory_store.recent(WS) == [] and memory_store.search(WS, "first") == []
    assert memory_store.recent(OTHER) == [other]
    assert memory_store.clear(WS) == 0


def test_what_is_kept_is_bounded(memory_store: MemoryStore) -> None:
    kept = memory_store.add(task_entry("q" * 5000, "answer " * 2000, files=[f"f{i}.py" for i in range(100)]))
    assert len(kept.query) <= memory.MAX_TEXT and kept.query.endswith("[cut]")
    assert len(kept.answer) <= memory.MAX_TEXT
    assert len(kept.files) == memory.MAX_LIST and kept.files[-1] == f"… and {100 - memory.MAX_LIST + 1} more"
    assert memory_store.recent(WS) == [kept]


def test_past_the_limit_the_oldest_entries_go(memory_store: MemoryStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(f"{type(memory_store).__module__}.KEEP_PER_WORKSPACE", 3)
    entries = [memory_store.add(task_entry(f"task {i}", "ok", minutes_ago=10 - i)) for i in range(5)]
    assert [e.id for e in memory_store.recent(WS)] == [e.id for e in reversed(entries[2:])]
    assert memory_store.search(WS, "task", limit=10) == list(reversed(entries[2:]))


def test_health_says_the_backend(memory_store: MemoryStore) -> None:
    report = memory_store.health()
    assert report["ok"] is True and isinstance(report["backend"], str)
