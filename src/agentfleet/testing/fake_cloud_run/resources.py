"""The resources of the Cloud Run Jobs fake: validating jobs and overrides, the effective task
template of an execution, and an execution's status as the real API reports it.

Pure functions over google-cloud-run's own message classes; a request the real API would refuse
raises RpcError with the status code and a message like the real one.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import grpc
import proto
from google.cloud import run_v2

from agentfleet.testing.fake_cloud_run.processes import ExecutionRun

JOB_ID = re.compile(r"^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$")
LOCATION = re.compile(r"^projects/[^/]+/locations/[^/]+$")
JOB = re.compile(r"^(?P<parent>projects/[^/]+/locations/[^/]+)/jobs/(?P<job>[^/]+)$")
EXECUTION = re.compile(r"^(?P<job>projects/[^/]+/locations/[^/]+/jobs/[^/]+)/executions/(?P<id>[^/]+)$")
RESERVED_ENV = frozenset(
    {"PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION"}
    | {"CLOUD_RUN_JOB", "CLOUD_RUN_EXECUTION", "CLOUD_RUN_TASK_INDEX", "CLOUD_RUN_TASK_ATTEMPT", "CLOUD_RUN_TASK_COUNT"}
)
"""Set by the platform (the container runtime contract); a job may not set them."""
DEFAULT_TIMEOUT = timedelta(seconds=600)
MAX_TIMEOUT = timedelta(days=7)
DEFAULT_MAX_RETRIES = 3

M = TypeVar("M", bound=proto.Message)
Condition = run_v2.Condition


class RpcError(Exception):
    """Answer the call with this status code and message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def invalid(message: str) -> RpcError:
    return RpcError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(kind: str, name: str) -> RpcError:
    return RpcError(grpc.StatusCode.NOT_FOUND, f"Resource '{name}' of kind '{kind}' does not exist.")


def copy(message: M) -> M:
    return type(message).deserialize(type(message).serialize(message))


def now() -> datetime:
    return datetime.now(UTC)


def check_job_id(job_id: str) -> None:
    if not JOB_ID.match(job_id):
        raise invalid(
            f"job_id {job_id!r} is invalid: use lowercase letters, digits and hyphens, start with a letter, "
            "end with a letter or a digit, at most 63 characters"
        )


def _check_env(env: list[run_v2.EnvVar], where: str) -> None:
    for i, var in enumerate(env):
        if not var.name or "=" in var.name:
            raise invalid(f"{where}.env[{i}].name {var.name!r} is not a valid environment variable name")
        if var.name in RESERVED_ENV:
            raise invalid(f"{where}.env[{i}].name: {var.name} is reserved; Cloud Run sets it")


def new_job(job: run_v2.Job, name: str) -> run_v2.Job:
    """The job as the server stores it: validated, defaults filled in, output fields set."""
    job = copy(job)
    template = job.template
    if not template.template.containers:
        raise invalid("job.template.template.containers: a job needs a container")
    for i, container in enumerate(template.template.containers):
        if not container.image:
            raise invalid(f"job.template.template.containers[{i}].image: an image is required")
        _check_env(list(container.env), f"job.template.template.containers[{i}]")
    if template.task_count < 0:
        raise invalid("job.template.task_count must not be negative")
    template.task_count = template.task_count or 1
    if "max_retries" not in template.template:
        template.template.max_retries = DEFAULT_MAX_RETRIES
    if not template.template.timeout:
        template.template.timeout = DEFAULT_TIMEOUT
    elif not timedelta(0) < template.template.timeout <= MAX_TIMEOUT:
        raise invalid(f"job.template.template.timeout must be between 1 second and {MAX_TIMEOUT}")
    created = now()
    job.name, job.uid, job.etag = name, str(uuid.uuid4()), uuid.uuid4().hex
    job.generation = job.observed_generation = 1
    job.create_time = job.update_time = created
    job.reconciling = False
    job.terminal_condition = Condition(
        type_="Ready", state=Condition.State.CONDITION_SUCCEEDED, last_transition_time=created
    )
    return job


