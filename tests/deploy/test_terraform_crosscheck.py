"""terraform/ against the code it deploys: entry points, settings, indexes, IAM, exposure, scaling.

Each test reads both sides (the Terraform with python-hcl2, the Python with ast or by importing it),
so that a change on one side that the other does not follow fails here, not at deploy time.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agentfleet.settings import SEED_NAMES, Settings
from tests.deploy.hcl import (
    ENV_DEV,
    MODULES,
    ROOT,
    TERRAFORM,
    Resource,
    blocks,
    load,
    locals_of,
    one,
    ref,
    resources,
    strip_quotes,
    tf_files,
    walk_strings,
)

SRC = ROOT / "src" / "agentfleet"
IAM_ROLES = json.loads((TERRAFORM / "iam_roles.json").read_text())
FUNCTIONS_TF = MODULES / "functions" / "main.tf"
MESSAGE_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
PUBLIC = ("allUsers", "allAuthenticatedUsers")

# The environment of the functions, as agreed between the deployment and the code: the settings the
# control plane reads and the dispatcher copies into each agent job. No secret is among them.
CONTRACT_ENV = {
    "AGENTFLEET_BACKEND",
    "PROJECT_ID",
    "REGION",
    "GCS_BUCKET",
    "GPT_OSS_URL",
    "AGENTFLEET_MODEL",
    "AGENTFLEET_MODEL_PROFILE",
    "AGENTFLEET_JOB_IMAGE",
    "AGENTFLEET_JOB_SERVICE_ACCOUNT",
    "AGENTFLEET_JOB_CPU",
    "AGENTFLEET_JOB_MEMORY",
    "AGENTFLEET_JOB_TIMEOUT_S",
    "AGENTFLEET_JOB_MAX_RETRIES",
    "AGENTFLEET_PUBSUB_TOPIC",
    "AGENTFLEET_FIRESTORE_DATABASE",
    "AGENTFLEET_TASKS_COLLECTION",
    "AGENTFLEET_JOB_SECRETS",
    "AGENTFLEET_JOB_SANDBOX",
    "AGENTFLEET_REASONING_EFFORT",
    "AGENTFLEET_MCP_SERVERS",
}
SECRET_ENV = {"LLM_API_KEY", "AGENTFLEET_LLM_API_KEY", "AGENTFLEET_API_TOKEN", "AGENTFLEET_GIT_TOKEN"}


def env_name(field: str) -> str:
    """The environment variable of a Settings field (the seed names are unprefixed)."""
    return field.upper() if field in SEED_NAMES else f"AGENTFLEET_{field.upper()}"


def py_tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def functions() -> dict[str, Resource]:
    """The deployed functions by entry point."""
    found = {}
    for r in resources(TERRAFORM, "google_cloudfunctions2_function"):
        entry = one(r.body["build_config"])["entry_point"]
        assert entry not in found, f"entry point {entry} is deployed twice"
        found[entry] = r
    return found


# --- layout -----------------------------------------------------------------------------------


MODULE_FILES = {"main.tf", "variables.tf", "outputs.tf", "versions.tf", "README.md"}


def test_layout_modules_and_environment() -> None:
    modules = sorted(p for p in MODULES.iterdir() if p.is_dir())
    assert modules, "terraform/modules/ has no module"
    for module in modules:
        missing = MODULE_FILES - {p.name for p in module.iterdir()}
        assert not missing, f"{module.relative_to(ROOT)} lacks {sorted(missing)}"
    env_files = {p.name for p in ENV_DEV.iterdir()}
    assert {
        "main.tf",
        "variables.tf",
        "outputs.tf",
        "versions.tf",
        "terraform.tfvars.example",
        "README.md",
    } <= env_files
    # Every module folder is used by the environment, and every module source exists.
    sources = {Path(m["source"]).name for m in blocks(ENV_DEV / "main.tf", "module").values()}
    assert sources == {m.name for m in modules}
    assert "secrets" in blocks(ENV_DEV / "main.tf", "module"), "deploy.sh applies -target=module.secrets"


def test_only_the_google_provider_with_the_agreed_constraint() -> None:
    for path in tf_files():
        for tf in load(path).get("terraform", []):
            for providers in tf.get("required_providers", []):
                assert set(providers) == {"google"}, f"{path}: only hashicorp/google is allowed"
                assert providers["google"]["source"] == "hashicorp/google"
                assert providers["google"]["version"] == ">= 6.0, < 9.0"
    used = {r.type for r in resources()}
    assert all(t.startswith("google_") or t == "terraform_data" for t in used), sorted(used)
    for path in tf_files():
        for block in load(path).get("data", []):
            assert all(t.startswith("google_") for t in block), f"{path}: data source {list(block)}"


def test_variables_are_typed_and_described_and_outputs_described() -> None:
    for path in tf_files():
        for name, var in blocks(path, "variable").items():
            assert var.get("type"), f"{path.relative_to(ROOT)}: variable {name} has no type"
            assert var.get("description"), f"{path.relative_to(ROOT)}: variable {name} has no description"
        for name, out in blocks(path, "output").items():
            assert out.get("description"), f"{path.relative_to(ROOT)}: output {name} has no description"


def test_root_variables_and_outputs_of_the_contract() -> None:
    variables = blocks(ENV_DEV / "variables.tf", "variable")
    required = {"project_id", "bucket_name", "agent_image", "gpt_oss_image", "functions_source_zip"}
    defaults = {
        "region": "us-central1",
        "deployment_name": "agentfleet",
        "gpt_oss_model": "openai/gpt-oss-20b",
        "gpt_oss_max_instances": 1,
        "agent_sandbox": "bwrap",
        "mcp_image": "",
        "deploy_mcp": False,
        "mcp_servers_deployed": ["media", "computer", "a2a"],
        "mcp_server_args": {},
        "deploy_toolbox": False,
        "alert_email": "",
        "invokers": [],
    }
    for name in required:
        assert name in variables and "default" not in variables[name], f"{name} is a required root variable"
    for name, default in defaults.items():
        assert variables[name].get("default") == default, f"root variable {name} defaults to {default!r}"
    assert set(blocks(ENV_DEV / "outputs.tf", "output")) == {"api_url", "bucket", "model_url", "artifact_registry"}


def test_terraform_fmt() -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        assert not os.environ.get("AGENTFLEET_REQUIRE_TERRAFORM"), (
            "AGENTFLEET_REQUIRE_TERRAFORM is set: install terraform"
        )
        pytest.skip(
            "terraform is not installed: `terraform fmt -check` cannot run (see https://developer.hashicorp.com/terraform/install)"
        )
    proc = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", str(TERRAFORM)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"terraform fmt would change:\n{proc.stdout}{proc.stderr}"


# --- entry points and settings ---------------------------------------------------------------


def decorated_entry_points() -> dict[str, str]:
    """functions/main.py's entry points: name → 'http' or 'cloud_event'."""
    found = {}
    for node in py_tree(ROOT / "functions" / "main.py").body:
        if isinstance(node, ast.FunctionDef):
            for deco in node.decorator_list:
                if (
                    isinstance(deco, ast.Attribute)
                    and isinstance(deco.value, ast.Name)
                    and deco.value.id == "functions_framework"
                ):
                    found[node.name] = deco.attr
    return found


