"""FakeCloudRun, driven by the official google-cloud-run clients over gRPC: the API's answers and
status codes, and the processes its executions run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from google.api_core import exceptions as gexc
from google.cloud import run_v2
from google.cloud.run_v2.services.executions.transports import ExecutionsGrpcTransport
from google.cloud.run_v2.services.jobs.transports import JobsGrpcTransport

from agentfleet.testing.emulators import free_port
from agentfleet.testing.fake_cloud_run import FakeCloudRun
from agentfleet.testing.polling import eventually

LOCATION = "projects/demo/locations/europe-west1"
Override = run_v2.RunJobRequest.Overrides.ContainerOverride


class Clients:
    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.jobs = run_v2.JobsClient(transport=JobsGrpcTransport(channel=self.channel))
        self.executions = run_v2.ExecutionsClient(transport=ExecutionsGrpcTransport(channel=self.channel))

    def create(self, job_id: str, *, env: dict[str, str] | None = None, **task: object) -> run_v2.Job:
        container = run_v2.Container(
            name="main", image="img", args=["a"], env=[run_v2.EnvVar(name=k, value=v) for k, v in (env or {}).items()]
        )
        template = run_v2.ExecutionTemplate(template=run_v2.TaskTemplate(containers=[container], **task))
        operation = self.jobs.create_job(parent=LOCATION, job=run_v2.Job(template=template), job_id=job_id, timeout=10)
        return operation.result(timeout=10)

    def run(self, job_id: str, **overrides: object) -> run_v2.Execution:
        request = run_v2.RunJobRequest(
            name=f"{LOCATION}/jobs/{job_id}", overrides=run_v2.RunJobRequest.Overrides(**overrides)
        )
        return self.jobs.run_job(request=request, timeout=10).metadata


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeCloudRun]:
    script = (
        'echo "task $CLOUD_RUN_TASK_INDEX attempt $CLOUD_RUN_TASK_ATTEMPT args $*"; '
        'echo $$ > "$PIDS/$CLOUD_RUN_EXECUTION-$CLOUD_RUN_TASK_INDEX"; eval "$RUN"'
    )
    (tmp_path / "pids").mkdir()
    base_env = {"PATH": os.environ["PATH"], "PIDS": str(tmp_path / "pids"), "RUN": "true"}
    with FakeCloudRun(
        command=["sh", "-c", script, "task"], base_env=base_env, log_dir=tmp_path / "logs", grace_s=1.0
    ) as f:
        yield f


@pytest.fixture
def clients(fake: FakeCloudRun) -> Clients:
    return Clients(fake.address)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def test_the_run_job_operation_carries_the_execution_and_completes_with_it(
    fake: FakeCloudRun, clients: Clients
) -> None:
    clients.create("hello")
    overrides = run_v2.RunJobRequest.Overrides(task_count=3, container_overrides=[Override(args=["b", "c"])])
    operation = clients.jobs.run_job(request={"name": f"{LOCATION}/jobs/hello", "overrides": overrides}, timeout=10)
    started = operation.metadata
    assert started.name.startswith(f"{LOCATION}/jobs/hello/executions/hello-") and started.job == "hello"
    assert started.create_time and started.task_count == 3 and started.template.containers[0].args == ["b", "c"]

    done = operation.result(timeout=20)
    assert (done.succeeded_count, done.failed_count, done.running_count) == (3, 0, 0)
    assert done.completion_time and not done.reconciling
    assert done.conditions[-1].type_ == "Completed"
    assert done.conditions[-1].state == run_v2.Condition.State.CONDITION_SUCCEEDED
    logs = sorted(fake.log_path(done.name, i).read_text() for i in range(3))
    assert logs == [f"task {i} attempt 0 args b c\n" for i in range(3)]
    assert fake.launch_count == 1


def test_a_failing_task_is_retried_as_the_template_says_and_fails_the_operation(
    fake: FakeCloudRun, clients: Clients
) -> None:
    clients.create("flaky", env={"RUN": "exit 4"}, max_retries=2)
    execution = clients.run("flaky")
    done = fake.wait_execution(execution.name)
    assert (done.failed_count, done.retried_count) == (1, 1)
    assert "exit code 4" in done.conditions[-1].message
    assert fake.log_path(done.name).read_text().count("attempt") == 3
    operation = clients.jobs.run_job(name=f"{LOCATION}/jobs/flaky", timeout=10)
    with pytest.raises(gexc.GoogleAPICallError, match="exit code 4"):
        operation.result(timeout=20)


def test_the_overridden_timeout_stops_the_task(fake: FakeCloudRun, clients: Clients) -> None:
    clients.create("slow", env={"RUN": "exec sleep 30"}, max_retries=0)
    execution = clients.run("slow", timeout=timedelta(seconds=1))
    done = fake.wait_execution(execution.name)
    assert done.failed_count == 1 and "timeout" in done.conditions[-1].message
    assert done.template.timeout == timedelta(seconds=1)


def test_cancelling_kills_the_process_group_and_marks_the_execution_cancelled(
    tmp_path: Path, fake: FakeCloudRun, clients: Clients
) -> None:
    clients.create("stubborn", env={"RUN": "trap '' TERM; sleep 30 & wait"})
    execution = clients.run("stubborn")
    pid_file = tmp_path / "pids" / f"{execution.name.rsplit('/', 1)[-1]}-0"
    assert eventually(pid_file.exists)
    clients.executions.cancel_execution(name=execution.name, timeout=10)
    done = fake.wait_execution(execution.name)
    assert (done.cancelled_count, done.failed_count) == (1, 0)
    assert done.conditions[-1].execution_reason == run_v2.Condition.ExecutionReason.CANCELLED
    assert not alive(int(pid_file.read_text()))
    with pytest.raises(gexc.FailedPrecondition):
        clients.executions.cancel_execution(name=execution.name, timeout=10)


def test_executions_are_listed_per_job_and_across_jobs(fake: FakeCloudRun, clients: Clients) -> None:
    clients.create("one")
    clients.create("two")
    names = [clients.run("one").name, clients.run("two").name, clients.run("one").name]
    across = [e.name for e in clients.executions.list_executions(parent=f"{LOCATION}/jobs/-", timeout=10)]
    assert across == names[::-1]
    one = [e.name for e in clients.executions.list_executions(parent=f"{LOCATION}/jobs/one", timeout=10)]
    assert one == [names[2], names[0]]
    pages = clients.executions.list_executions(request={"parent": f"{LOCATION}/jobs/-", "page_size": 2}, timeout=10)
    assert [e.name for e in pages] == names[::-1]
    with pytest.raises(gexc.NotFound):
        list(clients.executions.list_executions(parent=f"{LOCATION}/jobs/three", timeout=10))


@pytest.mark.parametrize("job_id", ["Upper", "1starts-with-a-digit", "ends-with-", "under_score", "x" * 64, ""])
def test_an_invalid_job_id_is_refused(clients: Clients, job_id: str) -> None:
    with pytest.raises(gexc.InvalidArgument, match="job_id"):
        clients.create(job_id)


def test_the_api_answers_with_the_status_codes_of_the_real_one(fake: FakeCloudRun, clients: Clients) -> None:
    clients.create("taken")
    with pytest.raises(gexc.AlreadyExists):
        clients.create("taken")
    with pytest.raises(gexc.NotFound):
        clients.jobs.get_job(name=f"{LOCATION}/jobs/missing", timeout=10)
    with pytest.raises(gexc.NotFound):
        clients.run("missing")
    with pytest.raises(gexc.InvalidArgument, match="reserved"):
        clients.create("reserved", env={"CLOUD_RUN_TASK_INDEX": "7"})
    with pytest.raises(gexc.InvalidArgument, match="no container named"):
        clients.run("taken", container_overrides=[Override(name="sidecar", args=["x"])])
    fake.fail_next(2, grpc.StatusCode.UNAVAILABLE, method="GetJob")
    for _ in range(2):
        with pytest.raises(gexc.ServiceUnavailable):
            clients.jobs.get_job(name=f"{LOCATION}/jobs/taken", timeout=10)
    assert clients.jobs.get_job(name=f"{LOCATION}/jobs/taken", timeout=10).name.endswith("/taken")


def test_deleting_a_job_deletes_its_executions(fake: FakeCloudRun, clients: Clients) -> None:
    clients.create("doomed", env={"RUN": "exec sleep 30"})
    clients.run("doomed")
    clients.jobs.delete_job(name=f"{LOCATION}/jobs/doomed", timeout=10).result(timeout=10)
    assert fake.jobs() == [] and fake.executions() == []


def test_stopping_the_fake_kills_the_processes_it_started(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    command = ["sh", "-c", f'echo $$ > "{pid_file}"; exec sleep 30']
    with FakeCloudRun(command=command, log_dir=tmp_path / "logs") as fake:
        clients = Clients(fake.address)
        clients.create("sleeper")
        clients.run("sleeper")
        assert eventually(lambda: pid_file.exists() and pid_file.read_text().strip() != "")
    assert eventually(lambda: not alive(int(pid_file.read_text())))


def test_the_command_line_serves_until_sigterm(tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "agentfleet.testing.fake_cloud_run", "--port", str(port), "--log-dir", str(tmp_path)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and f"127.0.0.1:{port}" in proc.stdout.readline()
        Clients(f"127.0.0.1:{port}").create("from-the-cli")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
