"""CloudRunJobRunner with the official google-cloud-run clients against FakeCloudRun: real gRPC,
real processes, no mocks. The fake stands where Cloud Run would; the settings name it as
AGENTFLEET_CLOUD_RUN_ENDPOINT."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.cloud import run_v2

from agentfleet.errors import AgentFleetError, RetryableError
from agentfleet.gcp.errors import JobLaunchError
from agentfleet.gcp.job_template import TEARDOWN_MARGIN_S, job_environment
from agentfleet.gcp.jobs import CloudRunJobRunner
from agentfleet.local.artifacts import LocalArtifactStore
from agentfleet.local.memory import SqliteMemoryStore
from agentfleet.local.queue import SqliteTaskQueue
from agentfleet.local.store import SqliteTaskStore
from agentfleet.ports import Backends, DispatchMessage
from agentfleet.service import Service
from agentfleet.settings import McpServerConfig, Settings
from agentfleet.tasks import Task, TaskOptions, TaskRequest, TaskStatus
from agentfleet.testing.emulators import free_port
from agentfleet.testing.fake_cloud_run import FakeCloudRun
from agentfleet.testing.polling import eventually

REPO = "https://example.com/acme/widgets"
JOB_NAME_RULE = re.compile(r"^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$")
StartFake = Callable[..., FakeCloudRun]


def make_task(repo: str = REPO, attempt: int = 1, **options: Any) -> Task:
    return Task(request=TaskRequest(query="x", repo_url=repo, options=TaskOptions(**options)), attempt=attempt)


def make_settings(tmp_path: Path, endpoint: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "backend": "gcp",
        "home": tmp_path / "home",
        "project_id": "demo-project",
        "gcs_bucket": "agentfleet-test",
        "job_image": "agent:test",
        "cloud_run_endpoint": endpoint,
        "llm_api_key": "sk-do-not-leak",
        "api_token": "token-do-not-leak",
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def start_fake(tmp_path: Path) -> Iterator[StartFake]:
    """Start a FakeCloudRun whose tasks run `command` (default: sleep 30); stopped after the test."""
    with ExitStack() as stack:

        def start(command: list[str] | None = None, **kwargs: Any) -> FakeCloudRun:
            fake = FakeCloudRun(command=command or ["sleep", "30"], grace_s=1.0, log_dir=tmp_path / "logs", **kwargs)
            return stack.enter_context(fake)

        yield start


def runner_for(tmp_path: Path, endpoint: str, **overrides: Any) -> CloudRunJobRunner:
    return CloudRunJobRunner.from_settings(make_settings(tmp_path, endpoint, **overrides))


def test_the_job_environment_carries_the_shared_settings_and_never_a_secret(tmp_path: Path) -> None:
    plain = job_environment(make_settings(tmp_path, "unused:1"))
    assert "GPT_OSS_URL" not in plain and "AGENTFLEET_LLM_MAX_REPLY_TOKENS" not in plain
    env = job_environment(
        make_settings(tmp_path, "unused:1", gpt_oss_url="https://llm.example", llm_max_reply_tokens=512)
    )
    assert (env["GPT_OSS_URL"], env["AGENTFLEET_LLM_MAX_REPLY_TOKENS"]) == ("https://llm.example", "512")
    assert (env["AGENTFLEET_BACKEND"], env["PROJECT_ID"], env["REGION"]) == ("gcp", "demo-project", "us-central1")
    assert not any("do-not-leak" in value for value in env.values())
    assert not {"LLM_API_KEY", "AGENTFLEET_API_TOKEN", "AGENTFLEET_LLM_API_KEY"} & env.keys()


def test_the_job_gets_the_deployments_mcp_servers_and_reads_them_back_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "AGENTFLEET_MCP_SERVERS" not in job_environment(make_settings(tmp_path, "unused:1"))  # the built-in ones
    given = {"media": "https://media-1.us-central1.run.app/mcp", "a2a": None}  # a Cloud Run service; one removed
    servers = make_settings(tmp_path, "unused:1", mcp_servers=given)
    env = job_environment(servers)
    monkeypatch.setenv("AGENTFLEET_MCP_SERVERS", env["AGENTFLEET_MCP_SERVERS"])
    again = Settings(_env_file=None).mcp_servers  # type: ignore[call-arg]
    assert again == servers.mcp_servers
    assert again["media"] == McpServerConfig(url="https://media-1.us-central1.run.app/mcp") and "a2a" not in again


def test_the_workspace_job_is_created_once_and_reused_by_every_task_of_the_workspace(
    tmp_path: Path, start_fake: StartFake
) -> None:
    fake = start_fake()
    runner = runner_for(tmp_path, fake.address)
    first = make_task()
    executions = [runner.launch(first), runner.launch(make_task())]
    executions.append(runner_for(tmp_path, fake.address).launch(make_task()))  # another dispatcher process

    [job] = fake.jobs()
    assert job.name == f"projects/demo-project/locations/us-central1/jobs/agent-{first.workspace_id}"
    assert (job.generation, job.execution_count, fake.launch_count) == (1, 3, 3)
    assert all(e.name.startswith(f"{job.name}/executions/") for e in executions)
    assert {e.workspace_id for e in executions} == {first.workspace_id}
    container = job.template.template.containers[0]
    assert container.image == "agent:test"
    assert dict(container.resources.limits) == {"cpu": "2", "memory": "4Gi"}
    assert {v.name: v.value for v in container.env} == job_environment(runner.settings)
    for name in [e.name for e in executions]:
        runner.cancel(name)


def test_the_job_runs_in_gen2_with_its_secrets_from_secret_manager_and_the_sandbox_chosen(
    tmp_path: Path, start_fake: StartFake
) -> None:
    fake = start_fake(["true"])
    secrets = {
        "LLM_API_KEY": "projects/demo-project/secrets/agentfleet-llm-api-key/versions/latest",
        "AGENTFLEET_GIT_TOKEN": "projects/demo-project/secrets/agentfleet-git-token",
    }
    runner_for(tmp_path, fake.address, job_secrets=secrets, job_sandbox="none").launch(make_task())

    [job] = fake.jobs()
    template = job.template.template
    assert template.execution_environment == run_v2.ExecutionEnvironment.EXECUTION_ENVIRONMENT_GEN2
    env = {var.name: var for var in template.containers[0].env}
    refs = {
        name: (var.value_source.secret_key_ref.secret, var.value_source.secret_key_ref.version)
        for name, var in env.items()
        if "value_source" in var
    }
    assert refs == {
        "LLM_API_KEY": ("projects/demo-project/secrets/agentfleet-llm-api-key", "latest"),
        "AGENTFLEET_GIT_TOKEN": ("projects/demo-project/secrets/agentfleet-git-token", "latest"),
    }
    assert not any(var.value for name, var in env.items() if name in refs)
    assert (env["AGENTFLEET_SANDBOX"].value, env["AGENTFLEET_ALLOW_UNSANDBOXED"].value) == ("none", "true")
    bwrap = job_environment(make_settings(tmp_path, "unused:1"))
    assert bwrap["AGENTFLEET_SANDBOX"] == "bwrap" and "AGENTFLEET_ALLOW_UNSANDBOXED" not in bwrap


def test_a_new_image_updates_the_job_before_its_next_execution(tmp_path: Path, start_fake: StartFake) -> None:
    fake = start_fake(["true"])
    runner_for(tmp_path, fake.address).launch(make_task())
    runner_for(tmp_path, fake.address, job_image="agent:v2").launch(make_task())

    [job] = fake.jobs()
    assert job.generation == 2
    assert [e.template.containers[0].image for e in fake.executions()] == ["agent:test", "agent:v2"]


def test_a_repository_url_with_odd_characters_still_gives_a_valid_job_name(
    tmp_path: Path, start_fake: StartFake
) -> None:
    fake = start_fake(["true"])
    runner = runner_for(tmp_path, fake.address)
    urls = [
        "https://Git.Example.COM:8443/ACME_Corp/My.Widgets--v2__.git",
        "git@host.example:team/" + "very-long-name-" * 12 + ".git",
        "ssh://git@example.com/~user/ünïcode_repo",
        "https://example.com/___/---",
    ]
    for url in urls:
        runner.launch(make_task(url))
    job_ids = [job.name.rsplit("/", 1)[-1] for job in fake.jobs()]
    assert len(job_ids) == len(urls)
    assert all(JOB_NAME_RULE.match(job_id) for job_id in job_ids), job_ids


def test_the_overridden_environment_reaches_the_started_process(tmp_path: Path, start_fake: StartFake) -> None:
    out = tmp_path / "out"
    out.mkdir()
    base_env = {"PATH": os.environ["PATH"], "OUT_DIR": str(out), "AGENTFLEET_MODEL": "from-the-machine"}
    fake = start_fake(["sh", "-c", 'env > "$OUT_DIR/$AGENTFLEET_TASK_ID-$AGENTFLEET_ATTEMPT.env"'], base_env=base_env)
    runner = runner_for(tmp_path, fake.address, model="openai/gpt-oss-120b")
    task = make_task(attempt=2)

    execution = runner.launch(task)
    assert fake.wait_execution(execution.name).succeeded_count == 1
    text = (out / f"{task.id}-2.env").read_text()
    env = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    assert (env["AGENTFLEET_TASK_ID"], env["AGENTFLEET_ATTEMPT"]) == (task.id, "2")
    assert (env["AGENTFLEET_BACKEND"], env["PROJECT_ID"], env["GCS_BUCKET"]) == (
        "gcp",
        "demo-project",
        "agentfleet-test",
    )
    assert env["AGENTFLEET_MODEL"] == "openai/gpt-oss-120b"  # the job's env wins over the machine's
    assert env["CLOUD_RUN_JOB"] == f"agent-{task.workspace_id}"
    assert env["CLOUD_RUN_EXECUTION"] == execution.name.rsplit("/", 1)[-1]
    assert (env["CLOUD_RUN_TASK_INDEX"], env["CLOUD_RUN_TASK_COUNT"], env["CLOUD_RUN_TASK_ATTEMPT"]) == ("0", "1", "0")
    assert "do-not-leak" not in text
    seen = runner.get(execution.name)
    assert seen is not None and (seen.task_id, seen.attempt, seen.state) == (task.id, 2, "succeeded")


def test_an_execution_succeeds_or_fails_by_the_exit_code_of_its_process(tmp_path: Path, start_fake: StartFake) -> None:
    fake = start_fake(["sh", "-c", 'test "$AGENTFLEET_ATTEMPT" = 1'])
    runner = runner_for(tmp_path, fake.address)
    task = make_task()
    ok, bad = runner.launch(task), runner.launch(task.model_copy(update={"attempt": 2}))
    for execution in (ok, bad):
        fake.wait_execution(execution.name)
    states = [(e.state if e else None) for e in (runner.get(ok.name), runner.get(bad.name))]
    assert states == ["succeeded", "failed"]
    assert runner.list_active() == []


def test_cancelling_stops_a_running_execution_and_cancelling_again_is_harmless(
    tmp_path: Path, start_fake: StartFake
) -> None:
    fake = start_fake(["sleep", "30"])
    runner = runner_for(tmp_path, fake.address)
    execution = runner.launch(make_task())
    assert [e.name for e in runner.list_active()] == [execution.name]

    runner.cancel(execution.name)
    assert eventually(lambda: runner.list_active() == [])
    [resource] = fake.executions()
    assert (resource.cancelled_count, resource.running_count) == (1, 0)
    assert (seen := runner.get(execution.name)) is not None and seen.state == "cancelled"
    runner.cancel(execution.name)
    runner.cancel(execution.name.rsplit("/", 1)[-1])


def test_the_task_time_limit_sets_the_execution_timeout(tmp_path: Path, start_fake: StartFake) -> None:
    fake = start_fake(["true"])
    runner = runner_for(tmp_path, fake.address)
    runner.launch(make_task(timeout_s=60))
    runner.launch(make_task())
    timeouts = [e.template.timeout for e in fake.executions()]
    settings = runner.settings
    default = max(settings.job_timeout_s, settings.default_timeout_s + TEARDOWN_MARGIN_S)
    assert timeouts == [timedelta(seconds=60 + TEARDOWN_MARGIN_S), timedelta(seconds=default)]


def test_executions_of_other_jobs_are_not_listed_as_agent_attempts(tmp_path: Path, start_fake: StartFake) -> None:
    fake = start_fake(["sleep", "30"])
    runner = runner_for(tmp_path, fake.address)
    other = run_v2.Job(template={"template": {"containers": [{"image": "report:latest"}]}})
    location = runner.settings.location
    runner.jobs.create_job(parent=location, job=other, job_id="nightly-report").result(timeout=10)
    runner.jobs.run_job(name=f"{location}/jobs/nightly-report")
    mine = runner.launch(make_task())

    assert [e.name for e in runner.list_active()] == [mine.name]
    assert len(fake.executions()) == 2


def test_a_transient_unavailable_from_run_job_is_retryable_and_the_retry_starts_one_execution(
    tmp_path: Path, start_fake: StartFake
) -> None:
    fake = start_fake()
    runner = runner_for(tmp_path, fake.address)
    task = make_task()
    fake.fail_next(1, grpc.StatusCode.UNAVAILABLE)
    with pytest.raises(ConnectionError):
        runner.launch(task)
    assert fake.launch_count == 0
    first = runner.launch(task)
    assert runner.launch(task).name == first.name
    assert fake.launch_count == 1
    runner.cancel(first.name)


def test_permission_denied_is_an_error_that_says_what_to_fix(tmp_path: Path, start_fake: StartFake) -> None:
    fake = start_fake()
    runner = runner_for(tmp_path, fake.address)
    fake.fail_next(1, grpc.StatusCode.PERMISSION_DENIED)
    with pytest.raises(JobLaunchError, match=r"roles/run\.developer") as caught:
        runner.launch(make_task())
    assert isinstance(caught.value, AgentFleetError) and not isinstance(caught.value, ConnectionError)


def test_dispatch_requeues_on_a_transient_failure_and_fails_the_task_on_a_refusal(
    tmp_path: Path, start_fake: StartFake
) -> None:
    fake = start_fake()
    runner = runner_for(tmp_path, fake.address)
    store = SqliteTaskStore(tmp_path / "tasks.db")
    queue, memory = SqliteTaskQueue(tmp_path / "queue.db"), SqliteMemoryStore(tmp_path / "m.db")
    backends = Backends(store, queue, runner, LocalArtifactStore(tmp_path / "a"), memory)
    service = Service(backends, runner.settings)
    transient, _ = store.create(make_task())
    refused, _ = store.create(make_task("https://example.com/acme/gadgets"))

    fake.fail_next(1, grpc.StatusCode.UNAVAILABLE)
    with pytest.raises(RetryableError):
        service.dispatch(DispatchMessage(task_id=transient.id, attempt=1, workspace_id=transient.workspace_id))
    assert (task := store.get(transient.id)) is not None and task.status is TaskStatus.QUEUED
    launched = service.dispatch(DispatchMessage(task_id=transient.id, attempt=1, workspace_id=transient.workspace_id))
    assert launched.action == "launched" and launched.execution is not None

    fake.fail_next(1, grpc.StatusCode.INVALID_ARGUMENT)
    outcome = service.dispatch(DispatchMessage(task_id=refused.id, attempt=1, workspace_id=refused.workspace_id))
    assert outcome.action == "failed"
    assert (task := store.get(refused.id)) is not None and task.status is TaskStatus.FAILED
    assert task.error is not None and "AGENTFLEET_JOB_IMAGE" in task.error
    runner.cancel(launched.execution)
    store.close()


@pytest.mark.timeout(60)
def test_an_endpoint_where_nothing_listens_fails_fast_with_a_connection_error(tmp_path: Path) -> None:
    runner = runner_for(tmp_path, f"127.0.0.1:{free_port()}")
    with pytest.raises(ConnectionError):
        runner.launch(make_task())
    with pytest.raises(ConnectionError):
        runner.list_active()
    runner.cancel(f"{runner.location}/jobs/agent-x/executions/agent-x-abcde")  # best effort: logged, not raised
    health = runner.health()
    assert health["ok"] is False and "error" in health
