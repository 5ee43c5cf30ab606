"""cloudbuild/*.yaml: each parses, names only substitutions it declares (MUST_MATCH), builds the
images that exist, agrees with scripts/deploy.sh on substitutions and Terraform variables, and the
PR check runs what .ci/run runs."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BUILTIN = {"PROJECT_ID", "PROJECT_NUMBER", "BUILD_ID", "LOCATION", "SHORT_SHA", "COMMIT_SHA", "BRANCH_NAME"}
BUILTIN |= {"TAG_NAME", "REF_NAME", "REPO_NAME", "REPO_FULL_NAME", "TRIGGER_NAME", "SERVICE_ACCOUNT_EMAIL"}
IMAGES = {"agent": "agent_container/Dockerfile", "mcp": "mcp_servers/Dockerfile", "gpt-oss": "gpt_oss/Dockerfile"}
DRY_RUN_ENV = {"PROJECT_ID": "p", "REGION": "us-central1", "GCS_BUCKET": "b", "LLM_API_KEY": "k", "IMAGE_TAG": "t1"}


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / "cloudbuild" / name).read_text())


def dry_run() -> str:
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **DRY_RUN_ENV}
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "deploy.sh"), "--dry-run"], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("name", ["images.yaml", "deploy.yaml", "pr-check.yaml"])
def test_every_substitution_used_is_declared_or_built_in(name: str) -> None:
    config = load(name)
    declared = set(config.get("substitutions", {}))
    assert all(key.startswith("_") for key in declared)
    used = set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)\}?", (ROOT / "cloudbuild" / name).read_text()))
    assert used - BUILTIN <= declared, used - BUILTIN - declared
    assert config.get("steps"), "no steps"


def test_images_builds_and_pushes_the_three_images_with_the_tag() -> None:
    config = load("images.yaml")
    built = {}
    for step in config["steps"]:
        args = step["args"]
        dockerfile = next(a.split("=", 1)[1] for a in args if a.startswith("--file="))
        tag = next(a.split("=", 1)[1] for a in args if a.startswith("--tag="))
        built[tag] = dockerfile
        assert (ROOT / dockerfile).is_file()
    assert built == {f"${{_REGISTRY}}/{image}:${{_TAG}}": path for image, path in IMAGES.items()}
    assert set(config["images"]) == set(built)
    assert "DOCKER_BUILDKIT=1" in config["options"]["env"]


def test_deploy_script_passes_only_substitutions_the_images_build_declares() -> None:
    [line] = [line for line in dry_run().splitlines() if line.startswith("+ gcloud builds submit")]
    passed = re.search(r"--substitutions (\S+)", line)
    assert passed is not None
    keys = {pair.split("=", 1)[0] for pair in passed.group(1).replace("\\,", ",").split(",")}
    assert keys == {"_REGISTRY", "_TAG"} and keys <= set(load("images.yaml")["substitutions"])


def test_the_cloud_build_deploy_sets_the_same_terraform_variables_as_the_script(tmp_path: Path) -> None:
    config = load("deploy.yaml")
    [step] = [s for s in config["steps"] if s["id"] == "tfvars"]
    code = step["args"][1]
    for key, value in {**config["substitutions"], "PROJECT_ID": "p", "_REGISTRY": "r", "_TAG": "t"}.items():
        code = code.replace(f"${{{key}}}", str(value) or "x")
    (tmp_path / "build").mkdir()
    subprocess.run(["python3", "-c", code], cwd=tmp_path, check=True, capture_output=True)
    from_cloud_build = json.loads((tmp_path / "build" / "deploy.tfvars.json").read_text())
    out = dry_run()
    from_script = json.loads(out[out.index("{") : out.index("}") + 1])
    assert set(from_cloud_build) == set(from_script)
    stage = next(s for s in config["steps"] if s["id"] == "stage-functions")
    assert stage["args"] == ["scripts/stage-functions.sh", "build/functions"]


def test_the_pr_check_runs_the_make_targets_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    targets = re.findall(r"make ([\w-]+)", ci)
    assert targets == ["lint", "bench-venv", "test"]
    commands = [" ".join(step["args"]) for step in load("pr-check.yaml")["steps"]]
    assert [re.search(r"make ([\w-]+)", c).group(1) for c in commands] == targets  # type: ignore[union-attr]
    test_step = load("pr-check.yaml")["steps"][-1]
    assert {"AGENTFLEET_REQUIRE_EMULATORS=1", "AGENTFLEET_REQUIRE_BENCH_VENV=1"} <= set(test_step["env"])