def test_every_entry_point_is_deployed_with_its_trigger() -> None:
    entry_points = decorated_entry_points()
    assert entry_points == {"orchestrate": "http", "dispatch": "cloud_event", "reap": "http"}, entry_points
    deployed = functions()
    assert set(deployed) == set(entry_points), "a function is deployed that main.py does not define, or not deployed"
    for name, kind in entry_points.items():
        body = deployed[name].body
        if kind == "http":
            assert "event_trigger" not in body, f"{name} is HTTP: no event trigger"
        else:
            trigger = one(body["event_trigger"])
            assert trigger["event_type"] == MESSAGE_PUBLISHED
            assert trigger["retry_policy"] == "RETRY_POLICY_RETRY", "a RetryableError must be redelivered"
            assert ref(trigger["pubsub_topic"]) == "var.topic_id"
            assert ref(trigger["service_account_email"]) == "var.service_accounts.dispatch_trigger"
        build = one(body["build_config"])
        storage = one(one(build["source"])["storage_source"])
        assert ref(storage["object"]) == "local.source.object"
    source = next(r for r in resources(MODULES / "functions", "google_storage_bucket_object"))
    assert source.body["name"] == "functions/${filemd5(var.source_zip)}.zip", "the archive is named by its md5"


def test_the_scheduler_calls_reap_with_an_oidc_token() -> None:
    (job,) = resources(TERRAFORM, "google_cloud_scheduler_job")
    target = one(job.body["http_target"])
    assert ref(target["uri"]) == "google_cloudfunctions2_function.reap.service_config[0].uri"
    oidc = one(target["oidc_token"])
    assert ref(oidc["service_account_email"]) == "var.service_accounts.scheduler"


def function_environment() -> dict[str, Any]:
    env = locals_of(FUNCTIONS_TF)["environment"]
    assert isinstance(env, dict)
    return env


