"""The Cloud Run job of a workspace, as pure functions over `run_v2` messages: its template (image,
resources, timeout, retries, the environment the agent shares with the control plane), the
overrides of one execution, and the port's view of an execution."""

from __future__ import annotations

from datetime import timedelta

from google.cloud import run_v2

from agentfleet.ports import ATTEMPT_ENV, TASK_ID_ENV, Execution
from agentfleet.settings import BUILTIN_MCP_SERVERS, Settings
from agentfleet.tasks import Task

TEARDOWN_MARGIN_S = 300
"""Beyond the agent's own time limit, for it to save its result and snapshot before Cloud Run kills it."""
CONTAINER = "agent"
JOB_PREFIX = "agent-"
TEMPLATE_LABEL = "agentfleet-template"


def job_id(workspace_id: str) -> str:
    return f"{JOB_PREFIX}{workspace_id}"


def job_environment(settings: Settings) -> dict[str, str]:
    """The non-secret settings the agent container shares with the control plane. Secrets
    (LLM_API_KEY, the git token) are not here: they come from Secret Manager (`job_secrets`)."""
    env = {
        "AGENTFLEET_BACKEND": "gcp",
        "PROJECT_ID": settings.require("project_id"),
        "REGION": settings.region,
        "GCS_BUCKET": settings.require("gcs_bucket"),
        "AGENTFLEET_MODEL": settings.model,
        "AGENTFLEET_MODEL_PROFILE": settings.model_profile,
        "AGENTFLEET_TASKS_COLLECTION": settings.tasks_collection,
        "AGENTFLEET_PUBSUB_TOPIC": settings.pubsub_topic,
        "AGENTFLEET_FIRESTORE_DATABASE": settings.firestore_database,
        "AGENTFLEET_ARTIFACTS_PREFIX": settings.artifacts_prefix,
        "AGENTFLEET_HEARTBEAT_INTERVAL_S": str(settings.heartbeat_interval_s),
        "AGENTFLEET_MAX_CONCURRENT_PER_WORKSPACE": str(settings.max_concurrent_per_workspace),
        # The agent's limits when a task gives none: the same on both sides of the dispatch.
        "AGENTFLEET_DEFAULT_MAX_STEPS": str(settings.default_max_steps),
        "AGENTFLEET_DEFAULT_TIMEOUT_S": str(settings.default_timeout_s),
        "AGENTFLEET_DEFAULT_MAX_TOKENS": str(settings.default_max_tokens),
        "AGENTFLEET_REASONING_EFFORT": settings.reasoning_effort,
        "AGENTFLEET_SANDBOX": settings.job_sandbox,
    }
    if settings.job_sandbox == "none":  # chosen for the deployment: the container is the only sandbox
        env["AGENTFLEET_ALLOW_UNSANDBOXED"] = "true"
    if settings.mcp_servers != BUILTIN_MCP_SERVERS:
        env["AGENTFLEET_MCP_SERVERS"] = settings.mcp_servers_json()
    if settings.llm_identity_token is not None:
        env["AGENTFLEET_LLM_IDENTITY_TOKEN"] = "true" if settings.llm_identity_token else "false"
    if settings.gpt_oss_url:
        env["GPT_OSS_URL"] = settings.gpt_oss_url
    if settings.llm_max_reply_tokens is not None:
        env["AGENTFLEET_LLM_MAX_REPLY_TOKENS"] = str(settings.llm_max_reply_tokens)
    return env


def secret_environment(settings: Settings) -> list[run_v2.EnvVar]:
    """The job's secrets, each a variable whose value Cloud Run reads from Secret Manager at start:
    `projects/P/secrets/NAME/versions/V` (or `NAME` alone: its latest version)."""
    env = []
    for name, resource in sorted(settings.job_secrets.items()):
        secret, _, version = resource.partition("/versions/")
        source = run_v2.SecretKeySelector(secret=secret, version=version or "latest")
        env.append(run_v2.EnvVar(name=name, value_source=run_v2.EnvVarSource(secret_key_ref=source)))
    return env


def execution_timeout_s(task: Task, settings: Settings) -> int:
    """Cloud Run's limit for the attempt: the task's own time limit plus room to save its work,
    else the job's timeout (at least the default agent limit plus that room)."""
    if task.request.options.timeout_s:
        return task.request.options.timeout_s + TEARDOWN_MARGIN_S
    return max(settings.job_timeout_s, settings.default_timeout_s + TEARDOWN_MARGIN_S)


def job_template(settings: Settings) -> run_v2.ExecutionTemplate:
    container = run_v2.Container(
        name=CONTAINER,
        image=settings.require("job_image"),
        env=[run_v2.EnvVar(name=k, value=v) for k, v in sorted(job_environment(settings).items())]
        + secret_environment(settings),
        resources=run_v2.ResourceRequirements(limits={"cpu": settings.job_cpu, "memory": settings.job_memory}),
    )
    return run_v2.ExecutionTemplate(
        task_count=1,
        template=run_v2.TaskTemplate(
            containers=[container],
            max_retries=settings.job_max_retries,
            timeout=timedelta(seconds=settings.job_timeout_s),
            service_account=settings.job_service_account or "",
            # gen2: full Linux (namespaces for bubblewrap); gen1's gVisor sandbox cannot nest one
            execution_environment=run_v2.ExecutionEnvironment.EXECUTION_ENVIRONMENT_GEN2,
        ),
    )


def overrides(task: Task, settings: Settings) -> run_v2.RunJobRequest.Overrides:
    env = [run_v2.EnvVar(name=TASK_ID_ENV, value=task.id), run_v2.EnvVar(name=ATTEMPT_ENV, value=str(task.attempt))]
    return run_v2.RunJobRequest.Overrides(
        container_overrides=[run_v2.RunJobRequest.Overrides.ContainerOverride(name=CONTAINER, env=env)],
        task_count=1,
        timeout=timedelta(seconds=execution_timeout_s(task, settings)),
    )


def to_execution(resource: run_v2.Execution) -> Execution | None:
    """The port's view of a Cloud Run execution; None when it is not an agent attempt of ours."""
    env = {var.name: var.value for container in resource.template.containers for var in container.env}
    task_id, attempt = env.get(TASK_ID_ENV), env.get(ATTEMPT_ENV, "")
    job = resource.job.rsplit("/", 1)[-1]
    if not task_id or not attempt.isdigit() or not job.startswith(JOB_PREFIX):
        return None
    if not resource.completion_time:
        state = "running"
    elif resource.cancelled_count:
        state = "cancelled"
    elif resource.failed_count or resource.succeeded_count < resource.task_count:
        state = "failed"
    else:
        state = "succeeded"
    return Execution(
        name=resource.name,
        task_id=task_id,
        attempt=int(attempt),
        workspace_id=job.removeprefix(JOB_PREFIX),
        state=state,
        started_at=resource.start_time or resource.create_time,
    )
