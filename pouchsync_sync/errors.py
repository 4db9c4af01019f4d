"""Every exception pouchsync_sync raises on purpose.

::

    PouchSyncError
     ├── CouchError                 CouchDB-shaped: status, error, reason; crosses the wire
     │    ├── BadRequest            400 bad_request (invalid input, never a partial write)
     │    ├── Unauthorized          401 unauthorized
     │    ├── Forbidden             403 forbidden
     │    ├── NotFound              404 not_found ("missing" or "deleted")
     │    ├── Conflict              409 conflict ("Document update conflict")
     │    ├── PreconditionFailed    412 file_exists / missing_stub
     │    ├── PayloadTooLarge       413 too_large
     │    └── ServerError           5xx, retryable
     ├── Denied                     a database request refused by the server's on_request
     ├── TransportError             the link failed (refused, reset, closed); retryable
     │    ├── Timeout               a deadline passed without an answer; retryable
     │    ├── Unreachable           no TCP connection: DNS, refused, no route; retryable
     │    ├── NotASyncServer        an HTTP answer without the WebSocket upgrade (a wrong
     │    │                         path or port): status and a hint; retried on 5xx only
     │    ├── TLSError              TLS or proxy failure (certificate, wss:// to http);
     │    │                         not retried
     │    └── UnsupportedProtocol   a sync server that speaks none of our protocol
     │                              versions; not retried
     ├── ProtocolError              a peer broke the wire protocol
     ├── ListenError                a server cannot listen on its address (taken, ...)
     └── Cancelled                  the operation was cancelled by its owner

``retryable`` says whether trying the same thing again later may succeed; the
client's reconnect loop and the replicator decide on it in one place each.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "PouchSyncError",
    "CouchError",
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Conflict",
    "PreconditionFailed",
    "PayloadTooLarge",
    "ServerError",
    "Denied",
    "TransportError",
    "Timeout",
    "Unreachable",
    "NotASyncServer",
    "TLSError",
    "UnsupportedProtocol",
    "ProtocolError",
    "ListenError",
    "Cancelled",
    "error_from_json",
]


class PouchSyncError(Exception):
    """Base of every error raised on purpose by pouchsync_sync."""

    retryable: bool = False


class CouchError(PouchSyncError):
    """An error with CouchDB's shape: HTTP-like ``status``, ``error`` and ``reason``."""

    status: int = 500
    error: str = "unknown_error"
    default_reason: str = "Unknown error"

    def __init__(self, reason: str | None = None, *, status: int | None = None,
                 error: str | None = None) -> None:
        self.reason = reason if reason is not None else self.default_reason
        if status is not None:
            self.status = status
        if error is not None:
            self.error = error
        super().__init__(self.reason)

    def __str__(self) -> str:
        return f"{self.status} {self.error}: {self.reason}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r}, status={self.status}, error={self.error!r})"

    def __reduce__(self) -> Any:
        return (_rebuild, (type(self), self.reason, self.status, self.error))

    def to_json(self) -> dict[str, Any]:
        """The ``{status, error, reason}`` form sent over the wire."""
        return {"status": self.status, "error": self.error, "reason": self.reason}


def _rebuild(cls: type, reason: str, status: int, error: str) -> CouchError:
    return cls(reason, status=status, error=error)


class BadRequest(CouchError):
    """400: the input is invalid (a bad document, id or argument); nothing was written."""

    status = 400
    error = "bad_request"
    default_reason = "Bad request"


class Unauthorized(CouchError):
    """401: the CouchDB server wants other credentials."""

    status = 401
    error = "unauthorized"
    default_reason = "Name or password is incorrect."


class Forbidden(CouchError):
    """403: not allowed (a write on a read-only grant, a _design/ write, CouchDB rights)."""

    status = 403
    error = "forbidden"
    default_reason = "Forbidden"


class NotFound(CouchError):
    """404: no such document, revision or database (``reason`` "missing" or "deleted")."""

    status = 404
    error = "not_found"
    default_reason = "missing"


class Conflict(CouchError):
    """409: the write does not name the current revision (give ``_rev``)."""

    status = 409
    error = "conflict"
    default_reason = "Document update conflict"


class PreconditionFailed(CouchError):
    """412: the database exists already, or an attachment stub is missing."""

    status = 412
    error = "precondition_failed"
    default_reason = "Precondition failed"


class PayloadTooLarge(CouchError):
    """413: a document or message is larger than the peer accepts."""

    status = 413
    error = "too_large"
    default_reason = "Request entity too large"


class ServerError(CouchError):
    """5xx: the server or its database failed; trying again later may work."""

    status = 500
    error = "internal_server_error"
    default_reason = "Internal server error"
    retryable = True


class Denied(PouchSyncError):
    """The server refused a database request (its ``on_request`` denied it)."""

    def __init__(self, reason: str = "denied") -> None:
        self.reason = reason
        super().__init__(reason)

    def to_json(self) -> dict[str, Any]:
        return {"status": 403, "error": "denied", "reason": self.reason}


class TransportError(PouchSyncError):
    """The connection failed: refused, reset or closed. Trying again later may work."""

    retryable = True


class Timeout(TransportError):
    """A deadline passed without an answer."""


class Unreachable(TransportError):
    """No connection to the server: the name does not resolve, the port refuses, no
    route. The server may be down or restarting: trying again later may work."""


class NotASyncServer(TransportError):
    """Something answered at the URL over HTTP, but not with a WebSocket upgrade: a wrong
    path or port, or a proxy that does not pass WebSockets. ``status`` is the HTTP
    status; the body is never shown. Retryable only for 5xx (a proxy whose backend is
    restarting), else a wrong URL that no retry fixes."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        self.retryable = status is not None and (status >= 500 or status == 429)
        super().__init__(message)


class TLSError(TransportError):
    """TLS or proxy failure: a certificate that does not verify, ``wss://`` to a plain
    HTTP port, a proxy that refuses the tunnel. A setup problem: not retried."""

    retryable = False


class UnsupportedProtocol(TransportError):
    """A sync server that speaks none of this client's protocol versions (one side
    needs an upgrade). Not retried."""

    retryable = False


class ProtocolError(PouchSyncError):
    """A peer sent something the wire protocol does not allow."""


class ListenError(PouchSyncError):
    """A server cannot listen on the address asked for: taken by another program, not
    an address of this machine, a port it may not use."""


class Cancelled(PouchSyncError):
    """The operation was cancelled by its owner."""


_BY_STATUS: dict[int, type[CouchError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    412: PreconditionFailed,
    413: PayloadTooLarge,
}


def error_from_json(body: Any, status: int | None = None) -> PouchSyncError:
    """Rebuild the exception a ``{status, error, reason}`` object describes.

    Used at every boundary where CouchDB-shaped errors arrive (HTTP, websocket),
    so each becomes the same class the embedded store raises.
    """
    if not isinstance(body, dict):
        body = {}
    error = str(body.get("error") or "unknown_error")
    reason = body.get("reason")
    reason = str(reason) if reason is not None else error
    raw_status = body.get("status", status)
    try:
        code = int(raw_status) if raw_status is not None else 500
    except (TypeError, ValueError):
        code = 500
    if error == "denied":
        return Denied(reason)
    if error == "too_large" or code == 413:
        return PayloadTooLarge(reason, status=code, error=error)
    if code == 429:
        exc: CouchError = ServerError(reason, status=code, error=error)
        return exc
    if code >= 500:
        return ServerError(reason, status=code, error=error)
    cls = _BY_STATUS.get(code, CouchError)
    return cls(reason, status=code, error=error)