def test_functions_get_exactly_the_contract_environment() -> None:
    env = function_environment()
    assert set(env) == CONTRACT_ENV
    assert not set(env) & SECRET_ENV, "the functions never get a secret"
    for name, fn in functions().items():
        service = one(fn.body["service_config"])
        assert ref(service["environment_variables"]) == "local.environment", f"{name} gets the shared environment"
    assert env["AGENTFLEET_BACKEND"] == "gcp"
    assert ref(env["AGENTFLEET_JOB_SECRETS"]) == "jsonencode(var.job.secrets)"
    assert ref(env["AGENTFLEET_MCP_SERVERS"]) == "jsonencode(var.mcp_servers)"
    # The job's secrets are Secret Manager references of the two secrets, never values.
    dev = locals_of(ENV_DEV / "main.tf")
    secrets = dev["job_secret_refs"]
    assert set(secrets) == {"LLM_API_KEY", "AGENTFLEET_GIT_TOKEN"}
    # the git token only once it has a version (use_git_token); the LLM key always
    assert "var.use_git_token" in dev["job_secrets"] and "local.job_secret_refs" in dev["job_secrets"]
    for value in secrets.values():
        assert re.fullmatch(
            r"projects/\$\{var\.project_id\}/secrets/\$\{module\.secrets\.ids\[\"[a-z-]+\"\]\}/versions/latest", value
        )


def test_function_environment_names_are_settings() -> None:
    """Each variable is one the code reads; the three the code is gaining are named as such."""
    known = {env_name(field) for field in Settings.model_fields}
    pending = {"AGENTFLEET_JOB_SECRETS", "AGENTFLEET_JOB_SANDBOX", "AGENTFLEET_REASONING_EFFORT"}
    unknown = set(function_environment()) - known - pending
    assert not unknown, f"not a setting of agentfleet.settings.Settings: {sorted(unknown)}"


def settings_the_gcp_backend_needs() -> set[str]:
    """Settings the gcp backend cannot run without: every settings.require("x") in gcp/ and settings.py
    (the location property), and every job_* setting the job template and runner read."""
    needed = set()
    for path in [*sorted((SRC / "gcp").glob("*.py")), SRC / "settings.py"]:
        for node in ast.walk(py_tree(path)):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "require"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                needed.add(str(node.args[0].value))
            if isinstance(node, ast.Attribute) and node.attr.startswith("job_") and node.attr in Settings.model_fields:
                needed.add(node.attr)
    return needed


def test_every_setting_the_code_requires_is_set_on_the_functions() -> None:
    needed = settings_the_gcp_backend_needs()
    assert {"project_id", "gcs_bucket", "job_image"} <= needed, f"the scan found too little: {needed}"
    env = function_environment()
    missing = {env_name(s) for s in needed} - set(env)
    assert not missing, f"required by the gcp backend but not set on the functions: {sorted(missing)}"


def test_model_url_is_the_openai_base_of_the_gpt_oss_service() -> None:
    functions_module = blocks(ENV_DEV / "main.tf", "module")["functions"]
    assert ref(functions_module["gpt_oss_url"]) == "module.gpt_oss.openai_base_url"
    outputs = blocks(MODULES / "gpt-oss" / "outputs.tf", "output")
    assert outputs["openai_base_url"]["value"] == "${google_cloud_run_v2_service.gpt_oss.uri}/v1"


# --- Firestore ------------------------------------------------------------------------------------


def test_firestore_indexes_are_read_from_the_codes_file() -> None:
    local = locals_of(MODULES / "firestore" / "main.tf")
    assert "jsondecode(file(local.indexes_file)).indexes" in local["indexes"]
    assert local["indexes_file"].endswith('"${path.module}/../../../src/agentfleet/gcp/firestore_indexes.json")}')
    (index,) = resources(MODULES / "firestore", "google_firestore_index")
    assert ref(index.body["for_each"]) == "local.indexes", "one index per entry of the file"
    (dynamic,) = index.body["dynamic"]
    assert ref(dynamic["fields"]["for_each"]) == "each.value.fields"
    assert ref(index.body["query_scope"]) == "each.value.query_scope"
    # The path the environment passes is the same file.
    env_path = blocks(ENV_DEV / "main.tf", "module")["firestore"]["indexes_file"]
    resolved = (ENV_DEV / env_path.replace("${path.module}/", "")).resolve()
    assert resolved == (SRC / "gcp" / "firestore_indexes.json").resolve()
    # Each entry becomes one index: the keys the for-expression makes are distinct, the values valid.
    entries = json.loads(resolved.read_text())["indexes"]
    keys = ["-".join([e["collection"], *(f"{f['field_path']}:{f['order']}" for f in e["fields"])]) for e in entries]
    assert len(set(keys)) == len(entries) > 0
    for entry in entries:
        assert entry["query_scope"] in ("COLLECTION", "COLLECTION_GROUP")
        assert all(f["order"] in ("ASCENDING", "DESCENDING") for f in entry["fields"])


