"""A task's workspace the first and the second time, against a plain `git clone` of the same
repository, on a repository with thousands of commits.

    .venv/bin/python bench/warm_workspace.py [--commits 3000] [--files 200] [--per-folder 100]

Each round, interleaved: the baseline `git clone --no-local` (what a clone over the network does:
one pack transfer, then the checkout), `git clone` of the local path (it hardlinks the source's
objects: no transfer at all, shown for reference), our first task (a new mirror, the checkout and
the chown to the sandbox user, into a fresh home), then one more commit upstream, the agent's
turn (--agent-seconds), the first task's finish (the patch: write_changes), our second task
(fetch, checkout reused, chown), and the same catching up in the plain clone (fetch + checkout:
the floor of a second task); then the second task's turn and finish, and a third task with nothing
new upstream (its mirror needs no fetch). The repository has no setup, so "+ setup" is the same nothing on
both sides. Prints min/median/max of each and the ratios (per round), in wall-clock time and in
CPU time (this process and the git processes it waited for: steadier on a shared machine).
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from agentfleet.agent.workspace import PreparedWorkspace, prepare_workspace, write_changes
from agentfleet.local.artifacts import LocalArtifactStore
from agentfleet.runtime.sandbox import grant_workspace
from agentfleet.settings import Settings
from agentfleet.tasks import Task, TaskRequest

SANDBOX_ID = 65534
"""The user the chown hands the workspace to (nobody), as the sandbox's default does."""
AGENT_S = 1.1
"""How long the first task's agent works before its finish (--agent-seconds): over a second, as any
agent does, so the files are not "racily clean" in the host's index (git hashes again a file whose
mtime is in the second its index was written), which only a task done within a second would see."""
ENV = {**os.environ, **{f"GIT_{who}_{what}": "b" for who in ("AUTHOR", "COMMITTER") for what in ("NAME", "EMAIL")}}


