"""Agent start: from the dispatch of a task (its DISPATCHED event, written just before the launch)
to the agent's first model request, on a warm workspace, through a live local `agentfleet serve`,
beside a baseline measured in the same run.

    .venv/bin/python bench/dispatch_latency.py [--tasks 20] [--rounds 3]

Two servers run side by side, each on its own home, fed the same tasks in interleaved rounds:
- `warm`: the default, each agent forked from the warm launcher (local/warm.py), which imported the
  agent once;
- `cold`: AGENTFLEET_AGENT_PREFORK=false, a fresh interpreter per agent: what a Cloud Run Job's
  container pays at its start (its image start-up besides).
The baseline: a fresh interpreter that sends one request to the same scripted model
(`python -c` with urllib), from its spawn to the request's arrival: the least any freshly started
process pays to ask the model something.

Tasks are submitted one at a time (each waits for the previous to end), so the figure is the path
itself, not queueing behind other tasks. Also printed: publish → dispatch (the HTTP intake, the
queue and the dispatcher's poll) and dispatch → RUNNING (the agent's claim of its attempt).
Prints p50 and p99 in ms per round (min/median/max over rounds) and the ratios to the baseline.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
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
from agentfleet.testing.polling import stop_process
from agentfleet.testing.repos import make_repo
from agentfleet.testing.scripted_llm import ScriptedLLM, look, reply

TOKEN = "bench-token"
LABELS = {"warm": "agent, warm launcher", "cold": "agent, fresh interpreter", "baseline": "baseline: python + 1 POST"}
BASELINE = """
import json, sys, urllib.request
body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
request = urllib.request.Request(sys.argv[1] + "/chat/completions", body, {"Content-Type": "application/json"})
urllib.request.urlopen(request).read()
"""


class Arrivals:
    """The scripted model, recording when each request arrived (wall clock, as the events are)."""

    def __init__(self) -> None:
        self.llm = ScriptedLLM([look(), reply("It prints hi.")], per_turn=True)
        self.times: list[float] = []
        answer = self.llm.answer

        def timed(body: dict, headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
            self.times.append(time.time())
            return answer(body, headers)

        self.llm.answer = timed  # type: ignore[method-assign]

    def after(self, instant: float) -> float:
        return next(t for t in self.times if t >= instant)


@contextlib.contextmanager
def serve(home: Path, llm_url: str, prefork: bool = True) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "AGENTFLEET_HOME": str(home),
        "GPT_OSS_URL": llm_url,
        "AGENTFLEET_API_TOKEN": TOKEN,
        "AGENTFLEET_AGENT_PREFORK": "true" if prefork else "false",
        "AGENTFLEET_MEMORY": "off",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentfleet.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        yield url
    finally:
        stop_process(proc)


def one(client: Client, repo: Path, arrivals: Arrivals) -> tuple[float, float, float]:
    """(publish → dispatch, dispatch → RUNNING, dispatch → first model request), in seconds."""
    published = datetime.now().astimezone()
    task_id = client.submit({"query": "bench", "repo_url": str(repo)})["task_id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if client.task(task_id).status.final:
            break
        time.sleep(0.02)
    else:
        raise TimeoutError(f"task {task_id} did not finish")
    events = client.events(task_id)
    status = {e.data.get("status"): e.ts for e in events if e.kind.value == "status"}
    dispatched, running = status["DISPATCHED"], status["RUNNING"]
    first = arrivals.after(dispatched.timestamp())
    return (
        (dispatched - published).total_seconds(),
        (running - dispatched).total_seconds(),
        first - dispatched.timestamp(),
    )


def baseline(llm_url: str, arrivals: Arrivals) -> float:
    started = time.time()
    subprocess.run([sys.executable, "-c", BASELINE, llm_url], check=True, capture_output=True)
    return arrivals.after(started) - started


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def spread(values: list[float]) -> str:
    return f"{min(values):7.1f} {statistics.median(values):7.1f} {max(values):7.1f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=20, help="tasks per server per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="agentfleet-bench-"))
    arrivals = Arrivals()
    ways = ("warm", "cold")
    # per way, per round: lists of (publish→dispatch, dispatch→running, dispatch→first request) in ms
    rows: dict[str, list[list[tuple[float, float, float]]]] = {w: [] for w in (*ways, "baseline")}
    try:
        repo = make_repo(tmp / "repo", {"app.py": "print('hi')\n"})
        with (
            arrivals.llm as llm,
            serve(tmp / "warm", llm.url, prefork=True) as warm_url,
            serve(tmp / "cold", llm.url, prefork=False) as cold_url,
        ):
            clients = {"warm": Client(warm_url, token=TOKEN), "cold": Client(cold_url, token=TOKEN)}
            for way in ways:
                one(clients[way], repo, arrivals)  # warm the workspace's mirror and checkout
            for _ in range(args.rounds):
                for way in ways:
                    rows[way].append([])
                rows["baseline"].append([])
                for _ in range(args.tasks):
                    for way in ways:
                        rows[way][-1].append(tuple(v * 1000 for v in one(clients[way], repo, arrivals)))  # type: ignore[arg-type]
                    rows["baseline"][-1].append((0.0, 0.0, baseline(llm.url, arrivals) * 1000))
        base50 = [statistics.median(r[2] for r in rnd) for rnd in rows["baseline"]]
        print(f"dispatch → first model request, {args.tasks} tasks × {args.rounds} rounds")
        print("(ms; min median max over rounds)")
        print(f"{'':28} {'p50':>23} {'p99':>23}   p50/baseline")
        for way in (*ways, "baseline"):
            p50 = [statistics.median(r[2] for r in rnd) for rnd in rows[way]]
            p99 = [pct([r[2] for r in rnd], 0.99) for rnd in rows[way]]
            ratios = [a / b for a, b in zip(p50, base50, strict=True)]
            ratio = f"x{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
            print(f"{LABELS[way]:28} {spread(p50)} {spread(p99)}   {ratio}")
        for way in ways:
            before = [statistics.median(r[0] for r in rnd) for rnd in rows[way]]
            claim = [statistics.median(r[1] for r in rnd) for rnd in rows[way]]
            print(f"  {way}: publish → dispatch p50 {spread(before)}   dispatch → RUNNING p50 {spread(claim)}")
        print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
