"""Dispatch latency: from `POST /orchestrate` (which publishes) to the agent process's first
event (its RUNNING status), over N tasks, against a live local `agentfleet serve`.

    .venv/bin/python bench/dispatch_latency.py [--tasks 100]

Tasks are submitted one at a time (each waits for the previous to end), so the figure is the
path itself — HTTP intake, queue, dispatcher poll, launch, interpreter start, claiming the
attempt — not queueing behind other tasks. Prints p50, p99 and the mean, in milliseconds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx

from agentfleet.client import Client
from agentfleet.net import free_port
from agentfleet.testing.repos import make_repo
from agentfleet.testing.scripted_llm import ScriptedLLM

TOKEN = "bench-token"


@contextlib.contextmanager
def serve(home: Path, llm_url: str) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "AGENTFLEET_HOME": str(home), "GPT_OSS_URL": llm_url, "AGENTFLEET_API_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentfleet.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def one(client: Client, repo: Path) -> float:
    started = datetime.now().astimezone()
    task_id = client.submit({"query": "bench", "repo_url": str(repo)})["task_id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        running = [e for e in client.events(task_id) if e.data.get("status") == "RUNNING"]
        if running and client.task(task_id).status.final:
            return (running[0].ts - started).total_seconds()
        time.sleep(0.05)
    raise TimeoutError(f"task {task_id} did not finish")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=100)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="agentfleet-bench-"))
    try:
        repo = make_repo(tmp / "repo", {"app.py": "print('hi')\n"})
        with ScriptedLLM([{"content": "done"}], repeat_last=True) as llm, serve(tmp / "home", llm.url) as url:
            client = Client(url, token=TOKEN)
            one(client, repo)  # warm the workspace's mirror and checkout
            latencies = sorted(one(client, repo) * 1000 for _ in range(args.tasks))
        p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
        print(f"publish → agent's first event over {args.tasks} tasks:")
        p50, mean = statistics.median(latencies), statistics.fmean(latencies)
        print(f"  p50 {p50:7.1f} ms   p99 {p99:7.1f} ms   mean {mean:7.1f} ms")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
