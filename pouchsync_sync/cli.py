"""The ``pouchsync`` command line (also ``python -m pouchsync_sync``).

``serve``, ``sync``, ``info``, ``put``, ``get`` and ``demo``; each command lives in
``pouchsync_sync.commands``. Errors end as one line on stderr and an exit status:

====  =====================================================
0     success
1     an error (a document not found, a server error, ...)
2     a bad argument
3     denied by the server
4     the server is unreachable (after bounded retries)
130   interrupted before finishing
====  =====================================================
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from .errors import CouchError, Denied, PouchSyncError, TransportError

__all__ = ["main", "build_parser", "UsageError", "EXIT_OK", "EXIT_ERROR", "EXIT_USAGE",
           "EXIT_DENIED", "EXIT_UNREACHABLE"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_DENIED, EXIT_UNREACHABLE = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 130


class UsageError(PouchSyncError):
    """A bad command-line argument found after parsing (exit status 2)."""


def build_parser() -> argparse.ArgumentParser:
    from .commands import demo, peek, serve, sync

    parser = argparse.ArgumentParser(
        prog="pouchsync",
        description="Sync CouchDB-style document databases through WebSockets.",
        epilog="Start with: pouchsync demo")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more (-v: info, -vv: debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve.add_parser(sub)
    sync.add_parser(sub)
    peek.add_parsers(sub)
    demo.add_parser(sub)
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


def _fail(message: str, code: int) -> int:
    print(f"pouchsync: {message}", file=sys.stderr, flush=True)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.command, args.verbose)
    try:
        return int(args.func(args))
    except UsageError as exc:
        return _fail(f"error: {exc}", EXIT_USAGE)
    except Denied as exc:
        return _fail(f"denied: {exc}", EXIT_DENIED)
    except TransportError as exc:
        return _fail(f"unreachable: {exc}", EXIT_UNREACHABLE)
    except CouchError as exc:
        return _fail(f"error: {exc}", EXIT_ERROR)
    except PouchSyncError as exc:
        return _fail(f"error: {type(exc).__name__}: {exc}", EXIT_ERROR)
    except OSError as exc:
        return _fail(f"error: {exc}", EXIT_ERROR)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
