"""Intake: `POST /orchestrate` requests/s, p50 and p99 of `agentfleet serve` and of the `orchestrate`
Cloud Function, against a bare functions-framework endpoint that answers 202, interleaved in one run.

    .venv/bin/python bench/intake.py [--clients 8] [--requests 300] [--rounds 3] [--no-cloud]

The targets, all started once and then measured in turn, round after round (the order rotating,
so no target always runs first or last), each round the same load: `--clients` threads, each
with its own keep-alive httpx.Client, sending `--requests` POSTs in all, every one the same small
JSON task (after a warm-up of WARMUP unmeasured requests per target):

- `functions-framework 202`, THE baseline: the `functions-framework` CLI serving an
  `@functions_framework.http` function that returns an empty 202 (gunicorn, one gthread worker),
  the platform's own server and nothing else. Each ratio printed is a target's req/s over this
  baseline's, round by round (min/median/max of the per-round ratios).
- `werkzeug 202`, for context: werkzeug's threaded `make_server` around a 202, the WSGI shape
  without gunicorn.
- `agentfleet serve`: a live local server (waitress; SQLite task store and queue).
- `orchestrate function`: functions/main.py's `orchestrate` on the same functions-framework CLI,
  with the gcp backends against the Firestore and Pub/Sub emulators (agentfleet.testing.emulators;
  skipped, saying why, where they cannot run, or with --no-cloud). Its topic has no subscription:
  what is measured ends at the publish, as the function's own work does.

Beside the figures: the CPU time each server's processes spent per request (user + system, from
/proc; it says where the time goes better than req/s on a busy machine, the load generator's own
CPU left out), and the emulators' apart.

Every request carries the bearer token, which the baselines ignore and AgentFleet checks. Every
task names the same repository (a local git repository made here), so the local dispatcher
launches at most one agent and the other tasks wait QUEUED. GPT_OSS_URL points at a loopback
socket that accepts connections and never answers: that agent waits on its first model call
instead of failing and letting the next one start, so the figures are about intake. Everything
runs on loopback and is stopped at the end: the servers, the emulators, the model socket and the
agent.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from agentfleet.local.jobs import LocalJobRunner
from agentfleet.net import free_port
from agentfleet.settings import Settings
from agentfleet.testing.repos import make_repo

WARMUP = 16
BASELINE = "functions-framework 202"
FUNCTIONS_SOURCE = Path(__file__).resolve().parents[1] / "functions" / "main.py"
READY_PATH = "/openapi.json"
"""What a server answers once it is up (the baselines answer anything): public, touches no backend."""
Body = Callable[[int], dict[str, str]]
BASELINE_APP = """\"\"\"Answer every request with an empty 202.\"\"\"
import sys

import functions_framework
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response


@functions_framework.http
def ok(request):
    return ("", 202)


if __name__ == "__main__":
    app = Request.application(lambda request: Response("", 202))
    make_server("127.0.0.1", int(sys.argv[1]), app, threaded=True).serve_forever()
