"""The HTTP edge of the CouchDB backend: one ``requests.Session``, deadlines, errors.

Every request to CouchDB goes through :meth:`CouchHTTP.request`, the one place where
``requests`` exceptions become :mod:`pouchsync_sync.errors` classes and CouchDB's JSON
errors become the store's exception classes.

Deadlines: each request has one total deadline (``timeout`` seconds from its start).
Headers must arrive before it (else :class:`~pouchsync_sync.errors.Timeout`); the body
is streamed and, before each read, the socket's timeout is set to the time left, so a
server that stalls or only sends heartbeats (pouchdb-server ignores ``timeout`` on
longpoll and sends ``\\n`` every 6 s) cannot hold a request past its deadline: it
raises ``Timeout``. A longpoll still waiting at its deadline raises
:class:`DeadlinePassed` (a ``Timeout``), which the caller turns into CouchDB's empty
answer; once its answer flows it gets the handle's timeout to finish. A request cut by
a deadline has its connection closed, never reused.

Credentials: basic auth (from the URL or ``auth``) or a cookie session (``_session``,
renewed once on a 401). They are kept in :class:`Credentials` and never appear in a
URL we build, a log line, a ``repr`` or an error message.
"""

from __future__ import annotations

import http.cookiejar
import json
import logging
import socket
import threading
import time
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests.auth import HTTPBasicAuth

from .. import jsoncodec
from ..errors import BadRequest, NotFound, PouchSyncError, Timeout, TransportError, error_from_json
from .couch_names import Credentials, is_loopback_url, split_credentials

__all__ = ["CouchHTTP", "DeadlinePassed", "NO_DB_REASON"]

log = logging.getLogger(__name__)

#: the reason of a 404 on the database itself (CouchDB 3's words; 1.x and
#: pouchdb-server say "no_db_file", which is rewritten to this)
NO_DB_REASON = "Database does not exist."
_NO_DB_REASONS = frozenset({NO_DB_REASON, "no_db_file"})
_CHUNK = 65536
_NOBODY = object()


class DeadlinePassed(Timeout):
    """A longpoll's deadline passed while the server was still waiting (headers and at
    most the ``{"results":[`` prefix and heartbeats had arrived)."""


def decode_json(data: bytes) -> Any:
    """The JSON value of an answer's body (``ValueError`` when it is not JSON)."""
    return jsoncodec.loads(data)


