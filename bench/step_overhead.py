"""What one tool step costs: the same 20-command trajectory (`grep -c VALUE modN.py`) run every
way, in interleaved rounds, beside its baselines from the same run.

    .venv/bin/python bench/step_overhead.py [--steps 20] [--rounds 3] [--no-mini]

Rows (ms per step, min/median/max over the rounds):
- subprocess.run: `bash -c CMD`, nothing else;
- minimal bwrap: `bwrap --ro-bind / / --dev /dev --proc /proc --unshare-pid --die-with-parent
  bash -c CMD`, the baseline of the target;
- our sandbox, a bwrap per command (`Sandbox.run`: checks and setup) and in a session
  (`SandboxSession.run`: the agent's commands);
- mini-swe-agent 2.4.6 (its own venv, `.venv-bench`; `make bench-venv`): its DeterministicModel,
  and its LitellmModel over HTTP to the scripted server; each runs the trajectory then its
  submit command, timed inside its process after a warm-up run;
- our agent (the loop, the call to the workspace server in-process, the sandbox session) with
  an in-process scripted Model, and with the real model client over HTTP to the same scripted
  server (streamed, as by default); timed after a warm-up call. The workspace server's tools are
  called through the server's own API; "agent, scripted, session" calls them through an MCP
  client session instead (`ToolBox(direct=False)`), what the direct call saves;
- `work_task` end to end over HTTP (whatever workspace server the runner starts): its loop's wall time.

Then the ratios: agent / minimal bwrap, agent (scripted) / mini (deterministic), agent (HTTP) /
mini (HTTP), each as min/median/max of the per-round ratios. Each scripted server runs in a process
of its own (`python -m agentfleet.testing.scripted_llm`), for mini-swe-agent and for us alike: in the
bench's process it would share our agent's interpreter lock, not mini-swe-agent's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from openai import AsyncOpenAI

from agentfleet.agent.loop import Agent, Limits
from agentfleet.agent.models import NativeToolsModel, Reply
from agentfleet.agent.profiles import PROFILES
from agentfleet.agent.tools import ToolBox
from agentfleet.agent.work import work_task
from agentfleet.local.artifacts import LocalArtifactStore
from agentfleet.mcp_servers.workspace import Workspace, build_server
from agentfleet.net import free_port
from agentfleet.runtime.sandbox import Sandbox, SandboxConfig
from agentfleet.settings import Settings
from agentfleet.tasks import Task, TaskRequest, TaskStatus, Usage
from agentfleet.testing.polling import stop_process, wait_for
from agentfleet.testing.repos import make_repo
from agentfleet.testing.scripted_llm import reply, tool_call
from agentfleet.testing.scripted_model import ScriptedModel, call

ROOT = Path(__file__).resolve().parents[1]
MINI_PYTHON = ROOT / ".venv-bench" / "bin" / "python"
MINI_DRIVER = ROOT / "bench" / "mini_driver.py"
FINAL = "Every module defines VALUE once."
MINI_SUBMIT = "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"
MINIMAL_BWRAP = [
    "bwrap",
    "--ro-bind",
    "/",
    "/",
    "--dev",
    "/dev",
    "--proc",
    "/proc",
    "--unshare-pid",
    "--die-with-parent",
]


@contextlib.contextmanager
def served(script: list[dict[str, Any]], where: Path) -> Iterator[str]:
    """A scripted server in a process of its own (per turn: any number of runs); its base URL."""
    where.write_text(json.dumps(script))
    port = free_port()
    argv = [sys.executable, "-m", "agentfleet.testing.scripted_llm", "--script", str(where), "--port", str(port)]
    proc = subprocess.Popen([*argv, "--per-turn"], stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/v1"
        wait_for(lambda: _answers(url + "/models"), timeout_s=60, what="the scripted server")
        yield url
    finally:
        stop_process(proc)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def commands(steps: int) -> list[str]:
    return [f"grep -c VALUE mod{i % 50}.py" for i in range(steps)]


def each(run: Callable[[str], object], cmds: list[str]) -> float:
    started = time.perf_counter()
    for command in cmds:
        run(command)
    return time.perf_counter() - started


def agent_loop(
    workspace: Path, config: SandboxConfig, cmds: list[str], llm_url: str | None, direct: bool = True
) -> float:
    """Seconds of `Agent.run` over the trajectory: a scripted Model in-process (llm_url None), or
    the real client over HTTP; the workspace server in-process, its sandbox session warm, its tools
    called through the server's own API (`direct`) or through an MCP client session."""
    profile = PROFILES["native"]

    async def go() -> float:
        usage = Usage()
        box = Workspace(workspace, Sandbox(workspace, config), (config.uid, config.gid))
        try:
            async with ToolBox(profile, direct=direct) as tools:
                await tools.connect("workspace", build_server(box))
                await tools.call("exec", {"command": "true"})  # the session's one bwrap starts here
                if llm_url is None:
                    replies: list[Reply | str] = [Reply("", [call("exec", command=c)]) for c in cmds]
                    model: object = ScriptedModel([*replies, FINAL], usage)
                    return await timed_run(model, tools, usage, len(cmds))
                async with AsyncOpenAI(base_url=llm_url, api_key="x", max_retries=0) as llm:
                    model = NativeToolsModel(llm, "scripted", profile, tools, usage, lambda k, d: None)
                    return await timed_run(model, tools, usage, len(cmds))
        finally:
            box.close()

    return asyncio.run(go())


