"""The Firestore TaskStore against the official Firestore emulator: what the contract suite
(tests/contract/test_task_store.py) does not see: separate store objects racing (as separate
processes do), the stored document shape, corrupted documents, the index list, unavailability.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from google.cloud import firestore

import agentfleet.gcp.store as store_module
from agentfleet.gcp.documents import QUERY_SHAPES
from agentfleet.gcp.errors import CorruptDocumentError
from agentfleet.gcp.store import FirestoreTaskStore
from agentfleet.net import free_port
from agentfleet.settings import Settings
from agentfleet.tasks import EventKind, Task, TaskRequest, TaskStatus
from agentfleet.testing.polling import race
from tests.gcp.test_dispatch_rpcs import counting_rpcs

T = TypeVar("T")
INDEXES = Path(store_module.__file__).with_name("firestore_indexes.json")
Q, D, R, C = TaskStatus.QUEUED, TaskStatus.DISPATCHED, TaskStatus.RUNNING, TaskStatus.CANCELLED


def new_task(key: str | None = None) -> Task:
    return Task(
        request=TaskRequest(query="fix the bug", repo_url="https://github.com/acme/widgets", idempotency_key=key)
    )


@pytest.fixture
def stores(gcp_settings: Settings) -> list[FirestoreTaskStore]:
    """Three stores on one collection, each with its own client: three processes, as in production."""
    return [FirestoreTaskStore.from_settings(gcp_settings) for _ in range(3)]


def raw(store: FirestoreTaskStore, task_id: str) -> dict[str, Any]:
    snap = store.tasks.document(task_id).get()
    assert snap.exists
    return snap.to_dict() or {}


# --- concurrency -------------------------------------------------------------------------------


def test_three_stores_racing_one_transition_leave_exactly_one_winner_and_its_changes(
    stores: list[FirestoreTaskStore],
) -> None:
    task, _ = stores[0].create(new_task())

    results = race(3, lambda i: stores[i].transition(task.id, [Q], D, attempt=1, changes={"execution": f"exec-{i}"}))

    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert stores[1].get(task.id) == winners[0]
    assert winners[0].execution == f"exec-{results.index(winners[0])}"


def test_three_stores_appending_events_to_one_task_get_seq_one_to_n_without_gaps(
    stores: list[FirestoreTaskStore],
) -> None:
    task, _ = stores[0].create(new_task())

    def append_ten(writer: int) -> list[int]:
        return [stores[writer].append_event(task.id, EventKind.LOG, {"writer": writer, "i": i}).seq for i in range(10)]

    seqs = race(3, append_ten)

    assert sorted(seqs[0] + seqs[1] + seqs[2]) == list(range(1, 31))
    assert all(s == sorted(s) for s in seqs)
    events = stores[2].events(task.id)
    assert [e.seq for e in events] == list(range(1, 31))
    for writer in range(3):
        assert [e.data["i"] for e in events if e.data["writer"] == writer] == list(range(10))


def test_a_store_that_did_not_write_the_last_events_appends_after_them(stores: list[FirestoreTaskStore]) -> None:
    task, _ = stores[0].create(new_task())
    stores[0].append_event(task.id, EventKind.STATUS, {"status": "QUEUED"})
    stores[1].append_event(task.id, EventKind.STATUS, {"status": "DISPATCHED"})

    appended = stores[0].append_event(task.id, EventKind.LOG, {"text": "its cache said 1"})

    assert appended.seq == 3


def test_a_heartbeat_reads_first_where_a_change_from_the_kept_copy_does_not(stores: list[FirestoreTaskStore]) -> None:
    """The store keeps the version it last wrote, and a change from it is one commit; a beat still
    reads first (a read and a commit), so beats in a loop leave a writer that must read (a cancel
    from another process) a window between theirs instead of starving it."""
    task, _ = stores[0].create(new_task())
    stores[0].transition(task.id, [Q], D, attempt=1)
    calls = counting_rpcs(stores[0])

    assert stores[0].update(task.id, [D], attempt=1, changes={"execution": "e-1"}) is not None
    assert calls == {"commit": 1}, f"a change from the kept copy: {calls}"
    calls.clear()
    assert stores[0].heartbeat(task.id, 1)
    assert calls == {"batch_get_documents": 1, "commit": 1}, f"a beat: {calls}"


def test_heartbeats_racing_a_cancel_never_bring_the_task_back(stores: list[FirestoreTaskStore]) -> None:
    task, _ = stores[0].create(new_task())
    stores[0].transition(task.id, [Q], D, attempt=1)
    stores[0].transition(task.id, [D], R, attempt=1)

    beats: list[bool] = []
    beating = threading.Event()

    def beat_until_refused() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            beats.append(stores[0].heartbeat(task.id, 1))
            beating.set()
            if not beats[-1]:
                return

    beater = threading.Thread(target=beat_until_refused)
    beater.start()
    assert beating.wait(30)
    cancelled = stores[1].transition(task.id, [R], C)
    beater.join(30)

    assert cancelled is not None
    assert beats[0] is True and beats[-1] is False and beats.count(False) == 1
    final = stores[2].get(task.id)
    assert final is not None and final.status is C
    assert stores[2].heartbeat(task.id, 1) is False


def test_event_data_that_firestore_maps_cannot_hold_round_trips(stores: list[FirestoreTaskStore]) -> None:
    task, _ = stores[0].create(new_task())
    data = {"matrix": [[1, 2], [3, [4]]], "deep": {"a": {"b": {"c": None}}}, "big": 2**62}

    stores[0].append_event(task.id, EventKind.TOOL_CALL, data)

    assert stores[1].events(task.id)[0].data == data


# --- the stored documents ---------------------------------------------------------------------


def test_a_task_document_holds_the_task_and_native_copies_of_the_queried_fields(
    stores: list[FirestoreTaskStore],
) -> None:
    store = stores[0]
    task, _ = store.create(new_task())
    store.transition(task.id, [Q], D, attempt=1)
    store.heartbeat(task.id, 1)
    beaten = store.get(task.id)
    assert beaten is not None and beaten.heartbeat_at is not None

    doc = raw(store, task.id)

    assert set(doc) == {"task", "status", "attempt", "workspace_id", "created_at", "alive_at", "root_id"}
    assert doc["task"] == beaten.model_dump(mode="json")
    assert (doc["status"], doc["attempt"], doc["workspace_id"]) == ("DISPATCHED", 1, task.workspace_id)
    assert isinstance(doc["created_at"], datetime) and doc["created_at"] == task.created_at
    assert isinstance(doc["alive_at"], datetime) and doc["alive_at"] == beaten.heartbeat_at


def test_before_the_first_heartbeat_alive_at_is_the_last_change(stores: list[FirestoreTaskStore]) -> None:
    task, _ = stores[0].create(new_task())
    moved = stores[0].transition(task.id, [Q], D)
    assert moved is not None

    assert raw(stores[0], task.id)["alive_at"] == moved.updated_at


def test_an_idempotency_key_is_kept_as_a_marker_named_by_its_hash(stores: list[FirestoreTaskStore]) -> None:
    task, _ = stores[0].create(new_task(key="deploy/42"))

    marker = stores[0].keys.document(hashlib.sha256(b"deploy/42").hexdigest()).get()

    assert marker.exists and marker.to_dict() == {"task_id": task.id}


def test_creating_a_task_whose_id_exists_raises_value_error(stores: list[FirestoreTaskStore]) -> None:
    task, _ = stores[0].create(new_task())

    with pytest.raises(ValueError, match=task.id):
        stores[1].create(task.model_copy(update={"request": new_task(key="fresh").request}))
    assert stores[0].get(task.id) == task
    assert stores[0].list_tasks() == [task]


@pytest.mark.parametrize(
    ("edit", "complaint"),
    [
        ({"owner": "someone"}, "owner"),
        ({"status": "RUNNING"}, "status"),
        ({"task.usage.surprise": 1}, "surprise"),
    ],
)
def test_reading_a_task_document_someone_corrupted_raises_a_clear_error(
    stores: list[FirestoreTaskStore], edit: dict[str, Any], complaint: str
) -> None:
    store = stores[0]
    task, _ = store.create(new_task())
    store.tasks.document(task.id).update(edit)

    with pytest.raises(CorruptDocumentError, match=complaint) as caught:
        store.get(task.id)
    assert f"{store.tasks.id}/{task.id}" in str(caught.value)
    with pytest.raises(CorruptDocumentError):
        store.list_tasks()


def test_reading_an_event_document_with_an_unknown_field_raises_a_clear_error(
    stores: list[FirestoreTaskStore],
) -> None:
    store = stores[0]
    task, _ = store.create(new_task())
    store.append_event(task.id, EventKind.LOG, {"text": "hi"})
    store.tasks.document(task.id).collection("events").document("0000000001").update({"extra": True})

    with pytest.raises(CorruptDocumentError, match="extra"):
        store.events(task.id)


# --- indexes ----------------------------------------------------------------------------------


def index_list() -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    declared = json.loads(INDEXES.read_text())
    assert set(declared) == {"description", "indexes"}
    found = []
    for index in declared["indexes"]:
        assert set(index) == {"collection", "query_scope", "fields"}
        assert index["query_scope"] == "COLLECTION"
        fields = tuple((f["field_path"], f["order"]) for f in index["fields"])
        assert all(order in ("ASCENDING", "DESCENDING") for _, order in fields)
        found.append((index["collection"], fields))
    return found


def test_every_composite_query_the_store_runs_has_its_index_and_every_index_a_query() -> None:
    needed = {(s.collection, tuple(s.index_fields())) for s in QUERY_SHAPES if s.needs_composite_index}
    declared = index_list()

    assert len(declared) == len(set(declared)), "an index is listed twice"
    assert needed - set(declared) == set(), "queries without an index"
    assert set(declared) - needed == set(), "indexes no query uses"


def test_the_store_builds_each_query_from_its_shape(stores: list[FirestoreTaskStore]) -> None:
    store = stores[0]
    for shape in QUERY_SHAPES:
        query = store._shaped(store.tasks, shape, *[f"v-{f}" for f in shape.equality])
        orders = [(o.field.field_path, "DESCENDING" if o.direction == 2 else "ASCENDING") for o in query._orders]
        expected = [(f, d) for f, d in shape.index_fields() if f not in shape.equality] if shape.order else []
        assert orders == expected


# --- unavailability ----------------------------------------------------------------------------


def test_an_unreachable_firestore_is_a_connection_error_and_an_unhealthy_report(
    gcp_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()  # a loopback port nobody listens on
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{port}")
    client = firestore.Client(project=gcp_settings.require("project_id"))
    store = FirestoreTaskStore(client, gcp_settings.tasks_collection, timeout_s=1.0)

    with pytest.raises(ConnectionError, match="Firestore get"):
        store.get("any")
    with pytest.raises(ConnectionError):
        store.append_event("any", EventKind.LOG, {})
    health = store.health()
    assert (health["ok"], health["tasks"]) == (False, None)
    assert health["error"]