# --- IAM ---------------------------------------------------------------------------------------------


def custom_role_keys() -> dict[str, str]:
    """Terraform resource name of each custom role → its key in iam_roles.json (role_id's suffix)."""
    return {
        r.name: r.body["role_id"].rsplit("_", 1)[-1]
        for r in resources(MODULES / "iam", "google_project_iam_custom_role")
    }


def grant_of(r: Resource) -> tuple[str, str, str, str | None]:
    """(member, role, on, condition prefix) of one *_iam_member resource of the iam module."""
    member_expr = ref(r.body["member"])
    if member_expr == "each.value":
        assert ref(r.body["for_each"]) == "toset(var.invokers)", f"{r.name}: for_each over what?"
        member = "invokers"
    elif member_expr and member_expr.startswith("local.sa."):
        member = member_expr.removeprefix("local.sa.")
    elif member_expr == "local.pubsub_service_agent":
        member = "pubsub_service_agent"
    else:
        raise AssertionError(f"{r.type}.{r.name}: member {r.body['member']!r} is not a known identity")
    role = r.body["role"]
    role_expr = ref(role)
    if role_expr:
        match = re.fullmatch(r"google_project_iam_custom_role\.(\w+)\.id", role_expr)
        assert match, f"{r.name}: role {role!r}"
        role = f"custom:{custom_role_keys()[match[1]]}"
    kind = r.type.removeprefix("google_").removesuffix("_iam_member")
    if kind == "project":
        on = "project"
    elif kind == "storage_bucket":
        assert ref(r.body["bucket"]) == "var.bucket"
        on = "bucket"
    elif kind == "artifact_registry_repository":
        assert ref(r.body["repository"]) == "var.repository_id"
        on = "repository"
    elif kind == "pubsub_topic":
        on = {"var.topic_id": "topic:tasks", "var.dead_letter_topic_id": "topic:dead_letter"}[
            ref(r.body["topic"]) or ""
        ]
    elif kind == "secret_manager_secret":
        match = re.fullmatch(r'var\.secret_ids\["([a-z-]+)"\]', ref(r.body["secret_id"]) or "")
        assert match, f"{r.name}: secret {r.body['secret_id']!r}"
        on = f"secret:{match[1]}"
    elif kind == "cloud_run_v2_service" and ref(r.body["name"]) == "each.value":
        # One binding per deployed shared MCP service.
        assert ref(r.body["for_each"]) == "var.services.mcp", f"{r.name}: for_each over what?"
        on = "service:mcp[*]"
    elif kind == "cloud_run_v2_service":
        match = re.fullmatch(r"var\.services\.(\w+)", ref(r.body["name"]) or "")
        assert match, f"{r.name}: service {r.body['name']!r}"
        on = f"service:{match[1]}"
    elif kind == "service_account":
        match = re.fullmatch(r"var\.service_account_ids\.(\w+)", ref(r.body["service_account_id"]) or "")
        assert match, f"{r.name}: service account {r.body['service_account_id']!r}"
        on = f"service_account:{match[1]}"
    else:
        raise AssertionError(f"{r.type}: a kind of grant iam_roles.json does not describe")
    condition = None
    if "condition" in r.body:
        expression = one(r.body["condition"])["expression"]
        match = re.fullmatch(
            r'resource\.name\.startsWith\("projects/_/buckets/\$\{var\.bucket\}/objects/([^"]+)"\)', expression
        )
        assert match, f"{r.name}: condition {expression!r}"
        condition = match[1]
    return member, role, on, condition


def test_iam_grants_are_exactly_the_allowed_list() -> None:
    granted = [grant_of(r) for r in resources(MODULES / "iam") if r.type.endswith("_iam_member")]
    assert len(granted) == len(set(granted)), "a grant is made twice"
    allowed = [(g["member"], g["role"], g["on"], g.get("condition")) for g in IAM_ROLES["grants"]]
    assert len(allowed) == len(set(allowed)), "iam_roles.json lists a grant twice"
    assert all(g.get("why") for g in IAM_ROLES["grants"]), "every allowed grant says why"
    assert set(granted) - set(allowed) == set(), "granted but not in terraform/iam_roles.json"
    assert set(allowed) - set(granted) == set(), "in terraform/iam_roles.json but not granted"


