"""The schema read from cdktn-provider-google 21.1.0 matches what hashicorp/google 8.7.0 documents."""

from __future__ import annotations

import importlib.metadata
from typing import Any

import pytest

from . import google_schema


def _block(schema: dict[str, Any], rtype: str, *path: str) -> dict[str, Any]:
    block = schema["resource_schemas"][rtype]["block"]
    for name in path:
        block = block["block_types"][name]["block"]
    return block


def _nested(schema: dict[str, Any], rtype: str, *path: str) -> dict[str, Any]:
    parent = _block(schema, rtype, *path[:-1])
    return parent["block_types"][path[-1]]


def test_counts_and_version(provider_schema) -> None:
    assert provider_schema["provider_version"] == "8.7.0"
    assert len(provider_schema["resource_schemas"]) > 1000
    assert len(provider_schema["data_source_schemas"]) > 300
    assert "google_storage_bucket" in provider_schema["data_source_schemas"]


def test_storage_bucket(provider_schema) -> None:
    attrs = _block(provider_schema, "google_storage_bucket")["attributes"]
    assert attrs["name"] == {"type": "string", "required": True}
    assert attrs["location"] == {"type": "string", "required": True}
    assert attrs["labels"] == {"type": ["map", "string"], "optional": True}
    assert attrs["url"] == {"type": "string", "computed": True}
    assert attrs["uniform_bucket_level_access"] == {"type": "bool", "optional": True, "computed": True}
    versioning = _nested(provider_schema, "google_storage_bucket", "versioning")
    assert (versioning["nesting_mode"], versioning["max_items"]) == ("list", 1)
    assert versioning["block"]["attributes"]["enabled"]["required"] is True
    rule = _nested(provider_schema, "google_storage_bucket", "lifecycle_rule")
    assert rule["nesting_mode"] == "list" and "max_items" not in rule
    action = _nested(provider_schema, "google_storage_bucket", "lifecycle_rule", "action")
    assert (action["nesting_mode"], action["min_items"], action["max_items"]) == ("set", 1, 1)
    timeouts = _nested(provider_schema, "google_storage_bucket", "timeouts")
    assert timeouts["nesting_mode"] == "single"
    cpc = _block(provider_schema, "google_storage_bucket", "custom_placement_config")
    assert cpc["attributes"]["data_locations"]["type"] == ["set", "string"]


def test_cloud_run_v2_service(provider_schema) -> None:
    rtype = "google_cloud_run_v2_service"
    template = _nested(provider_schema, rtype, "template")
    assert (template["nesting_mode"], template["min_items"], template["max_items"]) == ("list", 1, 1)
    containers = _nested(provider_schema, rtype, "template", "containers")
    assert containers["nesting_mode"] == "list" and "max_items" not in containers
    container = containers["block"]
    assert container["attributes"]["image"]["required"] is True
    assert container["block_types"]["resources"]["max_items"] == 1
    limits = container["block_types"]["resources"]["block"]["attributes"]["limits"]
    assert limits["type"] == ["map", "string"]
    secret_ref = _nested(provider_schema, rtype, "template", "containers", "env", "value_source", "secret_key_ref")
    assert secret_ref["block"]["attributes"]["secret"]["required"] is True
    attrs = _block(provider_schema, rtype)["attributes"]
    assert attrs["uri"] == {"type": "string", "computed": True}
    conditions = attrs["terminal_condition"]["type"]
    assert conditions[0] == "list" and conditions[1][0] == "object" and "state" in conditions[1][1]


def test_cloudfunctions2_function(provider_schema) -> None:
    rtype = "google_cloudfunctions2_function"
    for name in ("build_config", "service_config", "event_trigger"):
        assert _nested(provider_schema, rtype, name)["max_items"] == 1
    secret_env = _block(provider_schema, rtype, "service_config", "secret_environment_variables")
    assert {n for n, a in secret_env["attributes"].items() if a.get("required")} == {
        "key",
        "project_id",
        "secret",
        "version",
    }
    storage = _block(provider_schema, rtype, "build_config", "source", "storage_source")["attributes"]
    assert {"bucket", "object", "generation"} <= set(storage)


def test_project_iam_member(provider_schema) -> None:
    block = _block(provider_schema, "google_project_iam_member")
    assert {n for n, a in block["attributes"].items() if a.get("required")} == {"project", "role", "member"}
    assert block["attributes"]["etag"] == {"type": "string", "computed": True}
    condition = block["block_types"]["condition"]
    assert condition["max_items"] == 1
    assert condition["block"]["attributes"]["expression"]["required"] is True


def test_provider_block(provider_schema) -> None:
    block = provider_schema["provider"]["block"]
    for name in ("project", "region", "zone", "credentials", "access_token", "impersonate_service_account"):
        assert block["attributes"][name] == {"type": "string", "optional": True}, name
    assert block["attributes"]["scopes"]["type"] == ["list", "string"]
    assert block["attributes"]["default_labels"]["type"] == ["map", "string"]
    assert "alias" not in block["attributes"]  # a Terraform meta-argument, not the provider's
    assert "batching" in block["block_types"]


def test_a_different_package_version_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.metadata.version

    def fake(name: str) -> str:
        return "20.0.0" if name == google_schema.PACKAGE else real(name)

    monkeypatch.setattr(importlib.metadata, "version", fake)
    with pytest.raises(google_schema.SchemaUnavailable, match=r"cdktn-provider-google==21\.1\.0"):
        google_schema.package_tarball()
