"""The cloud flow under load, beside the local flow: N tasks over M repositories, scripted model.

    .venv/bin/python bench/cloud_flow.py [--tasks 200] [--repos 20] [--clients 8] [--no-baseline]

cloud: POST /orchestrate (functions-framework) → Firestore + Pub/Sub emulators → push subscription
→ dispatch function → the Cloud Run Jobs fake (real google-cloud-run client) → the agent process
(Firestore, GCS snapshots and artifacts). Baseline, in the same run: `agentfleet serve` with the local
backends (SQLite store and queue, local processes, files), the same tasks and repositories.

Prints, per flow: tasks lost (not SUCCEEDED by the deadline), duplicate executions (more than one
execution for a task's attempt), ready→dispatch latency p50/p99 (from the moment a task could be
dispatched — stored, or the previous task of its workspace finished — to its DISPATCHED event; the
tasks of one workspace run one at a time), and the wall time; then cloud/local ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from dispatch_latency import serve  # bench/ is on sys.path when a script in it runs

from agentfleet.client import Client
from agentfleet.tasks import EventKind, TaskEvent
from agentfleet.testing.cloud_flow import CloudFlow
from agentfleet.testing.emulators import CloudEmulators, environment
from agentfleet.testing.repos import make_repo
from agentfleet.testing.scripted_llm import ScriptedLLM, reply, tool_call

SCRIPT = [reply(None, tool_call("exec", {"command": "ls"})), reply("Listed the files.")]


@dataclass
class Figures:
    name: str
    lost: int
    duplicates: int
    latencies_ms: list[float]
    wall_s: float

    def p(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")

    def line(self) -> str:
        return (
            f"{self.name:6} lost {self.lost:3}  duplicate executions {self.duplicates:3}  "
            f"ready→dispatch p50 {self.p(0.5):8.1f} ms  p99 {self.p(0.99):8.1f} ms  wall {self.wall_s:6.1f} s"
        )


def submit_all(url: str, repos: list[Path], tasks: int, clients: int) -> list[str]:
    client = Client(url, timeout_s=120)
    bodies = [{"query": f"bench task {i}", "repo_url": str(repos[i % len(repos)])} for i in range(tasks)]
    with ThreadPoolExecutor(clients) as pool:
        return [r["task_id"] for r in pool.map(client.submit, bodies)]


def wait_all(url: str, ids: list[str], timeout_s: float) -> dict[str, str]:
    client = Client(url, timeout_s=120)
    deadline = time.monotonic() + timeout_s
    wanted = set(ids)
    status: dict[str, str] = {}
    while time.monotonic() < deadline:
        status = {t.id: t.status.value for t in client.tasks(limit=1000) if t.id in wanted}
        done = sum(s in ("SUCCEEDED", "FAILED", "CANCELLED") for s in status.values())
        print(f"\r  {done}/{len(ids)} finished", end="", file=sys.stderr, flush=True)
        if done == len(ids):
            break
        time.sleep(2.0)
    print(file=sys.stderr)
    return status


def status_time(events: list[TaskEvent], status: str) -> datetime | None:
    return next((e.ts for e in events if e.kind is EventKind.STATUS and e.data.get("status") == status), None)


def latencies(url: str, ids: list[str]) -> list[float]:
    """ready→dispatch per task, in ms (see the module docstring)."""
    client = Client(url, timeout_s=120)
    rows = []
    for task_id in ids:
        task, events = client.task(task_id), client.events(task_id)
        final = status_time(events, task.status.value)
        rows.append((task.workspace_id, status_time(events, "QUEUED"), status_time(events, "DISPATCHED"), final))
    out = []
    for workspace, queued, dispatched, _ in rows:
        if queued is None or dispatched is None:
            continue
        finished_before = [
            f for w, _, d, f in rows if w == workspace and f is not None and d is not None and d < dispatched
        ]
        ready = max([queued, *finished_before])
        out.append(max(0.0, (dispatched - ready).total_seconds() * 1000))
    return out


def run_flow(
    name: str, url: str, repos: list[Path], args: argparse.Namespace, runs: Callable[[], Counter[tuple[str, str]]]
) -> Figures:
    print(f"{name}: {args.tasks} tasks over {len(repos)} repositories", file=sys.stderr)
    started = time.monotonic()
    ids = submit_all(url, repos, args.tasks, args.clients)
    status = wait_all(url, ids, args.timeout)
    wall = time.monotonic() - started
    lost = sum(1 for task_id in ids if status.get(task_id) != "SUCCEEDED")
    duplicates = sum(n - 1 for n in runs().values() if n > 1)
    return Figures(name, lost, duplicates, latencies(url, ids), wall)


def cloud(repos: list[Path], llm_url: str, work: Path, args: argparse.Namespace) -> Figures:
    with CloudEmulators(log_dir=work / "emulator-logs") as emulators:
        hosts = {k: v for k, v in emulators.env().items() if k.endswith("_EMULATOR_HOST")}
        with environment(hosts), CloudFlow(emulators, work / "flow", llm_url=llm_url) as flow:

            def runs() -> Counter[tuple[str, str]]:
                envs = flow.started_envs()
                return Counter((e.get("AGENTFLEET_TASK_ID", ""), e.get("AGENTFLEET_ATTEMPT", "")) for e in envs)

            return run_flow("cloud", flow.urls["orchestrate"], repos, args, runs)


def local(repos: list[Path], llm_url: str, work: Path, args: argparse.Namespace) -> Figures:
    home = work / "local-home"

    def runs() -> Counter[tuple[str, str]]:
        with contextlib.closing(sqlite3.connect(home / "executions.db")) as conn:
            rows = conn.execute("SELECT task_id, attempt FROM executions").fetchall()
        return Counter((task_id, str(attempt)) for task_id, attempt in rows)

    with serve(home, llm_url) as url:
        return run_flow("local", url, repos, args, runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--repos", type=int, default=20)
    parser.add_argument("--clients", type=int, default=8, help="concurrent submitters")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for all tasks of a flow")
    parser.add_argument("--no-baseline", action="store_true", help="skip the local flow")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="agentfleet-cloud-bench-"))
    try:
        repos = [
            make_repo(work / "repos" / f"repo{i:02d}", {"app.py": f"print('repo {i}')\n"}) for i in range(args.repos)
        ]
        with ScriptedLLM(SCRIPT, per_turn=True) as llm:
            figures = [cloud(repos, llm.url, work / "cloud", args)]
            if not args.no_baseline:
                figures.append(local(repos, llm.url, work / "local", args))
        for f in figures:
            print(f.line())
        if len(figures) == 2:
            c, b = figures
            print(
                f"cloud/local: p50 x{c.p(0.5) / b.p(0.5):.2f}  p99 x{c.p(0.99) / b.p(0.99):.2f}  "
                f"wall x{c.wall_s / b.wall_s:.2f}"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
