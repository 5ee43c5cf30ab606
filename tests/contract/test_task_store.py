"""The TaskStore contract: every implementation (tests/contract/conftest.py) passes these.

Real stores, no mocks, no sleeps: time-dependent queries get their cutoff as an argument.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypeVar

import pytest

from agentfleet.ports import TaskStore
from agentfleet.tasks import EventKind, Followup, Task, TaskRequest, TaskResult, TaskStatus, Usage, utcnow
from agentfleet.testing.polling import race

T = TypeVar("T")
WIDGETS = "https://github.com/acme/widgets"
GADGETS = "https://github.com/acme/gadgets"
Q, D, R = TaskStatus.QUEUED, TaskStatus.DISPATCHED, TaskStatus.RUNNING


def new_task(repo: str = WIDGETS, key: str | None = None, **fields: Any) -> Task:
    return Task(request=TaskRequest(query="fix the bug", repo_url=repo, idempotency_key=key), **fields)


def running(store: TaskStore, task: Task) -> Task:
    """The task created and moved QUEUED → DISPATCHED → RUNNING."""
    store.create(task)
    assert store.transition(task.id, [Q], D, attempt=task.attempt)
    moved = store.transition(task.id, [D], R, attempt=task.attempt)
    assert moved is not None
    return moved


# --- create / get ----------------------------------------------------------------------------


def test_it_implements_the_task_store_port_and_starts_empty(task_store: TaskStore) -> None:
    assert isinstance(task_store, TaskStore)
    assert task_store.list_tasks() == []


def test_a_created_task_reads_back_equal(task_store: TaskStore) -> None:
    task = new_task(key="k1")

    stored, created = task_store.create(task)

    assert created is True
    assert stored == task
    assert task_store.get(task.id) == task


def test_getting_an_unknown_task_gives_none(task_store: TaskStore) -> None:
    assert task_store.get("no-such-task") is None


def test_a_repeated_idempotency_key_returns_the_first_task_and_stores_nothing(task_store: TaskStore) -> None:
    first, _ = task_store.create(new_task(key="same"))

    again, created = task_store.create(new_task(key="same"))

    assert created is False
    assert again == first
    assert [t.id for t in task_store.list_tasks()] == [first.id]


def test_a_task_created_with_its_first_event_has_it_as_seq_one_and_a_repeat_adds_none(
    task_store: TaskStore,
) -> None:
    queued = (EventKind.STATUS, {"status": "QUEUED"})
    first, _ = task_store.create(new_task(key="opening"), event=queued)

    again, created = task_store.create(new_task(key="opening"), event=queued)
    later = task_store.append_event(first.id, EventKind.LOG, {"text": "next"})

    assert created is False and again == first
    assert [(e.seq, e.kind, e.data) for e in task_store.events(first.id)] == [
        (1, EventKind.STATUS, {"status": "QUEUED"}),
        (2, EventKind.LOG, {"text": "next"}),
    ]
    assert later.seq == 2


def test_every_create_without_a_key_stores_a_task(task_store: TaskStore) -> None:
    results = [task_store.create(new_task()) for _ in range(3)]

    assert all(created for _, created in results)
    assert len(task_store.list_tasks()) == 3


def test_eight_threads_creating_with_one_key_store_exactly_one_task(task_store: TaskStore) -> None:
    results = race(8, lambda _: task_store.create(new_task(key="raced")))

    assert sum(created for _, created in results) == 1
    assert len({task.id for task, _ in results}) == 1
    assert len(task_store.list_tasks()) == 1


# --- transition --------------------------------------------------------------------------------


def test_eight_threads_racing_queued_to_dispatched_have_exactly_one_winner(task_store: TaskStore) -> None:
    task, _ = task_store.create(new_task())

    results = race(8, lambda _: task_store.transition(task.id, [Q], D, attempt=1))

    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert winners[0].status is D
    assert task_store.get(task.id) == winners[0]


def test_a_transition_from_the_wrong_status_or_attempt_returns_none_and_changes_nothing(
    task_store: TaskStore,
) -> None:
    task, _ = task_store.create(new_task())

    assert task_store.transition(task.id, [D, R], TaskStatus.SUCCEEDED) is None
    assert task_store.transition(task.id, [Q], D, attempt=2, changes={"execution": "x"}) is None
    assert task_store.transition("no-such-task", [Q], D) is None
    assert task_store.get(task.id) == task


def test_a_transition_sets_the_status_and_updated_at_and_returns_the_stored_task(task_store: TaskStore) -> None:
    task, _ = task_store.create(new_task())

    moved = task_store.transition(task.id, [Q], D, attempt=1)

    assert moved is not None
    assert moved.status is D
    assert moved.updated_at >= task.updated_at
    assert moved.finished_at is None
    assert task_store.get(task.id) == moved


def test_a_final_status_sets_finished_at(task_store: TaskStore) -> None:
    task = running(task_store, new_task())
    before = utcnow()

    done = task_store.transition(task.id, [R], TaskStatus.SUCCEEDED, attempt=1)

    assert done is not None
    assert done.finished_at is not None
    assert done.finished_at >= before
    assert done.updated_at == done.finished_at
    assert task_store.get(task.id) == done


def test_changes_are_merged_into_the_stored_task(task_store: TaskStore) -> None:
    task = running(task_store, new_task())
    usage = Usage(prompt_tokens=10, completion_tokens=5, llm_calls=1)
    result = TaskResult(summary="fixed it", patch="patches/p.diff", usage=usage)

    done = task_store.transition(
        task.id, [R], TaskStatus.SUCCEEDED, attempt=1, changes={"result": result, "usage": usage, "error": None}
    )

    assert done is not None
    assert (done.result, done.usage, done.request) == (result, usage, task.request)
    assert task_store.get(task.id) == done


def test_a_requeue_can_change_the_attempt_and_clear_fields(task_store: TaskStore) -> None:
    task = running(task_store, new_task())
    changes = {"attempt": 2, "execution": None, "heartbeat_at": None}

    requeued = task_store.transition(task.id, [D, R], Q, attempt=1, changes=changes)

    assert requeued is not None
    assert (requeued.status, requeued.attempt, requeued.heartbeat_at) == (Q, 2, None)
    assert task_store.transition(task.id, [Q], D, attempt=1) is None
    assert task_store.transition(task.id, [Q], D, attempt=2) is not None


@pytest.mark.parametrize(
    "changes",
    [{"no_such_field": 1}, {"attempt": "many"}, {"usage": {"llm_calls": "x"}}, {"id": "other"}, {"status": "FAILED"}],
)
def test_an_invalid_change_raises_value_error_and_stores_nothing(task_store: TaskStore, changes: dict) -> None:
    task, _ = task_store.create(new_task())

    with pytest.raises(ValueError):
        task_store.transition(task.id, [Q], D, attempt=1, changes=changes)

    assert task_store.get(task.id) == task


# --- heartbeat ---------------------------------------------------------------------------------


def test_a_heartbeat_applies_only_to_the_current_attempt_of_a_live_task(task_store: TaskStore) -> None:
    task, _ = task_store.create(new_task())
    assert task_store.heartbeat(task.id, 1) is False  # still QUEUED
    task_store.transition(task.id, [Q], D, attempt=1)
    before = utcnow()

    assert task_store.heartbeat(task.id, 1) is True
    beaten = task_store.get(task.id)
    assert beaten is not None and beaten.heartbeat_at is not None and beaten.heartbeat_at >= before
    assert task_store.heartbeat(task.id, 2) is False
    assert task_store.heartbeat("no-such-task", 1) is False

    task_store.transition(task.id, [D], TaskStatus.CANCELLED)
    assert task_store.heartbeat(task.id, 1) is False


# --- events ------------------------------------------------------------------------------------


def test_events_get_seq_one_to_n_in_order_per_task(task_store: TaskStore) -> None:
    task, _ = task_store.create(new_task())
    other, _ = task_store.create(new_task())
    data = {"text": "hello", "n": 3, "nested": {"items": [1, 2]}}

    appended = [task_store.append_event(task.id, EventKind.LOG, {**data, "i": i}) for i in range(5)]
    first_other = task_store.append_event(other.id, EventKind.STATUS, {"status": "QUEUED"})

    assert [e.seq for e in appended] == [1, 2, 3, 4, 5]
    assert first_other.seq == 1
    assert task_store.events(task.id) == appended
    assert task_store.events(task.id)[2].data == {**data, "i": 2}
    assert task_store.events(other.id) == [first_other]


def test_two_threads_appending_fifty_events_each_get_seq_one_to_a_hundred_without_gaps(
    task_store: TaskStore,
) -> None:
    task, _ = task_store.create(new_task())

    def append_fifty(writer: int) -> list[int]:
        return [task_store.append_event(task.id, EventKind.LOG, {"writer": writer, "i": i}).seq for i in range(50)]

    seqs = race(2, append_fifty)

    assert sorted(seqs[0] + seqs[1]) == list(range(1, 101))
    assert all(s == sorted(s) for s in seqs)
    events = task_store.events(task.id)
    assert [e.seq for e in events] == list(range(1, 101))
    for writer in (0, 1):
        assert [e.data["i"] for e in events if e.data["writer"] == writer] == list(range(50))


def test_events_after_and_limit_page_through_the_log(task_store: TaskStore) -> None:
    task, _ = task_store.create(new_task())
    for i in range(7):
        task_store.append_event(task.id, EventKind.LOG, {"i": i})

    assert [e.seq for e in task_store.events(task.id, after=0, limit=3)] == [1, 2, 3]
    assert [e.seq for e in task_store.events(task.id, after=3, limit=3)] == [4, 5, 6]
    assert [e.seq for e in task_store.events(task.id, after=6)] == [7]
    assert task_store.events(task.id, after=7) == []
    assert task_store.events("no-such-task") == []


# --- queries -----------------------------------------------------------------------------------


def test_stale_finds_only_dispatched_or_running_tasks_silent_since_before_the_cutoff(task_store: TaskStore) -> None:
    now = utcnow()
    silent = running(task_store, new_task())
    task_store.transition(silent.id, [R], R, changes={"heartbeat_at": now - timedelta(hours=2)})
    beating = running(task_store, new_task())
    assert task_store.heartbeat(beating.id, 1)
    dispatched, _ = task_store.create(new_task())
    task_store.transition(dispatched.id, [Q], D)  # no heartbeat yet: its last change counts
    task_store.create(new_task())  # QUEUED: never stale
    finished = running(task_store, new_task())
    task_store.transition(finished.id, [R], TaskStatus.FAILED, changes={"heartbeat_at": now - timedelta(hours=2)})

    assert {t.id for t in task_store.stale(now - timedelta(hours=1))} == {silent.id}
    assert {t.id for t in task_store.stale(now + timedelta(hours=1))} == {silent.id, beating.id, dispatched.id}
    assert task_store.stale(now - timedelta(hours=3)) == []


def test_count_active_counts_dispatched_and_running_tasks_of_the_workspace(task_store: TaskStore) -> None:
    queued, _ = task_store.create(new_task())
    dispatched, _ = task_store.create(new_task())
    task_store.transition(dispatched.id, [Q], D)
    running(task_store, new_task())
    done = running(task_store, new_task())
    task_store.transition(done.id, [R], TaskStatus.SUCCEEDED)
    running(task_store, new_task(GADGETS))

    assert task_store.count_active(queued.workspace_id) == 2
    assert task_store.count_active(new_task(GADGETS).workspace_id) == 1
    assert task_store.count_active("no-such-workspace") == 0


def test_active_lists_the_dispatched_and_running_tasks_of_the_workspace(task_store: TaskStore) -> None:
    dispatched, _ = task_store.create(new_task())
    task_store.create(new_task())  # queued
    task_store.transition(dispatched.id, [Q], D)
    live = running(task_store, new_task())
    elsewhere = running(task_store, new_task(GADGETS))

    assert sorted(t.id for t in task_store.active(dispatched.workspace_id)) == sorted([dispatched.id, live.id])
    assert task_store.active(elsewhere.workspace_id) == [elsewhere]
    assert task_store.active("no-such-workspace") == []


def test_list_tasks_filters_by_status_and_workspace_newest_first(task_store: TaskStore) -> None:
    start = utcnow()
    tasks = [new_task(repo, created_at=start + timedelta(seconds=i)) for i, repo in enumerate([WIDGETS, GADGETS] * 3)]
    for task in tasks:
        task_store.create(task)
    task_store.transition(tasks[4].id, [Q], D)
    widgets = tasks[0].workspace_id

    def ids(found: list[Task]) -> list[str]:
        return [t.id for t in found]

    assert ids(task_store.list_tasks()) == ids(tasks[::-1])
    assert ids(task_store.list_tasks(limit=2)) == ids(tasks[:3:-1])
    assert ids(task_store.list_tasks(workspace_id=widgets)) == ids([tasks[4], tasks[2], tasks[0]])
    assert ids(task_store.list_tasks(status=Q, workspace_id=widgets)) == ids([tasks[2], tasks[0]])
    assert ids(task_store.list_tasks(status=D)) == [tasks[4].id]
    assert task_store.list_tasks(status=R) == []


def test_followups_lists_a_chain_s_follow_ups_oldest_first_and_no_other_task(task_store: TaskStore) -> None:
    start = utcnow()
    root, other = new_task(created_at=start), new_task(created_at=start)
    chained = [
        new_task(
            created_at=start + timedelta(seconds=i), parent_id=root.id, root_id=root.id, followup=Followup(chain=[])
        )
        for i in (2, 1, 3)
    ]
    stranger = new_task(parent_id=other.id, root_id=other.id, followup=Followup(chain=[]))
    for task in (root, other, *chained, stranger):
        task_store.create(task)
    moved = task_store.transition(chained[0].id, [Q], D)

    found = task_store.followups(root.id)

    assert [t.id for t in found] == [chained[1].id, chained[0].id, chained[2].id]
    assert found[1] == moved and found[0] == chained[1], "whole tasks, as stored"
    assert [t.id for t in task_store.followups(root.id, limit=1)] == [chained[1].id]
    assert task_store.followups(chained[0].id) == []


def test_health_reports_ok_and_the_number_of_tasks(task_store: TaskStore) -> None:
    task_store.create(new_task())

    health = task_store.health()

    assert health["ok"] is True
    assert isinstance(health["backend"], str)
    assert health["tasks"] == 1
