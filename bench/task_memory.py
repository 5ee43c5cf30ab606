"""Memory of one running task: the agent process and every process under it (before the in-process
workspace server, that server was one), read from /proc while the agent waits on its model,
through a live local `agentfleet serve`, beside a bare interpreter measured in the same run.

    .venv/bin/python bench/task_memory.py [--rounds 3]

For each task: RSS (what `ps` shows), PSS (shared pages divided among their sharers: what the task
costs the machine) and USS (pages only it has: what ending it would give back), summed over its
processes, in MiB. Two servers side by side: `warm` (agents forked from the warm launcher, sharing
its imported pages) and `cold` (AGENTFLEET_AGENT_PREFORK=false, a fresh interpreter per agent, as in
a Cloud Run Job's container). The baseline: `python -c` sleeping, the least a Python process holds.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agentfleet.client import Client
from agentfleet.testing.repos import make_repo
from agentfleet.testing.scripted_llm import ScriptedLLM, look, reply

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dispatch_latency import TOKEN, serve

HOLD_S = 4.0
"""How long the model holds its first answer: the agent is fully started and waiting meanwhile."""


def rollup(pid: int) -> dict[str, float]:
    """Rss, Pss and USS of one process, in MiB (0 when it is gone)."""
    fields: dict[str, float] = {}
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return {"rss": 0.0, "pss": 0.0, "uss": 0.0}
    for line in text.splitlines()[1:]:
        name, _, rest = line.partition(":")
        fields[name] = int(rest.split()[0]) / 1024
    return {
        "rss": fields.get("Rss", 0.0),
        "pss": fields.get("Pss", 0.0),
        "uss": fields.get("Private_Clean", 0.0) + fields.get("Private_Dirty", 0.0),
    }


def tree(pid: int) -> list[int]:
    """`pid` and its descendants (the sandbox's own processes included)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        todo.extend(int(c) for c in children)
    return found


def measure(pids: list[int]) -> dict[str, float]:
    total = {"rss": 0.0, "pss": 0.0, "uss": 0.0, "processes": float(len(pids))}
    for pid in pids:
        for key, value in rollup(pid).items():
            total[key] += value
    return total


def task_memory(client: Client, home: Path, repo: Path, llm: ScriptedLLM) -> dict[str, float]:
    asked = len(llm.requests)
    task_id = client.submit({"query": "What does app.py print?", "repo_url": str(repo)})["task_id"]
    deadline = time.monotonic() + 60
    pid = None
    while pid is None and time.monotonic() < deadline:
        with sqlite3.connect(home / "executions.db") as conn:
            row = conn.execute("SELECT pid FROM executions WHERE task_id = ?", (task_id,)).fetchone()
        pid = row[0] if row else None
        time.sleep(0.05)
    assert pid is not None, "the agent did not start"
    while len(llm.requests) == asked and time.monotonic() < deadline:  # its first request is held
        time.sleep(0.02)
    time.sleep(HOLD_S / 2)  # into the model's hold: started, connected, waiting
    figures = measure(tree(pid))
    while not client.task(task_id).status.final and time.monotonic() < deadline + 60:
        time.sleep(0.1)
    return figures


def bare() -> dict[str, float]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.5)
        return measure([proc.pid])
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="agentfleet-bench-"))
    script = [{**look(), "delay_s": HOLD_S}, reply("It prints hi.")]
    results: dict[str, list[dict[str, float]]] = {"warm": [], "cold": [], "baseline": []}
    try:
        repo = make_repo(tmp / "repo", {"app.py": "print('hi')\n"})
        with (
            ScriptedLLM(script, per_turn=True) as llm,
            serve(tmp / "warm", llm.url, prefork=True) as warm_url,
            serve(tmp / "cold", llm.url, prefork=False) as cold_url,
        ):
            clients = {"warm": Client(warm_url, token=TOKEN), "cold": Client(cold_url, token=TOKEN)}
            homes = {"warm": tmp / "warm", "cold": tmp / "cold"}
            for _ in range(args.rounds):
                for way in ("warm", "cold"):
                    results[way].append(task_memory(clients[way], homes[way], repo, llm))
                results["baseline"].append(bare())
        print(f"memory of one running task, MiB (min median max over {args.rounds} rounds); processes")
        base = statistics.median(r["pss"] for r in results["baseline"])
        labels = {"warm": "agent, warm launcher", "cold": "agent, fresh interpreter", "baseline": "bare python"}
        for way, label in labels.items():
            rows = results[way]
            cells = []
            for key in ("rss", "pss", "uss"):
                values = [r[key] for r in rows]
                cells.append(f"{key} {min(values):6.1f} {statistics.median(values):6.1f} {max(values):6.1f}")
            pss = statistics.median(r["pss"] for r in rows)
            procs = int(statistics.median(r["processes"] for r in rows))
            print(f"  {label:26} {'   '.join(cells)}   {procs} proc   pss x{pss / base:.2f} bare")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
