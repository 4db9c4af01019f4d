"""Why a connection attempt failed, in the user's terms (the transport translates
its library's exceptions to these: ``wsclient.connect_error`` for websocket-client's,
``ssl``'s and ``socket``'s).

==========================  =============================================  =========
what happened               raised                                         retried
==========================  =============================================  =========
DNS, refused, no route,     ``Unreachable``                                yes
reset, no answer in time
HTTP answer, no upgrade     ``NotASyncServer`` (status + a hint about the  on 5xx
(a wrong path or port)      path; never the body)
TLS / proxy failure         ``TLSError``                                   no
no common protocol version  ``UnsupportedProtocol``                        no
==========================  =============================================  =========

Whether to try again is decided here too (``worth_retrying``), and what a client that
gives up raises (``gave_up``). Pure: exceptions and the URL as shown (without
credentials) in, ours out.
"""

from __future__ import annotations

import http

from ..errors import NotASyncServer, PouchSyncError, TransportError

__all__ = ["gave_up", "not_a_sync_server", "worth_retrying"]

PATH_HINT = ("check the URL's path: a sync server mounted in an app answers at its own "
             "path (the Flask example's is /sync), `pouchsync serve` at /")


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def not_a_sync_server(shown: str, status: int | None, what: str = "") -> NotASyncServer:
    """The error for an answer that is not a sync server's (``status``: the HTTP one)."""
    if status is None:
        return NotASyncServer(f"not a sync server at {shown}: {what}; {PATH_HINT}")
    said = f"HTTP {status} {_phrase(status)}".rstrip()
    if status >= 500 or status == 429:
        hint = "the server (or the proxy in front of it) is failing or restarting"
    else:
        hint = PATH_HINT
    return NotASyncServer(f"not a sync server at {shown}: it answered {said} instead of "
                          f"a WebSocket upgrade; {hint}", status=status)


def worth_retrying(error: PouchSyncError) -> bool:
    """Whether a failed connection attempt is worth another: a transport error that says
    so (a down or restarting server), or another error as before (a server that broke
    the protocol may come back fixed). A wrong URL, a TLS setup or a protocol version
    fails the same way every time: not retried, even by a live sync (unless the URL
    worked before: then the client retries as for any loss, a proxy may be between
    deploys)."""
    return not isinstance(error, TransportError) or error.retryable


def gave_up(error: PouchSyncError, attempts: int) -> TransportError:
    """What a client raises after ``attempts`` failures in a row ending with ``error``:
    the same class (``Unreachable``, ...), so callers can still tell them apart."""
    plural = "attempt" if attempts == 1 else "attempts"
    message = f"gave up connecting after {attempts} {plural}: {error}"
    if isinstance(error, NotASyncServer):
        return NotASyncServer(message, status=error.status)
    if isinstance(error, TransportError):
        return type(error)(message)
    return TransportError(message)
