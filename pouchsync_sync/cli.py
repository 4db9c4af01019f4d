"""The ``pouchsync`` command line (also ``python -m pouchsync_sync``).

``serve``, ``sync``, ``info``, ``put``, ``get`` and ``demo``; each command lives in
``pouchsync_sync.commands``. Every failure ends as one line on stderr
(``pouchsync: …``) and an exit status; ``-v`` also prints the traceback (for a bug
report):

====  ===================================================================
0     success
1     an error (a document not found, a conflict, a server error, a bug)
2     a bad argument
3     denied by the server
4     the server is unreachable (after ``--retries``; ``--live`` retries until Ctrl-C)
5     the URL does not lead to a sync server this client can use: not a sync
      server there (a wrong path or port), TLS or proxy failure, or no common
      protocol version; not retried
130   interrupted before finishing
====  ===================================================================
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from .commands import UsageError
from .errors import (
    CouchError,
    Denied,
    ListenError,
    NotASyncServer,
    PouchSyncError,
    TLSError,
    TransportError,
    UnsupportedProtocol,
)

__all__ = ["main", "build_parser", "describe", "UsageError", "EXIT_OK", "EXIT_ERROR",
           "EXIT_USAGE", "EXIT_DENIED", "EXIT_UNREACHABLE", "EXIT_WRONG_SERVER",
           "EXIT_INTERRUPTED"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_DENIED, EXIT_UNREACHABLE = 0, 1, 2, 3, 4
EXIT_WRONG_SERVER = 5
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse with its errors as one line, like every other failure (usage: ``--help``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"pouchsync: error: {message} (see: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from .commands import demo, peek, serve, sync

    parser = _Parser(
        prog="pouchsync",
        description="Sync CouchDB-style document databases through WebSockets.",
        epilog="Start with: pouchsync demo")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more (-v: info and tracebacks, -vv: debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve.add_parser(sub)
    sync.add_parser(sub)
    peek.add_parsers(sub)
    demo.add_parser(sub)
    for command in sub.choices.values():  # -v after the command works too
        command.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                             help="log more (-v: info and tracebacks, -vv: debug)")
    return parser


def _configure_logging(command: str, verbose: int) -> None:
    """``serve`` logs at INFO (connects, grants, denials); the others stay quiet unless
    ``-v``, so a failure is the one line ``main`` prints."""
    if verbose >= 2:
        level = logging.DEBUG
    elif verbose == 1 or command == "serve":
        level = logging.INFO
    else:
        return  # the library's NullHandler keeps it silent
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def describe(exc: BaseException) -> tuple[str, int]:
    """The one line (after ``pouchsync: ``) and the exit status for ``exc``. Pure."""
    if isinstance(exc, UsageError):
        return f"error: {exc}", EXIT_USAGE
    if isinstance(exc, Denied):
        return f"denied: {exc}", EXIT_DENIED
    if isinstance(exc, NotASyncServer):
        return f"wrong URL: {exc}", EXIT_WRONG_SERVER
    if isinstance(exc, TLSError):
        return f"TLS/proxy: {exc}", EXIT_WRONG_SERVER
    if isinstance(exc, UnsupportedProtocol):
        return f"protocol version: {exc}", EXIT_WRONG_SERVER
    if isinstance(exc, TransportError):
        return f"unreachable: {exc}", EXIT_UNREACHABLE
    if isinstance(exc, (CouchError, ListenError)) or type(exc) is PouchSyncError:
        return f"error: {exc}", EXIT_ERROR
    if isinstance(exc, PouchSyncError):
        return f"error: {type(exc).__name__}: {exc}", EXIT_ERROR
    if isinstance(exc, OSError):
        detail = exc.strerror or str(exc)
        if exc.filename:
            detail += f": {exc.filename!r}"
        return f"error: {detail}", EXIT_ERROR
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", EXIT_INTERRUPTED
    first = (str(exc).splitlines() or [""])[0][:200]
    return (f"internal error: {type(exc).__name__}: {first} (a bug: please report it "
            f"with the traceback that -v prints)"), EXIT_ERROR


def _fail(exc: BaseException, verbose: int) -> int:
    message, code = describe(exc)
    if verbose:
        traceback.print_exc(file=sys.stderr)
    print(f"pouchsync: {message}", file=sys.stderr, flush=True)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.command, args.verbose)
    try:
        return int(args.func(args))
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - the command line's top frame
        return _fail(exc, args.verbose)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
