"""JobRunner on Cloud Run Jobs: one Job per workspace, one execution per attempt of a task.

The job `agent-<workspace_id>` is created on first use from the settings (image, service account,
resources, timeout, retries, and the environment the agent shares with the control plane) and
reused afterwards; a label carries a fingerprint of that template, and a job whose fingerprint
differs (a new image was deployed, a setting changed) is updated before it runs again.

`launch` runs the job with per-execution overrides (AGENTFLEET_TASK_ID, AGENTFLEET_ATTEMPT, the
timeout) and returns as soon as Cloud Run has created the execution: its name comes from the
RunJob operation's metadata, which is the Execution. It does not wait for the execution to end.
Launching is idempotent: an execution whose overrides carry the same task and attempt is
returned instead of starting another, and a lock per (task, attempt) makes concurrent launches in
one process start one execution. Across processes, duplicates are prevented upstream: only the
dispatcher that wins the TaskStore's QUEUED→DISPATCHED compare-and-set launches an attempt.

Errors: a failure a retry can fix (Cloud Run unavailable, a deadline, a quota) raises a
ConnectionError or TimeoutError, so that dispatch gives the attempt back to the queue; one that
needs a person (permissions, a bad image or setting) raises JobLaunchError saying what to fix.
Every call has a deadline: nothing here hangs.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import run_v2

from agentfleet.errors import AgentFleetError, ConfigError
from agentfleet.gcp import errors
from agentfleet.gcp.errors import GcpUnavailableError, JobLaunchError
from agentfleet.gcp.job_template import JOB_PREFIX, TEMPLATE_LABEL, job_id, job_template, overrides, to_execution
from agentfleet.ports import Execution
from agentfleet.settings import Settings
from agentfleet.tasks import Task

__all__ = ["CloudRunJobRunner", "JobLaunchError"]

logger = logging.getLogger("agentfleet.gcp.jobs")

CALL_TIMEOUT_S = 30.0
JOB_READY_TIMEOUT_S = 60.0
HEALTH_TIMEOUT_S = 10.0

_LAUNCH_LOCKS = [threading.Lock() for _ in range(64)]
"""Striped per (task, attempt): concurrent launches of one attempt in this process run one at a time."""


REFUSED_FIX = (
    "check AGENTFLEET_JOB_IMAGE (does the image exist and can Cloud Run pull it?), AGENTFLEET_JOB_CPU, "
    "AGENTFLEET_JOB_MEMORY and AGENTFLEET_JOB_SERVICE_ACCOUNT"
)
PERMISSION_FIX = (
    "grant the dispatching service account roles/run.developer and roles/iam.serviceAccountUser on "
    "AGENTFLEET_JOB_SERVICE_ACCOUNT"
)


def translate(exc: BaseException, what: str) -> AgentFleetError:
    """The family's error for a failed Cloud Run call (gcp/errors.py), with what to fix."""
    return errors.translate(exc, what, fix=REFUSED_FIX, permission_fix=PERMISSION_FIX)


