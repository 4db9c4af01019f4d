"""The commands of ``pouchsync`` (see ``pouchsync_sync.cli``): one module each.

What they share lives here, below ``cli`` (which imports them, never the reverse):
``UsageError`` and the stop-signal helpers.
"""

from __future__ import annotations

import signal
import threading
from typing import Any, Callable

from ..errors import PouchSyncError

__all__ = ["UsageError", "on_stop_signals", "restore_signals"]


class UsageError(PouchSyncError):
    """A bad command-line argument found after parsing (exit status 2)."""


def on_stop_signals(callback: Callable[[], None]) -> dict[int, Any]:
    """Run ``callback`` on SIGINT and SIGTERM (main thread only); returns the old
    handlers for ``restore_signals``. The callback only sets an event: the command's
    main loop, which waits with a timeout, does the stopping."""
    previous: dict[int, Any] = {}
    if threading.current_thread() is not threading.main_thread():
        return previous
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, lambda *_: callback())
    return previous


def restore_signals(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)
