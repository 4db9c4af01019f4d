"""The JavaScript client shipped in the package: ``static/pouchsync.js``.

``js_client_path()`` is for people who bundle it; ``js_client_response`` is how a
``SyncServer`` serves it (``GET <path>pouchsync.js``) with an ETag and 304s.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Callable

__all__ = ["JS_CLIENT_NAME", "js_client_path", "js_client_response"]

JS_CLIENT_NAME = "pouchsync.js"


def js_client_path() -> str:
    """The absolute path of ``pouchsync.js`` inside the installed package."""
    return str(Path(__file__).resolve().with_name("static") / JS_CLIENT_NAME)


@functools.lru_cache(maxsize=1)
def _source() -> tuple[bytes, str]:
    body = Path(js_client_path()).read_bytes()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    return body, etag


def _etag_matches(header: str, etag: str) -> bool:
    if header.strip() == "*":
        return True
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate == etag:
            return True
    return False


def js_client_response(environ: dict[str, Any],
                       start_response: Callable[..., Any]) -> Iterable[bytes]:
    """A WSGI answer with the file: 200 with ``text/javascript`` and an ETag, 304 when
    ``If-None-Match`` names that ETag, 405 for methods other than GET and HEAD."""
    method = environ.get("REQUEST_METHOD", "GET").upper()
    if method not in ("GET", "HEAD"):
        body = b"pouchsync_sync: only GET and HEAD are allowed here\n"
        start_response("405 Method Not Allowed", [("Content-Type", "text/plain"),
                                                  ("Allow", "GET, HEAD"),
                                                  ("Content-Length", str(len(body)))])
        return [body]
    body, etag = _source()
    headers = [("ETag", etag), ("Cache-Control", "no-cache")]
    if _etag_matches(environ.get("HTTP_IF_NONE_MATCH", ""), etag):
        start_response("304 Not Modified", headers)
        return [b""]
    start_response("200 OK", headers + [("Content-Type", "text/javascript; charset=utf-8"),
                                        ("Content-Length", str(len(body)))])
    return [b""] if method == "HEAD" else [body]