def test_custom_roles_hold_exactly_the_allowed_permissions() -> None:
    roles = {custom_role_keys()[r.name]: r.body for r in resources(MODULES / "iam", "google_project_iam_custom_role")}
    assert set(roles) == set(IAM_ROLES["custom_roles"])
    for key, body in roles.items():
        assert sorted(body["permissions"]) == sorted(IAM_ROLES["custom_roles"][key]["permissions"]), key
    assert set(roles["jobLauncher"]["permissions"]) == {
        "run.jobs.create",
        "run.jobs.get",
        "run.jobs.update",
        "run.jobs.run",
        "run.jobs.runWithOverrides",
        "run.executions.get",
        "run.executions.list",
        "run.executions.cancel",
        "run.operations.get",
    }


def test_no_iam_outside_the_iam_module_and_no_authoritative_iam() -> None:
    for r in resources():
        if "_iam_" in r.type:
            assert r.file.parent == MODULES / "iam", f"{r.type}.{r.name} in {r.file}: IAM lives in modules/iam"
            assert r.type.endswith(("_iam_member", "_iam_custom_role")), f"{r.type}: only additive grants"
    # The dispatcher may act as the agent account only: that grant is on the account, not the project.
    project_roles = {grant_of(r)[1] for r in resources(MODULES / "iam", "google_project_iam_member")}
    assert "roles/iam.serviceAccountUser" not in project_roles
    assert not {
        r for r in project_roles if r in ("roles/owner", "roles/editor", "roles/run.admin", "roles/run.developer")
    }


# Client method → permission, for every Cloud Run call gcp/jobs.py makes (a new call fails here
# until it is added, and then until a role grants it).
CLOUD_RUN_PERMISSIONS = {
    "get_job": "run.jobs.get",
    "create_job": "run.jobs.create",
    "update_job": "run.jobs.update",
    "run_job": "run.jobs.run",
    "list_jobs": "run.jobs.list",
    "get_execution": "run.executions.get",
    "list_executions": "run.executions.list",
    "cancel_execution": "run.executions.cancel",
}


def method_closure(cls: ast.ClassDef, direct: Callable[[ast.AST], set[str]]) -> dict[str, set[str]]:
    """For each method of the class: what `direct` finds in it and in every method it reaches
    through self.<method> (calls, or methods passed on as values)."""
    methods = {n.name: n for n in cls.body if isinstance(n, ast.FunctionDef)}
    found = {name: set().union(*(direct(node) for node in ast.walk(fn))) for name, fn in methods.items()}
    calls = {
        name: {
            node.attr
            for node in ast.walk(fn)
            if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
            and node.attr in methods
        }
        for name, fn in methods.items()
    }

    def closure(name: str, seen: frozenset[str]) -> set[str]:
        result = set(found[name])
        for callee in calls[name] - seen:
            result |= closure(callee, seen | {callee})
        return result

    return {name: closure(name, frozenset({name})) for name in methods}


def class_of(path: Path, name: str) -> ast.ClassDef:
    return next(n for n in py_tree(path).body if isinstance(n, ast.ClassDef) and n.name == name)


def cloud_run_permissions(node: ast.AST) -> set[str]:
    """The permissions one node of gcp/jobs.py needs: a client method, an operation waited on, overrides."""
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and isinstance(node.value.value, ast.Name)
        and node.value.value.id == "self"
        and node.value.attr in ("jobs", "executions")
    ):
        assert node.attr in CLOUD_RUN_PERMISSIONS, f"jobs.py calls {node.value.attr}.{node.attr}: map its permission"
        return {CLOUD_RUN_PERMISSIONS[node.attr]}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "result":
        return {"run.operations.get"}  # waiting on a long-running operation polls it
    if isinstance(node, ast.keyword) and node.arg == "overrides":
        return {"run.jobs.runWithOverrides"}
    return set()


def runner_calls(node: ast.AST) -> set[str]:
    """JobRunner methods one node of service.py calls (self.backends.jobs.<method>)."""
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "jobs"
        and isinstance(node.value.value, ast.Attribute)
        and node.value.value.attr == "backends"
    ):
        return {node.attr}
    return set()


def runner_permissions() -> dict[str, set[str]]:
    """Permissions each method of CloudRunJobRunner needs, following its self._x calls."""
    return method_closure(class_of(SRC / "gcp" / "jobs.py", "CloudRunJobRunner"), cloud_run_permissions)


def service_runner_calls() -> dict[str, set[str]]:
    """JobRunner methods each Service use case reaches."""
    return method_closure(class_of(SRC / "service.py", "Service"), runner_calls)


