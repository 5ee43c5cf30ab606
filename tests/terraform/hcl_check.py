"""A smaller check of Terraform roots against the same provider schema, for machines without `terraform`.

It parses the `.tf` files with python-hcl2 (and those of local modules the root calls) and reports,
with Terraform's own summaries, what `terraform validate` would report for the most common mistakes:
an unknown resource or data source type, an argument or nested block the schema does not have,
a missing required argument or block, more blocks than max_items,
and a reference `google_x.name.attr` to an attribute the type does not export. It knows nothing of
types, expressions or functions: Terraform itself stays the real check.

The result has the shape of `terraform validate -json` plus `"checker": "python-hcl2"`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import hcl2

META_ARGUMENTS = {"count", "for_each", "depends_on", "provider", "lifecycle", "provisioner", "connection"}
_REFERENCE = re.compile(r"(?<![\w.])(data\.)?(google_\w+)\.([A-Za-z_][\w-]*)(?:\[[^\]]*\])?(?:\.\*)?\.([A-Za-z_]\w*)")


def _diag(summary: str, detail: str, where: str) -> dict[str, Any]:
    return {"severity": "error", "summary": summary, "detail": detail, "address": where}


# python-hcl2 8 keeps the source form by default: labels, object keys and string literals keep their
# quotes ('"google_x"', '"us-central1"') and every block gets an "__is_block__" key, so no label or
# argument name matches the schema. These options give 7.x's shape back: bare labels, keys and strings,
# expressions as "${...}", repeated blocks as lists. 7.x has no options and already gives that shape.
_SERIALIZATION = getattr(hcl2, "SerializationOptions", None)
_LOAD_OPTIONS: dict[str, Any] = (
    {}
    if _SERIALIZATION is None
    else {"serialization_options": _SERIALIZATION(strip_string_quotes=True, explicit_blocks=False, with_comments=False)}
)


def _load(directory: Path) -> list[dict[str, Any]]:
    parsed = []
    for path in sorted(directory.glob("*.tf")):
        with open(path) as handle:
            parsed.append(hcl2.load(handle, **_LOAD_OPTIONS))
    return parsed


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def check_body(body: dict[str, Any], block: dict[str, Any], where: str, out: list[dict[str, Any]]) -> None:
    attributes = block.get("attributes", {})
    block_types = block.get("block_types", {})
    dynamic: set[str] = set()
    for entry in body.get("dynamic", []):
        for name, spec in entry.items():
            dynamic.add(name)
            if name not in block_types:
                out.append(_diag("Unsupported block type", f'Blocks of type "{name}" are not expected here.', where))
                continue
            for content in spec.get("content", []):
                check_body(content, block_types[name]["block"], f"{where}.{name}", out)
    for name, value in body.items():
        if name == "dynamic" or name.startswith("__"):
            continue
        if name in block_types:
            items = value if isinstance(value, list) else [value]
            spec = block_types[name]
            limit = spec.get("max_items", 0)
            if limit and len(items) > limit:
                out.append(
                    _diag(
                        f"Too many {name} blocks",
                        f'No more than {limit} "{name}" blocks are allowed',
                        where,
                    )
                )
            for item in items:
                if isinstance(item, dict):
                    check_body(item, spec["block"], f"{where}.{name}", out)
        elif name not in attributes:
            out.append(_diag("Unsupported argument", f'An argument named "{name}" is not expected here.', where))
    for name, attr in attributes.items():
        if attr.get("required") and name not in body:
            out.append(
                _diag(
                    "Missing required argument",
                    f'The argument "{name}" is required, but no definition was found.',
                    where,
                )
            )
    for name, spec in block_types.items():
        low = spec.get("min_items", 0)
        if low and name not in dynamic and len(body.get(name, [])) < low:
            out.append(
                _diag(
                    f"Insufficient {name} blocks",
                    f'At least {low} "{name}" blocks are required.',
                    where,
                )
            )


def check_root(root: Path, schema: dict[str, Any]) -> dict[str, Any]:
    out: list[dict[str, Any]] = []
    seen: set[Path] = set()

    def check_dir(directory: Path) -> None:
        directory = directory.resolve()
        if directory in seen:
            return
        seen.add(directory)
        files = _load(directory)
        declared: dict[tuple[str, str], str] = {}
        texts: list[str] = []
        for parsed in files:
            for kind, table in (("resource", "resource_schemas"), ("data", "data_source_schemas")):
                for entry in parsed.get(kind, []):
                    for rtype, named in entry.items():
                        for name, body in named.items():
                            prefix = "data." if kind == "data" else ""
                            declared[(prefix + rtype, name)] = rtype
                            where = f"{prefix}{rtype}.{name}"
                            if not rtype.startswith("google"):
                                continue
                            found = schema[table].get(rtype)
                            if found is None:
                                label = "resource type" if kind == "resource" else "data source"
                                out.append(
                                    _diag(
                                        f"Invalid {label}",
                                        f'The provider hashicorp/google does not support {label} "{rtype}".',
                                        where,
                                    )
                                )
                                continue
                            stripped = {k: v for k, v in body.items() if k not in META_ARGUMENTS}
                            check_body(stripped, found["block"], where, out)
            for entry in parsed.get("provider", []):
                for name, body in entry.items():
                    if name == "google":
                        stripped = {k: v for k, v in body.items() if k != "alias"}
                        check_body(stripped, schema["provider"]["block"], "provider.google", out)
            for entry in parsed.get("module", []):
                for body in entry.values():
                    source = body.get("source", "")
                    if isinstance(source, str) and source.startswith(("./", "../")):
                        check_dir(directory / source)
            texts.extend(_strings(parsed))
        for text in texts:
            for data, rtype, name, attr in _REFERENCE.findall(text):
                key = (data + rtype, name)
                if key not in declared:
                    continue
                table = schema["data_source_schemas" if data else "resource_schemas"].get(rtype)
                if table is None:
                    continue
                block = table["block"]
                if attr not in block.get("attributes", {}) and attr not in block.get("block_types", {}):
                    out.append(
                        _diag(
                            "Unsupported attribute",
                            f'This object has no argument, nested block, or exported attribute named "{attr}".',
                            f"{data}{rtype}.{name}",
                        )
                    )

    check_dir(root)
    return {
        "format_version": "1.0",
        "valid": not out,
        "error_count": len(out),
        "warning_count": 0,
        "diagnostics": out,
        "checker": "python-hcl2",
    }
