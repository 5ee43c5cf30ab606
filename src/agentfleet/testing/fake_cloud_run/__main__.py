"""`python -m agentfleet.testing.fake_cloud_run`: serve the fake Cloud Run Admin API until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from agentfleet.testing.fake_cloud_run import FakeCloudRun


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agentfleet.testing.fake_cloud_run", description="Serve a fake Cloud Run Jobs API."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--log-dir", type=Path, help="task logs (default: a temp dir, removed at exit)")
    parser.add_argument("--grace-s", type=float, default=10.0, help="SIGTERM to SIGKILL on cancel or timeout")
    parser.add_argument("command", nargs="*", help="argv of every task (default: python -m agentfleet.agent)")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    fake = FakeCloudRun(
        command=args.command or None, log_dir=args.log_dir, grace_s=args.grace_s, host=args.host, port=args.port
    )
    with fake:
        print(f"fake Cloud Run Jobs API on {fake.address} (task logs: {fake.log_dir})", flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
