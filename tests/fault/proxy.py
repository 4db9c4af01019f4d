"""The fault tests' TCP proxy: ``FaultProxy`` now lives in ``pouchsync_sync.testing.proxy``
(the engine of the public ``network_fault``); re-exported here with ``wait_until``."""

from __future__ import annotations

import threading
from typing import Callable

from pouchsync_sync.testing.proxy import FaultProxy

__all__ = ["FaultProxy", "wait_until"]


def wait_until(predicate: Callable[[], bool], timeout: float, event: threading.Event | None = None,
               poll: float = 0.05) -> bool:
    """Poll ``predicate`` on an Event's timed wait (for state with no signal to wait on)."""
    pause = event or threading.Event()
    import time
    deadline = time.monotonic() + timeout
    while not predicate():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return predicate()
        pause.wait(min(poll, remaining))
    return True