def merge_overrides(job: run_v2.Job, overrides: run_v2.RunJobRequest.Overrides) -> tuple[run_v2.TaskTemplate, int]:
    """The task template an execution runs (the job's, with the overrides applied) and its task count."""
    template = copy(job.template.template)
    if overrides.task_count < 0:
        raise invalid("overrides.task_count must not be negative")
    task_count = overrides.task_count or job.template.task_count or 1
    if overrides.timeout:
        if not timedelta(0) < overrides.timeout <= MAX_TIMEOUT:
            raise invalid(f"overrides.timeout must be between 1 second and {MAX_TIMEOUT}")
        template.timeout = overrides.timeout
    for i, override in enumerate(overrides.container_overrides):
        where = f"overrides.container_overrides[{i}]"
        container = _container(template, override.name, where)
        if override.clear_args and override.args:
            raise invalid(f"{where}: give args or clear_args, not both")
        if override.clear_args or override.args:
            container.args = list(override.args)
        _check_env(list(override.env), where)
        merged = {var.name: var for var in container.env}
        merged.update({var.name: var for var in override.env})
        container.env = list(merged.values())
    return template, task_count


def _container(template: run_v2.TaskTemplate, name: str, where: str) -> run_v2.Container:
    if not name:
        return template.containers[0]
    for container in template.containers:
        if container.name == name:
            return container
    raise invalid(f"{where}.name: the job has no container named {name!r}")


def task_env(container: run_v2.Container) -> dict[str, str]:
    """The container's plain environment variables (those from Secret Manager are left out: no secrets here)."""
    return {var.name: var.value for var in container.env if "value_source" not in var}


def status(resource: run_v2.Execution, run: ExecutionRun) -> run_v2.Execution:
    """The execution as the API reports it now: counts, times, conditions."""
    execution = copy(resource)
    counts = run.counts()
    execution.running_count = counts["running"] + counts["pending"]
    execution.succeeded_count = counts["succeeded"]
    execution.failed_count = counts["failed"]
    execution.cancelled_count = counts["cancelled"]
    execution.retried_count = sum(1 for task in run.tasks if task.retries)
    if run.started_at:
        execution.start_time = run.started_at
    if run.finished_at:
        execution.completion_time = run.finished_at
    execution.update_time = run.finished_at or run.started_at or resource.create_time
    execution.reconciling = not run.done
    execution.conditions = _conditions(execution, run)
    return execution


def _conditions(execution: run_v2.Execution, run: ExecutionRun) -> list[Condition]:
    created, started = execution.create_time, run.started_at or execution.create_time
    ok = Condition.State.CONDITION_SUCCEEDED
    return [
        Condition(type_="ResourcesAvailable", state=ok, last_transition_time=created),
        Condition(type_="Started", state=ok, last_transition_time=started),
        Condition(type_="Completed", last_transition_time=run.finished_at or started, **_completed(execution, run)),
    ]


def _completed(execution: run_v2.Execution, run: ExecutionRun) -> dict[str, object]:
    """State, reason and message of the execution's Completed condition."""
    reason = Condition.ExecutionReason
    execution_id = execution.name.rsplit("/", 1)[-1]
    failure = run.first_failure()
    if not run.done:
        if run.cancelled.is_set():
            return {
                "state": Condition.State.CONDITION_RECONCILING,
                "execution_reason": reason.CANCELLING,
                "message": "The execution is being cancelled.",
            }
        done = f"{execution.succeeded_count} / {execution.task_count} complete"
        return {"state": Condition.State.CONDITION_RECONCILING, "message": done}
    if execution.cancelled_count:
        cancelled = "The execution was cancelled."
        return {"state": Condition.State.CONDITION_FAILED, "execution_reason": reason.CANCELLED, "message": cancelled}
    if failure is not None:
        why = "the configured timeout was reached" if failure.timed_out else f"exit code {failure.exit_code}"
        message = (
            f"Task {execution_id}-task{failure.spec.index} failed with message: "
            f"The container exited with an error ({why})."
        )
        return {
            "state": Condition.State.CONDITION_FAILED,
            "execution_reason": reason.NON_ZERO_EXIT_CODE,
            "message": message,
        }
    success = f"Execution {execution_id} has successfully completed."
    return {"state": Condition.State.CONDITION_SUCCEEDED, "message": success}


def failure_message(execution: run_v2.Execution) -> str | None:
    """Why a completed execution failed (the error of its RunJob operation); None when it did not.
    A cancelled execution completes its operation without an error, as the real API does."""
    if execution.failed_count == 0 or execution.cancelled_count:
        return None
    completed = execution.conditions[-1]
    return completed.message or "The execution failed."


def page(items: list[M], page_size: int, page_token: str) -> tuple[list[M], str]:
    """One page of a list call and the token of the next ("" at the end)."""
    try:
        start = int(page_token or 0)
    except ValueError:
        raise invalid(f"page_token {page_token!r} is invalid") from None
    size = page_size if page_size > 0 else 100
    end = start + size
    return items[start:end], (str(end) if end < len(items) else "")
