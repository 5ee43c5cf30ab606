"""The TaskStore contract for its compare-and-set writes beyond a bare transition: a transition
with its event (`transition(..., event=)`: one commit, both or neither, the task's seqs 1, 2, …
without gaps whoever else appends), `update` (changes without a status move), and both against
a task another writer changed since this store last saw it."""

from __future__ import annotations

import pytest

from agentfleet.ports import TaskStore
from agentfleet.tasks import EventKind, Task, TaskRequest, TaskStatus
from agentfleet.testing.polling import race

Q, D, R = TaskStatus.QUEUED, TaskStatus.DISPATCHED, TaskStatus.RUNNING
OPENED = (EventKind.STATUS, {"status": "QUEUED"})


def queued(store: TaskStore) -> Task:
    """A new QUEUED task, stored with its first event (seq 1), as submit stores one."""
    task, _ = store.create(
        Task(request=TaskRequest(query="fix the bug", repo_url="https://github.com/acme/w")), event=OPENED
    )
    return task


def statuses(store: TaskStore, task_id: str) -> list[tuple[int, str]]:
    return [(e.seq, e.data["status"]) for e in store.events(task_id) if e.kind is EventKind.STATUS]


def test_a_transition_s_event_is_stored_with_it_at_the_next_seq(task_store: TaskStore) -> None:
    task = queued(task_store)

    moved = task_store.transition(task.id, [Q], D, attempt=1, event=(EventKind.STATUS, {"status": "DISPATCHED"}))

    assert moved is not None and moved.status is D
    assert task_store.get(task.id) == moved
    assert statuses(task_store, task.id) == [(1, "QUEUED"), (2, "DISPATCHED")]
    assert task_store.append_event(task.id, EventKind.LOG, {"text": "next"}).seq == 3


def test_a_transition_that_does_not_apply_stores_no_event(task_store: TaskStore) -> None:
    task = queued(task_store)
    event = (EventKind.STATUS, {"status": "SUCCEEDED"})

    assert task_store.transition(task.id, [D, R], TaskStatus.SUCCEEDED, event=event) is None
    assert task_store.transition(task.id, [Q], D, attempt=2, event=event) is None
    assert task_store.transition("no-such-task", [Q], D, event=event) is None

    assert task_store.get(task.id) == task
    assert statuses(task_store, task.id) == [(1, "QUEUED")]
    assert task_store.events("no-such-task") == []


@pytest.mark.parametrize("changes", [{"status": "RUNNING"}, {"attempt": "many"}])
def test_an_invalid_change_stores_neither_the_change_nor_its_event(task_store: TaskStore, changes: dict) -> None:
    task = queued(task_store)

    with pytest.raises(ValueError):
        task_store.transition(task.id, [Q], D, changes=changes, event=(EventKind.STATUS, {"status": "DISPATCHED"}))

    assert task_store.get(task.id) == task
    assert statuses(task_store, task.id) == [(1, "QUEUED")]


def test_eight_racing_claims_store_one_change_and_one_event(task_store: TaskStore) -> None:
    task = queued(task_store)

    results = race(
        8, lambda i: task_store.transition(task.id, [Q], D, event=(EventKind.STATUS, {"status": "DISPATCHED", "by": i}))
    )

    [winner] = [i for i, r in enumerate(results) if r is not None]
    events = task_store.events(task.id)
    assert [(e.seq, e.data) for e in events] == [(1, {"status": "QUEUED"}), (2, {"status": "DISPATCHED", "by": winner})]


def test_seqs_stay_gapless_when_another_writer_appended_meanwhile(
    task_store: TaskStore, other_writer: TaskStore
) -> None:
    task = queued(task_store)  # this store knows seq 1 is the last
    for i in range(3):
        other_writer.append_event(task.id, EventKind.LOG, {"i": i})  # seqs 2-4, unseen by this store

    moved = task_store.transition(task.id, [Q], D, attempt=1, event=(EventKind.STATUS, {"status": "DISPATCHED"}))
    later = other_writer.append_event(task.id, EventKind.LOG, {"i": 3})  # the other one's memory is stale now

    assert moved is not None
    assert [e.seq for e in task_store.events(task.id)] == [1, 2, 3, 4, 5, 6]
    assert statuses(task_store, task.id) == [(1, "QUEUED"), (5, "DISPATCHED")]
    assert later.seq == 6


def test_transitions_and_another_writer_s_appends_racing_keep_every_event_once_in_order(
    task_store: TaskStore, other_writer: TaskStore
) -> None:
    task = queued(task_store)
    assert task_store.transition(task.id, [Q], D) and task_store.transition(task.id, [D], R)

    def write(writer: int) -> None:
        for i in range(10):
            data = {"writer": writer, "i": i}
            if writer == 0:  # a change that keeps the status, with its event
                assert task_store.transition(
                    task.id, [R], R, changes={"execution": f"e{i}"}, event=(EventKind.LOG, data)
                )
            else:
                other_writer.append_event(task.id, EventKind.LOG, data)

    race(2, write)

    events = task_store.events(task.id)
    assert [e.seq for e in events] == list(range(1, 22))
    for writer in (0, 1):
        assert [e.data["i"] for e in events if e.data.get("writer") == writer] == list(range(10))
    assert task_store.get(task.id).execution == "e9"  # type: ignore[union-attr]


def test_update_sets_changes_in_any_expected_status_without_moving_it(task_store: TaskStore) -> None:
    task = queued(task_store)
    assert task_store.transition(task.id, [Q], D)

    noted = task_store.update(task.id, [D, R], attempt=1, changes={"execution": "exec-1"})

    assert noted is not None and (noted.status, noted.execution) == (D, "exec-1")
    assert noted.updated_at >= task.updated_at
    assert task_store.get(task.id) == noted
    assert statuses(task_store, task.id) == [(1, "QUEUED")], "an update is no status change"


def test_an_update_that_does_not_apply_or_is_invalid_changes_nothing(task_store: TaskStore) -> None:
    task = queued(task_store)

    assert task_store.update(task.id, [D, R], attempt=1, changes={"execution": "x"}) is None
    assert task_store.update(task.id, [Q], attempt=2, changes={"execution": "x"}) is None
    assert task_store.update("no-such-task", [Q], attempt=1, changes={"execution": "x"}) is None
    with pytest.raises(ValueError):
        task_store.update(task.id, [Q], attempt=1, changes={"attempt": "many"})
    assert task_store.get(task.id) == task


def test_a_store_behind_another_writer_compares_against_the_stored_task(
    task_store: TaskStore, other_writer: TaskStore
) -> None:
    task = queued(task_store)
    assert task_store.get(task.id) == task  # this store saw it QUEUED
    assert other_writer.transition(task.id, [Q], D)

    assert task_store.transition(task.id, [Q], D) is None, "QUEUED no more"
    running = task_store.transition(task.id, [D], R)
    assert running is not None
    assert other_writer.heartbeat(task.id, 1)  # changed again behind this store's back
    noted = task_store.update(task.id, [R], attempt=1, changes={"execution": "e"})

    assert noted is not None and noted.heartbeat_at is not None, "the other writer's heartbeat is kept"
    assert task_store.get(task.id) == other_writer.get(task.id) == noted
