"""ArtifactStore contract: the same tests for every implementation."""

from __future__ import annotations

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


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../escape", "a/../../b"])
def test_a_key_that_escapes_is_refused(artifact_store: ArtifactStore, key: str) -> None:
    with pytest.raises(ValueError):
        artifact_store.put_bytes(key, b"x")


def test_every_artifact_has_a_uri(artifact_store: ArtifactStore) -> None:
    artifact_store.put_bytes("tasks/t2/log.jsonl", b"{}")
    assert "tasks/t2/log.jsonl" in artifact_store.uri("tasks/t2/log.jsonl")