def test_custom_roles_cover_the_cloud_run_calls_of_each_component() -> None:
    runner = runner_permissions()
    service = service_runner_calls()
    roles = {k: set(v["permissions"]) for k, v in IAM_ROLES["custom_roles"].items()}
    # dispatch runs Service.dispatch; reap runs Service.reap; orchestrate serves the API's use cases.
    component_use_cases = {
        "jobLauncher": ["dispatch"],
        "reaperExecutions": ["reap"],
        "apiExecutions": ["cancel", "executions", "health", "reset_workspace", "submit", "tasks", "task", "events"],
    }
    assert "launch" in service["dispatch"] and "launch" not in service["reap"], "the scan of service.py found nothing"
    for role, use_cases in component_use_cases.items():
        runner_methods = set().union(*(service[u] for u in use_cases))
        needed = set().union(*(runner[m] for m in runner_methods))
        if role == "apiExecutions":
            needed |= runner["health"]  # GET /health reaches the runner through Service.health's parts
        assert needed <= roles[role], f"{role} lacks {sorted(needed - roles[role])} ({sorted(runner_methods)})"
    assert {"run.jobs.create", "run.jobs.runWithOverrides", "run.operations.get"} <= runner["launch"]


# --- exposure and scaling ---------------------------------------------------------------------------


def test_no_public_member_anywhere() -> None:
    for r in resources():
        for text in walk_strings(r.body):
            assert not any(p in text for p in PUBLIC), f"{r.type}.{r.name} names a public member: {text!r}"
    invokers = [g for g in IAM_ROLES["grants"] if g["role"] == "roles/run.invoker"]
    assert {(g["on"], g["member"]) for g in invokers} == {
        ("service:orchestrate", "invokers"),
        ("service:dispatch", "dispatch_trigger"),
        ("service:reap", "scheduler"),
        ("service:gpt_oss", "agent"),
        ("service:mcp[*]", "agent"),
    }, "who may invoke what"
    for r in resources(TERRAFORM, "google_cloud_run_v2_service"):
        assert r.body.get("invoker_iam_disabled") is False, f"{r.name}: the invoker check stays on"


def test_function_ingress() -> None:
    ingress = {name: one(fn.body["service_config"])["ingress_settings"] for name, fn in functions().items()}
    assert ingress == {"orchestrate": "ALLOW_ALL", "dispatch": "ALLOW_INTERNAL_ONLY", "reap": "ALLOW_INTERNAL_ONLY"}


def test_everything_scales_to_zero() -> None:
    for name, fn in functions().items():
        assert one(fn.body["service_config"])["min_instance_count"] == 0, name
    for r in resources(TERRAFORM, "google_cloud_run_v2_service"):
        assert one(one(r.body["template"])["scaling"])["min_instance_count"] == 0, r.name


