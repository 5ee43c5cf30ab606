"""The hashicorp/google provider's schema, recovered from the pinned `cdktn-provider-google` package.

No provider binary can be downloaded here, but `cdktn-provider-google==21.1.0` is generated from
hashicorp/google 8.7.0 and carries, in its npm tarball (`_jsii/provider-google@21.1.0.jsii.tgz`), one
JavaScript module per resource and data source. The generator writes every part of the provider's
schema into those modules in a fixed shape, which is what this module reads:

* `static tfResourceType = "google_storage_bucket";` names the Terraform type of a resource class
  (`extends cdktn.TerraformResource`), a data source class (`extends cdktn.TerraformDataSource`,
  same type name; Terraform's `data.` prefix is not in it) or the provider (`extends
  cdktn.TerraformProvider`, type `google`).
* `// location - computed: false, optional: false, required: true` stands before every member of
  a class (the resource's own and each nested block's `...OutputReference` class), with the
  Terraform name and its flags. The member that follows tells the value's kind:
  `this.getStringAttribute('location')` (string; also Number, Boolean, List = list(string),
  NumberList, StringMap), `cdktn.Fn.tolist(this.getListAttribute(..))` (a set),
  `new cdktn.StringMap(this, "x")`, `new XOutputReference(this, "x")` (one nested object) or
  `new XList(this, "x", wrapsSet)` (a list, or a set when `wrapsSet` is true, of nested objects).
* `synthesizeHclAttributes()` (the resource's) and `function xToHclTerraform(struct)` (a nested
  block's) list what can be configured, each with `isBlock`, `type` (`simple`, `list`, `set`,
  `map`, `struct`) and whether the value goes through `listMapperHcl` (no item limit) or not (at
  most one item). So a nested block's nesting is: `struct` -> single, `set` -> set, otherwise list;
  max_items is 1 unless `listMapperHcl` is used; min_items is 1 when it is required.

The result has the shape of `terraform providers schema -json` for one provider. It is what the
schema-only provider plugin serves and what the HCL fallback check reads. Extraction reads the
whole tarball (about 420 MB unpacked, some seconds), so the result is cached as JSON under
`~/.cache/agentfleet-tests/` keyed by the package version and this file's contents.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PACKAGE = "cdktn-provider-google"
PACKAGE_VERSION = "21.1.0"
PROVIDER_SOURCE = "registry.terraform.io/hashicorp/google"
PROVIDER_VERSION = "8.7.0"
INSTALL_HINT = f"pip install '{PACKAGE}=={PACKAGE_VERSION}' (it is in the dev extra: make install)"

CACHE_DIR = Path(os.environ.get("AGENTFLEET_TEST_CACHE", Path.home() / ".cache" / "agentfleet-tests"))

# Names the generator adds to the provider class that are Terraform meta-arguments, not schema.
_PROVIDER_META = {"alias"}

_CLASS = re.compile(r"^class (\w+) extends ([\w.]+) \{\n(.*?)^\}", re.M | re.S)
_FUNC_HCL = re.compile(r"^function (\w+)ToHclTerraform\(struct\) \{\n(.*?)^\}", re.M | re.S)
_RESOURCE_TYPE = re.compile(r'static tfResourceType = "([\w-]+)";')
_MEMBER = re.compile(
    r"^    // (\w+) - computed: (true|false), optional: (true|false), required: (true|false)$",
    re.M,
)
_HCL_ENTRY = re.compile(
    r"^ +(\w+): \{\n +value: ([^\n]*),\n +isBlock: (true|false),\n +type: \"(\w+)\",\n"
    r" +storageClassType: \"(\w+)\",\n",
    re.M,
)
_SYNTH_HCL = re.compile(r"synthesizeHclAttributes\(\) \{\n(.*?)^    \}", re.M | re.S)
_ALIAS = re.compile(r"\b(?:index|structs\d+)_\d+\.(?=[A-Za-z])")
_DOC_VERSION = re.compile(r"registry\.terraform\.io/providers/hashicorp/google/([\d.]+)/docs")

_GETTER_TYPES: dict[str, Any] = {
    "getStringAttribute": "string",
    "getNumberAttribute": "number",
    "getBooleanAttribute": "bool",
    "getListAttribute": ["list", "string"],
    "getNumberListAttribute": ["list", "number"],
    "getBooleanListAttribute": ["list", "bool"],
    "getStringMapAttribute": ["map", "string"],
    "getNumberMapAttribute": ["map", "number"],
    "getBooleanMapAttribute": ["map", "bool"],
}
_CDKTN_CLASS_TYPES: dict[str, Any] = {
    "cdktn.StringMap": ["map", "string"],
    "cdktn.NumberMap": ["map", "number"],
    "cdktn.BooleanMap": ["map", "bool"],
    "cdktn.AnyMap": ["map", "dynamic"],
    "cdktn.StringMapList": ["list", ["map", "string"]],
    "cdktn.NumberMapList": ["list", ["map", "number"]],
    "cdktn.BooleanMapList": ["list", ["map", "bool"]],
}
_HCL_SIMPLE_TYPES: dict[tuple[str, str], Any] = {
    ("simple", "string"): "string",
    ("simple", "number"): "number",
    ("simple", "boolean"): "bool",
    ("list", "stringList"): ["list", "string"],
    ("set", "stringList"): ["set", "string"],
    ("list", "numberList"): ["list", "number"],
    ("set", "numberList"): ["set", "number"],
    ("list", "booleanList"): ["list", "bool"],
    ("map", "stringMap"): ["map", "string"],
    ("map", "numberMap"): ["map", "number"],
    ("map", "booleanMap"): ["map", "bool"],
}


class SchemaUnavailable(RuntimeError):
    """The pinned package is not installed, or its contents are not what this reader expects."""


class _Module:
    """One generated module: its classes and the configurable entries of each nested block."""

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.classes: dict[str, tuple[str, str]] = {m.group(1): (m.group(2), m.group(3)) for m in _CLASS.finditer(text)}
        self.hcl_funcs: dict[str, str] = {m.group(1): m.group(2) for m in _FUNC_HCL.finditer(text)}
        # Nested classes being read: the generator names a few deeply recursive schemas with
        # class names it has already used, which would otherwise never end.
        self._open: set[str] = set()

    def fail(self, what: str) -> SchemaUnavailable:
        return SchemaUnavailable(f"{PACKAGE} module {self.name}: {what}")

    def hcl_entries(self, body: str) -> dict[str, tuple[str, bool, str, str]]:
        return {
            m.group(1): (m.group(2), m.group(3) == "true", m.group(4), m.group(5)) for m in _HCL_ENTRY.finditer(body)
        }

    def nested_hcl(self, class_base: str) -> dict[str, tuple[str, bool, str, str]]:
        func = class_base[0].lower() + class_base[1:]
        body = self.hcl_funcs.get(func)
        return self.hcl_entries(body) if body is not None else {}

    def members(self, body: str) -> list[tuple[str, bool, bool, bool, str]]:
        found = list(_MEMBER.finditer(body))
        out = []
        for i, m in enumerate(found):
            end = found[i + 1].start() if i + 1 < len(found) else len(body)
            out.append(
                (m.group(1), m.group(2) == "true", m.group(3) == "true", m.group(4) == "true", body[m.end() : end])
            )
        return out

    def block(self, class_body: str | None, hcl: dict[str, tuple[str, bool, str, str]]) -> dict[str, Any]:
        """A block schema from a class body (may be None: only the HCL entries are known)."""
        attributes: dict[str, Any] = {}
        block_types: dict[str, Any] = {}
        members = self.members(class_body) if class_body is not None else []
        seen = set()
        for name, computed, optional, required, segment in members:
            seen.add(name)
            entry = hcl.get(name)
            if entry is not None and entry[1]:
                block_types[name] = self.nested_block(name, entry, required, segment)
                continue
            flags = _flags(computed, optional, required)
            attributes[name] = {"type": self.member_type(name, segment, entry), **flags}
        for name, entry in hcl.items():
            if name in seen:
                continue
            # Only the provider's plain structs lack classes: their members are all optional here.
            if entry[1]:
                block_types[name] = self.nested_block(name, entry, False, None)
            else:
                attributes[name] = {"type": _hcl_type(self, name, entry), "optional": True}
        out: dict[str, Any] = {"attributes": attributes}
        if block_types:
            out["block_types"] = block_types
        return out

    def nested_block(
        self, name: str, entry: tuple[str, bool, str, str], required: bool, segment: str | None
    ) -> dict[str, Any]:
        value, _, kind, storage = entry
        class_base = storage[:-4] if storage.endswith("List") else storage
        new = re.search(r'new (\w+)\(this, "' + name + '"', segment or "")
        if new is not None:
            class_base = re.sub(r"(OutputReference|List)$", "", new.group(1))
        ref = self.classes.get(class_base + "OutputReference")
        body = ref[1] if ref is not None else None
        if class_base in self._open:
            inner: dict[str, Any] = {"attributes": {}}
        else:
            self._open.add(class_base)
            inner = self.block(body, self.nested_hcl(class_base))
            self._open.discard(class_base)
        if kind == "struct":
            return {"nesting_mode": "single", "block": inner}
        nested: dict[str, Any] = {"nesting_mode": "set" if kind == "set" else "list", "block": inner}
        if "listMapperHcl(" not in value:
            nested["max_items"] = 1
        if required:
            nested["min_items"] = 1
        return nested

    def member_type(self, name: str, segment: str, entry: tuple[str, bool, str, str] | None) -> Any:
        got = re.search(r"(cdktn\.Fn\.tolist\()?this\.(get\w*Attribute)\('" + name + r"'\)", segment)
        if got is not None:
            typ = _GETTER_TYPES.get(got.group(2))
            if typ is None:
                raise self.fail(f"{name}: unknown getter {got.group(2)}")
            if got.group(1):
                typ = ["set", typ[1]]
            return typ
        new = re.search(r'new ([\w.]+)\(this, "' + name + r'"(?:, (true|false))?\)', segment)
        if new is not None:
            cls = new.group(1)
            if cls in _CDKTN_CLASS_TYPES:
                return _CDKTN_CLASS_TYPES[cls]
            if cls.endswith("List") and self.classes.get(cls, ("",))[0] == "cdktn.ComplexList":
                obj = self.object_type(cls[:-4])
                return ["set" if new.group(2) == "true" else "list", obj]
            if cls.endswith("OutputReference"):
                obj = self.object_type(cls[: -len("OutputReference")])
                return obj if entry is not None and entry[2] == "struct" else ["list", obj]
            raise self.fail(f"{name}: unknown class {cls}")
        if entry is not None:
            return _hcl_type(self, name, entry)
        raise self.fail(f"{name}: cannot tell its type")

    def object_type(self, class_base: str) -> list[Any]:
        ref = self.classes.get(class_base + "OutputReference")
        if ref is None:
            raise self.fail(f"no class {class_base}OutputReference")
        if class_base in self._open:
            return ["object", {}]
        self._open.add(class_base)
        inner = self.block(ref[1], self.nested_hcl(class_base))
        self._open.discard(class_base)
        fields = {k: v["type"] for k, v in inner["attributes"].items()}
        for k, b in inner.get("block_types", {}).items():
            fields[k] = ["list", _block_object(b["block"])]
        return ["object", fields]

    def top_level(self) -> tuple[str, str, dict[str, Any]] | None:
        """(kind, type name, block) of the module's resource, data source or provider class."""
        for _, (base, body) in self.classes.items():
            kind = {
                "cdktn.TerraformResource": "resource",
                "cdktn.TerraformDataSource": "data",
                "cdktn.TerraformProvider": "provider",
            }.get(base)
            if kind is None:
                continue
            rtype = _RESOURCE_TYPE.search(body)
            synth = _SYNTH_HCL.search(body)
            if rtype is None or synth is None:
                raise self.fail("top-level class without tfResourceType or synthesizeHclAttributes")
            block = self.block(body, self.hcl_entries(synth.group(1)))
            if kind == "provider":
                for meta in _PROVIDER_META:
                    block["attributes"].pop(meta, None)
            return kind, rtype.group(1), block
        return None


