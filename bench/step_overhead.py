"""Per-step overhead of the agent: a 20-step scripted run on a warm workspace, beside the same
20 commands run with plain `subprocess.run` and with bare `bwrap`, in one run.

    .venv/bin/python bench/step_overhead.py [--steps 20]

Prints wall time per step for each way and the ratios. The agent figure includes everything a
step costs: the model round trip (scripted, on loopback), the MCP call to the workspace
server, the sandbox, and event recording.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from agentfleet.agent.work import work_task
from agentfleet.local.artifacts import LocalArtifactStore
from agentfleet.runtime.sandbox import Sandbox, SandboxConfig
from agentfleet.settings import Settings
from agentfleet.tasks import Task, TaskRequest, TaskStatus
from agentfleet.testing.repos import make_repo
from agentfleet.testing.scripted_llm import ScriptedLLM, reply, tool_call


def commands(steps: int) -> list[str]:
    return [f"grep -c VALUE mod{i % 50}.py" for i in range(steps)]


def agent_run(repo: Path, settings: Settings, steps: int) -> float:
    script = [reply(None, tool_call("exec", {"command": c})) for c in commands(steps)] + [reply("done")]
    with ScriptedLLM(script) as llm:
        configured = settings.model_copy(update={"gpt_oss_url": llm.url})
        task = Task(request=TaskRequest(query="bench", repo_url=str(repo), options={"max_steps": steps + 1}))
        final = work_task(task, configured, LocalArtifactStore(settings.artifacts_dir))
    assert final.status is TaskStatus.SUCCEEDED, final.error
    assert final.usage.tool_calls == steps
    return final.usage.wall_s  # the loop's own wall time: model turns + tools


def timed(fn, repeat: int = 1) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    for _ in range(repeat):
        fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="agentfleet-bench-"))
    try:
        repo = make_repo(tmp / "repo", {f"mod{i}.py": f"VALUE_{i} = {i}\n" for i in range(50)})
        settings = Settings(home=tmp / "home", _env_file=None)  # type: ignore[call-arg]
        agent_run(repo, settings, 2)  # warm the workspace (mirror, checkout)
        workspace = settings.workspaces_dir / Task(request=TaskRequest(query="x", repo_url=str(repo))).workspace_id
        sandbox = Sandbox(workspace, SandboxConfig.from_settings(settings, network=False))
        cmds = commands(args.steps)
        plain = timed(lambda: [subprocess.run(["bash", "-c", c], cwd=workspace, capture_output=True) for c in cmds])
        bwrap = timed(lambda: [sandbox.run(c) for c in cmds])
        agent = agent_run(repo, settings, args.steps)
        n = args.steps
        print(f"{n} steps, per step:")
        print(f"  subprocess.run   {plain / n * 1000:8.1f} ms   1.00x")
        print(f"  bare bwrap       {bwrap / n * 1000:8.1f} ms   {bwrap / plain:6.2f}x")
        print(f"  agent step       {agent / n * 1000:8.1f} ms   {agent / plain:6.2f}x  ({agent / bwrap:.2f}x bwrap)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
