"""terraform/'s shared MCP services against the servers they run and the agent that calls them.

One private Cloud Run service per shared server (modules/mcp, from environments/dev): AgentFleet's
own servers from the mcp image (`serve.sh MODULE ARGS`) and Google's database toolbox from Google's
image. These tests read the Terraform with python-hcl2 and the Python by importing it, so that a
server renamed, an option dropped, a secret or a grant added on one side only fails here.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from agentfleet.mcp_servers import toolbox_config
from agentfleet.settings import BUILTIN_MCP_SERVERS, SEED_NAMES, Settings
from tests.deploy.hcl import ENV_DEV, MODULES, ROOT, TERRAFORM, blocks, locals_of, one, ref, resources

SRC = ROOT / "src" / "agentfleet"
ENV_MAIN = ENV_DEV / "main.tf"
MCP_SOURCE = "../../modules/mcp"
IAM_ROLES = json.loads((TERRAFORM / "iam_roles.json").read_text())
# What serve.sh puts before a server's own arguments (mcp_servers/serve.sh).
SERVE_ARGS = ["--transport", "streamable-http", "--host", "0.0.0.0", "--port", "8080"]


def env_name(field: str) -> str:
    return field.upper() if field in SEED_NAMES else f"AGENTFLEET_{field.upper()}"


def env_locals() -> dict[str, Any]:
    return locals_of(ENV_MAIN)


def mcp_modules() -> dict[str, dict[str, Any]]:
    """The environment's module blocks that deploy shared MCP services."""
    return {name: m for name, m in blocks(ENV_MAIN, "module").items() if m["source"] == MCP_SOURCE}


def catalog() -> dict[str, dict[str, Any]]:
    """AgentFleet's own servers the environment can deploy: name → module, args, account, ..."""
    found = env_locals()["mcp_catalog"]
    assert isinstance(found, dict) and found, "local.mcp_catalog is gone"
    return found


def resolved(values: list[str]) -> list[str]:
    """Arguments with the environment's plain string locals substituted (`${local.x}`)."""
    env = env_locals()

    def one_local(match: re.Match[str]) -> str:
        value = env[match[1]]
        assert isinstance(value, str) and "${" not in value, f"local.{match[1]} is not a plain string"
        return value

    return [re.sub(r"\$\{local\.(\w+)\}", one_local, v) for v in values]


def deployed_names() -> dict[str, str]:
    """Every name the environment can put in AGENTFLEET_MCP_SERVERS → the server module it runs."""
    return {name: spec["module"] for name, spec in catalog().items()} | {"db": "toolbox"}


def server_parser(module: str) -> Any:
    mod = importlib.import_module(f"agentfleet.mcp_servers.{module}")
    return getattr(mod, "_parse_args", None) or mod.parse_args


# --- who runs, who calls -------------------------------------------------------------------------


def test_one_service_per_python_server_and_one_for_the_toolbox() -> None:
    modules = mcp_modules()
    assert set(modules) == {"mcp", "toolbox"}
    assert ref(modules["mcp"]["for_each"]) == "local.mcp_services", "one service per deployed server"
    assert ref(modules["mcp"]["name"]) is None and modules["mcp"]["name"] == "${var.deployment_name}-mcp-${each.key}"
    assert ref(modules["mcp"]["image"]) == "var.mcp_image"
    assert ref(modules["toolbox"]["count"]) == "local.deploy_toolbox ? 1 : 0"
    assert modules["toolbox"]["name"] == "${var.deployment_name}-mcp-db"
    assert ref(modules["toolbox"]["image"]) == "var.toolbox_image"
    services = env_locals()["mcp_services"]
    assert "local.mcp_catalog" in services and "var.mcp_servers_deployed" in services and "local.deploy_mcp" in services
    # The longest name still leaves room for the project number in the deterministic run.app host
    # (one DNS label: at most 63 characters) and fits Cloud Run's 49.
    longest = 20 + len("-mcp-") + max(len(n) for n in deployed_names())
    assert longest <= 49 and longest + 1 + 12 <= 63


