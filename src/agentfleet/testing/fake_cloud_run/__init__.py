"""A Cloud Run Jobs server for tests, benchmarks and manual runs (Cloud Run Jobs has no emulator).

It serves the real gRPC API, `google.cloud.run.v2.Jobs` and `.Executions` and
`google.longrunning.Operations`, with google-cloud-run's own message classes, so the official
clients work against it over a plaintext channel:

    channel = grpc.insecure_channel(fake.address)
    jobs = run_v2.JobsClient(transport=JobsGrpcTransport(channel=channel))

Like the platform: jobs are created (job id rules, ALREADY_EXISTS), read, listed, updated and
deleted; RunJob starts the execution for real, one local process per task, and answers with an
operation whose metadata is the Execution and which is done when the execution completes;
executions are listed per job or across jobs (`jobs/-`), cancelled and deleted, with their counts,
times, conditions and effective task template (overrides applied). Errors carry the real status
codes (NOT_FOUND, ALREADY_EXISTS, INVALID_ARGUMENT, FAILED_PRECONDITION) and a message.

Not like the platform: the image is ignored (`command` stands for every image's entrypoint, and a
container's own `command` is ignored too); a task's argv is `command` + the container's args and
its environment is `base_env` + the container's env + the overrides' env + CLOUD_RUN_JOB,
CLOUD_RUN_EXECUTION, CLOUD_RUN_TASK_INDEX, CLOUD_RUN_TASK_ATTEMPT, CLOUD_RUN_TASK_COUNT. Env vars
from Secret Manager, volumes, parallelism, IAM and `validate_only` of RunJob are not modelled.

    python -m agentfleet.testing.fake_cloud_run --port 8123 [--log-dir DIR] [-- COMMAND...]
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Mapping
from concurrent import futures
from pathlib import Path

import grpc
from google.cloud import run_v2

from agentfleet.testing.fake_cloud_run import resources as res
from agentfleet.testing.fake_cloud_run.service import CloudRunService


class FakeCloudRun:
    def __init__(
        self,
        *,
        command: list[str] | None = None,
        base_env: Mapping[str, str] | None = None,
        log_dir: Path | None = None,
        grace_s: float = 10.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        """`command`: the entrypoint of every task (default `python -m agentfleet.agent`).
        `base_env`: the environment under the job's (default: this process's, read at each RunJob).
        `log_dir`: task logs, `<execution id>-task<index>.log` (default: a temp dir, removed at stop).
        `grace_s`: between SIGTERM and SIGKILL when a task is cancelled or times out."""
        self._own_log_dir = log_dir is None
        self.log_dir = Path(tempfile.mkdtemp(prefix="fake-cloud-run-")) if log_dir is None else log_dir
        self.service = CloudRunService(
            command or [sys.executable, "-m", "agentfleet.agent"], base_env, self.log_dir, grace_s
        )
        self.host, self.port = host, port
        self.address = ""
        self._server: grpc.Server | None = None

    def start(self) -> FakeCloudRun:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=32), options=[("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers(self.service.handlers())
        self.port = server.add_insecure_port(f"{self.host}:{self.port}")
        server.start()
        self._server, self.address = server, f"{self.host}:{self.port}"
        return self

    def stop(self) -> None:
        """Stop serving and SIGKILL every task still running."""
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None
        self.service.kill_all()
        if self._own_log_dir:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    def __enter__(self) -> FakeCloudRun:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- for tests -------------------------------------------------------------------------

    @property
    def launch_count(self) -> int:
        """How many RunJob calls started an execution."""
        return self.service.launch_count

    def executions(self) -> list[run_v2.Execution]:
        """Every execution not deleted, oldest first, as GetExecution reports it now."""
        return [res.status(r.resource, r.run) for r in self.service.records()]

    def jobs(self) -> list[run_v2.Job]:
        return self.service.jobs()

    def fail_next(
        self, n: int = 1, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE, method: str = "RunJob"
    ) -> None:
        """Answer the next `n` calls of `method` (CreateJob, GetJob, RunJob, ListExecutions, ...) with `code`."""
        self.service.fail_next(n, code, method)

    def clear_failures(self) -> None:
        """Forget the failures `fail_next` queued and that have not happened yet."""
        self.service.clear_failures()

    def wait_execution(self, name: str, timeout_s: float = 30.0) -> run_v2.Execution:
        """The execution once it has completed; TimeoutError when it has not within `timeout_s`."""
        record = self.service.record(name)
        if not record.run.wait(timeout_s):
            raise TimeoutError(f"{name} did not complete within {timeout_s:g}s")
        return res.status(record.resource, record.run)

    def log_path(self, execution: str, task_index: int = 0) -> Path:
        """The log of a task of an execution (name or id)."""
        return self.service.log_path(execution, task_index)