class CloudRunJobRunner:
    def __init__(
        self,
        settings: Settings,
        jobs: run_v2.JobsClient | None = None,
        executions: run_v2.ExecutionsClient | None = None,
    ) -> None:
        """Without clients, they are made from the settings at the first call that needs them:
        a process that never launches (the agent itself) needs no Cloud Run credentials."""
        self.settings = settings
        self._jobs, self._executions = jobs, executions
        self._clients_lock = threading.Lock()
        self.location = settings.location
        self._ready: set[str] = set()
        """Jobs known to exist with the current template (per runner: a deploy starts afresh)."""
        self._ready_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> CloudRunJobRunner:
        return cls(settings)

    @property
    def jobs(self) -> run_v2.JobsClient:
        if self._jobs is None:
            self._connect()
        assert self._jobs is not None
        return self._jobs

    @property
    def executions(self) -> run_v2.ExecutionsClient:
        if self._executions is None:
            self._connect()
        assert self._executions is not None
        return self._executions

    def _connect(self) -> None:
        """Clients for Google's endpoint, or a plaintext channel to AGENTFLEET_CLOUD_RUN_ENDPOINT."""
        with self._clients_lock:
            if self._jobs is not None and self._executions is not None:
                return
            endpoint = self.settings.cloud_run_endpoint
            if endpoint:
                import grpc
                from google.cloud.run_v2.services.executions.transports import ExecutionsGrpcTransport
                from google.cloud.run_v2.services.jobs.transports import JobsGrpcTransport

                channel = grpc.insecure_channel(endpoint)
                self._jobs = run_v2.JobsClient(transport=JobsGrpcTransport(channel=channel))
                self._executions = run_v2.ExecutionsClient(transport=ExecutionsGrpcTransport(channel=channel))
                return
            from google.auth.exceptions import DefaultCredentialsError

            try:
                self._jobs, self._executions = run_v2.JobsClient(), run_v2.ExecutionsClient()
            except DefaultCredentialsError as exc:
                raise ConfigError(
                    f"no Google Cloud credentials for Cloud Run ({exc}); run `gcloud auth application-default "
                    "login` or run with a service account"
                ) from exc

    # --- the port ------------------------------------------------------------------------

    def launch(self, task: Task) -> Execution:
        """Start an execution for the task's current attempt, or return the one already started."""
        job = self._ensure_job(task.workspace_id)
        with _LAUNCH_LOCKS[hash((task.id, task.attempt)) % len(_LAUNCH_LOCKS)]:
            found = self._find(job, task)
            if found is not None:
                return found
            try:
                return self._run(job, task)
            except JobLaunchError as exc:
                if not isinstance(exc.__cause__, gexc.NotFound):
                    raise
            # The job was deleted since it was checked: create it again, once.
            with self._ready_lock:
                self._ready.discard(job)
            return self._run(self._ensure_job(task.workspace_id), task)

    def cancel(self, execution: str) -> None:
        """Cancel a running execution (a full name, or an execution id of an agent job); one that is
        unknown or already finished is left as it is. Best effort: a failure is logged, not raised,
        since callers have already moved the task on, and an agent whose attempt is no longer
        current stops itself at its next heartbeat."""
        name = self._execution_name(execution)
        if name is None:
            return
        try:
            self.executions.cancel_execution(name=name, timeout=CALL_TIMEOUT_S)
        except (gexc.NotFound, gexc.FailedPrecondition, gexc.InvalidArgument):
            return
        except (gexc.GoogleAPIError, OSError) as exc:
            logger.warning("could not cancel %s: %s", name, translate(exc, "cancelling"))
            return
        logger.info("cancelled %s", name)

    def list_active(self) -> list[Execution]:
        """Agent executions of this location that have not completed, oldest first."""
        active = [e for e in map(to_execution, self._list(f"{self.location}/jobs/-")) if e and e.state == "running"]
        return sorted(active, key=lambda e: (e.started_at is None, e.started_at))

    def health(self) -> dict[str, Any]:
        report: dict[str, Any] = {"backend": "cloud-run", "location": self.location, "ok": False}
        if self.settings.cloud_run_endpoint:
            report["endpoint"] = self.settings.cloud_run_endpoint
        try:
            request = run_v2.ListJobsRequest(parent=self.location, page_size=1)
            self.jobs.list_jobs(request=request, timeout=HEALTH_TIMEOUT_S)
        except (gexc.GoogleAPIError, OSError, ConfigError) as exc:
            report["error"] = f"{type(exc).__name__}: {exc}"
            return report
        report["ok"] = True
        return report

    # --- Cloud Run extras --------------------------------------------------------------------

    def get(self, execution: str) -> Execution | None:
        """The execution as Cloud Run reports it now; None when unknown or not an agent attempt."""
        name = self._execution_name(execution)
        if name is None:
            return None
        try:
            resource = self.executions.get_execution(name=name, timeout=CALL_TIMEOUT_S)
        except (gexc.NotFound, gexc.InvalidArgument):
            return None
        except (gexc.GoogleAPIError, OSError) as exc:
            raise translate(exc, f"reading {name}") from exc
        return to_execution(resource)

    # --- jobs ----------------------------------------------------------------------------

    def _ensure_job(self, workspace_id: str) -> str:
        """The job of the workspace, created or brought up to date when needed."""
        name = f"{self.location}/jobs/{job_id(workspace_id)}"
        with self._ready_lock:
            if name in self._ready:
                return name
        template = job_template(self.settings)
        serialized = run_v2.ExecutionTemplate.pb(template).SerializeToString(deterministic=True)
        fingerprint = hashlib.sha256(serialized).hexdigest()[:16]
        labels = {"managed-by": "agentfleet", "agentfleet-workspace": workspace_id, TEMPLATE_LABEL: fingerprint}
        try:
            job = self.jobs.get_job(name=name, timeout=CALL_TIMEOUT_S)
        except gexc.NotFound:
            self._create_job(name, run_v2.Job(labels=labels, template=template))
        except (gexc.GoogleAPIError, OSError) as exc:
            raise translate(exc, f"reading the Cloud Run job {name}") from exc
        else:
            if job.labels.get(TEMPLATE_LABEL) != fingerprint:
                update = run_v2.UpdateJobRequest(job=run_v2.Job(name=name, labels=labels, template=template))
                self._wait(f"updating the Cloud Run job {name}", self.jobs.update_job, update)
                logger.info("Cloud Run job %s updated to template %s", name, fingerprint)
        with self._ready_lock:
            self._ready.add(name)
        return name

    def _create_job(self, name: str, job: run_v2.Job) -> None:
        parent, _, job_name = name.rpartition("/jobs/")
        request = run_v2.CreateJobRequest(parent=parent, job=job, job_id=job_name)
        try:
            self._wait(f"creating the Cloud Run job {name}", self.jobs.create_job, request)
        except JobLaunchError as exc:
            if not isinstance(exc.__cause__, gexc.AlreadyExists):  # else another dispatcher created it
                raise
        logger.info("Cloud Run job %s is ready", name)

    def _wait(self, what: str, call: Any, request: Any) -> None:
        """Call a method that returns an operation and wait until the operation is done."""
        try:
            call(request=request, timeout=CALL_TIMEOUT_S).result(timeout=JOB_READY_TIMEOUT_S)
        except (gexc.GoogleAPIError, OSError) as exc:
            raise translate(exc, what) from exc

    # --- executions ----------------------------------------------------------------------

    def _run(self, job: str, task: Task) -> Execution:
        request = run_v2.RunJobRequest(name=job, overrides=overrides(task, self.settings))
        try:
            operation = self.jobs.run_job(request=request, timeout=CALL_TIMEOUT_S)
        except (gexc.GoogleAPIError, OSError) as exc:
            raise translate(exc, f"running {job}") from exc
        execution = to_execution(operation.metadata) if operation.metadata is not None else None
        if execution is None:  # no metadata: look the execution up by its overrides
            execution = self._find(job, task)
        if execution is None:
            raise GcpUnavailableError(f"running {job}: Cloud Run did not say which execution it started")
        logger.info("started %s", execution.name, extra={"task_id": task.id})
        return execution

    def _find(self, job: str, task: Task) -> Execution | None:
        """The execution of the job already started for this attempt of the task, if any."""
        try:
            for resource in self._list(job):
                execution = to_execution(resource)
                if execution is not None and (execution.task_id, execution.attempt) == (task.id, task.attempt):
                    return execution
        except JobLaunchError as exc:
            if isinstance(exc.__cause__, gexc.NotFound):
                return None
            raise
        return None

    def _list(self, parent: str) -> Iterator[run_v2.Execution]:
        request = run_v2.ListExecutionsRequest(parent=parent, page_size=100)
        try:
            yield from self.executions.list_executions(request=request, timeout=CALL_TIMEOUT_S)
        except (gexc.GoogleAPIError, OSError) as exc:
            raise translate(exc, f"listing the executions of {parent}") from exc

    def _execution_name(self, execution: str) -> str | None:
        """A full execution name from a full name or an execution id (`<job>-<suffix>`)."""
        if execution.startswith("projects/"):
            return execution
        job, sep, _ = execution.rpartition("-")
        if not sep or not job.startswith(JOB_PREFIX):
            return None
        return f"{self.location}/jobs/{job}/executions/{execution}"