def test_every_deployed_mcp_service_is_invokable_by_the_agent_and_no_one_else() -> None:
    env = env_locals()
    # Both maps are made from every module instance that deploys a service, under the agent's names.
    for local, attr in (("mcp_servers", "url"), ("mcp_service_names", "name")):
        expr = str(env[local]).removeprefix("${").removesuffix("}")  # (ref() takes no nested braces)
        parts = set(re.findall(r'\{for (?:name, )?m in module\.(\w+) : (name|"\w+") => m\.(\w+)\}', expr))
        assert parts == {("mcp", "name", attr), ("toolbox", '"db"', attr)}, f"local.{local} = {expr}"
        assert expr.startswith("merge("), expr
    env_modules = blocks(ENV_MAIN, "module")
    assert ref(env_modules["iam"]["services"]["mcp"]) == "local.mcp_service_names"
    assert ref(env_modules["functions"]["mcp_servers"]) == "local.mcp_servers"
    # In the iam module: one run.invoker binding per entry of var.services.mcp, for the agent only.
    bindings = [
        r
        for r in resources(MODULES / "iam", "google_cloud_run_v2_service_iam_member")
        if "services.mcp" in json.dumps(r.body)
    ]
    assert [(r.name, ref(r.body["for_each"]), ref(r.body["name"])) for r in bindings] == [
        ("agent_invokes_mcp", "var.services.mcp", "each.value")
    ]
    (binding,) = bindings
    assert binding.body["role"] == "roles/run.invoker" and ref(binding.body["member"]) == "local.sa.agent"
    on_mcp = [(g["member"], g["role"]) for g in IAM_ROLES["grants"] if g["on"] == "service:mcp[*]"]
    assert on_mcp == [("agent", "roles/run.invoker")]
    # No service runs as the agent (it could call all the agent may), and each is private.
    accounts = {spec["account"] for spec in catalog().values()}
    assert accounts <= {"mcp", "mcp_media"}, accounts
    assert ref(env_modules["mcp"]["service_account"]) == "module.service_accounts.emails[each.value.account]"
    assert ref(env_modules["toolbox"]["service_account"]) == "module.service_accounts.emails.toolbox"
    (service,) = resources(MODULES / "mcp", "google_cloud_run_v2_service")
    assert service.body["invoker_iam_disabled"] is False
    gpt_oss = one(resources(MODULES / "gpt-oss", "google_cloud_run_v2_service"))
    assert service.body["ingress"] == gpt_oss.body["ingress"]
    assert ref(service.body["labels"]) == "var.labels"


def test_each_deployed_name_is_a_builtin_server_run_by_the_same_module() -> None:
    for name, module in deployed_names().items():
        assert (SRC / "mcp_servers" / f"{module}.py").is_file(), f"{name}: no server agentfleet.mcp_servers.{module}"
        builtin = BUILTIN_MCP_SERVERS.get(name)
        if BUILTIN_MCP_SERVERS:  # the built-in servers are declared: a URL must replace one of them
            assert builtin is not None, f"{name} is not one of the built-in MCP servers {sorted(BUILTIN_MCP_SERVERS)}"
        if builtin is not None:
            assert builtin.module == module, f"{name}: the agent runs {builtin.module}, the service {module}"
    # The variable accepts exactly the catalog's names, and its default is among them.
    variable = blocks(ENV_DEV / "variables.tf", "variable")["mcp_servers_deployed"]
    accepted = re.findall(r'"(\w+)"', one(variable["validation"])["condition"])
    assert sorted(accepted) == sorted(catalog())
    assert set(variable["default"]) <= set(catalog())
    args_variable = blocks(ENV_DEV / "variables.tf", "variable")["mcp_server_args"]
    assert sorted(re.findall(r'"(\w+)"', one(args_variable["validation"])["condition"])) == sorted(catalog())


