"""ArtifactStore contract: the same tests for every implementation."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from agentfleet.ports import ArtifactStore


def test_bytes_written_are_read_back_and_replaced(artifact_store: ArtifactStore) -> None:
    assert artifact_store.put_bytes("tasks/t1/patch.diff", b"one") == "tasks/t1/patch.diff"
    assert artifact_store.get_bytes("tasks/t1/patch.diff") == b"one"
    artifact_store.put_bytes("tasks/t1/patch.diff", b"two")
    assert artifact_store.get_bytes("tasks/t1/patch.diff") == b"two"
    assert artifact_store.exists("tasks/t1/patch.diff")


def test_files_round_trip(artifact_store: ArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "in.bin"
    source.write_bytes(bytes(range(256)) * 100)
    artifact_store.put_file("inputs/b1/in.bin", source)
    copy = artifact_store.get_file("inputs/b1/in.bin", tmp_path / "out" / "copy.bin")
    assert copy.read_bytes() == source.read_bytes()


def test_a_missing_key_is_a_key_error(artifact_store: ArtifactStore, tmp_path: Path) -> None:
    assert not artifact_store.exists("nope")
    with pytest.raises(KeyError):
        artifact_store.get_bytes("nope")
    with pytest.raises(KeyError):
        artifact_store.get_file("nope", tmp_path / "x")


def test_a_deleted_artifact_is_gone_and_deleting_again_says_so(artifact_store: ArtifactStore) -> None:
    artifact_store.put_bytes("snapshots/ws.tar.gz", b"archive")
    assert artifact_store.delete("snapshots/ws.tar.gz") is True
    assert not artifact_store.exists("snapshots/ws.tar.gz")
    assert artifact_store.delete("snapshots/ws.tar.gz") is False


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../escape", "a/../../b"])
def test_a_key_that_escapes_is_refused(artifact_store: ArtifactStore, key: str) -> None:
    with pytest.raises(ValueError):
        artifact_store.put_bytes(key, b"x")


def test_every_artifact_has_a_uri(artifact_store: ArtifactStore) -> None:
    artifact_store.put_bytes("tasks/t2/log.jsonl", b"{}")
    assert "tasks/t2/log.jsonl" in artifact_store.uri("tasks/t2/log.jsonl")


# --- versioned writes ----------------------------------------------------------------------------


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_a_first_conditional_write_creates_the_object_and_a_second_from_nothing_stores_nothing(
    artifact_store: ArtifactStore, tmp_path: Path
) -> None:
    first = artifact_store.put_file_if("snapshots/w.tar.gz", write(tmp_path, "a", b"first"), version=None)
    assert first is not None
    assert artifact_store.put_file_if("snapshots/w.tar.gz", write(tmp_path, "b", b"second"), version=None) is None
    assert artifact_store.get_file_version("snapshots/w.tar.gz", tmp_path / "out") == first
    assert (tmp_path / "out").read_bytes() == b"first"


def test_a_write_from_the_current_version_succeeds_with_a_new_version_and_a_stale_one_is_refused(
    artifact_store: ArtifactStore, tmp_path: Path
) -> None:
    v1 = artifact_store.put_file_if("k", write(tmp_path, "a", b"one"), version=None)
    assert v1 is not None
    v2 = artifact_store.put_file_if("k", write(tmp_path, "b", b"two"), version=v1)
    assert v2 is not None and v2 != v1
    assert artifact_store.put_file_if("k", write(tmp_path, "c", b"stale"), version=v1) is None
    assert artifact_store.get_bytes("k") == b"two"
    assert artifact_store.get_file_version("k", tmp_path / "out") == v2
    v3 = artifact_store.put_file_if("k", write(tmp_path, "d", b"three"), version=v2)
    assert v3 not in (None, v1, v2) and artifact_store.get_bytes("k") == b"three"


def test_a_plain_write_changes_the_version(artifact_store: ArtifactStore, tmp_path: Path) -> None:
    v1 = artifact_store.put_file_if("k", write(tmp_path, "a", b"one"), version=None)
    artifact_store.put_bytes("k", b"overwritten")
    assert artifact_store.put_file_if("k", write(tmp_path, "b", b"two"), version=v1) is None
    assert artifact_store.get_file_version("k", tmp_path / "out") != v1


def test_writers_racing_from_one_version_leave_exactly_one_whole_winner(
    artifact_store: ArtifactStore, tmp_path: Path
) -> None:
    base = artifact_store.put_file_if("race", write(tmp_path, "base", b"base"), version=None)
    payloads = {i: bytes([i]) * (256 * 1024 + i) for i in range(8)}
    files = {i: write(tmp_path, f"w{i}", data) for i, data in payloads.items()}
    start = threading.Barrier(len(files))

    def attempt(i: int) -> tuple[int, str | None]:
        start.wait()
        return i, artifact_store.put_file_if("race", files[i], version=base)

    with ThreadPoolExecutor(len(files)) as pool:
        outcomes = dict(pool.map(attempt, files))
    winners = [i for i, version in outcomes.items() if version is not None]
    assert len(winners) == 1
    version = artifact_store.get_file_version("race", tmp_path / "stored")
    assert version == outcomes[winners[0]]
    assert (tmp_path / "stored").read_bytes() == payloads[winners[0]]


def test_reading_a_version_of_a_missing_key_is_a_key_error(artifact_store: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(KeyError):
        artifact_store.get_file_version("snapshots/none.tar.gz", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("key", ["", "/abs", "../escape"])
def test_versioned_methods_refuse_keys_that_escape(artifact_store: ArtifactStore, tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError):
        artifact_store.put_file_if(key, write(tmp_path, "a", b"x"), version=None)
    with pytest.raises(ValueError):
        artifact_store.get_file_version(key, tmp_path / "out")
