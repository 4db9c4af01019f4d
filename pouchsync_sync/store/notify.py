"""Wake-ups for readers of the embedded store's changes feed.

Every ``LocalDatabase`` on the same file in one process shares one ``Notifier``
(a registry keyed by the file's real path, the one module-level state of the store),
so a write through any of them wakes readers of all of them at once: threads blocked
in a longpoll (``wait``) and listeners (``add_listener``: a callback run after every
write, for an owner that waits for several things at once without a thread per wait).
Writers in other processes are seen by the readers' periodic re-check (``POLL_INTERVAL``).
"""

from __future__ import annotations

import itertools
import logging
import threading
import weakref
from typing import Any, Callable

__all__ = ["Notifier", "notifier_for", "notifier_of", "POLL_INTERVAL"]

log = logging.getLogger(__name__)

#: how often a waiting longpoll re-reads the file for other processes' writes
POLL_INTERVAL = 0.25

_registry: weakref.WeakValueDictionary[str, Notifier] = weakref.WeakValueDictionary()
_registry_lock = threading.Lock()


class Notifier:
    """A generation counter with a condition, and listeners. Thread-safe.

    Listeners run on the writing thread after the write, outside any lock: they must
    be quick and must not block (set an event, notify a condition).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._generation = 0
        self._tokens = itertools.count(1)
        self._listeners: dict[int, Callable[[], Any]] = {}

    @property
    def generation(self) -> int:
        with self._cond:
            return self._generation

    def notify(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()
            listeners = list(self._listeners.values()) if self._listeners else ()
        for listener in listeners:
            try:
                listener()
            except Exception:  # a listener must never fail the write that rang it
                log.exception("changes listener %r raised", listener)

    def wait(self, generation: int, timeout: float) -> int:
        """Wait until the generation moves past ``generation`` or ``timeout``; return it."""
        with self._cond:
            self._cond.wait_for(lambda: self._generation != generation, timeout)
            return self._generation

    def add_listener(self, listener: Callable[[], Any]) -> int:
        """Call ``listener()`` after every write from now on; a token for ``remove_listener``."""
        with self._cond:
            token = next(self._tokens)
            self._listeners[token] = listener
            return token

    def remove_listener(self, token: int) -> None:
        """Stop calling the listener of ``token`` (idempotent). A call already under way
        may still run."""
        with self._cond:
            self._listeners.pop(token, None)

    @property
    def listeners(self) -> int:
        """How many listeners are registered (for tests and diagnostics)."""
        with self._cond:
            return len(self._listeners)


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


def notifier_of(db: Any) -> Notifier | None:
    """The notifier that ``db``'s writes ring (an embedded store's), else ``None``
    (other backends: their readers re-read periodically)."""
    found = getattr(db, "notifier", None)  # LocalDatabase.notifier
    return found if isinstance(found, Notifier) else None
