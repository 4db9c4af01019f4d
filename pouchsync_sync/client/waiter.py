"""``Waiter``: a one-shot slot one thread waits on, filled by another (the link's
reader) with a value or an error."""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["Waiter"]


class Waiter:
    """Filled once: ``set(value)`` or ``fail(error)``; later fills are ignored."""

    __slots__ = ("_event", "value", "error")

    def __init__(self) -> None:
        self._event = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    def set(self, value: Any) -> None:
        if not self._event.is_set():
            self.value = value
            self._event.set()

    def fail(self, error: BaseException) -> None:
        if not self._event.is_set():
            self.error = error
            self._event.set()

    def wait(self, timeout: float | None) -> bool:
        return self._event.wait(timeout)

    def is_set(self) -> bool:
        return self._event.is_set()
