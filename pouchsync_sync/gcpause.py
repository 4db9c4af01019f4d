"""Hold Python's cyclic garbage collector during one bulk step.

Decoding a batch of 500 documents, or checking and writing one, allocates thousands of
containers that all stay alive until the step ends. The collector, triggered every 700
net allocations, then runs about ten times per batch, finds nothing to free, and
promotes everything: its older generations end up scanning the same live documents
over and over (measured: a fifth of a 100,000-document pull's client CPU).
``paused()`` holds automatic collection for the step; the first allocation after it
runs one collection over what is still young. Reference counting is untouched, so
memory is freed as usual; only cycles wait until the step ends.

Process-wide, thread-safe among its users: the collector is disabled by the first
step to enter (when it was enabled) and enabled again when the last one leaves. It
never enables a collector that was disabled before (e.g. by the application).
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

__all__ = ["paused", "paused_for", "BULK_FRAME"]

#: frames at least this long (a batch of documents) are decoded with the collector held
BULK_FRAME = 64 * 1024

_lock = threading.Lock()
_holders = 0
_disabled_by_us = False


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """Automatic garbage collection held for the ``with`` block."""
    global _holders, _disabled_by_us
    with _lock:
        if _holders == 0 and gc.isenabled():
            gc.disable()
            _disabled_by_us = True
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0 and _disabled_by_us:
                _disabled_by_us = False
                gc.enable()


def paused_for(frame: str | bytes) -> contextlib.AbstractContextManager[None]:
    """``paused()`` for decoding a frame of a batch's size, nothing for a small one."""
    return paused() if len(frame) >= BULK_FRAME else contextlib.nullcontext()
