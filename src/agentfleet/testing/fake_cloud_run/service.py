"""The state and the gRPC services of the Cloud Run Jobs fake (see fake_cloud_run for what it models).

`CloudRunService` answers google.cloud.run.v2.Jobs, google.cloud.run.v2.Executions and
google.longrunning.Operations; `handlers()` gives them to a grpc.server. Requests and responses are
google-cloud-run's own proto-plus classes, (de)serialized with their `serialize`/`deserialize`.

One unit, over ~300 lines: a servicer's size follows the API it fakes; each method is short.
"""

from __future__ import annotations

import os
import re
import secrets
import string
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.cloud import run_v2
from google.longrunning import operations_pb2
from google.protobuf import empty_pb2
from google.rpc import code_pb2, status_pb2

from agentfleet.testing.fake_cloud_run import resources as res
from agentfleet.testing.fake_cloud_run.processes import ExecutionRun, TaskSpec
from agentfleet.testing.fake_cloud_run.resources import RpcError

T = TypeVar("T")

MAX_WAIT_S = 30.0
"""The longest WaitOperation holds a call."""
_SUFFIX = string.ascii_lowercase + string.digits


@dataclass
class ExecutionRecord:
    resource: run_v2.Execution  # what does not change after RunJob
    run: ExecutionRun