def _flags(computed: bool, optional: bool, required: bool) -> dict[str, bool]:
    out = {}
    if required:
        out["required"] = True
    if optional:
        out["optional"] = True
    if computed:
        out["computed"] = True
    return out


def _hcl_type(module: _Module, name: str, entry: tuple[str, bool, str, str]) -> Any:
    typ = _HCL_SIMPLE_TYPES.get((entry[2], entry[3]))
    if typ is None:
        raise module.fail(f"{name}: unknown configurable kind {entry[2]}/{entry[3]}")
    return typ


def _block_object(block: dict[str, Any]) -> list[Any]:
    fields = {k: v["type"] for k, v in block["attributes"].items()}
    for k, b in block.get("block_types", {}).items():
        fields[k] = ["list", _block_object(b["block"])]
    return ["object", fields]


def package_tarball() -> Path:
    """The npm tarball inside the installed pinned package (the package is not imported)."""
    try:
        version = importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise SchemaUnavailable(f"{PACKAGE} is not installed: {INSTALL_HINT}") from None
    if version != PACKAGE_VERSION:
        raise SchemaUnavailable(
            f"{PACKAGE} {version} is installed, the schema is read from {PACKAGE_VERSION} "
            f"(provider {PROVIDER_VERSION}): {INSTALL_HINT}"
        )
    spec = importlib.util.find_spec("cdktn_provider_google")
    if spec is None or not spec.submodule_search_locations:
        raise SchemaUnavailable(f"{PACKAGE} is installed but cdktn_provider_google is not found")
    found = sorted(Path(next(iter(spec.submodule_search_locations)), "_jsii").glob("*.jsii.tgz"))
    if not found:
        raise SchemaUnavailable(f"{PACKAGE} has no _jsii/*.jsii.tgz")
    return found[0]


