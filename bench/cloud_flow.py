"""The cloud flow under load, beside the local flow: N tasks over M repositories, scripted model.

    .venv/bin/python bench/cloud_flow.py [--tasks 200] [--repos 20] [--clients 8] [--no-baseline]
        [--nice-agents N] [--push-concurrency N]

cloud: POST /orchestrate (functions-framework) → Firestore + Pub/Sub emulators → push subscription
→ dispatch function → the Cloud Run Jobs fake (real google-cloud-run client) → the agent process
(Firestore, GCS snapshots and artifacts). Baseline, in the same run: `agentfleet serve` with the local
backends (SQLite store and queue, local processes, files), the same tasks and repositories.

Prints, per flow: tasks lost (not SUCCEEDED by the deadline), duplicate executions (more than one
execution for a task's attempt), ready→dispatch latency p50/p99 (from the moment a task could be
dispatched — stored, or the previous task of its workspace finished — to its DISPATCHED event; the
tasks of one workspace run one at a time), and the wall time; the agents' start and work medians;
for the cloud flow, ready→dispatch in stages from the dispatch function's log (`queued_s`,
`dispatch_s`): handoff (ready → the publish of the message that dispatched the task), push (→ its
delivery to the function), claim (→ DISPATCHED), and the deliveries that found the workspace busy;
then cloud/local ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from dispatch_latency import TOKEN, serve  # bench/ is on sys.path when a script in it runs

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
    details: list[str]

    def p(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")

    def line(self) -> str:
        return (
            f"{self.name:6} lost {self.lost:3}  duplicate executions {self.duplicates:3}  "
            f"ready→dispatch p50 {self.p(0.5):8.1f} ms  p99 {self.p(0.99):8.1f} ms  wall {self.wall_s:6.1f} s"
        )


def submit_all(client: Client, repos: list[Path], tasks: int, clients: int) -> list[str]:
    bodies = [{"query": f"bench task {i}", "repo_url": str(repos[i % len(repos)])} for i in range(tasks)]
    with ThreadPoolExecutor(clients) as pool:
        return [r["task_id"] for r in pool.map(client.submit, bodies)]


def wait_all(client: Client, ids: list[str], timeout_s: float) -> dict[str, str]:
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


def status_time(events: list[TaskEvent], status: str, *, last: bool = False) -> datetime | None:
    """When the task first (or last) reached `status`."""
    times = [e.ts for e in events if e.kind is EventKind.STATUS and e.data.get("status") == status]
    return (times[-1] if last else times[0]) if times else None


@dataclass
class Row:
    """One task's moments (UTC): ready (it could be dispatched), DISPATCHED, RUNNING, final."""

    task_id: str
    workspace: str
    queued: datetime
    dispatched: datetime
    running: datetime | None
    final: datetime | None
    ready: datetime = datetime.min

    @property
    def latency_ms(self) -> float:
        return max(0.0, (self.dispatched - self.ready).total_seconds() * 1000)


def task_rows(client: Client, ids: list[str]) -> list[Row]:
    """Each dispatched task with its ready time (see the module docstring)."""
    rows = []
    for task_id in ids:
        task, events = client.task(task_id), client.events(task_id)
        # The last claim: one that lost a race for its workspace gave the task back (QUEUED again).
        queued, dispatched = status_time(events, "QUEUED"), status_time(events, "DISPATCHED", last=True)
        if queued is None or dispatched is None:
            continue
        final = status_time(events, task.status.value)
        rows.append(Row(task_id, task.workspace_id, queued, dispatched, status_time(events, "RUNNING"), final))
    for row in rows:
        finished_before = [
            r.final
            for r in rows
            if r.workspace == row.workspace and r.final is not None and r.dispatched < row.dispatched
        ]
        row.ready = max([row.queued, *finished_before])
    return rows


@dataclass
class Delivery:
    """One line of the dispatch function's log: a delivery of a task's message and what it did."""

    task_id: str
    action: str
    published: datetime
    began: datetime
    ended: datetime


DISPATCH_LINE = re.compile(r"dispatch (\S+) attempt \d+: (\w+)")


def deliveries(log: Path) -> list[Delivery]:
    out = []
    for line in log.read_text().splitlines() if log.exists() else []:
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            found = DISPATCH_LINE.match(entry.get("message", ""))
            if found is None or entry.get("queued_s") is None or entry.get("dispatch_s") is None:
                continue
            ended = datetime.fromisoformat(entry["time"])
            began = ended - timedelta(seconds=entry["dispatch_s"])
            published = began - timedelta(seconds=entry["queued_s"])
            out.append(Delivery(found[1], found[2], published, began, ended))
    return out


def stages(rows: list[Row], log: Path) -> dict[str, list[float]]:
    """Per dispatched task, in ms: ready → the publish of the message that dispatched it (the
    handoff), → its delivery to the dispatch function (Pub/Sub push), → the DISPATCHED event (the
    function's checks and claim); and the deliveries that found the workspace busy first."""
    by_task: dict[str, list[Delivery]] = {}
    for d in deliveries(log):
        by_task.setdefault(d.task_id, []).append(d)
    out: dict[str, list[float]] = {k: [] for k in ("handoff", "push", "claim", "busy deliveries", "total")}
    for row in rows:
        launched = [d for d in by_task.get(row.task_id, []) if d.action == "launched"]
        if not launched:
            continue
        d = launched[0]
        published = max(d.published, row.ready)
        out["handoff"].append(max(0.0, (d.published - row.ready).total_seconds() * 1000))
        out["push"].append(max(0.0, (d.began - published).total_seconds() * 1000))
        out["claim"].append(max(0.0, (row.dispatched - d.began).total_seconds() * 1000))
        out["busy deliveries"].append(sum(x.action == "waiting" for x in by_task[row.task_id]))
        out["total"].append(row.latency_ms)
    return out


