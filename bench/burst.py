"""A burst of connections: N clients connect at once, each sends one `POST /orchestrate` on a fresh
connection. Counts the requests that failed (reset, refused, timed out, or not 202) on
`agentfleet serve` beside a bare waitress app with the same thread and backlog settings.

    python bench/burst.py [--connections 1000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from intake import APP, AUTH, TOKEN, free_port, make_repo, process, silent_listener, stop_agents

from agentfleet.local.server import HTTP_LIMITS

BARE = (
    "import sys, waitress\n"
    "def app(environ, start):\n"
    "    environ['wsgi.input'].read()\n"
    "    start('202 Accepted', [('Content-Type', 'application/json')])\n"
    "    return [b'{}']\n"
    f"waitress.serve(app, host='127.0.0.1', port=int(sys.argv[1]), _quiet=True, **{HTTP_LIMITS!r})\n"
)


def burst(url: str, body: dict[str, str], connections: int) -> tuple[int, list[float]]:
    """(failed requests, latencies in seconds) of `connections` simultaneous one-request clients."""
    start = threading.Barrier(connections)
    failed, latencies, lock = [0], [], threading.Lock()

    def one() -> None:
        start.wait()
        began = time.perf_counter()
        try:
            ok = httpx.post(url, json=body, headers=AUTH, timeout=60).status_code == 202
        except httpx.HTTPError:
            ok = False
        with lock:
            latencies.append(time.perf_counter() - began)
            failed[0] += not ok

    threads = [threading.Thread(target=one) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failed[0], latencies


def bare(tmp: Path, body: dict[str, str], connections: int) -> tuple[int, list[float]]:
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with process([sys.executable, "-c", BARE, str(port)], f"http://127.0.0.1:{port}", tmp / "bare.log"):
        return burst(f"http://127.0.0.1:{port}/orchestrate", body, connections)


def agentfleet(tmp: Path, body: dict[str, str], connections: int) -> tuple[int, list[float]]:
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with silent_listener() as llm:
        env = {**os.environ, "AGENTFLEET_HOME": str(tmp / "home"), "AGENTFLEET_API_TOKEN": TOKEN}
        env["GPT_OSS_URL"] = f"http://127.0.0.1:{llm}/v1"
        argv = [sys.executable, "-m", "agentfleet.cli", "serve", "--port", str(port)]
        try:
            with process(argv, f"http://127.0.0.1:{port}", tmp / "serve.log", env):
                return burst(f"http://127.0.0.1:{port}/orchestrate", body, connections)
        finally:
            stop_agents(tmp / "home")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="agentfleet-bench-burst-"))
    try:
        body = {"query": "burst", "repo_url": str(make_repo(tmp / "repo", APP))}
        results: dict[str, list[tuple[int, list[float]]]] = {"bare waitress app": [], "agentfleet serve": []}
        for round_ in range(args.rounds):  # alternating order: the first target of a round meets a cold client
            for name in list(results) if round_ % 2 == 0 else list(results)[::-1]:
                run = bare if name == "bare waitress app" else agentfleet
                results[name].append(run(tmp / f"r{round_}", body, args.connections))
        print(f"{args.connections} connections at once, one POST /orchestrate each, {args.rounds} rounds:")
        print(f"  {'target':<22}{'failed':>8}{'p50 ms':>9}{'p99 ms':>9}   (each round)")
        for name, rounds in results.items():
            for failed, latencies in rounds:
                ordered = sorted(latencies)
                p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
                print(f"  {name:<22}{failed:8d}{1000 * statistics.median(ordered):9.1f}{1000 * p99:9.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