def test_no_server_that_reads_a_checkout_is_deployed(capsys: pytest.CaptureFixture[str]) -> None:
    """A shared service has no task checkout: a server that needs --root (code_assistant, workspace)
    stays a stdio server inside the agent's job."""
    needs_root = set()
    for path in sorted((SRC / "mcp_servers").glob("*.py")):
        module = importlib.import_module(f"agentfleet.mcp_servers.{path.stem}")
        parser = getattr(module, "_parse_args", None) or getattr(module, "parse_args", None)
        if parser is None:
            continue
        with pytest.raises(SystemExit):
            parser(["--help"])
        if "--root" in capsys.readouterr().out:
            needs_root.add(path.stem)
    assert {"code_assistant", "workspace"} <= needs_root, needs_root
    assert not needs_root & set(deployed_names().values())


def test_each_service_passes_arguments_its_server_accepts() -> None:
    module = mcp_modules()["mcp"]
    expected = "concat([each.value.module], each.value.args, lookup(var.mcp_server_args, each.key, []))"
    assert ref(module["args"]) == expected, "serve.sh MODULE, the deployment's arguments, then the operator's"
    for name, spec in catalog().items():
        args = resolved(spec["args"])
        parsed = server_parser(spec["module"])(SERVE_ARGS + args)
        assert parsed.transport == "streamable-http" and parsed.port == 8080, name
        assert 300 <= spec["timeout_s"] <= 3600 and re.fullmatch(r"\d+(Mi|Gi)", spec["memory"]), name
    # A shared browser stores nothing (no bucket grant for it); the shared media server stores under its prefix.
    assert server_parser("computer")(SERVE_ARGS + resolved(catalog()["computer"]["args"])).no_artifacts is True
    a2a = catalog()["a2a"]
    assert a2a["timeout_s"] * 1.0 >= importlib.import_module("agentfleet.mcp_servers.a2a_bridge").MAX_TIMEOUT_S, (
        "a send_message may wait its longest timeout within one request"
    )


# --- media --------------------------------------------------------------------------------------


def settings_required(*paths: Path) -> set[str]:
    found = set()
    for path in paths:
        found |= set(re.findall(r'\.require\("(\w+)"\)', path.read_text()))
    return found


def test_the_media_service_gets_the_gcp_settings_it_needs_and_writes_only_its_own_expiring_prefix() -> None:
    media = catalog()["media"]
    assert media["gcp_backend"] is True and media["account"] == "mcp_media"
    module = mcp_modules()["mcp"]
    assert module["env"] == "${each.value.gcp_backend ? local.mcp_gcp_env : {}}"
    env = env_locals()["mcp_gcp_env"]
    assert env["AGENTFLEET_BACKEND"] == "gcp"
    known = {env_name(f) for f in Settings.model_fields}
    assert set(env) <= known, f"not settings: {sorted(set(env) - known)}"
    sources = [SRC / "mcp_servers" / "genmedia.py", SRC / "gcp" / "artifacts.py", SRC / "gcp" / "media.py"]
    needed = settings_required(*sources)
    assert {"project_id", "gcs_bucket"} <= needed, needed
    assert {env_name(s) for s in needed} <= set(env), f"genmedia requires {sorted(needed)}"
    assert ref(env["GCS_BUCKET"]) == "module.storage.name"
    # --prefix: under tasks/ (a lifecycle rule expires it), in a folder no task id can be (ids are hex).
    parsed = server_parser("genmedia")(SERVE_ARGS + resolved(media["args"]))
    prefix = parsed.prefix.strip("/") + "/"
    expiring = {k.strip('"') for k in locals_of(MODULES / "storage" / "main.tf")["expiring"]}
    assert prefix.split("/")[0] + "/" in expiring
    assert not re.fullmatch(r"[0-9a-f]+", prefix.split("/")[1])
    # Its only bucket right: create objects under that prefix.
    media_grants = [g for g in IAM_ROLES["grants"] if g["member"] == "mcp_media"]
    assert {(g["role"], g["on"], g.get("condition")) for g in media_grants} == {
        ("roles/aiplatform.user", "project", None),
        ("roles/storage.objectCreator", "bucket", prefix),
    }
    project_services = blocks(ENV_MAIN, "module")["project_services"]["services"]
    assert "aiplatform.googleapis.com" in project_services and 'contains(keys(local.mcp_services), "media")' in (
        project_services
    )
    # The grants exist only while media is deployed.
    for r in resources(MODULES / "iam"):
        if "mcp_media" in json.dumps(r.body.get("member", "")):
            assert ref(r.body["count"]) == 'contains(keys(var.services.mcp), "media") ? 1 : 0', r.name