class CloudRunService:
    def __init__(self, command: list[str], base_env: Mapping[str, str] | None, log_dir: Path, grace_s: float) -> None:
        self.command = command
        self.base_env = base_env
        self.log_dir = log_dir
        self.grace_s = grace_s
        self.launch_count = 0
        self.lock = threading.Lock()
        self._jobs: dict[str, run_v2.Job] = {}
        self._executions: dict[str, ExecutionRecord] = {}
        self._runs: list[ExecutionRun] = []
        self._operations: dict[str, run_v2.Job | ExecutionRecord] = {}
        self._failures: dict[str, list[grpc.StatusCode]] = {}

    # --- for the fake's owner ----------------------------------------------------------------

    def records(self) -> list[ExecutionRecord]:
        with self.lock:
            return list(self._executions.values())

    def jobs(self) -> list[run_v2.Job]:
        with self.lock:
            return [res.copy(job) for job in self._jobs.values()]

    def fail_next(self, n: int, code: grpc.StatusCode, method: str) -> None:
        with self.lock:
            self._failures.setdefault(method, []).extend([code] * n)

    def clear_failures(self) -> None:
        with self.lock:
            self._failures.clear()

    def kill_all(self) -> None:
        """SIGKILL every task still running, and wait for them to be gone."""
        with self.lock:
            runs = list(self._runs)
        for run in runs:
            run.kill()

    def log_path(self, execution: str, task_index: int = 0) -> Path:
        return self.log_dir / f"{execution.rsplit('/', 1)[-1]}-task{task_index}.log"

    # --- google.cloud.run.v2.Jobs --------------------------------------------------------------

    def create_job(self, request: run_v2.CreateJobRequest) -> operations_pb2.Operation:
        if not res.LOCATION.match(request.parent):
            raise res.invalid(f"parent {request.parent!r} is not projects/PROJECT/locations/REGION")
        res.check_job_id(request.job_id)
        job = res.new_job(request.job, f"{request.parent}/jobs/{request.job_id}")
        if request.validate_only:
            return self._operation(request.parent, job, register=False)
        with self.lock:
            if job.name in self._jobs:
                raise RpcError(grpc.StatusCode.ALREADY_EXISTS, f"Resource '{request.job_id}' already exists.")
            self._jobs[job.name] = job
        return self._operation(request.parent, job)

    def get_job(self, request: run_v2.GetJobRequest) -> run_v2.Job:
        with self.lock:
            return res.copy(self._job(request.name))

    def list_jobs(self, request: run_v2.ListJobsRequest) -> run_v2.ListJobsResponse:
        with self.lock:
            jobs = [res.copy(j) for name, j in self._jobs.items() if name.startswith(f"{request.parent}/jobs/")]
        items, token = res.page(jobs, request.page_size, request.page_token)
        return run_v2.ListJobsResponse(jobs=items, next_page_token=token)

    def update_job(self, request: run_v2.UpdateJobRequest) -> operations_pb2.Operation:
        match = res.JOB.match(request.job.name)
        if match is None:
            raise res.invalid(f"job.name {request.job.name!r} is not projects/P/locations/R/jobs/J")
        updated = res.new_job(request.job, request.job.name)
        with self.lock:
            old = self._jobs.get(updated.name)
            if old is None and not request.allow_missing:
                raise res.not_found("JOB", updated.name)
            if old is not None:
                updated.uid, updated.create_time = old.uid, old.create_time
                updated.generation = updated.observed_generation = old.generation + 1
                updated.execution_count = old.execution_count
                updated.latest_created_execution = old.latest_created_execution
            self._jobs[updated.name] = updated
        return self._operation(match["parent"], updated)

    def delete_job(self, request: run_v2.DeleteJobRequest) -> operations_pb2.Operation:
        """Delete the job and its executions (running ones are cancelled)."""
        with self.lock:
            job = self._job(request.name)
            del self._jobs[request.name]
            doomed = [n for n, r in self._executions.items() if n.startswith(f"{request.name}/executions/")]
            records = [self._executions.pop(n) for n in doomed]
        for record in records:
            record.run.cancel()
        return self._operation(request.name.rsplit("/jobs/", 1)[0], job)

    def run_job(self, request: run_v2.RunJobRequest) -> operations_pb2.Operation:
        with self.lock:
            job = self._job(request.name)
            template, task_count = res.merge_overrides(job, request.overrides)
            record = self._new_execution(job, template, task_count)
            self._executions[record.resource.name] = record
            self._runs.append(record.run)
            job.execution_count += 1
            job.latest_created_execution = run_v2.ExecutionReference(
                name=record.resource.name, create_time=record.resource.create_time
            )
            self.launch_count += 1
            record.run.start(record.resource.name.rsplit("/", 1)[-1])
        return self._operation(request.name.rsplit("/jobs/", 1)[0], record)

    # --- google.cloud.run.v2.Executions --------------------------------------------------------

    def get_execution(self, request: run_v2.GetExecutionRequest) -> run_v2.Execution:
        record = self.record(request.name)
        return res.status(record.resource, record.run)

    def list_executions(self, request: run_v2.ListExecutionsRequest) -> run_v2.ListExecutionsResponse:
        """Newest first; parent `.../jobs/-` lists the executions of every job of the location."""
        match = res.JOB.match(request.parent)
        if match is None:
            raise res.invalid(f"parent {request.parent!r} is not projects/P/locations/R/jobs/J (or jobs/-)")
        prefix = f"{match['parent']}/jobs/" if match["job"] == "-" else f"{request.parent}/executions/"
        with self.lock:
            if match["job"] != "-":
                self._job(request.parent)
            records = [r for name, r in reversed(self._executions.items()) if name.startswith(prefix)]
        items, token = res.page(records, request.page_size, request.page_token)
        executions = [res.status(r.resource, r.run) for r in items]
        return run_v2.ListExecutionsResponse(executions=executions, next_page_token=token)

    def cancel_execution(self, request: run_v2.CancelExecutionRequest) -> operations_pb2.Operation:
        record = self.record(request.name)
        if record.run.done:
            raise RpcError(grpc.StatusCode.FAILED_PRECONDITION, f"Execution {request.name} has already completed.")
        record.run.cancel()
        return self._operation(request.name.rsplit("/jobs/", 1)[0], record)

    def delete_execution(self, request: run_v2.DeleteExecutionRequest) -> operations_pb2.Operation:
        """Delete the execution (a running one is cancelled)."""
        with self.lock:
            record = self._record_locked(request.name)
            del self._executions[request.name]
        record.run.cancel()
        return self._operation(request.name.rsplit("/jobs/", 1)[0], record)

    # --- google.longrunning.Operations ------------------------------------------------------------

    def get_operation(self, request: operations_pb2.GetOperationRequest) -> operations_pb2.Operation:
        return self._operation_pb(request.name, self._target(request.name))

    def wait_operation(self, request: operations_pb2.WaitOperationRequest) -> operations_pb2.Operation:
        target = self._target(request.name)
        if isinstance(target, ExecutionRecord):
            asked = request.timeout.ToTimedelta().total_seconds() if request.HasField("timeout") else MAX_WAIT_S
            target.run.wait(min(asked, MAX_WAIT_S))
        return self._operation_pb(request.name, target)

    def cancel_operation(self, request: operations_pb2.CancelOperationRequest) -> empty_pb2.Empty:
        target = self._target(request.name)
        if isinstance(target, ExecutionRecord):
            target.run.cancel()
        return empty_pb2.Empty()

    def delete_operation(self, request: operations_pb2.DeleteOperationRequest) -> empty_pb2.Empty:
        with self.lock:
            if self._operations.pop(request.name, None) is None:
                raise res.not_found("OPERATION", request.name)
        return empty_pb2.Empty()

    # --- inside -------------------------------------------------------------------------------

    def _job(self, name: str) -> run_v2.Job:
        """The stored job (call with the lock held)."""
        return _stored(self._jobs, name, res.JOB, "JOB", "projects/PROJECT/locations/REGION/jobs/JOB")

    def record(self, name: str) -> ExecutionRecord:
        with self.lock:
            return self._record_locked(name)

    def _record_locked(self, name: str) -> ExecutionRecord:
        pattern = "projects/P/locations/R/jobs/J/executions/E"
        return _stored(self._executions, name, res.EXECUTION, "EXECUTION", pattern)

    def _target(self, name: str) -> run_v2.Job | ExecutionRecord:
        with self.lock:
            target = self._operations.get(name)
        if target is None:
            raise res.not_found("OPERATION", name)
        return target

    def _new_execution(self, job: run_v2.Job, template: run_v2.TaskTemplate, task_count: int) -> ExecutionRecord:
        job_id = job.name.rsplit("/", 1)[-1]
        while True:
            execution_id = f"{job_id}-{''.join(secrets.choice(_SUFFIX) for _ in range(5))}"
            name = f"{job.name}/executions/{execution_id}"
            if name not in self._executions:
                break
        resource = run_v2.Execution(
            name=name,
            uid=str(uuid.uuid4()),
            generation=1,
            observed_generation=1,
            labels=dict(job.template.labels),
            annotations=dict(job.template.annotations),
            create_time=res.now(),
            job=job_id,
            parallelism=job.template.parallelism,
            task_count=task_count,
            template=template,
            log_uri=self.log_dir.resolve().as_uri(),
            etag=uuid.uuid4().hex,
        )
        container = template.containers[0]
        env = {**(os.environ if self.base_env is None else self.base_env), **res.task_env(container)}
        env |= {"CLOUD_RUN_JOB": job_id, "CLOUD_RUN_EXECUTION": execution_id, "CLOUD_RUN_TASK_COUNT": str(task_count)}
        timeout_s = template.timeout.total_seconds() or None
        specs = [
            TaskSpec(
                index=i,
                argv=[*self.command, *container.args],
                env={**env, "CLOUD_RUN_TASK_INDEX": str(i)},
                log_path=self.log_path(name, i),
                timeout_s=timeout_s,
                max_retries=template.max_retries,
            )
            for i in range(task_count)
        ]
        return ExecutionRecord(resource, ExecutionRun(specs, self.grace_s))

    def _operation(
        self, location: str, target: run_v2.Job | ExecutionRecord, *, register: bool = True
    ) -> operations_pb2.Operation:
        name = f"{location}/operations/{uuid.uuid4()}"
        if register:
            with self.lock:
                self._operations[name] = res.copy(target) if isinstance(target, run_v2.Job) else target
        return self._operation_pb(name, target)

    def _operation_pb(self, name: str, target: run_v2.Job | ExecutionRecord) -> operations_pb2.Operation:
        """The operation as GetOperation reports it: metadata and response are the resource."""
        op = operations_pb2.Operation(name=name)
        if isinstance(target, run_v2.Job):
            op.metadata.Pack(run_v2.Job.pb(target))
            op.response.Pack(run_v2.Job.pb(target))
            op.done = True
            return op
        execution = res.status(target.resource, target.run)
        op.metadata.Pack(run_v2.Execution.pb(execution))
        if target.run.done:
            op.done = True
            failure = res.failure_message(execution)
            if failure is None:
                op.response.Pack(run_v2.Execution.pb(execution))
            else:
                # The real API's code for a failed execution is not documented; UNKNOWN stands for it.
                op.error.CopyFrom(status_pb2.Status(code=code_pb2.UNKNOWN, message=failure))
        return op

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        op = operations_pb2.Operation.SerializeToString
        empty = empty_pb2.Empty.SerializeToString
        services: dict[str, dict[str, tuple[Callable[[Any], Any], Callable[[bytes], Any], Callable[[Any], bytes]]]] = {
            "google.cloud.run.v2.Jobs": {
                "CreateJob": (self.create_job, run_v2.CreateJobRequest.deserialize, op),
                "GetJob": (self.get_job, run_v2.GetJobRequest.deserialize, run_v2.Job.serialize),
                "ListJobs": (self.list_jobs, run_v2.ListJobsRequest.deserialize, run_v2.ListJobsResponse.serialize),
                "UpdateJob": (self.update_job, run_v2.UpdateJobRequest.deserialize, op),
                "DeleteJob": (self.delete_job, run_v2.DeleteJobRequest.deserialize, op),
                "RunJob": (self.run_job, run_v2.RunJobRequest.deserialize, op),
            },
            "google.cloud.run.v2.Executions": {
                "GetExecution": (
                    self.get_execution,
                    run_v2.GetExecutionRequest.deserialize,
                    run_v2.Execution.serialize,
                ),
                "ListExecutions": (
                    self.list_executions,
                    run_v2.ListExecutionsRequest.deserialize,
                    run_v2.ListExecutionsResponse.serialize,
                ),
                "CancelExecution": (self.cancel_execution, run_v2.CancelExecutionRequest.deserialize, op),
                "DeleteExecution": (self.delete_execution, run_v2.DeleteExecutionRequest.deserialize, op),
            },
            "google.longrunning.Operations": {
                "GetOperation": (self.get_operation, operations_pb2.GetOperationRequest.FromString, op),
                "WaitOperation": (self.wait_operation, operations_pb2.WaitOperationRequest.FromString, op),
                "CancelOperation": (self.cancel_operation, operations_pb2.CancelOperationRequest.FromString, empty),
                "DeleteOperation": (self.delete_operation, operations_pb2.DeleteOperationRequest.FromString, empty),
            },
        }
        return [
            grpc.method_handlers_generic_handler(
                service,
                {
                    method: grpc.unary_unary_rpc_method_handler(
                        self._answer(method, fn), request_deserializer=parse, response_serializer=dump
                    )
                    for method, (fn, parse, dump) in methods.items()
                },
            )
            for service, methods in services.items()
        ]

    def _answer(self, method: str, fn: Callable[[Any], Any]) -> Callable[[Any, grpc.ServicerContext], Any]:
        def answer(request: Any, context: grpc.ServicerContext) -> Any:
            with self.lock:
                queued = self._failures.get(method)
                injected = queued.pop(0) if queued else None
            try:
                if injected is not None:
                    raise RpcError(injected, f"injected failure of {method} (FakeCloudRun.fail_next)")
                return fn(request)
            except RpcError as exc:
                context.abort(exc.code, str(exc))

        return answer


def _stored(table: Mapping[str, T], name: str, pattern: re.Pattern[str], kind: str, shape: str) -> T:
    """`table[name]`: INVALID_ARGUMENT when `name` is not of `shape`, NOT_FOUND when it is absent."""
    if not pattern.match(name):
        raise res.invalid(f"{name!r} is not {'an' if kind[0] in 'AEIOU' else 'a'} {kind.lower()} name: {shape}")
    found = table.get(name)
    if found is None:
        raise res.not_found(kind, name)
    return found
