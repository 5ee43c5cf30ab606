"""How things are named: repository URLs (checked, normalized, redacted, and the workspace id and
folder each maps to) and artifact keys (checked; input files; workspace snapshots)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

WORKSPACE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
"""What a workspace id may be: a plain folder name (workspace_id() makes them; data may not)."""
_SCP_LIKE = re.compile(r"^(?P<user>[A-Za-z0-9._-]+)@(?P<host>[A-Za-z0-9.-]+):(?P<path>[^/].*)$")


# --- repository URLs -----------------------------------------------------------------------


def redact_url(url: str) -> str:
    """The URL with any user-info credentials replaced by ***."""
    parts = urlsplit(url)
    if parts.scheme and "@" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[1]
        return parts._replace(netloc=f"***@{host}").geturl()
    return url


def is_local(url: str) -> bool:
    return url.startswith(("file://", "/", "./", "../", "~")) or url in (".", "..")


def check_repo_url(url: str, *, allow_local: bool) -> str:
    """Return the URL stripped of surrounding space, or raise ValueError saying what to fix."""
    url = url.strip()
    if not url:
        raise ValueError("repository URL is empty")
    if url.startswith("-"):
        raise ValueError("repository URL must not start with '-'")
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise ValueError("repository URL must not contain spaces or control characters")
    if is_local(url):
        if not allow_local:
            raise ValueError(
                "local paths and file:// URLs are not allowed here; use an https://, ssh:// "
                "or git@host:path URL (set AGENTFLEET_ALLOW_LOCAL_REPOS=true to allow them)"
            )
        return url
    if _SCP_LIKE.match(url):
        return url
    parts = urlsplit(url)
    if parts.scheme not in ("https", "ssh"):
        raise ValueError(
            f"repository URL scheme {parts.scheme or '(none)'!r} is not supported; "
            "use https://, ssh:// or git@host:path"
        )
    if not parts.hostname:
        raise ValueError("repository URL has no host")
    if parts.password or (parts.scheme == "https" and parts.username):
        raise ValueError(
            f"repository URL {redact_url(url)} embeds credentials; remove them and configure "
            "a git credential for the host instead"
        )
    return url


def normalize_repo_url(url: str) -> str:
    """A canonical form: same repository written differently → same string."""
    url = url.strip()
    if is_local(url):
        path = url.removeprefix("file://")
        return "local" + str(Path(path).expanduser().resolve()).rstrip("/")
    match = _SCP_LIKE.match(url)
    if match:
        host, path = match["host"], match["path"]
    else:
        parts = urlsplit(url)
        host, path = parts.hostname or "", parts.path
        if parts.port and parts.port not in (22, 443):
            host = f"{host}:{parts.port}"
    path = re.sub(r"/+", "/", path).strip("/").removesuffix(".git").rstrip("/")
    return f"{host.lower()}/{path.lower() if host else path}"


def workspace_id(url: str) -> str:
    """Readable slug + short hash; fits a Cloud Run job name as `agent-<id>` (≤ 63 chars)."""
    norm = normalize_repo_url(url)
    tail = "-".join(norm.split("/")[-2:])
    slug = re.sub(r"[^a-z0-9]+", "-", tail.lower()).strip("-")[:40].strip("-") or "repo"
    digest = hashlib.sha256(norm.encode()).hexdigest()[:10]
    return f"{slug}-{digest}"


def repo_dirname(url: str) -> str:
    """The folder a repository gets inside a multi-repository workspace."""
    return repo_dirname_of(normalize_repo_url(url))


def repo_dirname_of(norm: str) -> str:
    """repo_dirname of a URL already normalized: a local path's normal form resolves symlinks
    (one lstat per part), so a caller that has it does not make it again."""
    name = norm.rsplit("/", 1)[-1]
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-") or "repo"


# --- artifact keys -----------------------------------------------------------------------------


def check_artifact_key(key: str) -> str:
    """`key` when it is a relative path without '..'; ValueError otherwise (every store checks alike)."""
    parts = PurePosixPath(key).parts
    if not key or key.startswith("/") or ".." in parts or "\x00" in key or "\\" in key:
        raise ValueError(f"artifact key {key!r} must be a relative path without '..'")
    return key


INPUTS_PREFIX = "inputs/"
"""Where uploaded input files live (POST /files); a bare file name means one there."""


_UPLOAD_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ +-]{0,127}$")


def upload_key(name: str) -> str:
    """The artifact key of an uploaded input file called `name` (`file.md`, or `batch/file.md` to
    keep uploads apart); ValueError saying what a name may be."""
    parts = name.split("/")
    if len(parts) > 2 or not all(_UPLOAD_PART.match(part) for part in parts):
        raise ValueError(
            f"file name {name[:100]!r} is not allowed: use letters, digits, '.', '_', '-', '+' and spaces, not "
            "starting with '.' or '-', at most 128 characters, with at most one folder ('batch/name.md')"
        )
    return f"{INPUTS_PREFIX}{name}"


def input_file_key(item: str) -> str:
    """The artifact key an input file names: a bare name (no '/') the upload of that name under
    inputs/, a key itself, gs://bucket/key its key; ValueError saying what to give when it names no
    file or is not a valid key."""
    if item.startswith("gs://"):
        key = item.split("/", 3)[3] if item.count("/") >= 3 else item
    else:
        key = item if "/" in item else f"{INPUTS_PREFIX}{item}"
    if key.startswith("gs://") or PurePosixPath(key).name in ("", ".", ".."):
        raise ValueError(f"input file {item!r} names no file; give an artifact key or gs://bucket/key")
    try:
        return check_artifact_key(key)
    except ValueError:
        raise ValueError(f"input file {item!r} is not a valid artifact key (a relative path without '..')") from None


def snapshot_key(workspace_id: str) -> str:
    """The artifact key of a workspace's snapshot (agent/snapshot.py)."""
    return f"snapshots/{workspace_id}.tar.gz"
