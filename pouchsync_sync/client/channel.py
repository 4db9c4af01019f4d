"""One channel of a client connection: a database on the server, opened by a grant.

``call`` sends a ``call`` and blocks for the ``reply`` with its id (many threads may
call at once; replies come back in any order); ``wait_changes`` waits for one batch of
live changes through a subscription that stays open between waits (the channel's
*live feed*) while each wait continues where the last batch ended and that batch said
``pending: 0``; otherwise it is replaced by a new one. So a live pull that waits, gets a
change and waits again costs the server one read and one message per change, not a
subscribe, a first read and an unsubscribe as well. The connection's reader thread feeds
replies, grants and pushed changes in through the ``_granted``/``_denied``/``_reply``/
``_changes`` methods. A locally closed channel fails its waiters with ``Cancelled``, a
lost connection with ``TransportError``.

Thread safety: every public method may be called from any thread.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable

from ..errors import Cancelled, Denied, PouchSyncError, Timeout, TransportError, error_from_json
from ..protocol import messages as wire

if TYPE_CHECKING:  # pragma: no cover
    from .connection import Connection

log = logging.getLogger(__name__)

__all__ = ["Channel"]

#: batches a live feed holds for its next wait; beyond, the feed is dropped (the next
#: wait subscribes again from its own ``since``, so nothing is lost)
MAX_FEED_BATCHES = 8


class _Waiter:
    """A one-shot slot a thread waits on: filled with a value or an error."""

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


class _LiveFeed:
    """The channel's open subscription between waits (guarded by the channel's lock)."""

    __slots__ = ("sub", "options", "position", "batches", "waiter", "dead", "wake")

    def __init__(self, sub: int, options: dict[str, Any], since: Any) -> None:
        self.sub = sub
        self.options = options
        self.position = since  # where the next batch continues (opaque, compared for ==)
        self.batches: deque[Mapping[str, Any]] = deque()
        self.waiter: _Waiter | None = None  # the wait in progress, if any
        self.dead = False
        self.wake: Callable[[], Any] | None = None  # ``listen``'s: rung when a batch comes


class Channel:
    """One granted (or being opened) channel: a database on the server.

    ``call`` may be used by many threads at once; each call waits only for its own reply.
    """

    def __init__(self, connection: Connection, ch: int, db: str) -> None:
        self.connection = connection
        self.ch = ch
        self.db = db
        self.state = "opening"  # opening -> open | denied | closed
        self.uuid: str | None = None
        self.read_only = False
        self._ids = itertools.count(1)
        self._sub_ids = itertools.count(1)
        self._open = _Waiter()
        self._calls: dict[int, _Waiter] = {}
        self._subs: dict[int, _Waiter] = {}
        self._feed: _LiveFeed | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Channel {self.ch} {self.db!r} {self.state}>"

    # -- opening ----------------------------------------------------------------
    def wait_open(self, timeout: float | None) -> Channel:
        """Block until granted; raise ``Denied``, ``TransportError``, ``Cancelled`` or
        ``Timeout``."""
        if not self._open.wait(timeout):
            self.close()
            raise Timeout(f"no answer to the request for database {self.db!r} "
                          f"within {timeout}s")
        if self._open.error is not None:
            raise self._open.error
        return self

    def _granted(self, msg: Mapping[str, Any]) -> None:
        with self._lock:
            if self.state != "opening":
                closing = self.state == "closed"
            else:
                closing = False
                self.state = "open"
                self.uuid = str(msg.get("uuid") or "")
                self.read_only = bool(msg.get("read_only", False))
        if closing:  # closed locally while the grant was on its way: "closed" follows
            return
        self._open.set(self)

    def _denied(self, msg: Mapping[str, Any]) -> None:
        with self._lock:
            if self.state != "opening":  # closing: ignored, "closed" follows
                return
            self.state = "denied"
        self.connection._forget(self)
        # "denied" is on_request's refusal; 429 too_many_channels and 503 shutting_down
        # are retryable refusals (error_from_json gives ServerError for those)
        self._open.fail(error_from_json(msg))

    # -- calls --------------------------------------------------------------------
    def call(self, op: str, args: Mapping[str, Any] | None = None, *,
             timeout: float | None = None) -> Any:
        """Send one call and block for its reply (pipelined with other threads' calls)."""
        waiter = _Waiter()
        with self._lock:
            if self.state != "open":
                raise self._unusable()
            call_id = next(self._ids)
            self._calls[call_id] = waiter
        msg = wire.call(self.ch, call_id, op, args)
        try:
            self.connection.send(msg)
            if not waiter.wait(timeout if timeout is not None else self.connection.call_timeout):
                raise Timeout(f"no reply to {op} on {self.db!r} within "
                              f"{self.connection.call_timeout if timeout is None else timeout}s")
        finally:
            with self._lock:
                self._calls.pop(call_id, None)
        if waiter.error is not None:
            raise waiter.error
        return waiter.value

    def _reply(self, msg: Mapping[str, Any]) -> None:
        with self._lock:
            waiter = self._calls.get(msg.get("id"))  # type: ignore[arg-type]
        if waiter is None:
            log.debug("reply for an unknown call %r on channel %s (late or cancelled)",
                      msg.get("id"), self.ch)
            return
        if msg.get("error") is not None:
            waiter.fail(error_from_json(msg.get("error")))
        else:
            waiter.set(msg.get("ok"))

    # -- live changes (one-shot subscriptions) ------------------------------------------
    def wait_changes(self, since: Any, options: Mapping[str, Any],
                     timeout: float) -> dict[str, Any] | None:
        """The first batch of changes after ``since`` (a ``changes`` message), or ``None``
        when none came within ``timeout`` seconds.

        Through a subscription: the server waits on its change follower without holding
        a worker or counting as a call in flight, so any number of channels may wait at
        once (a longpoll call would hold both). The channel's live feed serves one wait
        at a time; a second concurrent wait uses a one-shot subscription.
        """
        options = dict(options)
        stale: int | None = None
        with self._lock:
            if self.state != "open":
                raise self._unusable()
            feed = self._feed
            busy = feed is not None and feed.waiter is not None
            if not busy:
                feed, stale, fresh = self._feed_for_locked(since, options)
                waiter = feed.waiter = _Waiter()
                if feed.batches:
                    waiter.set(feed.batches.popleft())
        if busy:  # the feed serves another wait: this one subscribes once
            return self._wait_once(since, options, timeout)
        assert feed is not None
        self._subscribe(feed, since, options, stale=stale, fresh=fresh)
        waiter.wait(timeout)
        with self._lock:
            if feed.waiter is waiter:
                feed.waiter = None
            got = waiter._event.is_set()  # a batch set under the lock just now counts
            msg = waiter.value
            keep = (got and waiter.error is None and msg.get("pending") == 0
                    and msg.get("last_seq") is not None and not feed.dead)
            if keep:
                feed.position = msg["last_seq"]
        if got and not keep:
            # an error ended it; or more is pending (the caller reads on normally, and
            # batches pushed meanwhile would only be dropped): subscribe afresh next time
            self._drop_feed(feed)
        if waiter.error is not None:
            raise waiter.error
        return msg if got else None

    def _feed_for_locked(self, since: Any, options: dict[str, Any]
                         ) -> tuple[_LiveFeed, int | None, bool]:
        """The live feed to use from ``since`` with ``options`` (under the lock): the
        current one if it serves them (or a wait uses it), else a fresh one. Returns it,
        the sub of the feed it replaced that needs an unsubscribe, and whether it is fresh."""
        feed = self._feed
        stale: int | None = None
        if feed is not None and feed.waiter is None and (
                feed.dead or feed.options != options or feed.position != since):
            stale = None if feed.dead else feed.sub
            feed = self._feed = None
        if feed is not None:
            return feed, stale, False
        feed = self._feed = _LiveFeed(next(self._sub_ids), options, since)
        return feed, stale, True

    def _subscribe(self, feed: _LiveFeed, since: Any, options: Mapping[str, Any], *,
                   stale: int | None, fresh: bool) -> None:
        """Unsubscribe the ``stale`` feed, and subscribe ``feed`` if it is ``fresh`` (it
        is dropped again if the subscribe cannot be sent)."""
        if stale is not None:
            self.connection._send_quietly(wire.unsubscribe(self.ch, stale))
        if fresh:
            try:
                self.connection.send(wire.subscribe(self.ch, feed.sub, since, **options))
            except BaseException:
                self._drop_feed(feed)
                raise

    def _drop_feed(self, feed: _LiveFeed) -> None:
        with self._lock:
            if self._feed is feed:
                self._feed = None
            was_dead, feed.dead = feed.dead, True
            still_open = self.state == "open"
        if still_open and not was_dead:
            self.connection._send_quietly(wire.unsubscribe(self.ch, feed.sub))

    def listen(self, since: Any, options: Mapping[str, Any], wake: Callable[[], Any]) -> None:
        """Keep the live feed open from ``since`` and call ``wake()`` when a batch of it
        arrives (or the feed ends: an error, an overflow, the channel closing), without
        a thread waiting; the batch is then taken by a ``wait_changes`` with the same
        ``since`` and ``options`` (a timeout of 0 does). ``wake`` runs on the connection's
        reader thread, outside the lock: it must not block. Raises when the channel is
        not open."""
        options = dict(options)
        with self._lock:
            if self.state != "open":
                raise self._unusable()
            feed, stale, fresh = self._feed_for_locked(since, options)
            feed.wake = wake
            ready = bool(feed.batches)
        self._subscribe(feed, since, options, stale=stale, fresh=fresh)
        if ready:
            wake()

    def unlisten(self) -> None:
        """Stop calling the ``listen`` wake-up (the feed itself stays open)."""
        with self._lock:
            if self._feed is not None:
                self._feed.wake = None

    def _wait_once(self, since: Any, options: Mapping[str, Any],
                   timeout: float) -> dict[str, Any] | None:
        """``wait_changes`` through a one-shot subscription (ended once it delivered)."""
        waiter = _Waiter()
        with self._lock:
            if self.state != "open":
                raise self._unusable()
            sub = next(self._sub_ids)
            self._subs[sub] = waiter
        try:
            self.connection.send(wire.subscribe(self.ch, sub, since, **options))
            got = waiter.wait(timeout)
        finally:
            with self._lock:
                self._subs.pop(sub, None)
                still_open = self.state == "open"
            if still_open:  # batches already on the way are dropped (unknown sub)
                self.connection._send_quietly(wire.unsubscribe(self.ch, sub))
        if waiter.error is not None:
            raise waiter.error
        return waiter.value if got else None

    def _changes(self, msg: Mapping[str, Any]) -> None:
        with self._lock:
            feed = self._feed
            if feed is not None and feed.sub == msg.get("sub") and not feed.dead:
                overflow = self._feed_batch(feed, msg)
                still_open = self.state == "open"
                wake = feed.wake
            else:
                feed = None
                waiter = self._subs.get(msg.get("sub"))  # type: ignore[arg-type]
        if feed is not None:
            if overflow and still_open:
                self.connection._send_quietly(wire.unsubscribe(self.ch, feed.sub))
            if wake is not None:
                _ring(wake)
            return
        if waiter is None:
            return  # after unsubscribe: ignored, as the protocol says
        if msg.get("error") is not None:
            waiter.fail(error_from_json(msg.get("error")))
        else:
            waiter.set(msg)

    def _feed_batch(self, feed: _LiveFeed, msg: Mapping[str, Any]) -> bool:
        """A batch (or the error that ended it) for the live feed, under the lock; True
        when the feed overflowed and was dropped (the caller unsubscribes it)."""
        if msg.get("error") is not None:
            feed.dead = True  # the server ended the subscription
            self._feed = None
            if feed.waiter is not None:
                feed.waiter.fail(error_from_json(msg.get("error")))
            return False
        if feed.waiter is not None and not feed.waiter._event.is_set():
            feed.waiter.set(msg)
            return False
        if len(feed.batches) < MAX_FEED_BATCHES:
            feed.batches.append(msg)
            return False
        # nobody takes them: drop the feed; the next wait subscribes from its own since
        self._feed = None
        feed.dead = True
        feed.batches.clear()
        return True

    def _unusable(self) -> PouchSyncError:
        if self.state == "denied":
            return Denied(f"database {self.db!r} was denied")
        if self.connection.lost_error is not None:
            return TransportError(f"connection lost: {self.connection.lost_error}")
        return Cancelled(f"channel for {self.db!r} is closed")

    def interrupt_waits(self, error: PouchSyncError) -> None:
        """Fail the ``wait_changes`` in progress with ``error``; the channel stays open
        for calls (a stopping sync records its checkpoints on it before closing it)."""
        with self._lock:
            waiters = list(self._subs.values())
            feed = self._feed
            if feed is not None and feed.waiter is not None:
                waiters.append(feed.waiter)
        for waiter in waiters:
            waiter.fail(error)

    # -- closing ------------------------------------------------------------------
    def close(self) -> None:
        """Close the channel: fail its waiters with ``Cancelled`` and tell the server.

        Idempotent; never blocks on the network beyond one send.
        """
        with self._lock:
            previous = self.state
            if previous in ("closed", "denied"):
                return
            self.state = "closed"
            calls = list(self._calls.values()) + list(self._subs.values())
            calls += self._end_feed_locked()
            self._calls.clear()
            self._subs.clear()
        error = Cancelled(f"channel for {self.db!r} closed")
        self._open.fail(error)
        for waiter in calls:
            waiter.fail(error)
        # the server answers "closed" (even while opening); the number stays reserved
        # until then (channel numbers are never reused on a connection anyway)
        self.connection._send_quietly(wire.close(self.ch))

    def _lost(self, error: TransportError) -> None:
        with self._lock:
            if self.state in ("closed", "denied"):
                calls: list[_Waiter] = []
            else:
                self.state = "closed"
                calls = list(self._calls.values()) + list(self._subs.values())
            wake = self._feed.wake if self._feed is not None else None
            calls += self._end_feed_locked()
            self._calls.clear()
            self._subs.clear()
        self._open.fail(error)
        for waiter in calls:
            waiter.fail(error)
        if wake is not None:
            _ring(wake)

    def _end_feed_locked(self) -> list[_Waiter]:
        """The channel ends: its live feed too; its waiter, to be failed."""
        feed, self._feed = self._feed, None
        if feed is None:
            return []
        feed.dead = True
        feed.wake = None
        return [feed.waiter] if feed.waiter is not None else []


def _ring(wake: Callable[[], Any]) -> None:
    """Call a ``listen`` wake-up on the reader thread; it must never kill that thread."""
    try:
        wake()
    except Exception:
        log.exception("changes wake-up %r raised", wake)
