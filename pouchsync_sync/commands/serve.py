"""``pouchsync serve``: a sync server on a data directory (one SQLite file per database)
or on CouchDB, with token authentication.

The access policy is pure (``TokenPolicy``, ``start_refusal``); ``run`` does the I/O.
Credentials never reach a log line: denials say why, never what was sent.
"""

from __future__ import annotations

import argparse
import hmac
import ipaddress
import logging
import socket
import threading
from collections.abc import Collection
from pathlib import Path
from typing import Any, Callable

from ..datadir import CouchDir, DataDir, check_name
from ..errors import BadRequest, Denied
from . import UsageError, on_stop_signals, restore_signals

log = logging.getLogger(__name__)

__all__ = ["TokenPolicy", "add_parser", "is_loopback", "load_tokens", "make_on_request",
           "run", "start_refusal"]

DEFAULT_DATA_DIR = "pouchsync-data"


class TokenPolicy:
    """Who may open a database: anyone (``tokens`` is ``None``) or a client whose
    credentials are ``{"token": T}`` with T one of ``tokens``."""

    def __init__(self, tokens: Collection[str] | None) -> None:
        self.tokens = None if tokens is None else [t.encode("utf-8") for t in tokens]

    @property
    def anonymous(self) -> bool:
        return self.tokens is None

    def refusal(self, credentials: Any) -> str | None:
        """Why ``credentials`` are refused, or ``None`` when they are accepted."""
        if self.tokens is None:
            return None
        token = credentials.get("token") if isinstance(credentials, dict) else None
        if not isinstance(token, str) or not token:
            return "a token is required"
        given = token.encode("utf-8")
        ok = False
        for known in self.tokens:  # compare with every token, in constant time each
            ok |= hmac.compare_digest(given, known)
        return None if ok else "invalid token"


def is_loopback(host: str) -> bool:
    """Does ``host`` only reach this machine?"""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    if host == "localhost":
        return True
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(i[4][0]).split("%")[0]).is_loopback
                               for i in infos)


def start_refusal(host: str, policy: TokenPolicy, allow_anonymous: bool,
                  loopback: Callable[[str], bool] = is_loopback) -> str | None:
    """Why the server must not start, or ``None``: without tokens, only on loopback
    unless anonymous access is asked for explicitly."""
    if not policy.anonymous or allow_anonymous or loopback(host):
        return None
    return (f"refusing to serve {host!r} without authentication: give --token/--tokens, "
            f"or --allow-anonymous to let anyone on the network read and write")


def load_tokens(path: str) -> list[str]:
    """Tokens from a file: one per line; blank lines and ``#`` comments skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read tokens file {path!r}: {exc.strerror}") from exc
    tokens = [line.strip() for line in text.splitlines()
              if line.strip() and not line.lstrip().startswith("#")]
    if not tokens:
        raise UsageError(f"no tokens in {path!r}")
    return tokens


def make_on_request(databases: Any, policy: TokenPolicy) -> Callable[[Any, str], Any]:
    """The server's ``on_request``: check the token, then the name, then open."""
    def on_request(credentials: Any, db_name: str) -> Any:
        reason = policy.refusal(credentials)
        if reason is not None:
            raise Denied(reason)
        try:
            check_name(db_name)
        except BadRequest as exc:
            raise Denied(exc.reason) from exc
        return databases.database(db_name)
    return on_request


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "serve", help="run a sync server",
        description="Run a sync server. By default every database is a SQLite file in "
                    "--data-dir; with --couchdb the databases live on a CouchDB server.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    p.add_argument("--port", type=int, default=3000,
                   help="port (default %(default)s; 0: any free port)")
    store = p.add_mutually_exclusive_group()
    store.add_argument("--data-dir", metavar="DIR",
                       help="directory of SQLite files, one per database "
                            f"(default ./{DEFAULT_DATA_DIR})")
    store.add_argument("--couchdb", metavar="URL",
                       help="serve the databases of this CouchDB (http://user:pass@host:5984)")
    auth = p.add_mutually_exclusive_group()
    auth.add_argument("--token", action="append", metavar="T",
                      help="accept clients sending credentials {\"token\": T} (repeatable)")
    auth.add_argument("--tokens", metavar="FILE", help="accepted tokens, one per line")
    p.add_argument("--allow-anonymous", action="store_true",
                   help="serve without tokens on a non-loopback address")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..server import create_server

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be within 0..65535, not {args.port}")
    tokens = load_tokens(args.tokens) if args.tokens else args.token
    policy = TokenPolicy(tokens)
    refusal = start_refusal(args.host, policy, args.allow_anonymous)
    if refusal is not None:
        raise UsageError(refusal)
    if args.couchdb:
        databases: Any = CouchDir(args.couchdb)
        where = f"CouchDB {databases.couch.url}"
        try:
            databases.couch.info()  # fail now, not at the first client
        except BaseException:
            databases.close()
            raise
    else:
        databases = DataDir(args.data_dir or DEFAULT_DATA_DIR)
        where = f"data directory {databases.root}"
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request is noise
    server = create_server(make_on_request(databases, policy))
    try:
        server.start(args.host, args.port)  # ListenError: one line from cli.main
    except BaseException:
        databases.close()
        raise
    stop = threading.Event()
    previous = on_stop_signals(stop.set)
    try:
        auth = "anonymous access" if policy.anonymous else f"{len(tokens or [])} token(s)"
        print(f"pouchsync: serving {where} at {server.url} ({auth}); Ctrl-C stops",
              flush=True)
        while not stop.wait(1.0):
            pass
        log.info("stop signal received")
    finally:
        server.stop()
        databases.close()
        restore_signals(previous)
    print("pouchsync: stopped", flush=True)
    return 0

