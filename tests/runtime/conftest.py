"""The sandbox tests' workspace: a folder with one file, owned by the sandbox user."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentfleet.runtime.sandbox import grant_workspace


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "hello.txt").write_text("hello\n")
    grant_workspace(root, 65534, 65534)
    tmp_path.chmod(0o755)  # the sandbox user may pass through to it
    return root
