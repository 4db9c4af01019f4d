"""Safe URLs for CouchDB: database names, document ids, credentials (pure, no I/O).

Every name or id that goes into a CouchDB URL passes through here, so a value from
a remote client can only ever name one database or one document of that database:
database names must match CouchDB's rule and are encoded as one path segment; ids
are encoded as one segment after their ``_design/`` or ``_local/`` prefix
(https://docs.couchdb.org/en/stable/api/database/common.html,
https://docs.couchdb.org/en/stable/api/document/common.html). ``.`` and ``..`` are
encoded too, so no client library or proxy can fold them into a parent path.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from ..errors import BadRequest
from .validate import check_doc_id

__all__ = [
    "DB_NAME_RE",
    "check_db_name",
    "db_path",
    "doc_path",
    "attachment_path",
    "query_string",
    "split_credentials",
    "Credentials",
    "is_loopback_url",
]

#: CouchDB's rule for database names
DB_NAME_RE = re.compile(r"^[a-z][a-z0-9_$()+/-]*$")
_PREFIXES = ("_design/", "_local/")


def check_db_name(name: Any) -> str:
    """``name`` if CouchDB allows it as a database name, else ``BadRequest``."""
    if not isinstance(name, str) or not DB_NAME_RE.fullmatch(name) or len(name) > 238:
        raise BadRequest(
            "Name: " + repr(name)[:80] + ". Only lowercase characters (a-z), digits (0-9), "
            "and any of the characters _, $, (, ), +, -, and / are allowed. "
            "Must begin with a letter.", error="illegal_database_name")
    return name


def _segment(text: str) -> str:
    encoded = quote(text, safe="")
    if encoded in (".", ".."):
        encoded = encoded.replace(".", "%2E")
    return encoded


def db_path(name: str) -> str:
    """``/<name>`` with the name checked and encoded as one segment."""
    return "/" + _segment(check_db_name(name))


def doc_path(doc_id: Any) -> str:
    """The path of a document inside its database (no leading slash).

    ``_design/x`` and ``_local/x`` keep their prefix slash; everything else in the id
    (``/ ? # %``, dots, non-ASCII) is percent-encoded into a single segment.
    """
    doc_id = check_doc_id(doc_id)
    for prefix in _PREFIXES:
        if doc_id.startswith(prefix):
            return prefix + _segment(doc_id[len(prefix):])
    return _segment(doc_id)


def attachment_path(doc_id: Any, name: Any) -> str:
    """``<doc path>/<attachment name as one segment>``."""
    if not isinstance(name, str) or not name:
        raise BadRequest("Attachment name must be a non-empty string")
    return doc_path(doc_id) + "/" + _segment(name)


def query_string(params: Mapping[str, Any]) -> str:
    """``?k=v&...`` (or ``""``): booleans as ``true``/``false``, strings raw, other values
    as JSON; ``None`` values left out."""
    parts = []
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str):
            text = value
        elif isinstance(value, int):
            text = str(value)
        else:
            text = json.dumps(value, separators=(",", ":"))
        parts.append(quote(key, safe="") + "=" + quote(text, safe=""))
    return "?" + "&".join(parts) if parts else ""


class Credentials:
    """A user name and password; the password never shows in ``repr`` or ``str``."""

    __slots__ = ("user", "_password")

    def __init__(self, user: str, password: str) -> None:
        self.user = user
        self._password = password

    @property
    def password(self) -> str:
        return self._password

    def __repr__(self) -> str:
        return f"<Credentials user={self.user!r}>"

    __str__ = __repr__


def split_credentials(url: str) -> tuple[str, Credentials | None]:
    """``(url without userinfo, query or fragment and without a trailing slash,
    credentials or None)``. ``BadRequest`` for anything but an http(s) URL."""
    if not isinstance(url, str):
        raise BadRequest("CouchDB URL must be a string")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest("CouchDB URL must be http(s)://host[:port][/path]")
    host = parts.hostname
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError as exc:
        raise BadRequest("CouchDB URL has an invalid port") from exc
    netloc = host if port is None else f"{host}:{port}"
    base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    creds = None
    if parts.username is not None:
        creds = Credentials(unquote(parts.username), unquote(parts.password or ""))
    return base, creds


def is_loopback_url(url: str) -> bool:
    """Does ``url`` name this machine (``localhost``, 127.0.0.0/8, ``::1``)? Over
    loopback, compressing answers costs CPU on both sides and saves nothing."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
