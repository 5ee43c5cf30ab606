"""SqliteTaskQueue: a real SQLite file, real threads and processes, no mocks."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import TypeVar

import pytest

from agentfleet.local.queue import SqliteTaskQueue
from agentfleet.ports import DispatchMessage, TaskQueue
from agentfleet.testing.polling import wait_for

T = TypeVar("T")


@pytest.fixture
def queue(tmp_path: Path) -> SqliteTaskQueue:
    return SqliteTaskQueue(tmp_path / "queue.db")


def message(n: int = 1) -> DispatchMessage:
    return DispatchMessage(task_id=f"task{n}", attempt=1, workspace_id="ws-1")


def test_it_implements_the_task_queue_port(queue: SqliteTaskQueue) -> None:
    assert isinstance(queue, TaskQueue)
    assert queue.health()["pending"] == 0


def test_a_published_message_is_pulled_with_its_attributes_and_gone_once_acked(queue: SqliteTaskQueue) -> None:
    message_id = queue.publish(DispatchMessage(task_id="t1", attempt=2, workspace_id="ws-1"))

    [delivery] = queue.pull()

    assert delivery.message_id == message_id
    assert DispatchMessage.model_validate_json(delivery.data) == DispatchMessage(
        task_id="t1", attempt=2, workspace_id="ws-1"
    )
    assert delivery.attributes == {"task_id": "t1", "attempt": "2", "workspace_id": "ws-1"}
    assert delivery.delivery_attempt == 1
    assert delivery.published_at.tzinfo is not None
    assert queue.pending() == 1
    queue.ack(message_id)
    assert queue.pending() == 0
    assert queue.pull() == []


def test_visible_messages_come_out_in_publish_order(queue: SqliteTaskQueue) -> None:
    ids = [queue.publish(message(n)) for n in range(5)]

    assert [d.message_id for d in queue.pull(max_messages=3)] == ids[:3]
    assert [d.message_id for d in queue.pull(max_messages=3)] == ids[3:]


def test_a_leased_message_is_not_pulled_again_until_its_lease_expires(queue: SqliteTaskQueue) -> None:
    message_id = queue.publish(message())
    [first] = queue.pull(lease_s=0.2)
    assert queue.pull(lease_s=0.2) == []  # leased: invisible

    [again] = wait_for(lambda: queue.pull(lease_s=60))

    assert again.message_id == message_id
    assert (first.delivery_attempt, again.delivery_attempt) == (1, 2)
    assert queue.pull() == []


def test_a_nacked_message_is_visible_again_after_its_delay(queue: SqliteTaskQueue) -> None:
    message_id = queue.publish(message())
    queue.pull()
    queue.nack(message_id)
    [now] = queue.pull()
    assert (now.message_id, now.delivery_attempt) == (message_id, 2)

    queue.nack(message_id, delay_s=0.2)
    assert queue.pull() == []
    [later] = wait_for(queue.pull)
    assert later.delivery_attempt == 3


def test_a_message_survives_the_queue_object_that_published_it(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    first = SqliteTaskQueue(path)
    leased, waiting = first.publish(message(1)), first.publish(message(2))
    assert [d.message_id for d in first.pull(max_messages=1, lease_s=0.2)] == [leased]
    del first  # gone before the ack, as in a crash: the lease runs out

    restarted = SqliteTaskQueue(path)
    seen: dict[str, int] = {}

    def pull_both() -> bool:
        for delivery in restarted.pull():
            seen[delivery.message_id] = delivery.delivery_attempt
            restarted.ack(delivery.message_id)
        return len(seen) == 2

    wait_for(pull_both)
    assert seen == {leased: 2, waiting: 1}


def test_a_message_delivered_max_delivery_attempts_times_goes_to_the_dead_letters(tmp_path: Path) -> None:
    queue = SqliteTaskQueue(tmp_path / "queue.db", max_delivery_attempts=3)
    message_id = queue.publish(message())
    attempts = []
    for _ in range(3):
        [delivery] = queue.pull()
        attempts.append(delivery.delivery_attempt)
        queue.nack(message_id)

    assert attempts == [1, 2, 3]
    assert queue.pull() == []
    [dead] = queue.dead_letters()
    assert (dead.message_id, dead.delivery_attempt) == (message_id, 3)
    assert dead.reason and "max_delivery_attempts" in dead.reason
    assert queue.pending() == 0
    assert queue.health()["dead_letters"] == 1


def test_dead_letter_moves_a_message_out_of_the_queue_with_its_reason(queue: SqliteTaskQueue) -> None:
    message_id = queue.publish_raw(b"not json", {"source": "user"})
    [delivery] = queue.pull()

    queue.dead_letter(delivery.message_id, "data is not a DispatchMessage")

    assert queue.pull() == [] and queue.pending() == 0
    [dead] = queue.dead_letters()
    assert (dead.message_id, dead.data, dead.attributes) == (message_id, b"not json", {"source": "user"})
    assert dead.reason == "data is not a DispatchMessage"


def test_raw_bytes_published_straight_onto_the_topic_arrive_as_they_were(queue: SqliteTaskQueue) -> None:
    body = json.dumps({"query": "fix the bug", "repo_url": "https://github.com/a/b"}).encode()
    message_id = queue.publish_raw(body)

    [delivery] = queue.pull()

    assert (delivery.message_id, delivery.data, delivery.attributes) == (message_id, body, {})


def test_four_threads_pulling_at_once_never_get_the_same_message(queue: SqliteTaskQueue) -> None:
    published = {queue.publish(message(n)) for n in range(200)}
    received: list[list[str]] = [[] for _ in range(4)]
    start = threading.Barrier(4)

    def consume(mine: list[str]) -> None:
        start.wait()
        while batch := queue.pull(max_messages=3):
            for delivery in batch:
                mine.append(delivery.message_id)
                queue.ack(delivery.message_id)

    threads = [threading.Thread(target=consume, args=(mine,)) for mine in received]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    everything = [m for mine in received for m in mine]
    assert len(everything) == len(set(everything)) == 200
    assert set(everything) == published
    assert queue.pending() == 0


CONSUMER = """
import json, sys
from pathlib import Path
from typing import TypeVar
from agentfleet.local.queue import SqliteTaskQueue
queue = SqliteTaskQueue(Path(sys.argv[1]))
got = []
while batch := queue.pull(max_messages=2):
    got += [d.message_id for d in batch]
print(json.dumps(got))
"""


def test_processes_pulling_at_once_never_get_the_same_message(queue: SqliteTaskQueue) -> None:
    published = {queue.publish(message(n)) for n in range(60)}

    procs = [
        subprocess.Popen([sys.executable, "-c", CONSUMER, str(queue.path)], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = [json.loads(proc.communicate(timeout=120)[0]) for proc in procs]

    everything = [m for got in outputs for m in got]
    assert len(everything) == len(set(everything)) == 60
    assert set(everything) == published
