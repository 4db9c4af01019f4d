"""Wake-ups for longpoll readers of the embedded store.

Every ``LocalDatabase`` on the same file in one process shares one ``Notifier``
(a registry keyed by the file's real path, the one module-level state of the store),
so a write through any of them wakes readers of all of them at once. Writers in
other processes are seen by the readers' periodic re-check (``POLL_INTERVAL``).
"""

from __future__ import annotations

import threading
import weakref

__all__ = ["Notifier", "notifier_for", "POLL_INTERVAL"]

#: how often a waiting longpoll re-reads the file for other processes' writes
POLL_INTERVAL = 0.25

_registry: "weakref.WeakValueDictionary[str, Notifier]" = weakref.WeakValueDictionary()
_registry_lock = threading.Lock()


class Notifier:
    """A generation counter with a condition. Thread-safe."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._generation = 0

    @property
    def generation(self) -> int:
        with self._cond:
            return self._generation

    def notify(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def wait(self, generation: int, timeout: float) -> int:
        """Wait until the generation moves past ``generation`` or ``timeout``; return it."""
        with self._cond:
            self._cond.wait_for(lambda: self._generation != generation, timeout)
            return self._generation


def notifier_for(key: str | None) -> Notifier:
    """The shared notifier of a file (``None``: a private one, for ``:memory:``)."""
    if key is None:
        return Notifier()
    with _registry_lock:
        found = _registry.get(key)
        if found is None:
            found = Notifier()
            _registry[key] = found
        return found