async def timed_run(model: object, tools: ToolBox, usage: Usage, steps: int) -> float:
    agent = Agent(model, tools, Limits(max_steps=steps + 2), lambda k, d: None, usage)  # type: ignore[arg-type]
    started = time.perf_counter()
    outcome = await agent.run("Count VALUE in each module.")
    wall = time.perf_counter() - started
    assert outcome.error is None and outcome.usage.tool_calls == steps, outcome
    return wall


def work_run(repo: Path, settings: Settings, llm_url: str, steps: int) -> float:
    configured = settings.model_copy(update={"gpt_oss_url": llm_url})
    task = Task(request=TaskRequest(query="bench", repo_url=str(repo), options={"max_steps": steps + 1}))
    final = work_task(task, configured, LocalArtifactStore(settings.artifacts_dir))
    assert final.status is TaskStatus.SUCCEEDED, final.error
    assert final.usage.tool_calls == steps
    return final.usage.wall_s  # the loop's own wall time: model turns + tools


def mini_run(workspace: Path, cmds: list[str], model: str, url: str | None, home: Path) -> float:
    argv = [str(MINI_PYTHON), str(MINI_DRIVER), "--cwd", str(workspace), "--model", model]
    env = {**os.environ, "MSWEA_GLOBAL_CONFIG_DIR": str(home), "MSWEA_SILENT_STARTUP": "1"}
    proc = subprocess.run(
        [*argv, *(["--url", url] if url else []), *cmds], capture_output=True, text=True, timeout=600, env=env
    )
    if proc.returncode != 0:
        raise SystemExit(f"mini-swe-agent driver failed:\n{proc.stdout}\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["steps"] == len(cmds) + 1, result  # the trajectory and its submit command
    return float(result["wall_s"])


def spread(values: list[float], scale: float = 1.0) -> str:
    low, mid, high = min(values) * scale, statistics.median(values) * scale, max(values) * scale
    return f"{low:8.2f} {mid:8.2f} {high:8.2f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-mini", action="store_true", help="skip mini-swe-agent (no .venv-bench)")
    args = parser.parse_args()
    with_mini = not args.no_mini
    if with_mini and not MINI_PYTHON.exists():
        raise SystemExit(f"{MINI_PYTHON} is missing: run `make bench-venv` (or pass --no-mini)")
    tmp = Path(tempfile.mkdtemp(prefix="agentfleet-bench-"))
    tmp.chmod(0o755)
    try:
        repo = make_repo(tmp / "repo", {f"mod{i}.py": f"VALUE_{i} = {i}\n" for i in range(50)})
        settings = Settings(home=tmp / "home", _env_file=None)  # type: ignore[call-arg]
        n = args.steps
        cmds = commands(n)
        ours = [reply(None, tool_call("exec", {"command": c})) for c in cmds] + [reply(FINAL)]
        theirs = [reply(None, tool_call("bash", {"command": c})) for c in [*cmds, MINI_SUBMIT]]
        with served(ours, tmp / "ours.json") as our_url, served(theirs, tmp / "theirs.json") as their_url:
            work_run(repo, settings, our_url, n)  # warm the workspace (mirror, checkout)
            workspace = settings.workspaces_dir / Task(request=TaskRequest(query="x", repo_url=str(repo))).workspace_id
            config = SandboxConfig.from_settings(settings, network=False)
            sandbox = Sandbox(workspace, config)
            session = sandbox.session()
            session.run("true")
            ways: dict[str, Callable[[], float]] = {
                "subprocess.run": lambda: each(
                    lambda c: subprocess.run(["bash", "-c", c], cwd=workspace, capture_output=True), cmds
                ),
                "minimal bwrap": lambda: each(
                    lambda c: subprocess.run([*MINIMAL_BWRAP, "bash", "-c", c], cwd=workspace, capture_output=True),
                    cmds,
                ),
                "sandbox per command": lambda: each(sandbox.run, cmds),
                "sandbox session": lambda: each(session.run, cmds),
                "agent, scripted model": lambda: agent_loop(workspace, config, cmds, None),
                "agent, scripted, session": lambda: agent_loop(workspace, config, cmds, None, direct=False),
                "agent, HTTP model": lambda: agent_loop(workspace, config, cmds, our_url),
                "work_task, HTTP model": lambda: work_run(repo, settings, our_url, n),
            }
            if with_mini:
                mini_home = tmp / "mini-config"
                ways["mini, deterministic"] = lambda: mini_run(workspace, cmds, "deterministic", None, mini_home)
                ways["mini, litellm HTTP"] = lambda: mini_run(workspace, cmds, "litellm", their_url, mini_home)
            times: dict[str, list[float]] = {name: [] for name in ways}
            for _ in range(args.rounds):
                for name, way in ways.items():
                    times[name].append(way() / n)
            session.close()
        print(f"{n} steps, {args.rounds} interleaved rounds; ms per step: min median max")
        for name, values in times.items():
            print(f"  {name:24} {spread(values, 1000)}")

        def ratio(a: str, b: str) -> None:
            if a in times and b in times:
                values = [x / y for x, y in zip(times[a], times[b], strict=True)]
                print(f"  {a + ' / ' + b:52} {spread(values)}")

        print("ratios (per round): min median max")
        ratio("agent, scripted model", "minimal bwrap")
        ratio("agent, scripted model", "agent, scripted, session")
        ratio("agent, HTTP model", "minimal bwrap")
        ratio("sandbox session", "minimal bwrap")
        ratio("sandbox per command", "minimal bwrap")
        ratio("agent, scripted model", "mini, deterministic")
        ratio("agent, HTTP model", "mini, litellm HTTP")
        ratio("work_task, HTTP model", "mini, litellm HTTP")
        print(f"load: {' '.join(f'{v:.2f}' for v in os.getloadavg())} (1, 5, 15 min); python {sys.version.split()[0]}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
