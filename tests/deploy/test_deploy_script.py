"""scripts/deploy.sh: what it asks for, the plan it prints with --dry-run, and the commands it runs
(against stand-in gcloud and terraform executables that record their calls)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "scripts" / "deploy.sh"
INPUTS = {"PROJECT_ID": "demo-project", "REGION": "us-central1", "GCS_BUCKET": "demo-bucket", "LLM_API_KEY": "sk-1"}
SECRET = "sk-live-do-not-print-0123456789"

# Records each call (tool, argv, stdin when it reads one) as a JSON line; `terraform output` answers a URL.
STAND_IN = """#!/usr/bin/env python3
import json, os, sys
tool, args = os.path.basename(sys.argv[0]), sys.argv[1:]
stdin = sys.stdin.read() if "--data-file=-" in args else None
with open(os.environ["CALLS"], "a") as fh:
    fh.write(json.dumps({"tool": tool, "args": args, "stdin": stdin}) + "\\n")
if os.environ.get("STAND_IN_FAILS"):
    sys.exit(3)
if tool == "terraform" and "output" in args:
    print("https://agentfleet-orchestrate-abc-uc.a.run.app", end="")
"""


@pytest.fixture
def stand_ins(tmp_path: Path) -> tuple[Path, Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("gcloud", "terraform"):
        path = bin_dir / tool
        path.write_text(STAND_IN)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return bin_dir, tmp_path / "calls.jsonl"


def deploy(*args: str, env: dict[str, str], bin_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join(filter(None, [str(bin_dir) if bin_dir else "", "/usr/bin", "/bin"]))
    python_dir = os.path.dirname(shutil.which("python3") or "/usr/bin/python3")
    full = {"PATH": f"{path}{os.pathsep}{python_dir}", "HOME": os.environ.get("HOME", "/tmp"), **env}
    return subprocess.run(["bash", str(DEPLOY), *args], env=full, capture_output=True, text=True, timeout=60)


def calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_every_missing_input_is_named_with_how_to_set_it() -> None:
    proc = deploy(env={})
    assert proc.returncode != 0
    for name in INPUTS:
        assert name in proc.stderr
        assert f"{name}=" in proc.stderr or f"read -rs {name}" in proc.stderr  # how to set it
    assert proc.stdout == ""


def test_only_the_missing_input_is_named() -> None:
    proc = deploy("--dry-run", env={k: v for k, v in INPUTS.items() if k != "LLM_API_KEY"})
    assert proc.returncode == 1
    assert "missing LLM_API_KEY." in proc.stderr
    assert "PROJECT_ID" not in proc.stderr


def test_an_unknown_argument_is_refused() -> None:
    proc = deploy("--apply-everything", env=INPUTS)
    assert proc.returncode == 2 and "unknown argument" in proc.stderr


def test_dry_run_prints_the_plan_in_order_and_runs_nothing(stand_ins: tuple[Path, Path]) -> None:
    bin_dir, log = stand_ins
    env = {**INPUTS, "LLM_API_KEY": SECRET, "IMAGE_TAG": "abc123", "CALLS": str(log), "STAND_IN_FAILS": "1"}
    proc = deploy("--dry-run", env=env, bin_dir=bin_dir)
    assert proc.returncode == 0, proc.stderr
    assert calls(log) == []  # neither gcloud nor terraform was run
    assert SECRET not in proc.stdout + proc.stderr
    plan = [line[2:] for line in proc.stdout.splitlines() if line.startswith("+ ")]
    expected = [
        "gcloud services enable",
        "gcloud storage buckets create gs://demo-project-agentfleet-tfstate",
        "scripts/stage-functions.sh",
        "terraform -chdir=",
        "-target=module.secrets",
        "gcloud secrets versions add agentfleet-llm-api-key",
        "gcloud builds submit",
        "-var-file=",
        "output -raw api_url",
    ]
    assert len(plan) == len(expected), plan
    for line, fragment in zip(plan, expected, strict=True):
        assert fragment in line, (fragment, line)
    assert "--public-access-prevention" in plan[1] and "--uniform-bucket-level-access" in plan[1]
    assert " init " in plan[3] and "-backend-config=bucket=demo-project-agentfleet-tfstate" in plan[3]
    assert "apply" in plan[4] and "apply" in plan[7] and "-target" not in plan[7]
    assert 'printf %s "$LLM_API_KEY" |' in plan[5] and "--data-file=-" in plan[5]
    assert "cloudbuild/images.yaml" in plan[6] and "_TAG=abc123" in plan[6]
    assert '"use_git_token"' not in proc.stdout  # no token given: the jobs do not reference the secret
    registry = "us-central1-docker.pkg.dev/demo-project/agentfleet"
    assert f'"agent_image": "{registry}/agent:abc123"' in proc.stdout
    assert f'"gpt_oss_image": "{registry}/gpt-oss:abc123"' in proc.stdout
    assert f'"mcp_image": "{registry}/mcp:abc123"' in proc.stdout
    assert "gcloud auth print-identity-token" in proc.stdout


def test_a_deploy_runs_the_commands_in_order_and_passes_the_key_on_stdin_only(
    stand_ins: tuple[Path, Path], tmp_path: Path
) -> None:
    bin_dir, log = stand_ins
    staged = tmp_path / "functions.zip"
    staged.write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip: staging is tested on its own
    env = {
        **INPUTS,
        "LLM_API_KEY": SECRET,
        "AGENTFLEET_GIT_TOKEN": "ghp-token",
        "IMAGE_TAG": "abc123",
        "FUNCTIONS_ZIP": str(staged),
        "INVOKERS": "user:me@example.com, group:devs@example.com",
        "AGENT_SANDBOX": "none",
        "TF_STATE_BUCKET": "demo-tfstate",
        "CALLS": str(log),
        "TFVARS_FILE": str(tmp_path / "deploy.tfvars.json"),
    }
    proc = deploy(env=env, bin_dir=bin_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    made = calls(log)
    summary = [(c["tool"], c["args"][0] if c["tool"] == "gcloud" else c["args"][1]) for c in made]
    assert summary == [
        ("gcloud", "services"),
        ("gcloud", "storage"),  # the state bucket exists (the stand-in says so): not created
        ("terraform", "init"),
        ("terraform", "apply"),
        ("gcloud", "secrets"),
        ("gcloud", "secrets"),
        ("gcloud", "builds"),
        ("terraform", "apply"),
        ("terraform", "output"),
    ]
    assert [a for a in made[2]["args"] if a.startswith("-backend-config=")] == [
        "-backend-config=bucket=demo-tfstate",
        "-backend-config=prefix=agentfleet",
    ]
    assert [a for a in made[3]["args"] if a.startswith("-target=")] == [
        "-target=module.secrets",
        "-target=module.artifact_registry",
    ]
    assert not [a for a in made[7]["args"] if a.startswith("-target")]
    llm, git = made[4], made[5]
    assert llm["args"][:4] == ["secrets", "versions", "add", "agentfleet-llm-api-key"] and llm["stdin"] == SECRET
    assert git["args"][:4] == ["secrets", "versions", "add", "agentfleet-git-token"] and git["stdin"] == "ghp-token"
    assert all(SECRET not in arg for c in made for arg in c["args"])
    assert SECRET not in proc.stdout + proc.stderr
    tfvars = json.loads((tmp_path / "deploy.tfvars.json").read_text())
    assert tfvars["functions_source_zip"] == str(staged)
    assert tfvars["invokers"] == ["user:me@example.com", "group:devs@example.com"]
    assert tfvars["agent_sandbox"] == "none" and tfvars["bucket_name"] == "demo-bucket"
    assert tfvars["use_git_token"] is True
    assert "API: https://agentfleet-orchestrate-abc-uc.a.run.app" in proc.stdout
    assert "https://agentfleet-orchestrate-abc-uc.a.run.app/health" in proc.stdout


def test_a_failing_command_stops_the_deploy(stand_ins: tuple[Path, Path], tmp_path: Path) -> None:
    bin_dir, log = stand_ins
    staged = tmp_path / "functions.zip"
    staged.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    env = {**INPUTS, "IMAGE_TAG": "abc", "FUNCTIONS_ZIP": str(staged), "CALLS": str(log), "STAND_IN_FAILS": "1"}
    env["TFVARS_FILE"] = str(tmp_path / "deploy.tfvars.json")
    proc = deploy(env=env, bin_dir=bin_dir)
    assert proc.returncode == 3
    assert len(calls(log)) == 1  # the first gcloud call failed; nothing after it ran


def test_shared_mcp_services_and_the_toolbox_are_deployed_with_their_secrets_from_stdin(
    stand_ins: tuple[Path, Path], tmp_path: Path
) -> None:
    from agentfleet.mcp_servers.toolbox_config import _substitutable

    bin_dir, log = stand_ins
    staged = tmp_path / "functions.zip"
    staged.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    config = tmp_path / "tools.yaml"
    config.write_text('{"kind": "source", "user": "${AGENTFLEET_TOOLBOX_DB_USER}"}\n')
    password = 'p"a$s\\w0rd-do-not-print'
    env = {
        **INPUTS,
        "IMAGE_TAG": "abc123",
        "FUNCTIONS_ZIP": str(staged),
        "CALLS": str(log),
        "TFVARS_FILE": str(tmp_path / "deploy.tfvars.json"),
        "MCP_SERVERS": "media, a2a",
        "TOOLBOX_CONFIG": str(config),
        "TOOLBOX_DB_USER": "reader",
        "TOOLBOX_DB_PASSWORD": password,
    }
    proc = deploy(env=env, bin_dir=bin_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tfvars = json.loads((tmp_path / "deploy.tfvars.json").read_text())
    assert tfvars["deploy_mcp"] is True and tfvars["mcp_servers_deployed"] == ["media", "a2a"]
    assert tfvars["deploy_toolbox"] is True
    made = calls(log)
    added = {c["args"][3]: c for c in made if c["tool"] == "gcloud" and c["args"][:3] == ["secrets", "versions", "add"]}
    assert set(added) >= {"agentfleet-toolbox-config", "agentfleet-toolbox-db-user", "agentfleet-toolbox-db-password"}
    assert f"--data-file={config}" in added["agentfleet-toolbox-config"]["args"]
    # The toolbox pastes the values into tools.yaml's JSON: stored escaped exactly as the local toolbox does.
    assert added["agentfleet-toolbox-db-password"]["stdin"] == _substitutable(password).get_secret_value()
    assert added["agentfleet-toolbox-db-user"]["stdin"] == "reader"
    # The secrets exist before their versions are added: the first apply creates them.
    order = [(c["tool"], c["args"][1] if c["tool"] == "terraform" else c["args"][0]) for c in made]
    assert order.index(("terraform", "apply")) < order.index(("gcloud", "secrets"))
    assert all(password not in arg for c in made for arg in c["args"])
    assert password not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"MCP_SERVERS": "code"}, "code runs inside the agent's job"),
        ({"TOOLBOX_CONFIG": "/dev/null", "TOOLBOX_DB_USER": "reader"}, "TOOLBOX_DB_PASSWORD is not"),
    ],
)
def test_a_shared_mcp_setting_that_cannot_deploy_is_refused(extra: dict[str, str], message: str) -> None:
    proc = deploy("--dry-run", env={**INPUTS, "IMAGE_TAG": "abc", **extra})
    assert proc.returncode == 1 and message in proc.stderr