"""
APP = {"app.py": "print('hi')\n"}
TOKEN = "bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
"""Sent to every target alike; the baselines ignore it, AgentFleet requires it."""


@dataclass
class Round:
    latencies_s: list[float]
    wall_s: float
    errors: int
    server_cpu_s: float
    backend_cpu_s: float

    @property
    def rps(self) -> float:
        return len(self.latencies_s) / self.wall_s


@dataclass
class Target:
    name: str
    url: str
    pids: list[int]
    """The server's processes (with their children): whose CPU time counts as the server's."""
    backend_pids: list[int] = field(default_factory=list)
    """The processes its backends run in (the emulators), counted apart."""
    rounds: list[Round] = field(default_factory=list)

    def cpu_ms(self, backend: bool = False) -> float:
        """CPU time per request, over all rounds."""
        cpu = sum(r.backend_cpu_s if backend else r.server_cpu_s for r in self.rounds)
        return 1000 * cpu / sum(len(r.latencies_s) for r in self.rounds)

    def quantile_ms(self, q: float) -> float:
        ordered = sorted(latency for r in self.rounds for latency in r.latencies_s)
        return 1000 * ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    """min/median/max."""
    return "/".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of the processes and their descendants in the same session (Linux
    /proc; 0 elsewhere). The agents `agentfleet serve` starts run in sessions of their own: not counted."""
    todo: list[tuple[int, str | None]] = [(pid, None) for pid in pids]
    tick, total = os.sysconf("SC_CLK_TCK"), 0.0
    while todo:
        pid, session = todo.pop()
        proc = Path(f"/proc/{pid}")
        with contextlib.suppress(OSError, ValueError):
            stat = (proc / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()  # field 3 onward: session is 6, utime 14, stime 15
            if session is not None and fields[3] != session:
                continue
            total += (int(fields[11]) + int(fields[12])) / tick
            for thread in (proc / "task").iterdir():
                todo += [(int(child), fields[3]) for child in (thread / "children").read_text().split()]
    return total


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A loopback port that accepts connections (the kernel completes them) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


@contextlib.contextmanager
def process(argv: list[str], port: int, log: Path, env: dict[str, str] | None = None) -> Iterator[tuple[str, int]]:
    """Start a server, wait until it answers READY_PATH, yield its URL and pid; SIGINT (then SIGKILL) at the end."""
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{argv[0]} exited early: {log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.TransportError):
                httpx.get(f"{url}{READY_PATH}", timeout=5)
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not come up: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield url, proc.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def stop_agents(home: Path) -> int:
    """Cancel (SIGTERM, by process group) every agent the server left running; how many there were."""
    runner = LocalJobRunner(Settings(home=home, _env_file=None), grace_s=5.0)  # type: ignore[call-arg]
    active = runner.list_active()
    for execution in active:
        runner.cancel(execution.name)
    deadline = time.monotonic() + 10
    while runner.list_active() and time.monotonic() < deadline:
        time.sleep(0.1)
    return len(active)


def warm_up(target: Target, body: Body, timeout_s: float = 120.0) -> None:
    """WARMUP accepted requests; a refusal meanwhile (a cold emulator's first write can pass its
    deadline on a busy machine: 503) is tried again until `timeout_s`."""
    deadline, accepted, status = time.monotonic() + timeout_s, 0, 0
    with httpx.Client(timeout=60, headers=AUTH) as http:
        while accepted < WARMUP:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{target.name} answered {status} to warm-up requests for {timeout_s:.0f} s")
            status = http.post(f"{target.url}/orchestrate", json=body(-1 - accepted)).status_code
            accepted += status == 202
            if status != 202:
                time.sleep(0.5)


def fire(target: Target, body: Body, clients: int, requests: int, first: int) -> Round:
    """`requests` POSTs to /orchestrate from `clients` threads, bodies numbered from `first`."""
    url = f"{target.url}/orchestrate"
    shares = [requests // clients + (1 if i < requests % clients else 0) for i in range(clients)]
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def client(begin: int, count: int) -> None:
        mine, bad = [], 0
        with httpx.Client(timeout=30, headers=AUTH) as http:
            http.get(f"{target.url}{READY_PATH}")  # open the keep-alive connection
            start.wait()
            for i in range(begin, begin + count):
                began = time.perf_counter()
                status = http.post(url, json=body(i)).status_code
                mine.append(time.perf_counter() - began)
                bad += status != 202
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    cpu_before = cpu_s(target.pids), cpu_s(target.backend_pids)
    begins = [first + sum(shares[:i]) for i in range(clients)]
    threads = [threading.Thread(target=client, args=(b, n)) for b, n in zip(begins, shares, strict=True)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    server, backend = cpu_s(target.pids) - cpu_before[0], cpu_s(target.backend_pids) - cpu_before[1]
    return Round(latencies, wall, errors[0], server, backend)


def baselines(stack: contextlib.ExitStack, tmp: Path) -> list[Target]:
    app = tmp / "baseline" / "main.py"
    app.parent.mkdir()
    app.write_text(BASELINE_APP)
    ff, wz = free_port(), free_port()
    ff_argv = [functions_framework_cli(), "--target", "ok", "--source", str(app), "--host", "127.0.0.1"]
    ff_url, ff_pid = stack.enter_context(process([*ff_argv, "--port", str(ff)], ff, tmp / "ff.log"))
    wz_url, wz_pid = stack.enter_context(process([sys.executable, str(app), str(wz)], wz, tmp / "wz.log"))
    return [Target(BASELINE, ff_url, [ff_pid]), Target("werkzeug 202", wz_url, [wz_pid])]


def functions_framework_cli() -> str:
    return str(Path(sys.executable).parent / "functions-framework")


def agentfleet_serve(stack: contextlib.ExitStack, tmp: Path, llm_port: int) -> Target:
    home, port = tmp / "home", free_port()
    env = {**os.environ, "AGENTFLEET_HOME": str(home), "GPT_OSS_URL": f"http://127.0.0.1:{llm_port}/v1"}
    env["AGENTFLEET_API_TOKEN"] = TOKEN
    stack.callback(lambda: print(f"  agents the server left running, stopped: {stop_agents(home)} (one expected)"))
    argv = [sys.executable, "-m", "agentfleet.cli", "serve", "--port", str(port)]
    url, pid = stack.enter_context(process(argv, port, tmp / "serve.log", env))
    return Target("agentfleet serve", url, [pid])


def orchestrate_function(stack: contextlib.ExitStack, tmp: Path, llm_port: int) -> Target | str:
    """The `orchestrate` function against the emulators, or why it cannot run here."""
    from agentfleet.testing.emulators import CloudEmulators, emulators_available, environment

    why = emulators_available()
    if why is not None:
        return why
    emulators = stack.enter_context(CloudEmulators(log_dir=tmp / "emulator-logs"))
    unique = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        **emulators.env(),
        "AGENTFLEET_BACKEND": "gcp",
        "GCS_BUCKET": f"agentfleet-intake-{unique}",
        "AGENTFLEET_TASKS_COLLECTION": f"tasks-{unique}",
        "AGENTFLEET_PUBSUB_TOPIC": f"tasks-{unique}",
        "AGENTFLEET_ALLOW_LOCAL_REPOS": "true",
        "AGENTFLEET_API_TOKEN": TOKEN,
        "AGENTFLEET_HOME": str(tmp / "functions-home"),
        "GPT_OSS_URL": f"http://127.0.0.1:{llm_port}/v1",
    }
    hosts = {k: v for k, v in emulators.env().items() if k.endswith("_EMULATOR_HOST")}
    with environment(hosts):
        from google.cloud import pubsub_v1  # type: ignore[attr-defined]

        publisher = pubsub_v1.PublisherClient()
        publisher.create_topic(name=publisher.topic_path(emulators.project, env["AGENTFLEET_PUBSUB_TOPIC"]))
    port = free_port()
    argv = [functions_framework_cli(), "--target", "orchestrate", "--source", str(FUNCTIONS_SOURCE)]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    url, pid = stack.enter_context(process(argv, port, tmp / "orchestrate.log", env))
    emulator_pids = [e.proc.pid for e in (emulators.firestore, emulators.pubsub) if e.proc is not None]
    return Target("orchestrate function", url, [pid], emulator_pids)


def report(targets: list[Target], clients: int, requests: int) -> None:
    rounds = len(targets[0].rounds)
    print(
        f"POST /orchestrate, {clients} clients, {requests} requests per target per round, {rounds} rounds interleaved"
    )
    print(
        f"  {'target':<26}{'req/s min/median/max':>24}{'p50 ms':>9}{'p99 ms':>9}{'non-202':>9}"
        f"{'server CPU ms/req':>19}{'emulators':>11}"
    )
    for t in targets:
        rps = spread([r.rps for r in t.rounds], "{:.0f}")
        errors = sum(r.errors for r in t.rounds)
        backend = f"{t.cpu_ms(backend=True):11.2f}" if t.backend_pids else f"{'-':>11}"
        print(
            f"  {t.name:<26}{rps:>24}{t.quantile_ms(0.5):9.2f}{t.quantile_ms(0.99):9.2f}{errors:9d}"
            f"{t.cpu_ms():19.2f}{backend}"
        )
    base = next(t for t in targets if t.name == BASELINE)
    for t in targets:
        if t is not base:
            ratios = [r.rps / b.rps for r, b in zip(t.rounds, base.rounds, strict=True)]
            print(f"  {t.name} / {BASELINE}: req/s x{spread(ratios)} (min/median/max of the rounds)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-cloud", action="store_true", help="leave out the orchestrate function (no emulators)")
    args = parser.parse_args()
    if not 1 <= args.clients <= 64 or not args.clients <= args.requests <= 10_000 or not 1 <= args.rounds <= 20:
        parser.error("use 1-64 clients, between --clients and 10000 requests, 1-20 rounds")
    tmp = Path(tempfile.mkdtemp(prefix="agentfleet-bench-intake-"))
    try:
        repo = str(make_repo(tmp / "repo", APP))

        def body(i: int) -> dict[str, str]:
            return {"query": f"bench {i}", "repo_url": repo}

        with contextlib.ExitStack() as stack:
            llm_port = stack.enter_context(silent_listener())
            targets = [*baselines(stack, tmp), agentfleet_serve(stack, tmp, llm_port)]
            cloud = None if args.no_cloud else orchestrate_function(stack, tmp, llm_port)
            if isinstance(cloud, Target):
                targets.append(cloud)
            for target in targets:
                warm_up(target, body)
            for n in range(args.rounds):
                for target in targets[n % len(targets) :] + targets[: n % len(targets)]:
                    target.rounds.append(fire(target, body, args.clients, args.requests, n * args.requests))
            report(targets, args.clients, args.requests)
            if isinstance(cloud, str):
                print(f"  orchestrate function skipped: {cloud}")
            elif cloud is None:
                print("  orchestrate function skipped: --no-cloud")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