def test_gpt_oss_service_shape() -> None:
    (svc,) = resources(MODULES / "gpt-oss", "google_cloud_run_v2_service")
    template = one(svc.body["template"])
    assert one(template["node_selector"]) == {"accelerator": "nvidia-l4"}
    assert template["gpu_zonal_redundancy_disabled"] is True
    assert ref(template["max_instance_request_concurrency"]) == "var.max_concurrency"
    assert ref(one(template["scaling"])["max_instance_count"]) == "var.max_instances"
    assert svc.body["ingress"] == "INGRESS_TRAFFIC_ALL"
    container = one(template["containers"])
    limits = {strip_quotes(k): v for k, v in one(container["resources"])["limits"].items()}
    assert limits == {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"}
    probe = one(container["startup_probe"])
    assert one(probe["http_get"])["path"] == "/health"
    volume = one(template["volumes"])
    gcs = one(volume["gcs"])
    assert gcs["read_only"] is True and ref(gcs["bucket"]) == "var.bucket"
    assert any(o.startswith("only-dir=") for o in gcs["mount_options"])
    assert one(container["volume_mounts"])["name"] == volume["name"]
    (env,) = container["env"]
    assert env["name"] == "VLLM_API_KEY"
    secret = one(one(env["value_source"])["secret_key_ref"])
    assert ref(secret["secret"]) == "var.api_key_secret"
    gpt_oss_module = blocks(ENV_DEV / "main.tf", "module")["gpt_oss"]
    assert ref(gpt_oss_module["api_key_secret"]) == 'module.secrets.ids["llm-api-key"]'
    assert ref(gpt_oss_module["max_instances"]) == "var.gpt_oss_max_instances"
    # The startup window the defaults give fits Cloud Run's limits (240 s each part).
    defaults = blocks(MODULES / "gpt-oss" / "variables.tf", "variable")["startup_probe"]["type"]
    numbers = dict(re.findall(r'"?(\w+)"?\s*[:=]\s*"?(?:\$\{)?optional\(number,\s*(\d+)\)', defaults))
    assert int(numbers["initial_delay_s"]) <= 240
    assert int(numbers["period_s"]) * int(numbers["failure_threshold"]) <= 240


# --- storage, secrets, labels ----------------------------------------------------------------------


def code_key_prefixes() -> set[str]:
    """The top-level artifact key prefixes the code writes (names.py and the agent)."""
    import agentfleet.names as names

    prefixes = {names.INPUTS_PREFIX, names.snapshot_key("w").split("/")[0] + "/"}
    for path in (SRC / "agent").glob("*.py"):
        prefixes |= {m + "/" for m in re.findall(r'put_\w+\(\s*f?"(\w+)/', path.read_text())}
    return prefixes


def test_bucket_is_private_versioned_and_expires_what_the_code_writes() -> None:
    (bucket,) = resources(MODULES / "storage", "google_storage_bucket")
    assert bucket.body["uniform_bucket_level_access"] is True
    assert bucket.body["public_access_prevention"] == "enforced"
    assert one(bucket.body["versioning"])["enabled"] is True
    prefixes = code_key_prefixes()
    assert prefixes == {"inputs/", "snapshots/", "tasks/"}, prefixes
    expiring = locals_of(MODULES / "storage" / "main.tf")["expiring"]
    assert {strip_quotes(k) for k in expiring} == prefixes, "each prefix the code writes has a lifecycle rule"
    (dynamic,) = bucket.body["dynamic"]
    assert ref(dynamic["lifecycle_rule"]["for_each"]) == "local.expiring"
    # The model weights are never expired.
    assert "models/" not in str(bucket.body["lifecycle_rule"])


def test_secrets_without_versions() -> None:
    assert not resources(TERRAFORM, "google_secret_manager_secret_version"), "secret values never enter the state"
    (secret,) = resources(MODULES / "secrets", "google_secret_manager_secret")
    assert secret.body["secret_id"] == "${var.deployment_name}-${each.value}"
    names = blocks(MODULES / "secrets" / "variables.tf", "variable")["secret_names"]["default"]
    assert sorted(names) == ["git-token", "llm-api-key"]


def test_resources_are_labelled_with_the_deployment() -> None:
    env_locals = locals_of(ENV_DEV / "main.tf")
    assert {strip_quotes(k): v for k, v in env_locals["labels"].items()} == {
        "agentfleet-deployment": "${var.deployment_name}"
    }
    provider = one(load(ENV_DEV / "versions.tf")["provider"])["google"]
    assert ref(provider["default_labels"]) == "local.labels"
    labelled = {
        "google_artifact_registry_repository": "labels",
        "google_storage_bucket": "labels",
        "google_pubsub_topic": "labels",
        "google_pubsub_subscription": "labels",
        "google_secret_manager_secret": "labels",
        "google_cloudfunctions2_function": "labels",
        "google_cloud_run_v2_service": "labels",
        "google_monitoring_alert_policy": "user_labels",
        "google_monitoring_notification_channel": "user_labels",
    }
    for r in resources(MODULES):
        if r.type in labelled:
            assert ref(r.body.get(labelled[r.type])) == "var.labels", f"{r.type}.{r.name} is not labelled"
    for name, module in blocks(ENV_DEV / "main.tf", "module").items():
        module_vars = blocks(MODULES / Path(module["source"]).name / "variables.tf", "variable")
        if "labels" in module_vars:
            assert ref(module.get("labels")) == "local.labels", f"module {name} gets the labels"


def test_every_resource_the_provider_lets_take_labels_is_labelled() -> None:
    """The list above, from the provider's own schema (8.7.0): no labellable type is missed."""
    from tests.terraform import google_schema

    try:
        schemas = google_schema.load()["resource_schemas"]
    except google_schema.SchemaUnavailable as exc:  # the pinned dev package is missing: the install is broken
        pytest.fail(f"the provider schema cannot be read: {exc}")
    for r in resources(MODULES):
        if r.type == "terraform_data":
            continue
        attributes = schemas[r.type]["block"]["attributes"]
        # user_labels where a resource has both (a notification channel's labels are its settings).
        field = next(
            (f for f in ("user_labels", "labels") if f in attributes and not attributes[f].get("computed")), None
        )
        if field is None:
            field = next((f for f in ("user_labels", "labels") if f in attributes), None)
        if field is not None:
            assert ref(r.body.get(field)) == "var.labels", f"{r.type}.{r.name} takes {field} but is not labelled"


# --- monitoring -----------------------------------------------------------------------------------


def logging_regex(metric: str, where: str) -> str:
    """The regular expression of a log metric's message filter or label extractor, decoded."""
    text = (MODULES / "monitoring" / "main.tf").read_text()
    block = text[text.index(f'resource "google_logging_metric" "{metric}"') :]
    block = block[: block.index("\n}\n")]
    if where == "filter":
        literal = re.search(r'^\s*("jsonPayload\.message=~.*")', block, re.MULTILINE)
        assert literal, f"{metric}: no message filter"
        query = json.loads(literal[1])
        quoted = query.split("=~", 1)[1]
    else:
        literal = re.search(r'^\s*\w+\s*=\s*("REGEXP_EXTRACT\(.*\)")$', block, re.MULTILINE)
        assert literal, f"{metric}: no label extractor"
        quoted = re.search(r',\s*(".*")\)$', json.loads(literal[1]))[1]  # type: ignore[index]
    return str(json.loads(quoted))


def test_log_metrics_match_the_log_lines_the_code_writes() -> None:
    metrics = {r.name: r.body for r in resources(MODULES / "monitoring", "google_logging_metric")}
    assert {"dispatch_outcomes", "dispatch_latency", "agent_errors", "reaped_failed"} <= set(metrics)
    pubsub_py = (SRC / "api" / "pubsub.py").read_text()
    http_py = (SRC / "api" / "http.py").read_text()
    assert 'getLogger("agentfleet.dispatch")' in pubsub_py
    assert '"dispatch %s attempt %s: %s %s"' in pubsub_py
    assert '"dispatch of message %s will be retried: %s"' in pubsub_py
    assert 'logger.info("reaped: %s", asdict(report))' in http_py
    # The outcome label takes the values service.DispatchOutcome.action may have.
    from typing import get_args, get_type_hints

    from agentfleet.service import DispatchOutcome

    actions = set(get_args(get_type_hints(DispatchOutcome)["action"]))
    assert actions == {"launched", "duplicate", "waiting", "unknown", "failed"}
    outcome = metrics["dispatch_outcomes"]
    assert "jsonPayload.logger" in outcome["filter"] and "agentfleet.dispatch" in outcome["filter"]
    # The regular expressions as Cloud Logging receives them: the HCL string literal decoded (its
    # escapes are JSON's), then the Logging query's own quoted string decoded the same way.
    extractor = logging_regex("dispatch_outcomes", "label_extractors")
    for action in actions:
        line = f"dispatch t-1 attempt 2: {action} projects/p/locations/r/jobs/agent-x/executions/e"
        match = re.search(extractor, line)
        assert match and match[1] == action, (extractor, line)
    assert re.search(logging_regex("dispatch_outcomes", "filter"), line)
    # The reaper's line as the code formats it matches the give-up metric's filter, and only it.
    gave_up = logging_regex("reaped_failed", "filter")
    assert re.search(gave_up, "reaped: " + str({"requeued": [], "failed": ["t-1"], "rescheduled": []}))
    assert not re.search(gave_up, "reaped: " + str({"requeued": ["t-1"], "failed": [], "rescheduled": []}))
    retried = logging_regex("dispatch_retries", "filter")
    assert re.search(retried, "dispatch of message 123 will be retried: Cloud Run is unavailable")
    assert one(metrics["dispatch_latency"]["metric_descriptor"])["value_type"] == "DISTRIBUTION"
    # publish → dispatch: the field the dispatch line carries (logs.MEASURES), by that name
    from agentfleet.logs import MEASURES

    assert metrics["dispatch_latency"]["value_extractor"] == "EXTRACT(jsonPayload.queued_s)"
    assert "queued_s" in MEASURES


def test_dashboard_and_alert_policy() -> None:
    (dashboard,) = resources(MODULES / "monitoring", "google_monitoring_dashboard")
    assert dashboard.body["dashboard_json"].startswith("${jsonencode(")
    charts = locals_of(MODULES / "monitoring" / "main.tf")["chart_order"]
    assert {"dispatch_outcomes", "dispatch_latency", "job_executions", "gpu_instances", "gpu_requests"} <= set(charts)
    text = (MODULES / "monitoring" / "main.tf").read_text()
    for metric in (
        "run.googleapis.com/job/completed_execution_count",
        "run.googleapis.com/container/instance_count",
        "run.googleapis.com/request_count",
    ):
        assert metric in text
    (policy,) = resources(MODULES / "monitoring", "google_monitoring_alert_policy")
    assert policy.body["combiner"] == "OR" and len(policy.body["conditions"]) >= 3
    (channel,) = resources(MODULES / "monitoring", "google_monitoring_notification_channel")
    assert ref(channel.body["count"]) == 'var.alert_email == "" ? 0 : 1'
    assert ref(policy.body["notification_channels"]) == "google_monitoring_notification_channel.email[*].id"