def encode_json(value: Any) -> bytes:
    """Compact JSON bytes; NaN and non-JSON values are refused (``ValueError``/``TypeError``)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


class CouchHTTP:
    """HTTP access to one CouchDB server. Thread-safe: one pooled, keep-alive
    ``requests.Session`` is shared by every thread and every database of a handle.

    ``compression``: ask for gzip-compressed answers (``Accept-Encoding: gzip,
    deflate``) or not (``identity``); None (default) asks for it unless the server is
    on this machine, where it only costs CPU (a sizeable share of pouchdb-server's work
    per ``_changes`` page). CouchDB itself does not compress; proxies in front of it may.
    """

    def __init__(self, url: str, *, auth: tuple[str, str] | None = None,
                 timeout: float = 30.0, cookie_auth: bool = False,
                 pool_size: int = 32, compression: bool | None = None) -> None:
        self.base_url, creds = split_credentials(url)
        if compression is None:
            compression = not is_loopback_url(self.base_url)
        self.compression = bool(compression)
        if auth is not None:
            user, password = auth
            creds = Credentials(str(user), str(password))
        if cookie_auth and creds is None:
            raise ValueError("cookie_auth needs credentials (in the URL or auth=)")
        self.timeout = float(timeout)
        self._creds = creds
        self._cookie_auth = cookie_auth
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers.update({"Accept": "application/json"})
        if not self.compression:
            session.headers["Accept-Encoding"] = "identity"
        # No cookie jar: a late 401 on one thread must not wipe the session another thread
        # just renewed. The AuthSession cookie is kept below and sent explicitly.
        session.cookies.set_policy(_NoCookies())
        if creds is not None and not cookie_auth:
            session.auth = HTTPBasicAuth(creds.user, creds.password)
        self._session = session
        self._send_options = session.merge_environment_settings(
            self.base_url + "/", {}, True, None, None)
        self._login_lock = threading.Lock()
        self._login_epoch = 0  # bumped by each successful login
        self._cookie: str | None = None  # "AuthSession=..." once logged in
        self._closed = False

    @property
    def user(self) -> str | None:
        return self._creds.user if self._creds is not None else None

    # -- requests ------------------------------------------------------------------------
    def request(self, method: str, path: str, *, body: Any = _NOBODY,
                timeout: float | None = None, raw: bool = False,
                accept: str = "application/json", wait_prefix: int | None = None) -> Any:
        """``method path`` (``path`` already encoded, query included) and return the
        decoded JSON answer, or the bytes if ``raw``. Raises the store's errors.

        ``timeout`` (default: the handle's) is the request's total deadline. With
        ``wait_prefix`` (longpoll) it only bounds the waiting: once more than that many
        non-blank bytes arrived the answer is flowing, and reading it gets the handle's
        timeout from then on, so a big answer is never cut by a short longpoll.
        """
        if self._closed:
            exc = TransportError(f"CouchDB handle for {self.base_url} is closed")
            exc.retryable = False
            raise exc
        data = None if body is _NOBODY else self._encode(body)
        if self._cookie_auth and self._cookie is None:
            self.login()
        epoch, cookie = self._login_epoch, self._cookie
        status, content, _ = self._send(method, path, data, timeout, accept, cookie,
                                        wait_prefix)
        if status == 401 and self._cookie_auth:
            log.info("CouchDB session for %s expired; logging in again", self.base_url)
            self.login(stale_epoch=epoch)
            status, content, _ = self._send(method, path, data, timeout, accept, self._cookie,
                                            wait_prefix)
        if status >= 400:
            raise self._error(status, content, method, path)
        if raw:
            return content
        if not content or content.isspace():  # (not strip(): no copy of a big answer)
            # every JSON answer of CouchDB has a body: an empty one is an answer cut inside
            # its headers (http.client takes the end of the stream as their end)
            raise TransportError(f"{method} {self._where(path)}: empty answer (cut short)")
        try:
            return decode_json(content)
        except ValueError as exc:
            raise TransportError(f"{method} {self._where(path)}: answer is not JSON") from exc

    def login(self, *, stale_epoch: int | None = None) -> None:
        """POST ``/_session`` with the credentials and keep its ``AuthSession`` cookie.

        Threads that all saw the same expired session log in only once.
        """
        if self._creds is None:
            raise ValueError("login needs credentials")
        with self._login_lock:
            if stale_epoch is not None and self._login_epoch != stale_epoch:
                return  # another thread renewed it meanwhile
            if stale_epoch is None and self._cookie is not None:
                return
            body = self._encode({"name": self._creds.user, "password": self._creds.password})
            status, content, response = self._send("POST", "/_session", body, None,
                                                    "application/json", None, None)
            if status >= 400:
                raise self._error(status, content, "POST", "/_session")
            value = response.cookies.get("AuthSession")
            if not value:
                raise self._error(401, b'{"error":"unauthorized","reason":"no session cookie"}',
                                  "POST", "/_session")
            self._cookie = f"AuthSession={value}"
            self._login_epoch += 1

    def close(self) -> None:
        """Close the pooled connections. Idempotent; later requests raise ``TransportError``."""
        self._closed = True
        self._session.close()

    # -- internals -----------------------------------------------------------------------
    @staticmethod
    def _encode(body: Any) -> bytes:
        try:
            return encode_json(body)
        except (TypeError, ValueError) as exc:
            raise BadRequest(f"Document is not valid JSON: {exc}") from exc

    def _where(self, path: str) -> str:
        where = self.base_url + path
        return where if len(where) <= 200 else where[:197] + "..."

    def _send(self, method: str, path: str, data: bytes | None, timeout: float | None,
              accept: str, cookie: str | None,
              wait_prefix: int | None) -> tuple[int, bytes, requests.Response]:
        url = self.base_url + path
        limit = self.timeout if timeout is None else timeout
        started = time.monotonic()
        deadline = started + limit
        headers = {"Accept": accept}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if cookie is not None:
            headers["Cookie"] = cookie
        prepared = self._session.prepare_request(
            requests.Request(method, self.base_url + "/", headers=headers, data=data))
        prepared.url = url  # exactly as built: requests would unquote %2E and friends
        try:
            response = self._session.send(prepared, timeout=(min(limit, self.timeout), limit),
                                          allow_redirects=False, **self._send_options)
        except requests.exceptions.Timeout as exc:
            raise Timeout(f"{method} {self._where(path)}: no answer within {limit:g} s") from exc
        except requests.exceptions.RequestException as exc:
            raise TransportError(f"{method} {self._where(path)}: {_describe(exc)}") from exc
        try:
            content = self._read_body(response, deadline, method, path, wait_prefix)
        finally:
            response.close()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s -> %d (%d bytes, %.1f ms)", method, self._where(path),
                      response.status_code, len(content), (time.monotonic() - started) * 1000)
        return response.status_code, content, response

    def _read_body(self, response: requests.Response, deadline: float, method: str,
                   path: str, wait_prefix: int | None) -> bytes:
        sock = _socket_of(response)
        parts: list[bytes] = []
        chunks = response.iter_content(_CHUNK)
        seen = 0  # non-blank bytes, while waiting for the answer to flow

        def late() -> Timeout:
            # still waiting (longpoll, nothing but heartbeats): the caller's "no news";
            # an answer that started and stalled: a plain Timeout
            cls = DeadlinePassed if wait_prefix is not None else Timeout
            return cls(f"{method} {self._where(path)}: answer not complete by its deadline")

        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise late()
            if sock is not None:
                try:
                    sock.settimeout(left)
                except OSError:
                    sock = None
            try:
                chunk = next(chunks)
            except StopIteration:
                break
            except requests.exceptions.RequestException as exc:
                if time.monotonic() >= deadline - 0.01:
                    raise late() from exc
                raise TransportError(f"{method} {self._where(path)}: {_describe(exc)}") from exc
            parts.append(chunk)
            if wait_prefix is not None:
                seen += len(chunk.strip())
                if seen > wait_prefix:
                    deadline = max(deadline, time.monotonic() + self.timeout)
                    wait_prefix = None
        return b"".join(parts)

    def _error(self, status: int, content: bytes, method: str, path: str) -> PouchSyncError:
        try:
            body = decode_json(content) if content.strip() else {}
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        body = {"error": body.get("error") or _STATUS_ERRORS.get(status, "unknown_error"),
                "reason": body.get("reason") or f"HTTP {status} from {method} {self._where(path)}"}
        if status == 404 and body["reason"] in _NO_DB_REASONS:
            return NotFound(NO_DB_REASON, error=str(body["error"]))
        return error_from_json(body, status)

    def __repr__(self) -> str:
        who = f" as {self._creds.user!r}" if self._creds is not None else ""
        return f"<CouchHTTP {self.base_url}{who}>"


_STATUS_ERRORS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                  405: "method_not_allowed", 409: "conflict", 412: "precondition_failed",
                  413: "too_large", 429: "too_many_requests", 500: "internal_server_error",
                  502: "bad_gateway", 503: "service_unavailable", 504: "gateway_timeout"}


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    """Store no cookie from any response."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


def _socket_of(response: requests.Response) -> socket.socket | None:
    """The socket under a streamed response (urllib3 2.x), to set read timeouts on."""
    connection = getattr(response.raw, "connection", None)
    sock = getattr(connection, "sock", None)
    return sock if hasattr(sock, "settimeout") else None


def _describe(exc: BaseException) -> str:
    """A short cause for an error message: the innermost OS error if there is one."""
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        item = todo.pop()
        if id(item) in seen or not isinstance(item, BaseException):
            continue
        seen.add(id(item))
        if isinstance(item, OSError) and not isinstance(item, requests.RequestException) \
                and item.strerror:
            return item.strerror
        todo.extend([item.__cause__, item.__context__, *item.args])
        reason = getattr(item, "reason", None)
        if isinstance(reason, BaseException):
            todo.append(reason)
    return type(exc).__name__
