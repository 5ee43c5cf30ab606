"""The `validate` fixture: a real, offline `terraform validate`, or the python-hcl2 check without terraform."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from . import google_schema
from .harness import REQUIRE_ENV, Validator, terraform_binary

Validate = Callable[..., dict[str, Any]]


@pytest.fixture(scope="session")
def provider_schema() -> dict[str, Any]:
    try:
        return google_schema.load()
    except google_schema.SchemaUnavailable as exc:
        pytest.fail(f"the google provider schema is needed: {exc}")


@pytest.fixture(scope="session")
def terraform_path() -> str | None:
    binary = terraform_binary()
    if binary is None and os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but terraform is not on PATH")
    return binary


@pytest.fixture(scope="session")
def validate(
    terraform_path: str | None, provider_schema: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Validate]:
    """`validate(root, tree=None) -> dict`: `terraform validate -json` of a temporary copy of `root`.

    Without terraform, the same call runs the python-hcl2 check against the same schema (its result
    says `"checker": "python-hcl2"`), and says so once as a warning.
    """
    if terraform_path is not None:
        yield Validator(terraform_path, tmp_path_factory.mktemp("terraform"))
        return
    from . import hcl_check

    warnings.warn(
        "terraform is not on PATH: the Terraform roots are checked with python-hcl2 against the "
        f"provider {google_schema.PROVIDER_VERSION} schema instead (names, required, max items, references)",
        stacklevel=1,
    )

    def fallback(root: Path, tree: Path | None = None) -> dict[str, Any]:
        return hcl_check.check_root(Path(root), provider_schema)

    yield fallback
