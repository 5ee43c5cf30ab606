"""Reading the Terraform of terraform/ with python-hcl2, for the cross-check tests.

python-hcl2 gives each file as a dict: blocks as lists of one-key dicts, nested blocks as lists,
strings as written (an expression is a "${...}" string). These helpers flatten what the tests need.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hcl2

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "terraform"
MODULES = TERRAFORM / "modules"
ENV_DEV = TERRAFORM / "environments" / "dev"


def _options() -> dict[str, Any]:
    """python-hcl2 8 keeps the quotes of strings and marks blocks unless asked not to; 7 did neither."""
    options = getattr(hcl2, "SerializationOptions", None)
    if options is None:
        return {}
    return {"serialization_options": options(with_comments=False, explicit_blocks=False, strip_string_quotes=True)}


def _unquote_keys(value: Any) -> Any:
    """Block labels ("google_storage_bucket") come quoted from python-hcl2 8 even with quotes stripped."""
    if isinstance(value, dict):
        return {strip_quotes(k): _unquote_keys(v) for k, v in value.items() if not str(k).startswith("__")}
    if isinstance(value, list):
        return [_unquote_keys(v) for v in value]
    return value


@functools.cache
def load(path: Path) -> dict[str, Any]:
    with path.open() as fh:
        return dict(_unquote_keys(hcl2.load(fh, **_options())))


def tf_files(under: Path = TERRAFORM) -> list[Path]:
    return sorted(p for p in under.rglob("*.tf") if ".terraform" not in p.parts)


@dataclass(frozen=True)
class Resource:
    file: Path
    type: str
    name: str
    body: dict[str, Any]

    @property
    def module(self) -> str:
        """The module folder's name (or the environment's) the resource is declared in."""
        return self.file.parent.name


def resources(under: Path = TERRAFORM, type_: str | None = None) -> list[Resource]:
    found = []
    for path in tf_files(under):
        for block in load(path).get("resource", []):
            for rtype, named in block.items():
                for name, body in named.items():
                    if type_ is None or rtype == type_:
                        found.append(Resource(path, rtype, name, body))
    return found


def blocks(path: Path, kind: str) -> dict[str, Any]:
    """Named top-level blocks of a kind (variable, output, module) of one file, by name."""
    out: dict[str, Any] = {}
    for block in load(path).get(kind, []):
        out.update(block)
    return out


def locals_of(path: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for block in load(path).get("locals", []):
        out.update(block)
    return out


def one(value: Any) -> Any:
    """A nested block python-hcl2 wraps in a list of one."""
    if isinstance(value, list):
        assert len(value) == 1, f"expected one block, got {len(value)}"
        return value[0]
    return value


def strip_quotes(value: Any) -> Any:
    """python-hcl2 keeps the quotes of string keys in some positions ('"nvidia.com/gpu"')."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def walk_strings(value: Any) -> list[str]:
    """Every string anywhere in a value (keys included)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [str(k), *walk_strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in walk_strings(v)]
    return []


REF = re.compile(r"^\$\{(?P<expr>[^{}]+)\}$")


def ref(value: Any) -> str | None:
    """The expression of a whole-value interpolation "${expr}", else None."""
    match = REF.match(value) if isinstance(value, str) else None
    return match["expr"].strip() if match else None
