"""How syncs and databases look to people: HTML status tables for Jupyter
(``Sync._repr_html_``, ``LocalDatabase._repr_html_``), one-line progress text for
terminals, and ``watch(sync)`` to follow a sync in a notebook or a terminal.

The formatting functions are pure (they take snapshots and numbers); only ``watch``
and ``Meter.snapshot`` look at live objects.
"""

from __future__ import annotations

import html
import logging
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Callable, TextIO

__all__ = ["Meter", "Snapshot", "database_html", "progress_line", "progress_html",
           "sync_html", "watch"]

log = logging.getLogger(__name__)


# -- pure formatting ---------------------------------------------------------------------
def _num(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _table(title: str, rows: Iterable[tuple[str, Any]], extra: str = "") -> str:
    cells = "".join(
        f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(k)}</th>"
        f"<td style='text-align:left'>{html.escape(_num(v))}</td></tr>"
        for k, v in rows if v is not None)
    return (f"<div class='pouchsync'><b>{html.escape(title)}</b>{extra}"
            f"<table>{cells}</table></div>")


@dataclass(frozen=True)
class Snapshot:
    """What a progress display shows at one moment."""

    state: str
    pulled: int
    pushed: int
    elapsed: float
    pending: int | None = None
    #: seconds from the start to the last document counted (``None``: ``elapsed``)
    busy: float | None = None
    #: seconds until the next connection attempt while offline, else ``None``
    retry_in: float | None = None

    @property
    def done(self) -> int:
        return self.pulled + self.pushed

    @property
    def rate(self) -> float:
        """Documents per second while there were documents to move: an idle live sync
        keeps the rate of its last burst instead of a falling average."""
        span = self.elapsed if self.busy is None else self.busy
        return self.done / span if span > 0 else 0.0

    @property
    def state_text(self) -> str:
        """The state; while offline, the wait before the next attempt (or that one is
        under way)."""
        if self.retry_in is not None:
            return f"offline, next attempt in {self.retry_in:.1f}s"
        if self.state == "offline":
            return "offline, connecting"
        return self.state

    @property
    def fraction(self) -> float | None:
        """Share done, when the number of changes left is known (or the sync is over)."""
        if self.state == "complete":
            return 1.0
        if self.pending is None:
            return None
        total = self.done + self.pending
        return 1.0 if total == 0 else self.done / total


def progress_line(snap: Snapshot, *, bar_width: int = 0) -> str:
    """``pulled 1,200  pushed 30  4,100 docs/s  pending 800  active`` (with a bar when
    ``bar_width`` > 0 and the pending count is known)."""
    parts = []
    fraction = snap.fraction
    if bar_width > 0 and fraction is not None:
        filled = int(round(fraction * bar_width))
        parts.append("[" + "#" * filled + "-" * (bar_width - filled) + f"] {fraction:4.0%}")
    parts.append(f"pulled {snap.pulled:,}")
    parts.append(f"pushed {snap.pushed:,}")
    parts.append(f"{snap.rate:,.0f} docs/s")
    if snap.pending is not None:
        parts.append(f"pending {snap.pending:,}")
    parts.append(snap.state_text)
    return "  ".join(parts)


def progress_html(snap: Snapshot) -> str:
    """A progress bar and the numbers, for a notebook."""
    fraction = snap.fraction
    if fraction is None:
        bar = "<progress style='width:20em'></progress>"
    else:
        bar = f"<progress style='width:20em' value='{fraction:.4f}' max='1'></progress>"
    return (f"<div class='pouchsync-progress'>{bar} "
            f"<code>{html.escape(progress_line(snap))}</code></div>")


# -- status tables -------------------------------------------------------------------------
def sync_rows(sync: Any) -> list[tuple[str, Any]]:
    status = sync.status
    pending = getattr(status, "pending", None)
    error = status.last_error
    client_url = getattr(getattr(sync, "client", None), "url", None)
    return [
        ("state", str(status.state)),
        ("local database", getattr(sync.db, "name", repr(sync.db))),
        ("remote database", sync.remote_name),
        ("server", client_url),
        ("mode", f"{'live' if sync.live else 'one-shot'}, {sync.direction}"),
        ("docs pulled", status.docs_pulled),
        ("docs pushed", status.docs_pushed),
        ("write failures", status.doc_write_failures),
        ("pending", pending),
        ("pull last_seq", status.pull_last_seq),
        ("push last_seq", status.push_last_seq),
        ("rounds", status.rounds),
        ("last error", None if error is None else f"{type(error).__name__}: {error}"),
    ]