# --- the database toolbox ---------------------------------------------------------------------------


def toolbox_flags() -> dict[str, str | None]:
    """The toolbox service's arguments, --flag=value (or a bare --flag: None)."""
    args = resolved(mcp_modules()["toolbox"]["args"])
    assert all(a.startswith("--") for a in args), args
    return {a.split("=", 1)[0]: (a.split("=", 1)[1] if "=" in a else None) for a in args}


def test_the_toolbox_service_reads_its_config_and_credentials_from_its_own_secrets_only() -> None:
    module = mcp_modules()["toolbox"]
    flags = toolbox_flags()
    assert flags["--config"] == module["secret_file"]["path"].replace(
        "${local.toolbox_config_path}", env_locals()["toolbox_config_path"]
    )
    assert flags["--address"] == "0.0.0.0" and flags["--port"] == "8080"
    (service,) = resources(MODULES / "mcp", "google_cloud_run_v2_service")
    container = one(one(service.body["template"])["containers"])
    assert one(container["ports"])["container_port"] == 8080
    assert module["host_flag"] == "--allowed-hosts", "the toolbox checks Host: it is told its own run.app name"
    # tools.yaml refers to exactly these variables; each is a secret, never a value.
    assert set(module["secret_env"]) == {toolbox_config.USER_VAR, toolbox_config.PASSWORD_VAR}
    used = [module["secret_file"]["secret"], *module["secret_env"].values()]
    names = [re.fullmatch(r'module\.secrets\.ids\["([a-z-]+)"\]', ref(v) or "") for v in used]
    assert all(names), used
    secret_names = {m[1] for m in names if m}
    assert secret_names == set(env_locals()["toolbox_secrets"])
    secrets_module = blocks(ENV_MAIN, "module")["secrets"]
    assert "local.deploy_toolbox ? local.toolbox_secrets : []" in secrets_module["secret_names"]
    assert "env" not in module, "the toolbox gets nothing but its secrets"
    # The toolbox's account reads those secrets and nothing else.
    grants = {(g["role"], g["on"]) for g in IAM_ROLES["grants"] if g["member"] == "toolbox"}
    assert grants == {("roles/secretmanager.secretAccessor", f"secret:{n}") for n in secret_names}


def test_the_toolbox_image_is_googles_at_the_version_the_config_is_made_for() -> None:
    default = blocks(ENV_DEV / "variables.tf", "variable")["toolbox_image"]["default"]
    image, version = default.rsplit(":", 1)
    assert image == "us-central1-docker.pkg.dev/database-toolbox/toolbox/toolbox"
    package = json.loads((ROOT / "mcp_servers" / "toolbox" / "package.json").read_text())
    pinned = {v for k, v in package.get("dependencies", {}).items() if k.startswith("@toolbox-sdk/server")}
    assert pinned == {version}, f"the image is {version}, the npm packages tested here are {pinned}"


def test_the_toolbox_accepts_the_flags_the_service_passes() -> None:
    """Against the real binary `make toolbox` installs (the same version as the image)."""
    from agentfleet.mcp_servers.toolbox import default_binary

    binary = default_binary()
    if binary is None:
        why = "the toolbox binary is not installed: run `make toolbox`"
        if os.environ.get("AGENTFLEET_REQUIRE_EMULATORS") == "1":
            pytest.fail(f"AGENTFLEET_REQUIRE_EMULATORS=1 but {why}")
        pytest.skip(why)
    help_text = subprocess.run([str(binary), "--help"], capture_output=True, text=True, timeout=60, check=True).stdout
    offered = set(re.findall(r"--[a-z][a-z-]+", help_text))
    passed = set(toolbox_flags()) | {mcp_modules()["toolbox"]["host_flag"]}
    assert passed <= offered, f"the toolbox has no {sorted(passed - offered)}"
