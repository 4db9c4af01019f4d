"""The commands of ``pouchsync`` (see ``pouchsync_sync.cli``): one module each."""

from __future__ import annotations

import signal
import threading
from typing import Any, Callable

__all__ = ["on_stop_signals", "restore_signals"]


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
