"""The Cloud Functions source exactly as deployed: scripts/stage-functions.sh builds the folder and
its zip, the folder's requirements install into a fresh virtual environment from its own wheels
alone (the buildpack's command under GOOGLE_VENDOR_PIP_DEPENDENCIES=wheels), and functions-framework
from that environment serves orchestrate and dispatch against the emulators, the Cloud Run fake and
a real agent run.

Staging downloads the dependency wheels from the package index (pip's cache lives under
~/.cache/agentfleet-tests/pip, so a second run downloads nothing new).
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import tomllib
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from agentfleet.gcp.store import FirestoreTaskStore
from agentfleet.ports import DispatchMessage
from agentfleet.tasks import Task, TaskRequest, TaskStatus
from agentfleet.testing.cloud_flow import CloudFlow, _wait_http
from agentfleet.testing.emulators import CloudEmulators, free_port
from agentfleet.testing.polling import wait_for
from agentfleet.testing.scripted_llm import ScriptedLLM, reply, tool_call

ROOT = Path(__file__).resolve().parents[2]
STAGE = ROOT / "scripts" / "stage-functions.sh"
CACHE = Path.home() / ".cache" / "agentfleet-tests" / "pip"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
PATCH = "*** Begin Patch\n*** Update File: app.py\n@@\n-print('hello')\n+print('hello, cloud')\n*** End Patch\n"
SCRIPT = [reply(None, tool_call("apply_patch", {"patch": PATCH})), reply("Changed the greeting.")]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without what would let the staged code see anything else: no
    PYTHONPATH (this tree's src), no pip configuration (this machine's extra indexes and links)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)
    return env


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("functions-stage") / "functions"
    env = {**os.environ, "PYTHON": sys.executable, "PIP_CACHE_DIR": str(CACHE)}
    proc = subprocess.run([str(STAGE), str(dest)], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return dest


@pytest.fixture(scope="module")
def runtime(staged: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the staged requirements installed as the buildpack does."""
    venv = tmp_path_factory.mktemp("functions-runtime") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    install = [str(python), "-m", "pip", "install", "--requirement", "requirements.txt", "--upgrade"]
    install += ["--upgrade-strategy", "only-if-needed", "--no-warn-script-location"]
    install += ["--no-index", "--find-links", "wheels"]
    proc = subprocess.run(install, cwd=staged, env=clean_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    check = subprocess.run([str(python), "-m", "pip", "check"], env=clean_env(), capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    return venv


def test_the_staged_folder_and_zip_hold_main_requirements_and_every_wheel(staged: Path) -> None:
    requirements = (staged / "requirements.txt").read_text().splitlines()
    assert f"agentfleet=={VERSION}" in requirements
    assert any(line.startswith("functions-framework") for line in requirements)
    assert (staged / "main.py").read_bytes() == (ROOT / "functions" / "main.py").read_bytes()
    wheels = sorted(p.name for p in (staged / "wheels").iterdir())
    assert f"agentfleet-{VERSION}-py3-none-any.whl" in wheels
    assert all(name.endswith(".whl") for name in wheels), "only wheels: the buildpack must build nothing"
    assert any(name.startswith("functions_framework-") for name in wheels)
    with zipfile.ZipFile(staged.with_suffix(".zip")) as zf:
        names = set(zf.namelist())
    assert {"main.py", "requirements.txt"} <= names  # at the root, as Cloud Functions expects
    assert {f"wheels/{name}" for name in wheels} <= names


def test_the_same_sources_stage_to_the_same_zip(staged: Path, tmp_path: Path) -> None:
    """Terraform names the uploaded zip by its md5: an unchanged tree must not redeploy the functions."""
    again = tmp_path / "functions"
    env = {**os.environ, "PYTHON": sys.executable, "PIP_CACHE_DIR": str(CACHE)}
    proc = subprocess.run([str(STAGE), str(again)], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert again.with_suffix(".zip").read_bytes() == staged.with_suffix(".zip").read_bytes()


def test_staging_refuses_a_missing_destination_argument() -> None:
    proc = subprocess.run([str(STAGE)], capture_output=True, text=True)
    assert proc.returncode == 2 and "usage" in proc.stderr


def test_the_runtime_imports_agentfleet_from_its_own_site_packages(runtime: Path) -> None:
    code = "import agentfleet, functions_framework; print(agentfleet.__file__)"
    out = subprocess.run([str(runtime / "bin" / "python"), "-c", code], env=clean_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()).is_relative_to(runtime), out.stdout


class StagedFlow(CloudFlow):
    """The cloud flow with each function served from the staged folder by the runtime's
    functions-framework (the buildpack's entry point), not from this source tree."""

    def __init__(self, *args: object, staged: Path, runtime: Path, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.staged, self.runtime = staged, runtime

    def _start_function(self, target: str, signature: str) -> str:
        port = free_port()
        log = (self.workdir / f"{target}.log").open("ab")
        argv = [str(self.runtime / "bin" / "functions-framework"), "--target", target, "--source", "main.py"]
        argv += ["--signature-type", signature, "--host", "127.0.0.1", "--port", str(port)]
        proc = subprocess.Popen(
            argv,
            cwd=self.staged,
            env={**clean_env(), **self.env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.functions[target] = proc
        url = f"http://127.0.0.1:{port}"
        _wait_http(url, proc, f"the staged {target} function (log: {self.workdir / f'{target}.log'})")
        return url


@pytest.fixture(scope="module")
def flow(
    cloud: CloudEmulators, staged: Path, runtime: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StagedFlow]:
    workdir = tmp_path_factory.mktemp("staged-flow")
    with (
        ScriptedLLM(SCRIPT, per_turn=True) as llm,
        StagedFlow(cloud, workdir, llm_url=llm.url, staged=staged, runtime=runtime) as running,
    ):
        yield running


@pytest.fixture(scope="module")
def store(flow: StagedFlow) -> FirestoreTaskStore:
    return FirestoreTaskStore.from_settings(flow.settings())


def final(store: FirestoreTaskStore, task_id: str) -> Task:
    def done() -> Task | None:
        task = store.get(task_id)
        return task if task is not None and task.status.final else None

    return wait_for(done, 180.0, f"task {task_id} to finish")


def test_the_staged_orchestrate_answers_health_and_runs_a_posted_task(
    flow: StagedFlow, store: FirestoreTaskStore, repo_factory: Callable[..., Path]
) -> None:
    health = httpx.get(f"{flow.urls['orchestrate']}/health", timeout=30)
    assert health.status_code == 200, health.text
    repo = repo_factory({"app.py": "print('hello')\n"})
    response = httpx.post(
        f"{flow.urls['orchestrate']}/orchestrate", json={"query": "greet the cloud", "repo_url": str(repo)}, timeout=30
    )
    assert response.status_code == 202, response.text
    task = final(store, response.json()["task_id"])
    assert task.status is TaskStatus.SUCCEEDED, task.error
    assert [e for e in flow.started_envs() if e.get("AGENTFLEET_TASK_ID") == task.id]


def test_the_staged_dispatch_takes_a_binary_mode_pubsub_cloudevent(
    flow: StagedFlow, store: FirestoreTaskStore, repo_factory: Callable[..., Path]
) -> None:
    repo = repo_factory({"app.py": "print('hello')\n"})
    task, _ = store.create(Task(request=TaskRequest(query="greet", repo_url=str(repo))))  # stored, not published
    message = DispatchMessage(task_id=task.id, attempt=1, workspace_id=task.workspace_id)
    message_id = uuid.uuid4().hex
    headers = {
        "ce-specversion": "1.0",
        "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
        "ce-source": f"//pubsub.googleapis.com/{flow.topic}",
        "ce-id": message_id,
        "ce-time": "2026-11-24T10:00:00Z",
        "content-type": "application/json",
    }
    data = {
        "message": {
            "data": base64.b64encode(message.model_dump_json().encode()).decode(),
            "attributes": {"task_id": task.id, "attempt": "1"},
            "messageId": message_id,
            "publishTime": "2026-11-24T10:00:00Z",
        },
        "subscription": "projects/agentfleet-test/subscriptions/eventarc-dispatch",
    }
    response = httpx.post(flow.urls["dispatch"] + "/", headers=headers, json=data, timeout=60)
    assert response.status_code == 200, response.text
    assert final(store, task.id).status is TaskStatus.SUCCEEDED
    assert len([e for e in flow.started_envs() if e.get("AGENTFLEET_TASK_ID") == task.id]) == 1