def breakdown(found: dict[str, list[float]]) -> list[str]:
    """The stages' p50/p99, then their means over the slowest 5% of tasks (the tail)."""
    if not found["total"]:
        return []
    cut = sorted(found["total"])[int(0.95 * (len(found["total"]) - 1))]
    tail = [i for i, t in enumerate(found["total"]) if t >= cut]
    lines = []
    for name, values in found.items():
        ordered = sorted(values)
        mean_tail = sum(values[i] for i in tail) / len(tail)
        lines.append(
            f"  {name:16} p50 {ordered[len(ordered) // 2]:8.1f}  p99 {ordered[round(0.99 * (len(ordered) - 1))]:8.1f}"
            f"  mean over the slowest 5% ({len(tail)} tasks) {mean_tail:8.1f}"
        )
    return lines


def run_flow(
    name: str,
    url: str,
    repos: list[Path],
    args: argparse.Namespace,
    runs: Callable[[], Counter[tuple[str, str]]],
    dispatch_log: Path | None = None,
    token: str | None = None,
) -> Figures:
    print(f"{name}: {args.tasks} tasks over {len(repos)} repositories", file=sys.stderr)
    client = Client(url, token, timeout_s=120)
    started = time.monotonic()
    ids = submit_all(client, repos, args.tasks, args.clients)
    status = wait_all(client, ids, args.timeout)
    wall = time.monotonic() - started
    lost = sum(1 for task_id in ids if status.get(task_id) != "SUCCEEDED")
    duplicates = sum(n - 1 for n in runs().values() if n > 1)
    rows = task_rows(client, ids)
    starting = sorted((r.running - r.dispatched).total_seconds() for r in rows if r.running)
    working = sorted((r.final - r.running).total_seconds() for r in rows if r.running and r.final)
    details = [
        f"  agent: DISPATCHED→RUNNING median {starting[len(starting) // 2] if starting else float('nan'):.2f} s, "
        f"RUNNING→end median {working[len(working) // 2] if working else float('nan'):.2f} s"
    ]
    if dispatch_log is not None:
        details += ["  ready→dispatch stages, ms:", *breakdown(stages(rows, dispatch_log))]
    return Figures(name, lost, duplicates, [r.latency_ms for r in rows], wall, details)


def cloud(repos: list[Path], llm_url: str, work: Path, args: argparse.Namespace) -> Figures:
    with CloudEmulators(log_dir=work / "emulator-logs") as emulators:
        hosts = {k: v for k, v in emulators.env().items() if k.endswith("_EMULATOR_HOST")}
        with (
            environment(hosts),
            CloudFlow(
                emulators,
                work / "flow",
                llm_url=llm_url,
                agent_nice=args.nice_agents,
                push_concurrency=args.push_concurrency,
            ) as flow,
        ):

            def runs() -> Counter[tuple[str, str]]:
                envs = flow.started_envs()
                return Counter((e.get("AGENTFLEET_TASK_ID", ""), e.get("AGENTFLEET_ATTEMPT", "")) for e in envs)

            return run_flow("cloud", flow.urls["orchestrate"], repos, args, runs, flow.workdir / "dispatch.log")


def local(repos: list[Path], llm_url: str, work: Path, args: argparse.Namespace) -> Figures:
    home = work / "local-home"

    def runs() -> Counter[tuple[str, str]]:
        with contextlib.closing(sqlite3.connect(home / "executions.db")) as conn:
            rows = conn.execute("SELECT task_id, attempt FROM executions").fetchall()
        return Counter((task_id, str(attempt)) for task_id, attempt in rows)

    with serve(home, llm_url) as url:
        return run_flow("local", url, repos, args, runs, token=TOKEN)


def ratio(a: float, b: float) -> str:
    return f"x{a / b:.2f}" if b > 0 else "x-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--repos", type=int, default=20)
    parser.add_argument("--clients", type=int, default=8, help="concurrent submitters")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for all tasks of a flow")
    parser.add_argument("--no-baseline", action="store_true", help="skip the local flow")
    parser.add_argument(
        "--nice-agents",
        type=int,
        default=0,
        help="the cloud agents' niceness: >0 leaves the functions and emulators the CPU first, as separate "
        "containers would (what of the tail is 20 agents competing for this machine's cores)",
    )
    parser.add_argument(
        "--push-concurrency",
        type=int,
        default=None,
        help="deliver to the dispatch function this many at a time (the deployed concurrency is 20) instead "
        "of through the emulator's push subscription, which delivers two at a time",
    )
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
            print("\n".join(f.details))
        if len(figures) == 2:
            c, b = figures
            print(
                f"cloud/local: p50 {ratio(c.p(0.5), b.p(0.5))}  p99 {ratio(c.p(0.99), b.p(0.99))}  "
                f"wall {ratio(c.wall_s, b.wall_s)}"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
