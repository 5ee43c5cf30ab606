"""Idle CPU of `agentfleet serve`: the share of one core an idle server uses (its dispatcher and
reaper loops, its HTTP server), beside a bare waitress WSGI app started the same way, measured in
interleaved rounds. Goal: under 1% of a core, empty or with a few dozen tasks in the store.

    python bench/idle_cpu.py [--seconds 10] [--rounds 3] [--tasks 40]

CPU time is read from /proc/<pid>/stat (user + system) over the window, after a warm-up.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from intake import free_port, process

from agentfleet.local.store import SqliteTaskStore
from agentfleet.tasks import Task, TaskRequest, TaskStatus

TICKS = os.sysconf("SC_CLK_TCK")
WARMUP_S = 2.0
BARE = (
    "import sys, waitress\n"
    "def app(environ, start):\n"
    "    start('200 OK', [('Content-Type', 'application/json')])\n"
    "    return [b'{}']\n"
    "waitress.serve(app, host='127.0.0.1', port=int(sys.argv[1]), threads=32, _quiet=True)\n"
)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def share_of_a_core(argv: list[str], port: int, env: dict[str, str], seconds: float, log: Path) -> float:
    with process(argv, f"http://127.0.0.1:{port}", log, env) as pid:
        time.sleep(WARMUP_S)  # start-up work is not idle work
        before, started = cpu_seconds(pid), time.monotonic()
        time.sleep(seconds)  # the window measured: the server is left alone
        return (cpu_seconds(pid) - before) / (time.monotonic() - started)


def seed(home: Path, count: int) -> None:
    """`count` finished tasks in the store, as a server that has worked a while has."""
    store = SqliteTaskStore(home / "tasks.db")
    for i in range(count):
        task, _ = store.create(Task(request=TaskRequest(query=f"t{i}", repo_url=f"https://example.com/r{i % 5}")))
        store.transition(task.id, [TaskStatus.QUEUED], TaskStatus.SUCCEEDED)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=40)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="agentfleet-idle-"))
    try:
        empty, busy = tmp / "empty", tmp / "tasks"
        busy.mkdir()
        seed(busy, args.tasks)
        base = {**os.environ, "GPT_OSS_URL": "http://127.0.0.1:9/v1", "AGENTFLEET_API_TOKEN": "bench-token"}
        targets = {
            "bare waitress app": lambda port: ([sys.executable, "-c", BARE, str(port)], base),
            "agentfleet serve, empty": lambda port: (serve(port), {**base, "AGENTFLEET_HOME": str(empty)}),
            f"agentfleet serve, {args.tasks} tasks": lambda port: (serve(port), {**base, "AGENTFLEET_HOME": str(busy)}),
        }
        figures: dict[str, list[float]] = {name: [] for name in targets}
        for _ in range(args.rounds):  # interleaved: each round measures every target once
            for name, make in targets.items():
                port = free_port()
                argv, env = make(port)
                figures[name].append(share_of_a_core(argv, port, env, args.seconds, tmp / "server.log"))
        report(figures, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def serve(port: int) -> list[str]:
    return [sys.executable, "-m", "agentfleet.cli", "serve", "--port", str(port)]


def report(figures: dict[str, list[float]], args: argparse.Namespace) -> None:
    print(f"idle CPU, share of one core over {args.seconds:g} s windows, {args.rounds} interleaved rounds:")
    print(f"  {'target':<28}{'min':>8}{'median':>9}{'max':>8}")
    for name, values in figures.items():
        low, mid, high = min(values), statistics.median(values), max(values)
        print(f"  {name:<28}{low:8.2%}{mid:9.2%}{high:8.2%}")
    bare = statistics.median(figures["bare waitress app"]) or 1 / TICKS / args.seconds
    for name, values in list(figures.items())[1:]:
        print(f"  {name} / bare waitress app: x{statistics.median(values) / bare:.1f}")


if __name__ == "__main__":
    main()