def sync_html(sync: Any) -> str:
    """``Sync._repr_html_``: its state and counts as a table."""
    return _table(f"Sync {getattr(sync.db, 'name', '?')} \u21c4 {sync.remote_name}",
                  sync_rows(sync))


def database_rows(db: Any, *, sample: int = 5) -> list[tuple[str, Any]]:
    try:
        info = db.info()
    except Exception as exc:  # noqa: BLE001 - a closed or broken database still displays
        return [("error", f"{type(exc).__name__}: {exc}")]
    rows: list[tuple[str, Any]] = [
        ("path", getattr(db, "path", None)),
        ("documents", info.get("doc_count")),
        ("deleted", info.get("doc_del_count")),
        ("update_seq", info.get("update_seq")),
        ("uuid", info.get("uuid")),
    ]
    path = getattr(db, "path", None)
    if path and path != ":memory:" and os.path.exists(path):
        rows.append(("file size", f"{os.path.getsize(path):,} bytes"))
    if sample > 0:
        try:
            listed = db.all_docs(limit=sample)
            ids = [row["id"] for row in listed.get("rows", [])]
            if ids:
                more = " …" if info.get("doc_count", 0) > len(ids) else ""
                rows.append(("first ids", ", ".join(ids) + more))
        except Exception as exc:  # noqa: BLE001 - a status table must never raise
            # (a closed or failing database): the row is left out, the reason logged
            log.debug("database_rows: no first ids for %r: %s", db, exc)
    return rows


def database_html(db: Any) -> str:
    """``LocalDatabase._repr_html_``: its info as a table."""
    return _table(f"{type(db).__name__} {getattr(db, 'name', '')}", database_rows(db))


# -- watching a live object ----------------------------------------------------------------
class Meter:
    """Snapshots of one sync for a progress display: the rate over the time documents
    were moving, and while the client is offline, the wait before its next attempt."""

    def __init__(self, sync: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self.sync = sync
        self.clock = clock
        self.started = clock()
        self._done = 0
        self._busy = 0.0

    def snapshot(self) -> Snapshot:
        status = self.sync.status
        now = self.clock() - self.started
        done = status.docs_pulled + status.docs_pushed
        if done != self._done:
            self._done, self._busy = done, now
        state = str(status.state)
        retry_in = None
        if state in ("connecting", "offline"):
            retry_in = getattr(getattr(self.sync, "client", None), "retry_in", None)
        return Snapshot(state=state, pulled=status.docs_pulled, pushed=status.docs_pushed,
                        elapsed=now, pending=getattr(status, "pending", None),
                        busy=self._busy, retry_in=retry_in)


def _ipython_display() -> Any:
    """IPython's ``display`` when running in a kernel, else ``None``."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return None
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover
        return None
    ip = get_ipython()
    if ip is None or not hasattr(ip, "kernel"):
        return None
    return display


def watch(sync: Any, *, interval: float = 0.25, timeout: float | None = None,
          out: TextIO | None = None) -> Any:
    """Show ``sync``'s progress until it ends; return its result (or raise what ended it).

    In a notebook: a progress bar updated in place (display the sync afterwards for its
    status table). Elsewhere: a progress line every ``interval`` seconds on ``out``.
    For a live sync, it returns once the sync is in sync (``wait_in_sync``).
    """
    meter = Meter(sync)
    display = _ipython_display()
    deadline = None if timeout is None else time.monotonic() + timeout
    handle = None
    if display is not None:
        from IPython.display import HTML
        handle = display(HTML(progress_html(meter.snapshot())), display_id=True)
    stream = out or sys.stdout

    def show() -> None:
        snap = meter.snapshot()
        if handle is not None:
            handle.update(HTML(progress_html(snap)))
        else:
            print(progress_line(snap), file=stream, flush=True)

    while True:
        if sync.live and sync.state.value in ("active", "paused"):
            try:
                if sync.wait_in_sync(timeout=interval):
                    break
            except Exception as exc:  # noqa: BLE001 - a timeout slice or the sync's end
                from .errors import Timeout
                if not isinstance(exc, Timeout):
                    raise
        elif sync.join(interval):
            break
        if deadline is not None and time.monotonic() >= deadline:
            from .errors import Timeout
            raise Timeout(f"{sync!r} did not finish within {timeout}s")
        show()
    show()
    if sync.live and not sync.state.final:
        return sync.status
    return sync.wait(0)
