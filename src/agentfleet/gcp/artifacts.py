"""ArtifactStore on a Cloud Storage bucket, with the official `google-cloud-storage` client.

Keys are checked exactly as the local store checks them and live under `prefix/` in the bucket.
Versions are object generations: `get_file_version` reads the live generation and downloads
that generation only (a chunked or retried download can never mix two versions), and
`put_file_if` uploads with `if_generation_match` (0: only if there is no object), so of two
writers from the same version exactly one wins and the other gets a 412 and stores nothing.
Files up to 8 MiB go up in one multipart request, bigger ones as a resumable upload in chunks;
both carry the precondition (fake-gcs-server, the test emulator, enforces it on the first kind
only).

The client retries transient failures itself (a conditional upload counts as idempotent); what
still fails (the service unreachable, 5xx, a missing bucket, a refused permission) raises
StorageUnavailableError, a ConnectionError, for the caller to report or retry. A missing object
is KeyError. One corner is left to the caller: a conditional upload that committed but whose
answer was lost is retried by the client, meets its own generation, and reports None.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exceptions
from google.cloud.storage import Blob, Client
from google.cloud.storage.exceptions import DataCorruption, InvalidResponse

from agentfleet.gcp.errors import StorageUnavailableError, translate
from agentfleet.names import check_artifact_key
from agentfleet.settings import Settings

VERSION_ATTEMPTS = 5
"""How often `get_file_version` tries again when the object is replaced while it downloads."""
_FAILURES = (
    gexc.GoogleAPIError,
    auth_exceptions.TransportError,
    requests.RequestException,
    InvalidResponse,
    DataCorruption,
)
"""What the client raises when the service fails us (a local file error stays an OSError)."""


REFUSED_FIX = "check GCS_BUCKET and that the service account may use it (roles/storage.objectAdmin)"


class GcsArtifactStore:
    def __init__(self, client: Client, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = client.bucket(bucket)
        self.prefix = prefix.strip("/")

    @classmethod
    def from_settings(cls, settings: Settings) -> GcsArtifactStore:
        client = Client(project=settings.require("project_id"))
        return cls(client, settings.require("gcs_bucket"), settings.artifacts_prefix)

    def _name(self, key: str) -> str:
        check_artifact_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _blob(self, key: str, generation: int | None = None) -> Blob:
        return self.bucket.blob(self._name(key), generation=generation)

    @contextmanager
    def _call(self, what: str, key: str, *, missing_is_key_error: bool = False) -> Iterator[None]:
        """Translate the client's errors: KeyError for a missing object, else StorageUnavailableError."""
        try:
            yield
        except gexc.NotFound as exc:
            if missing_is_key_error:
                raise KeyError(key) from None
            raise StorageUnavailableError(
                f"could not {what} {self.uri(key)}: the bucket {self.bucket.name} does not exist (GCS_BUCKET)"
            ) from exc
        except _FAILURES as exc:
            error = translate(exc, f"could not {what} {self.uri(key)}", fix=REFUSED_FIX)
            # A refusal stays retryable here: its callers (snapshots) go on without the object.
            raise error if isinstance(error, StorageUnavailableError) else StorageUnavailableError(str(error)) from exc

    def put_bytes(self, key: str, data: bytes) -> str:
        blob = self._blob(key)
        with self._call("write", key):
            blob.upload_from_string(data, content_type="application/octet-stream")
        return key

    def put_file(self, key: str, path: Path) -> str:
        blob = self._blob(key)
        with self._call("write", key):
            blob.upload_from_filename(str(path), content_type="application/octet-stream")
        return key

    def get_bytes(self, key: str) -> bytes:
        blob = self._blob(key)
        with self._call("read", key, missing_is_key_error=True):
            return bytes(blob.download_as_bytes())

    def get_file(self, key: str, dest: Path) -> Path:
        blob = self._blob(key)
        with self._call("read", key, missing_is_key_error=True):
            _download_into(dest, blob.download_to_filename)
        return dest

    def exists(self, key: str) -> bool:
        blob = self._blob(key)
        with self._call("look up", key):
            return bool(blob.exists())

    def delete(self, key: str) -> bool:
        blob = self._blob(key)
        try:
            with self._call("delete", key, missing_is_key_error=True):
                blob.delete()
        except KeyError:
            return False
        return True

    def uri(self, key: str) -> str:
        return f"gs://{self.bucket.name}/{self._name(key)}"

    def get_file_version(self, key: str, dest: Path) -> str:
        name = self._name(key)
        for _ in range(VERSION_ATTEMPTS):
            with self._call("read", key):
                live = self.bucket.get_blob(name)
            if live is None or live.generation is None:
                raise KeyError(key)
            try:
                with self._call("read", key, missing_is_key_error=True):
                    _download_into(dest, self._blob(key, live.generation).download_to_filename)
            except KeyError:
                continue  # replaced (or deleted) since we read its generation: look again
            return str(live.generation)
        raise StorageUnavailableError(f"{self.uri(key)} kept changing while it was read; try again")

    def put_file_if(self, key: str, path: Path, *, version: str | None) -> str | None:
        match = 0 if version is None else int(version)
        blob = self._blob(key)
        with self._call("write", key):
            try:
                blob.upload_from_filename(str(path), content_type="application/octet-stream", if_generation_match=match)
            except gexc.PreconditionFailed:
                return None  # another writer got there first
        return str(blob.generation)


def _download_into(dest: Path, download: Callable[[str], object]) -> None:
    """Download to a temp file beside `dest`, then rename: `dest` is never half written."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
    os.close(fd)
    try:
        download(tmp)
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)
