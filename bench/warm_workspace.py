"""Preparing a workspace the second time vs the first, on a repository with thousands of
commits: the second task reuses the mirror and the checkout and fetches only what changed.

    .venv/bin/python bench/warm_workspace.py [--commits 3000]

Prints both times and the ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from agentfleet.agent.workspace import prepare_workspace
from agentfleet.local.artifacts import LocalArtifactStore
from agentfleet.settings import Settings
from agentfleet.tasks import Task, TaskRequest


def make_history(repo: Path, commits: int) -> None:
    """A repository with `commits` commits over 200 files, built with fast-import."""
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    lines = []
    for i in range(1, commits + 1):
        body = f"line {i}\n".encode()
        lines.append(b"commit refs/heads/main\n")
        lines.append(f"committer bench <b@localhost> {1_700_000_000 + i} +0000\n".encode())
        message = f"commit {i}\n".encode()
        lines.append(f"data {len(message)}\n".encode() + message)
        lines.append(f"M 644 inline src/file{i % 200}.txt\ndata {len(body)}\n".encode() + body + b"\n")
    subprocess.run(["git", "fast-import", "--quiet"], cwd=repo, input=b"".join(lines), check=True)
    subprocess.run(["git", "reset", "-q", "--hard"], cwd=repo, check=True)


def prepare(repo: Path, settings: Settings) -> float:
    task = Task(request=TaskRequest(query="bench", repo_url=str(repo)))
    started = time.perf_counter()
    prepare_workspace(
        task, settings, LocalArtifactStore(settings.artifacts_dir), emit=lambda k, d: None, run_setup=None
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commits", type=int, default=3000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="agentfleet-bench-"))
    try:
        repo = tmp / "repo"
        make_history(repo, args.commits)
        settings = Settings(home=tmp / "home", _env_file=None)  # type: ignore[call-arg]
        first = prepare(repo, settings)
        (repo / "src" / "new.txt").write_text("one more change\n")
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "b",
            "GIT_AUTHOR_EMAIL": "b@l",
            "GIT_COMMITTER_NAME": "b",
            "GIT_COMMITTER_EMAIL": "b@l",
        }
        subprocess.run(["git", "add", "-A"], cwd=repo, check=True, env=env)
        subprocess.run(["git", "commit", "-qm", "one more"], cwd=repo, check=True, env=env)
        second = prepare(repo, settings)
        print(f"repository with {args.commits + 1} commits:")
        print(f"  first task  (mirror + checkout)  {first * 1000:8.1f} ms   1.00x")
        print(f"  second task (fetch + reset)      {second * 1000:8.1f} ms   {second / first:6.2f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
