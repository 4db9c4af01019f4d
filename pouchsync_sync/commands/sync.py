"""``pouchsync sync LOCAL_DB WS_URL``: sync a local store file with a server, once or live.

On a terminal a progress bar is redrawn in place; otherwise a plain line is printed
whenever the counts change (at most every ``--interval`` seconds). Exit status and the
one-line error come from ``pouchsync_sync.cli``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from ..display import Meter, Snapshot, progress_line
from ..errors import PouchSyncError
from . import UsageError, on_stop_signals, restore_signals

__all__ = ["add_parser", "run", "Reporter", "remote_name"]

ONE_SHOT_RETRIES = 5


class Reporter:
    """Draws a sync's progress on ``stream``: in place on a terminal, lines otherwise."""

    def __init__(self, meter: Meter, stream: TextIO, *, tty: bool, width: int = 80) -> None:
        self.meter = meter
        self.stream = stream
        self.tty = tty
        self.width = width
        self._last: tuple[int, int, str, bool] | None = None
        self._retry_in: float | None = None
        self._drawn = 0

    def tick(self) -> None:
        snap = self.meter.snapshot()
        key = (snap.pulled, snap.pushed, snap.state, snap.retry_in is not None)
        new_wait = snap.retry_in is not None and (
            self._retry_in is None or snap.retry_in > self._retry_in + 0.05)
        if self.tty:
            self._draw(progress_line(snap, bar_width=20))
        elif key != self._last or new_wait:  # a line per change, and per offline wait
            print(progress_line(snap), file=self.stream, flush=True)
        self._last = key
        self._retry_in = snap.retry_in

    def _draw(self, text: str) -> None:
        text = text[: self.width - 1]
        pad = max(0, self._drawn - len(text))
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()
        self._drawn = len(text)

    def finish(self, state: str, snap: Snapshot) -> None:
        if self.tty and self._drawn:
            self._draw(progress_line(snap, bar_width=20))
            self.stream.write("\n")
        print(f"{state}: pulled {snap.pulled:,}, pushed {snap.pushed:,} in "
              f"{snap.elapsed:.2f}s ({snap.rate:,.0f} docs/s)", file=self.stream, flush=True)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "sync", help="sync a local store file with a server",
        description="Sync the local SQLite store LOCAL_DB with a database on the server "
                    "at WS_URL (ws:// or wss://). One-shot by default: exits when both "
                    "sides hold the same documents.")
    p.add_argument("local_db", metavar="LOCAL_DB", help="local store file (created if missing)")
    p.add_argument("url", metavar="WS_URL", help="server URL, e.g. ws://127.0.0.1:3000/")
    p.add_argument("--remote", metavar="NAME",
                   help="database name on the server "
                        "(default: LOCAL_DB's file name without .sqlite)")
    creds = p.add_mutually_exclusive_group()
    creds.add_argument("--token", metavar="T", help='send credentials {"token": T}')
    creds.add_argument("--credentials", metavar="JSON",
                       help="send these credentials (a JSON value)")
    p.add_argument("--live", action="store_true", help="keep syncing until Ctrl-C")
    way = p.add_mutually_exclusive_group()
    way.add_argument("--push", action="store_true", help="only send local changes")
    way.add_argument("--pull", action="store_true", help="only receive the server's changes")
    p.add_argument("--retries", type=int, default=None, metavar="N",
                   help=f"connection attempts in a row before giving up (default "
                        f"{ONE_SHOT_RETRIES}; with --live: retry until Ctrl-C)")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="give up a one-shot sync after S seconds")
    p.add_argument("--interval", type=float, default=0.2, metavar="S", help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def _credentials(args: argparse.Namespace) -> Any:
    if args.token is not None:
        return {"token": args.token}
    if args.credentials is not None:
        try:
            return json.loads(args.credentials)
        except ValueError as exc:
            raise UsageError(f"--credentials is not valid JSON: {exc}") from None
    return None


def remote_name(args: argparse.Namespace) -> str | None:
    """The database name asked for on the server: ``--remote``, else the store file's
    name without ``.sqlite``, checked now (a server would refuse it after the local
    file was made)."""
    from ..datadir import check_name
    from ..errors import BadRequest

    if args.remote is not None:
        if not args.remote:
            raise UsageError("--remote must not be empty")
        return str(args.remote)
    if args.local_db == ":memory:":
        return None
    name = Path(args.local_db).stem
    try:
        check_name(name)
    except BadRequest:
        fixed = re.sub(r"[^a-z0-9_$()+-]", "-", name.lower())
        example = fixed if fixed[:1].isalpha() else "todos"
        raise UsageError(f"the file name {name!r} is not a database name a server accepts "
                         f"(a-z, 0-9 and _$()+-, starting with a letter): give one with "
                         f"--remote, e.g. --remote {example}") from None
    return name


def _remove_if_untouched(path: str) -> None:
    """Remove a store file this run created and never wrote to (a failed first sync)."""
    from ..store.local import LocalDatabase

    try:
        with LocalDatabase(path) as db:
            if db.info()["update_seq"] != 0:
                return
    except PouchSyncError:
        return
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            os.remove(path + suffix)
        except FileNotFoundError:
            pass


def run(args: argparse.Namespace) -> int:
    """Check every argument, then sync; a store file made by a failed run is removed."""
    if not args.url.startswith(("ws://", "wss://")):
        raise UsageError(f"WS_URL must start with ws:// or wss://, not {args.url[:40]!r}")
    if args.retries is not None and args.retries < 1:
        raise UsageError("--retries must be at least 1")
    name = remote_name(args)
    credentials = _credentials(args)
    fresh = args.local_db != ":memory:" and not os.path.exists(args.local_db)
    try:
        return _sync(args, name, credentials)
    except BaseException:
        if fresh:
            _remove_if_untouched(args.local_db)
        raise


def _sync(args: argparse.Namespace, name: str | None, credentials: Any) -> int:
    from ..client import Client
    from ..errors import Timeout
    from ..store.local import LocalDatabase

    direction = "push" if args.push else "pull" if args.pull else "both"
    retries = args.retries if args.retries is not None else (
        None if args.live else ONE_SHOT_RETRIES)
    db = LocalDatabase(args.local_db)
    client = Client(max_attempts=retries, initial_delay=0.2, max_delay=2.0,
                    connect_timeout=10.0)
    stop = threading.Event()
    previous = on_stop_signals(stop.set)
    try:
        client.connect(args.url)
        sync = client.sync(db, remote_name=name, credentials=credentials,
                           live=args.live, direction=direction)
        meter = Meter(sync)
        out = sys.stdout
        reporter = Reporter(meter, out, tty=out.isatty())
        deadline = None if args.timeout is None else time.monotonic() + args.timeout
        interrupted = False
        while not sync.join(args.interval):
            if stop.is_set() and not interrupted:
                interrupted = True
                sync.cancel()
            if deadline is not None and time.monotonic() >= deadline and not interrupted:
                sync.cancel()
                sync.join(10.0)
                raise Timeout(f"the sync did not finish within {args.timeout}s")
            reporter.tick()
        result = sync.wait(0)  # raises Denied, TransportError, ... (cli.main reports it)
        state = "stopped" if result.cancelled else str(result.state)
        reporter.finish(state, meter.snapshot())
    finally:
        client.close()
        db.close()
        restore_signals(previous)
    if result.cancelled and not args.live:
        return 130
    return 0