def make_history(repo: Path, commits: int, files: int = 200, per_folder: int = 100, size: int = 2048) -> None:
    """A repository whose first commit adds `files` files of `size` bytes (`per_folder` to a folder)
    and whose `commits - 1` later commits each change one of them, built with fast-import."""
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    lines = []
    for i in range(1, commits + 1):
        message = f"commit {i}\n".encode()
        lines.append(b"commit refs/heads/main\n")
        lines.append(f"committer bench <b@localhost> {1_700_000_000 + i} +0000\n".encode())
        lines.append(f"data {len(message)}\n".encode() + message)
        for n in range(files) if i == 1 else [i % files]:
            body = (f"file {n} line {i}\n" * (size // 16 + 1)).encode()[:size]
            name = f"src/d{n // per_folder}/file{n}.txt"
            lines.append(f"M 644 inline {name}\ndata {len(body)}\n".encode() + body + b"\n")
    subprocess.run(["git", "fast-import", "--quiet"], cwd=repo, input=b"".join(lines), check=True)
    subprocess.run(["git", "reset", "-q", "--hard"], cwd=repo, check=True)


def cpu_seconds() -> float:
    """CPU time of this process and of every child it has waited for (git's processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(step: Callable[[], object]) -> tuple[float, float]:
    """Wall-clock and CPU seconds of `step` (CPU time varies less when others share the machine)."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    step()
    return time.perf_counter() - wall, cpu_seconds() - cpu


def prepare(repo: Path, settings: Settings) -> PreparedWorkspace:
    """One task's workspace, as work.py makes it before the agent starts: prepared, then chowned."""
    task = Task(request=TaskRequest(query="bench", repo_url=str(repo)))
    store = LocalArtifactStore(settings.artifacts_dir)
    workspace = prepare_workspace(task, settings, store, emit=lambda k, d: None, run_setup=None)
    grant_workspace(workspace.root, SANDBOX_ID, SANDBOX_ID)
    return workspace


def clone(args: list[str], dest: Path) -> None:
    subprocess.run(["git", "clone", "-q", *args, str(dest)], check=True)


def pull(checkout: Path) -> None:
    """What a plain clone does to catch up: fetch, then check out what came."""
    subprocess.run(["git", "-C", str(checkout), "fetch", "-q"], check=True)
    subprocess.run(["git", "-C", str(checkout), "checkout", "-q", "--detach", "origin/main"], check=True)


def one_round(repo: Path, tmp: Path, n: int, agent_s: float) -> dict[str, tuple[float, float]]:
    times = {
        "clone": timed(lambda: clone(["--no-local", str(repo)], tmp / f"clone-{n}")),
        "local": timed(lambda: clone([str(repo)], tmp / f"local-{n}")),
    }
    settings = Settings(home=tmp / f"home-{n}", _env_file=None)  # type: ignore[call-arg]
    first: list[PreparedWorkspace] = []
    times["first"] = timed(lambda: first.append(prepare(repo, settings)))
    (repo / "src" / f"new-{n}.txt").write_text("one more change\n")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True, env=ENV)
    subprocess.run(["git", "commit", "-qm", "one more"], cwd=repo, check=True, env=ENV)
    time.sleep(agent_s)  # the agent's turn: see AGENT_S
    write_changes(first[0].repos[0], io.BytesIO(), limit=1 << 20)  # the first task's finish
    second: list[PreparedWorkspace] = []
    times["second"] = timed(lambda: second.append(prepare(repo, settings)))
    time.sleep(agent_s)
    write_changes(second[0].repos[0], io.BytesIO(), limit=1 << 20)
    times["same"] = timed(lambda: prepare(repo, settings))
    times["pull"] = timed(lambda: pull(tmp / f"clone-{n}"))
    for path in (tmp / f"clone-{n}", tmp / f"local-{n}", tmp / f"home-{n}"):
        shutil.rmtree(path, ignore_errors=True)
    return times


def spread(values: list[float], scale: float = 1000.0, fmt: str = "8.1f") -> str:
    low, mid, high = min(values), statistics.median(values), max(values)
    return " ".join(format(v * scale, fmt) for v in (low, mid, high))


def report(kind: str, rounds: list[dict[str, float]]) -> None:
    column = {name: [r[name] for r in rounds] for name in rounds[0]}
    print(f"  {kind + ' ms':44} {'min':>8} {'median':>8} {'max':>8}")
    rows = (
        ("clone", "baseline: git clone --no-local"),
        ("local", "git clone of the local path (hardlinks)"),
        ("first", "first task (mirror, checkout, chown)"),
        ("second", "second task (fetch, reuse, chown)"),
        ("pull", "git fetch + checkout in the plain clone"),
        ("same", "third task, nothing new upstream"),
    )
    for name, label in rows:
        print(f"  {label:44} {spread(column[name])}")
    ratios = (
        ("first / clone", [r["first"] / r["clone"] for r in rounds]),
        ("first / local clone", [r["first"] / r["local"] for r in rounds]),
        ("second / first", [r["second"] / r["first"] for r in rounds]),
        ("second / plain fetch + checkout", [r["second"] / r["pull"] for r in rounds]),
        ("third (nothing new) / first", [r["same"] / r["first"] for r in rounds]),
    )
    for label, values in ratios:
        print(f"  {kind + ' ' + label:44} {spread(values, 1.0, '8.3f')}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commits", type=int, default=3000)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument(
        "--per-folder", type=int, default=100, help="files to a folder (one big tree: --per-folder 200)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--agent-seconds", type=float, default=AGENT_S)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="agentfleet-bench-"))
    try:
        repo = tmp / "repo"
        make_history(repo, args.commits, args.files, args.per_folder)
        rounds = [one_round(repo, tmp, n, args.agent_seconds) for n in range(args.rounds)]
        shape = f"{args.commits} commits, {args.files} files, {args.per_folder} to a folder"
        print(f"repository: {shape}; {args.rounds} rounds, interleaved")
        for kind, pick in (("wall", 0), ("cpu", 1)):
            report(kind, [{name: times[pick] for name, times in r.items()} for r in rounds])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
