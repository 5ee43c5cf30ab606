"""Tool results that point at an artifact: a line for the model, a resource link, the picture itself."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

from mcp.types import ContentBlock, ImageContent, ResourceLink, TextContent

from agentfleet.ports import ArtifactStore

MIME = {"png": "image/png", "svg": "image/svg+xml", "wav": "audio/wav"}


def new_key(prefix: str, kind: str, ext: str) -> str:
    """A fresh artifact key under `prefix`: `prefix/kind-<12 hex>.ext`."""
    return f"{prefix.strip('/') or 'media'}/{kind}-{uuid.uuid4().hex[:12]}.{ext}"


def link_uri(store: ArtifactStore, key: str) -> str:
    """The artifact's URI: gs://… as the bucket store gives it, a file:// URI for a local path."""
    where = store.uri(key)
    return where if "://" in where else Path(where).resolve().as_uri()


def stored(store: ArtifactStore, key: str, data: bytes, what: str) -> list[ContentBlock]:
    """Store `data` under `key`; the blocks that say where (and show it, for a PNG)."""
    store.put_bytes(key, data)
    ext = key.rsplit(".", 1)[-1]
    uri = link_uri(store, key)
    blocks: list[ContentBlock] = [
        TextContent(text=f"{what}: {uri} (artifact {key}, {len(data)} bytes)"),
        ResourceLink(uri=uri, name=key.rsplit("/", 1)[-1], mime_type=MIME.get(ext), size=len(data)),
    ]
    if ext == "png":
        blocks.append(ImageContent(data=base64.b64encode(data).decode(), mime_type="image/png"))
    return blocks
