"""Run the real `terraform init` and `terraform validate -json` offline, against provider 8.7.0's schema.

The schema-only plugin (`schema_provider.py`) is laid out as an unpacked filesystem mirror,
`<mirror>/registry.terraform.io/hashicorp/google/8.7.0/<os_arch>/terraform-provider-google_v8.7.0`,
an executable script that starts it with this Python. A CLI configuration file
(TF_CLI_CONFIG_FILE) points Terraform's provider installation at that mirror for hashicorp/google
and at nothing else for it, so `terraform init` installs it as it would a downloaded provider and
writes the lock file (with the mirror's hash) into the temporary copy of the root it runs in.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import google_schema

HERE = Path(__file__).resolve().parent
REQUIRE_ENV = "AGENTFLEET_REQUIRE_TERRAFORM"

# What Terraform itself must not reach for or remember between runs.
_DROPPED_ENV = ("TF_PLUGIN_CACHE_DIR", "TF_DATA_DIR", "TF_WORKSPACE", "TF_CLI_ARGS", "TF_LOG", "TF_LOG_PATH")


class TerraformFailed(RuntimeError):
    pass


def terraform_binary() -> str | None:
    return shutil.which("terraform")


def terraform_platform(binary: str) -> str:
    out = subprocess.run([binary, "version", "-json"], capture_output=True, text=True, check=True, timeout=60)
    return json.loads(out.stdout)["platform"]


def build_mirror(mirror: Path, platform: str, schema_path: Path) -> Path:
    """Lay out the plugin as hashicorp/google in an unpacked filesystem mirror; returns the mirror."""
    version = google_schema.PROVIDER_VERSION
    target = mirror / "registry.terraform.io" / "hashicorp" / "google" / version / platform
    target.mkdir(parents=True, exist_ok=True)
    plugin = target / f"terraform-provider-google_v{version}"
    command = [sys.executable, str(HERE / "schema_provider.py"), str(schema_path)]
    plugin.write_text("#!/bin/sh\nexec " + " ".join(shlex.quote(c) for c in command) + "\n")
    plugin.chmod(0o755)
    return mirror


def write_cli_config(path: Path, mirror: Path) -> Path:
    source = google_schema.PROVIDER_SOURCE
    path.write_text(
        "provider_installation {\n"
        f"  filesystem_mirror {{\n    path    = {json.dumps(str(mirror))}\n"
        f"    include = [{json.dumps(source)}]\n  }}\n"
        f"  direct {{\n    exclude = [{json.dumps(source)}]\n  }}\n"
        "}\n"
        "disable_checkpoint = true\n"
    )
    return path


class Validator:
    """`validate(root)`: init and validate a temporary copy of a Terraform root; the parsed -json result.

    `tree` is the directory copied (default: the root itself); give the directory that holds the
    root's local modules too (e.g. `terraform/` for `terraform/environments/dev`) so that their
    relative `source` paths resolve in the copy.
    """

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        schema_path = google_schema.schema_file()
        mirror = build_mirror(workdir / "mirror", terraform_platform(binary), schema_path)
        self.cli_config = write_cli_config(workdir / "terraform.rc", mirror)
        self.env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
        self.env.update(
            TF_CLI_CONFIG_FILE=str(self.cli_config),
            TF_IN_AUTOMATION="1",
            TF_INPUT="0",
            CHECKPOINT_DISABLE="1",
        )

    def run(self, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.binary, *args], cwd=cwd, env=self.env, capture_output=True, text=True, timeout=240)

    def __call__(self, root: Path, tree: Path | None = None) -> dict[str, Any]:
        root = Path(root).resolve()
        tree = Path(tree).resolve() if tree is not None else root
        scratch = Path(tempfile.mkdtemp(prefix="validate-", dir=self.workdir))
        copy = scratch / tree.name
        shutil.copytree(tree, copy, ignore=shutil.ignore_patterns(".terraform", ".terraform.lock.hcl", "*.tfstate*"))
        where = copy / root.relative_to(tree)
        try:
            init = self.run(["init", "-backend=false", "-input=false", "-no-color"], where)
            if init.returncode != 0:
                raise TerraformFailed(f"terraform init failed in a copy of {root}:\n{init.stdout}\n{init.stderr}")
            result = self.run(["validate", "-json", "-no-color"], where)
            try:
                return json.loads(result.stdout)
            except json.JSONDecodeError:
                raise TerraformFailed(
                    f"terraform validate gave no JSON for {root}:\n{result.stdout}\n{result.stderr}"
                ) from None
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
