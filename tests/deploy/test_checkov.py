"""checkov over terraform/ and every Dockerfile, with the repository's .checkov.yaml (the one list of
skipped checks, each with its reason) and the project's own policies (tests/deploy/checkov_policies/).

checkov is installed in its own virtual environment (`make checkov`, .venv-checkov/): its pins
(packaging 23.x among them) would downgrade packages of the project's environment.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.hcl import ROOT, TERRAFORM

CONFIG = ROOT / ".checkov.yaml"
POLICIES = Path(__file__).parent / "checkov_policies"
SKIPPED_DIRS = {".git", "node_modules", "__pycache__", "build", "dist"}


def checkov_binary() -> str:
    for candidate in (os.environ.get("CHECKOV"), str(ROOT / ".venv-checkov" / "bin" / "checkov")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("checkov")
    if found is None:
        pytest.skip("checkov is not installed: run `make checkov` (it makes .venv-checkov/) or set CHECKOV")
    return found


def dockerfiles() -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in SKIPPED_DIRS and not d.startswith(".")]
        for name in filenames:
            if name == "Dockerfile" or name.startswith("Dockerfile.") or name.endswith(".Dockerfile"):
                found.append(Path(dirpath) / name)
    return sorted(found)


def run_checkov(*args: str) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [checkov_binary(), "--config-file", str(CONFIG), "--output", "json", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode in (0, 1), f"checkov failed to run ({proc.returncode}):\n{proc.stderr[-4000:]}"
    reports = json.loads(proc.stdout)
    return reports if isinstance(reports, list) else [reports]


def checks(reports: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [c for r in reports for c in r.get("results", {}).get(kind, [])]


def summary(reports: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{c['check_id']} {c['resource']} ({c.get('file_path')}): {c.get('check_name')}"
        for c in checks(reports, "failed_checks")
    )


def policy_ids() -> set[str]:
    ids = set()
    for path in POLICIES.glob("*.yaml"):
        match = re.search(r'^\s*id:\s*"?(CKV2_AGENTFLEET_\d+)"?', path.read_text(), re.MULTILINE)
        assert match, f"{path.name} has no CKV2_AGENTFLEET_<n> id"
        ids.add(match[1])
    assert len(ids) == len(list(POLICIES.glob("*.yaml"))), "two policies share an id"
    return ids


def test_terraform_passes_checkov_and_the_projects_policies() -> None:
    reports = run_checkov("--directory", str(TERRAFORM.relative_to(ROOT)))
    assert all(r["summary"]["parsing_errors"] == 0 for r in reports), reports[0]["summary"]
    assert not checks(reports, "failed_checks"), summary(reports)
    passed = {c["check_id"] for c in checks(reports, "passed_checks")}
    assert len(checks(reports, "passed_checks")) > 20 and len(passed) > 10, "checkov ran almost no check"
    # CKV2_AGENTFLEET_2 and _7 apply to IAM bindings and secret versions, of which the Terraform has none.
    absent = {"CKV2_AGENTFLEET_2", "CKV2_AGENTFLEET_7"}
    assert policy_ids() - absent <= passed, "a project policy did not run on the Terraform"


def test_dockerfiles_pass_checkov() -> None:
    files = dockerfiles()
    assert {f.parent.name for f in files} >= {"agent_container", "gpt_oss", "mcp_servers"}
    args = [a for f in files for a in ("--file", str(f.relative_to(ROOT)))]
    reports = run_checkov(*args)
    assert not checks(reports, "failed_checks"), summary(reports)
    assert checks(reports, "passed_checks"), "checkov checked none of the Dockerfiles"


BAD = """
resource "google_cloud_run_v2_service_iam_member" "public" {
  name   = "svc"
  role   = "roles/run.invoker"
  member = "allUsers"
}

resource "google_cloud_run_v2_service_iam_binding" "public" {
  name    = "svc"
  role    = "roles/run.invoker"
  members = ["user:someone@example.com", "allAuthenticatedUsers"]
}

resource "google_cloud_run_v2_service" "gpu" {
  name                 = "gpu"
  location             = "us-central1"
  invoker_iam_disabled = true
  template {
    scaling {
      min_instance_count = 1
    }
    containers {
      image = "example"
    }
  }
}

resource "google_cloudfunctions2_function" "dispatch" {
  name = "dispatch"
  build_config {
    entry_point = "dispatch"
  }
  service_config {
    ingress_settings   = "ALLOW_ALL"
    min_instance_count = 1
  }
}

resource "google_secret_manager_secret_version" "value" {
  secret      = "projects/p/secrets/s"
  secret_data = "not in the state, please"
}
"""


def test_the_projects_policies_catch_what_they_forbid(tmp_path: Path) -> None:
    (tmp_path / "main.tf").write_text(BAD)
    reports = run_checkov("--directory", str(tmp_path))
    failed = {c["check_id"] for c in checks(reports, "failed_checks")}
    missing = policy_ids() - failed
    assert not missing, f"these policies let a violation through: {sorted(missing)}"


def test_every_skipped_check_has_a_reason() -> None:
    lines = CONFIG.read_text().splitlines()
    start = lines.index("skip-check:")
    entries = []
    for line in lines[start + 1 :]:
        if not line.startswith("  -"):
            break
        entries.append(line)
    assert entries, ".checkov.yaml skips nothing: then remove the skip-check list"
    ids = []
    for line in entries:
        match = re.fullmatch(r"  - (CKV2?_[A-Z]+_\d+)\s+#\s*(.+)", line)
        assert match, f"a skip without its reason as a comment: {line!r}"
        assert len(match[2]) >= 30, f"{match[1]}: say why it is skipped, not just that it is"
        ids.append(match[1])
    assert len(ids) == len(set(ids)), "a check is skipped twice"
    assert not [i for i in ids if i.startswith("CKV2_AGENTFLEET")], "the project's own policies are never skipped"
    # Skips live only here: no inline checkov:skip comment anywhere in the Terraform or Dockerfiles.
    for path in [*TERRAFORM.rglob("*.tf"), *dockerfiles()]:
        assert "checkov:skip" not in path.read_text(), f"{path}: skips belong in .checkov.yaml"
