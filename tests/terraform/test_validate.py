"""`terraform validate` of Terraform roots against hashicorp/google 8.7.0's schema, offline.

The fixture root under fixtures/valid must validate; each broken copy of it must be refused with
Terraform's own diagnostic; every root under terraform/environments/*/ of the repository must
validate. Without terraform on PATH the python-hcl2 check runs the same tests (see conftest.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from .harness import HERE, REQUIRE_ENV

REPO = HERE.parents[1]
FIXTURE = HERE / "fixtures" / "valid"
ENVIRONMENTS = sorted(p.parent for p in (REPO / "terraform" / "environments").glob("*/main.tf"))


def _errors(result: dict[str, Any]) -> str:
    return "\n".join(f"{d.get('summary')}: {d.get('detail')}" for d in result.get("diagnostics", []))


def test_fixture_root_is_valid(validate) -> None:
    started = time.monotonic()
    result = validate(FIXTURE)
    elapsed = time.monotonic() - started
    assert result["valid"] is True, _errors(result)
    assert result["error_count"] == 0
    print(f"one validate ({result.get('checker', 'terraform')}) took {elapsed:.1f} s")


# (id, text replaced once in main.tf, replacement, Terraform's summary, a part of its detail)
BROKEN = [
    (
        "misspelt-argument",
        "  force_destroy               = false\n",
        "  force_destory               = false\n",
        "Unsupported argument",
        'An argument named "force_destory" is not expected here.',
    ),
    (
        "misspelt-nested-argument",
        '      image = "us-docker.pkg.dev/cloudrun/container/hello"\n',
        '      images = "us-docker.pkg.dev/cloudrun/container/hello"\n',
        "Unsupported argument",
        'An argument named "images" is not expected here.',
    ),
    (
        "missing-required-argument",
        '  role    = "roles/storage.objectAdmin"\n',
        "",
        "Missing required argument",
        'The argument "role" is required, but no definition was found.',
    ),
    (
        "bad-attribute-reference",
        "  value = google_storage_bucket.b.url\n",
        "  value = google_storage_bucket.b.no_such_attr\n",
        "Unsupported attribute",
        'This object has no argument, nested block, or exported attribute named "no_such_attr".',
    ),
    (
        "too-many-blocks",
        "  versioning {\n    enabled = true\n  }\n",
        "  versioning {\n    enabled = true\n  }\n\n  versioning {\n    enabled = false\n  }\n",
        "Too many versioning blocks",
        'No more than 1 "versioning" blocks are allowed',
    ),
    (
        "missing-required-block",
        '    action {\n      type = "Delete"\n    }\n',
        "",
        "Insufficient action blocks",
        'At least 1 "action" blocks are required.',
    ),
    (
        "unknown-resource-type",
        'resource "google_project_iam_member" "run_storage" {',
        'resource "google_project_iam_membership" "run_storage" {',
        "Invalid resource type",
        'does not support resource type "google_project_iam_membership"',
    ),
]


@pytest.mark.parametrize(("case", "old", "new", "summary", "detail"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_copy_is_refused(validate, tmp_path: Path, case, old, new, summary, detail) -> None:
    root = tmp_path / "root"
    shutil.copytree(FIXTURE, root)
    main = root / "main.tf"
    text = main.read_text()
    assert text.count(old) == 1, f"{case}: the fixture no longer has the text this case changes"
    main.write_text(text.replace(old, new))

    result = validate(root)

    assert result["valid"] is False
    matching = [d for d in result["diagnostics"] if d.get("summary") == summary and detail in d.get("detail", "")]
    assert matching, f"expected {summary!r} with {detail!r}; got:\n{_errors(result)}"
    assert all(d["severity"] == "error" for d in matching)


@pytest.mark.parametrize("root", ENVIRONMENTS, ids=[p.name for p in ENVIRONMENTS])
def test_environment_root_is_valid(validate, root: Path) -> None:
    result = validate(root, tree=REPO / "terraform")
    assert result["valid"] is True, _errors(result)


def test_real_terraform_was_used(terraform_path, validate) -> None:
    """Says plainly when the checks above could not run the real terraform."""
    if terraform_path is None:
        pytest.skip(
            "terraform is not on PATH: the checks above ran python-hcl2 against the same schema instead; "
            f"install terraform >= 1.5 to run the real one (set {REQUIRE_ENV}=1 to make its absence fail)"
        )
    result = validate(FIXTURE)
    assert "checker" not in result
    assert result["format_version"] == "1.0"


def test_plugin_refuses_to_run_outside_terraform(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TF_PLUGIN_MAGIC_COOKIE"}
    schema = tmp_path / "schema.json"
    schema.write_text("{}")
    proc = subprocess.run(
        [sys.executable, str(HERE / "schema_provider.py"), str(schema)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "not meant to be executed directly" in proc.stderr
    assert proc.stdout == ""
