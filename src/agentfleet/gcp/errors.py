"""The errors of the Google Cloud backends: one family, one translator.

Each class pairs the project's base with the builtin the ports' retry contract speaks of: a
`GcpUnavailableError` is a ConnectionError (and `GcpTimeoutError` a TimeoutError): a retry may
help; a `GcpRefusedError` is not: a person must act, and its message says what to change.
`translate` is the one place where a Google client error becomes one of these.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import requests
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exceptions
from google.cloud.storage.exceptions import DataCorruption, InvalidResponse

from agentfleet.errors import AgentFleetError


class GcpUnavailableError(AgentFleetError, ConnectionError):
    """A Google service could not be reached, was overloaded or too contended; a retry may succeed."""


class GcpTimeoutError(GcpUnavailableError, TimeoutError):
    """A Google service did not answer in time; a retry may succeed."""


class GcpRefusedError(AgentFleetError, RuntimeError):
    """A Google service refused the request (permissions, a missing resource, a bad setting)."""


class CorruptDocumentError(AgentFleetError, ValueError):
    """A stored Firestore document is not what the store writes (edited by hand, or by other code)."""


# The names the backends' callers and tests know; each is one of the family above.
StoreUnavailableError = GcpUnavailableError
JobLaunchError = GcpRefusedError
PublishError = GcpUnavailableError
StorageUnavailableError = GcpUnavailableError

TIMEOUTS = (gexc.DeadlineExceeded, gexc.RetryError, TimeoutError)
UNAVAILABLE = (
    gexc.ServerError,
    gexc.TooManyRequests,
    gexc.Aborted,
    OSError,
    auth_exceptions.TransportError,
    requests.RequestException,
    InvalidResponse,
    DataCorruption,
)
"""What a Google client raises when the service fails us rather than refuses (a 5xx, a 429, a
lost connection, a broken transfer)."""
PERMISSION = (gexc.PermissionDenied, gexc.Unauthenticated)


def translate(exc: BaseException, what: str, *, fix: str = "", permission_fix: str = "") -> AgentFleetError:
    """The family's error for a failed call to a Google service, saying `what` failed; a refusal
    carries `fix` (or `permission_fix` when permission was denied)."""
    if isinstance(exc, AgentFleetError):
        return exc
    detail = getattr(exc, "message", None) or str(exc)
    if isinstance(exc, TIMEOUTS):
        return GcpTimeoutError(f"{what}: no answer in time ({detail}); try again")
    if isinstance(exc, UNAVAILABLE):
        return GcpUnavailableError(f"{what}: the service is unavailable ({detail}); try again")
    if isinstance(exc, PERMISSION) and permission_fix:
        return GcpRefusedError(f"{what}: permission denied ({detail}); {permission_fix}")
    return GcpRefusedError(f"{what}: refused ({detail}){'; ' + fix if fix else ''}")


@contextmanager
def translated(what: str, *, fix: str = "", permission_fix: str = "") -> Iterator[None]:
    """Raise the family's error for a Google client error in the block (see `translate`)."""
    try:
        yield
    except (gexc.GoogleAPIError, *TIMEOUTS, *UNAVAILABLE) as exc:
        raise translate(exc, what, fix=fix, permission_fix=permission_fix) from exc