def _module_texts(tar: tarfile.TarFile) -> Iterator[tuple[str, str]]:
    """(module name, its JavaScript) for each `package/lib/<module>/`: a large module's structs
    live in further files under `index-structs/`, so all of a module's files are joined."""
    texts: dict[str, list[str]] = {}
    for member in tar:
        parts = member.name.split("/")
        if len(parts) < 4 or parts[1] != "lib" or not parts[-1].endswith(".js") or not member.isfile():
            continue
        handle = tar.extractfile(member)
        assert handle is not None
        # The inline source map at the end is large and holds nothing this reader needs.
        text = handle.read().decode("utf-8").split("\n//# sourceMappingURL=", 1)[0]
        # Classes of another file of the module are named through its require() alias.
        texts.setdefault(parts[2], []).append(_ALIAS.sub("", text))
    for name in sorted(texts):
        yield name, "\n".join(texts[name])


def extract(tarball: Path) -> dict[str, Any]:
    """Read every generated module in the tarball into one provider schema."""
    schema: dict[str, Any] = {"provider": None, "resource_schemas": {}, "data_source_schemas": {}}
    versions: set[str] = set()
    with tarfile.open(tarball, "r:gz") as tar:
        for name, text in _module_texts(tar):
            module = _Module(name, text)
            top = module.top_level()
            if top is None:
                continue
            versions.update(_DOC_VERSION.findall(text[:20000]))
            kind, tf_name, block = top
            if kind == "provider":
                schema["provider"] = {"version": 0, "block": block}
            else:
                key = "resource_schemas" if kind == "resource" else "data_source_schemas"
                schema[key][tf_name] = {"version": 0, "block": block}
    if schema["provider"] is None or not schema["resource_schemas"]:
        raise SchemaUnavailable(f"{tarball.name}: no provider or resource modules found")
    if versions != {PROVIDER_VERSION}:
        raise SchemaUnavailable(f"{tarball.name} documents provider versions {sorted(versions)}")
    schema["provider_version"] = PROVIDER_VERSION
    return schema


def _cache_path() -> Path:
    digest = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    return CACHE_DIR / f"google-provider-{PROVIDER_VERSION}-{PACKAGE}-{PACKAGE_VERSION}-{digest}.json"


def schema_file() -> Path:
    """Path of the cached schema JSON, extracting it first when it is not there yet."""
    path = _cache_path()
    if path.is_file():
        return path
    schema = extract(package_tarball())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as out:
        json.dump(schema, out, separators=(",", ":"), sort_keys=True)
    os.replace(tmp, path)
    return path


@functools.lru_cache(maxsize=1)
def load() -> dict[str, Any]:
    """The provider schema (`provider`, `resource_schemas`, `data_source_schemas`)."""
    with open(schema_file()) as handle:
        return json.load(handle)


if __name__ == "__main__":
    import sys

    print(schema_file())
    if len(sys.argv) > 1:
        data = load()
        for name in sys.argv[1:]:
            kind, _, rest = name.partition(":")
            if kind == "provider":
                found = data["provider"]
            else:
                table = data["data_source_schemas" if kind == "data" else "resource_schemas"]
                found = table.get(rest or kind)
            print(json.dumps(found, indent=1, sort_keys=True))
