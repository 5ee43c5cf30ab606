"""Intake: `POST /orchestrate` requests/s, p50 and p99 against a live local `agentfleet serve`, beside
two servers that answer 202 and do nothing else, in one run.

    .venv/bin/python bench/intake.py [--clients 8] [--requests 400]

Each target gets the same load: `--clients` threads, each with its own keep-alive httpx.Client,
sending `--requests` POSTs in all (after a short warm-up), every one the same small JSON task.

The baselines, and why:

- `werkzeug 202`: werkzeug's threaded `make_server` around `Request.application(...)`, the server
  and WSGI shape `LocalServer` uses. It is the fair baseline for `agentfleet serve`: the ratio is
  what AgentFleet's own intake costs (reading and validating the body, the SQLite task, event and
  queue writes, the JSON answer), with the HTTP server held equal.
- `functions-framework 202`: the `functions-framework` CLI serving `@functions_framework.http` (one
  gunicorn gthread worker), the shape the `orchestrate` Cloud Function runs in. It says what the
  platform's own server costs, for context: a different server, so not a like-for-like ratio.

Every task names the same repository (a local git repository made here), so the dispatcher
launches at most one agent and the other tasks wait QUEUED. GPT_OSS_URL points at a loopback
socket that accepts connections and never answers: that agent waits on its first model call
instead of failing and letting the next one start, so the figures are about intake. Everything
runs on loopback and is stopped at the end: the servers, the model socket and the agent.
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from agentfleet.local.jobs import LocalJobRunner
from agentfleet.net import free_port
from agentfleet.settings import Settings
from agentfleet.testing.repos import make_repo

WARMUP = 16
Body = Callable[[int], dict[str, str]]
BASELINE_APP = '''"""Answer every request with an empty 202."""
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
'''


@dataclass
class Figures:
    name: str
    latencies_s: list[float]
    wall_s: float
    errors: int

    @property
    def rps(self) -> float:
        return len(self.latencies_s) / self.wall_s

    def quantile_ms(self, q: float) -> float:
        ordered = sorted(self.latencies_s)
        return 1000 * ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


APP = {"app.py": "print('hi')\n"}
TOKEN = "bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
"""Sent to every target alike; the baselines ignore it, `agentfleet serve` requires it."""


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A loopback port that accepts connections (the kernel completes them) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


@contextlib.contextmanager
def process(argv: list[str], url: str, log: Path, env: dict[str, str] | None = None) -> Iterator[int]:
    """Start a server, wait until `url`/health answers anything, yield its pid; SIGINT (then SIGKILL)
    at the end."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{argv[0]} exited early: {log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.TransportError):
                httpx.get(f"{url}/health", timeout=1)
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not come up")
            time.sleep(0.1)
        yield proc.pid
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
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


def fire(name: str, base_url: str, body: Body, clients: int, requests: int) -> Figures:
    """`requests` POSTs to /orchestrate from `clients` threads, after WARMUP unmeasured ones."""
    url = f"{base_url}/orchestrate"
    with httpx.Client(timeout=30, headers=AUTH) as warm:
        for i in range(WARMUP):
            warm.post(url, json=body(-1 - i))
    shares = [requests // clients + (1 if i < requests % clients else 0) for i in range(clients)]
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def client(first: int, count: int) -> None:
        mine, bad = [], 0
        with httpx.Client(timeout=30, headers=AUTH) as http:
            http.get(f"{base_url}/health")  # open the keep-alive connection
            start.wait()
            for i in range(first, first + count):
                began = time.perf_counter()
                status = http.post(url, json=body(i)).status_code
                mine.append(time.perf_counter() - began)
                bad += status != 202
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    firsts = [sum(shares[:i]) for i in range(clients)]
    threads = [threading.Thread(target=client, args=(f, n)) for f, n in zip(firsts, shares, strict=True)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return Figures(name, latencies, time.perf_counter() - began, errors[0])


def baselines(tmp: Path, body: Body, clients: int, requests: int) -> list[Figures]:
    app = tmp / "baseline" / "main.py"
    app.parent.mkdir()
    app.write_text(BASELINE_APP)
    cli = str(Path(sys.executable).parent / "functions-framework")
    werkzeug_port, ff_port = free_port(), free_port()
    ff_argv = [cli, "--target", "ok", "--source", str(app), "--host", "127.0.0.1", "--port", str(ff_port)]
    targets = [
        ("werkzeug 202", werkzeug_port, [sys.executable, str(app), str(werkzeug_port)]),
        ("functions-framework 202", ff_port, ff_argv),
    ]
    figures = []
    for name, port, argv in targets:
        with process(argv, f"http://127.0.0.1:{port}", tmp / f"{port}.log"):
            figures.append(fire(name, f"http://127.0.0.1:{port}", body, clients, requests))
    return figures


def agentfleet(tmp: Path, body: Body, clients: int, requests: int) -> tuple[Figures, int]:
    """The figures of a live `agentfleet serve`, and how many agents it left running (stopped here)."""
    home, port = tmp / "home", free_port()
    with silent_listener() as llm_port:
        env = {**os.environ, "AGENTFLEET_HOME": str(home), "GPT_OSS_URL": f"http://127.0.0.1:{llm_port}/v1"}
        env["AGENTFLEET_API_TOKEN"] = TOKEN
        argv = [sys.executable, "-m", "agentfleet.cli", "serve", "--port", str(port)]
        with process(argv, f"http://127.0.0.1:{port}", tmp / "serve.log", env):
            figures = fire("agentfleet serve", f"http://127.0.0.1:{port}", body, clients, requests)
        return figures, stop_agents(home)


def report(figures: list[Figures], clients: int, requests: int, agents: int) -> None:
    print(f"POST /orchestrate, {clients} clients, {requests} requests each target (after {WARMUP} warm-up):")
    print(f"  {'target':<26}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'non-202':>9}")
    for f in figures:
        mean = 1000 * statistics.fmean(f.latencies_s)
        print(f"  {f.name:<26}{f.rps:9.1f}{f.quantile_ms(0.5):9.2f}{f.quantile_ms(0.99):9.2f}{mean:9.2f}{f.errors:9d}")
    ours = figures[-1]
    for base in figures[:-1]:
        print(
            f"  agentfleet / {base.name}: req/s x{ours.rps / base.rps:.2f}, "
            f"p50 x{ours.quantile_ms(0.5) / base.quantile_ms(0.5):.1f}, "
            f"p99 x{ours.quantile_ms(0.99) / base.quantile_ms(0.99):.1f}"
        )
    print(f"  agents left running by the server and stopped: {agents} (one expected)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()
    if not 1 <= args.clients <= 64 or not args.clients <= args.requests <= 10_000:
        parser.error("use 1-64 clients and between --clients and 10000 requests")
    tmp = Path(tempfile.mkdtemp(prefix="agentfleet-bench-intake-"))
    try:
        repo = str(make_repo(tmp / "repo", APP))

        def body(i: int) -> dict[str, str]:
            return {"query": f"bench {i}", "repo_url": repo}

        ours, agents = agentfleet(tmp, body, args.clients, args.requests)
        figures = [*baselines(tmp, body, args.clients, args.requests), ours]
        report(figures, args.clients, args.requests, agents)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
