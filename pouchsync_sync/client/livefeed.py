"""A channel's live changes: ``subscribe`` → ``changes`` → ``unsubscribe`` (docs/protocol.md §4).

``LiveFeeds.wait_changes`` waits for one batch of live changes through a subscription
that stays open between waits (the channel's *live feed*) while each wait continues
where the last batch ended and that batch said ``pending: 0``; otherwise it is replaced
by a new one. So a live pull that waits, gets a change and waits again costs the server
one read and one message per change, not a subscribe, a first read and an unsubscribe as
well. A second concurrent wait uses a one-shot subscription. ``listen`` keeps the feed
open without a waiting thread and rings a wake-up when a batch arrives.

State is guarded by the link's lock (``_locked`` methods run under it); frames are
written after it is released, and wake-ups are rung outside it.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable

from ..errors import PouchSyncError, error_from_json
from ..protocol import messages as wire
from .waiter import Waiter

if TYPE_CHECKING:  # pragma: no cover
    from .channel import Channel
    from .link import Frame

log = logging.getLogger(__name__)

__all__ = ["LiveFeeds", "MAX_FEED_BATCHES"]

#: batches a live feed holds for its next wait; beyond, the feed is dropped (the next
#: wait subscribes again from its own ``since``, so nothing is lost)
MAX_FEED_BATCHES = 8


class _LiveFeed:
    """The channel's open subscription between waits (guarded by the link's lock)."""

    __slots__ = ("sub", "options", "position", "batches", "waiter", "dead", "wake")

    def __init__(self, sub: int, options: dict[str, Any], since: Any) -> None:
        self.sub = sub
        self.options = options
        self.position = since  # where the next batch continues (opaque, compared for ==)
        self.batches: deque[Mapping[str, Any]] = deque()
        self.waiter: Waiter | None = None  # the wait in progress, if any
        self.dead = False
        self.wake: Callable[[], Any] | None = None  # ``listen``'s: rung when a batch comes


class LiveFeeds:
    """The subscriptions of one channel: its live feed and one-shot waits."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self._link = channel.link
        self._sub_ids = itertools.count(1)
        self._subs: dict[int, Waiter] = {}
        self.feed: _LiveFeed | None = None

    # -- waits ----------------------------------------------------------------------------
    def wait_changes(self, since: Any, options: Mapping[str, Any],
                     timeout: float) -> dict[str, Any] | None:
        """See ``Channel.wait_changes``."""
        options = dict(options)
        frames: list[Frame] = []
        with self._link.lock:
            self._channel.check_open_locked()
            feed = self.feed
            busy = feed is not None and feed.waiter is not None
            if not busy:
                feed, stale, fresh = self._feed_for_locked(since, options)
                waiter = feed.waiter = Waiter()
                if feed.batches:
                    waiter.set(feed.batches.popleft())
                failed = self._subscribe_locked(feed, since, options, stale, fresh, frames)
        if busy:  # the feed serves another wait: this one subscribes once
            return self._wait_once(since, options, timeout)
        assert feed is not None
        self._write(feed, frames, failed)
        waiter.wait(timeout)
        with self._link.lock:
            if feed.waiter is waiter:
                feed.waiter = None
            got = waiter.is_set()  # a batch set under the lock just now counts
            msg = waiter.value
            keep = (got and waiter.error is None and msg.get("pending") == 0
                    and msg.get("last_seq") is not None and not feed.dead)
            if keep:
                feed.position = msg["last_seq"]
        if got and not keep:
            # an error ended it; or more is pending (the caller reads on normally, and
            # batches pushed meanwhile would only be dropped): subscribe afresh next time
            self._drop(feed)
        if waiter.error is not None:
            raise waiter.error
        return msg if got else None

    def listen(self, since: Any, options: Mapping[str, Any], wake: Callable[[], Any]) -> None:
        """See ``Channel.listen``."""
        options = dict(options)
        frames: list[Frame] = []
        with self._link.lock:
            self._channel.check_open_locked()
            feed, stale, fresh = self._feed_for_locked(since, options)
            feed.wake = wake
            ready = bool(feed.batches)
            failed = self._subscribe_locked(feed, since, options, stale, fresh, frames)
        self._write(feed, frames, failed)
        if ready:
            wake()

    def unlisten(self) -> None:
        with self._link.lock:
            if self.feed is not None:
                self.feed.wake = None

    def interrupt(self, error: PouchSyncError) -> None:
        """Fail the waits in progress with ``error`` (the channel stays open)."""
        with self._link.lock:
            waiters = list(self._subs.values())
            feed = self.feed
            if feed is not None and feed.waiter is not None:
                waiters.append(feed.waiter)
        for waiter in waiters:
            waiter.fail(error)

    def _wait_once(self, since: Any, options: Mapping[str, Any],
                   timeout: float) -> dict[str, Any] | None:
        """``wait_changes`` through a one-shot subscription (ended once it delivered)."""
        waiter = Waiter()
        with self._link.lock:
            self._channel.check_open_locked()
            sub = next(self._sub_ids)
            msg = wire.subscribe(self._channel.ch, sub, since, **options)
            frame = self._link.send_locked(msg, wire.encode_bytes(msg))
            self._subs[sub] = waiter
        try:
            self._link.write(frame)
            got = waiter.wait(timeout)
        finally:
            with self._link.lock:
                self._subs.pop(sub, None)
                # batches already on the way are dropped (unknown sub)
                unsubscribe = self._unsubscribe_locked(sub)
            self._link.write_quietly(unsubscribe)
        if waiter.error is not None:
            raise waiter.error
        return waiter.value if got else None

    # -- the live feed --------------------------------------------------------------------
    def _feed_for_locked(self, since: Any, options: dict[str, Any]
                         ) -> tuple[_LiveFeed, int | None, bool]:
        """The live feed to use from ``since`` with ``options``: the current one if it
        serves them (or a wait uses it), else a fresh one. Returns it, the sub of the feed
        it replaced that needs an unsubscribe, and whether it is fresh."""
        feed = self.feed
        stale: int | None = None
        if feed is not None and feed.waiter is None and (
                feed.dead or feed.options != options or feed.position != since):
            stale = None if feed.dead else feed.sub
            feed = self.feed = None
        if feed is not None:
            return feed, stale, False
        feed = self.feed = _LiveFeed(next(self._sub_ids), options, since)
        return feed, stale, True

    def _subscribe_locked(self, feed: _LiveFeed, since: Any, options: Mapping[str, Any],
                          stale: int | None, fresh: bool,
                          frames: list[Frame]) -> PouchSyncError | None:
        """Unsubscribe the ``stale`` feed, and subscribe ``feed`` if it is ``fresh``; the
        frames go to ``frames`` (the subscribe last). When the subscribe cannot be sent
        the feed is dropped and the error returned (the frames made are still written:
        their turns are taken)."""
        if stale is not None:
            unsubscribe = self._unsubscribe_locked(stale)
            if unsubscribe is not None:
                frames.append(unsubscribe)
        if fresh:
            msg = wire.subscribe(self._channel.ch, feed.sub, since, **options)
            try:
                frames.append(self._link.send_locked(msg, wire.encode_bytes(msg)))
            except PouchSyncError as exc:
                feed.waiter = None
                feed.dead = True  # never subscribed: nothing to unsubscribe
                self._drop_locked(feed)
                return exc
        return None

    def _write(self, feed: _LiveFeed, frames: list[Frame],
               failed: PouchSyncError | None) -> None:
        """Write the frames of ``_subscribe_locked``; a subscribe that cannot be sent or
        written drops the feed and raises."""
        for frame in frames:
            if frame.kind != "subscribe":
                self._link.write_quietly(frame)
                continue
            try:
                self._link.write(frame)
            except BaseException:
                self._drop(feed)
                raise
        if failed is not None:
            raise failed

    def _drop(self, feed: _LiveFeed) -> None:
        with self._link.lock:
            unsubscribe = self._drop_locked(feed)
        self._link.write_quietly(unsubscribe)

    def _drop_locked(self, feed: _LiveFeed) -> Frame | None:
        if self.feed is feed:
            self.feed = None
        was_dead, feed.dead = feed.dead, True
        return None if was_dead else self._unsubscribe_locked(feed.sub)

    def _unsubscribe_locked(self, sub: int) -> Frame | None:
        """The unsubscribe of ``sub`` if the channel is still open, else ``None``."""
        if not self._channel.is_open_locked() or self._link.lost.is_set():
            return None
        msg = wire.unsubscribe(self._channel.ch, sub)
        return self._link.send_locked(msg, wire.encode_bytes(msg))

    # -- from the reader ------------------------------------------------------------------
    def received_locked(self, msg: Mapping[str, Any]) -> Callable[[], None] | None:
        """A ``changes`` message; what to do once the lock is released (if anything)."""
        feed = self.feed
        if feed is not None and feed.sub == msg["sub"] and not feed.dead:
            overflow = self._feed_batch_locked(feed, msg)
            unsubscribe = self._unsubscribe_locked(feed.sub) if overflow else None
            wake = feed.wake
            if unsubscribe is None and wake is None:
                return None

            def after() -> None:
                self._link.write_quietly(unsubscribe)
                if wake is not None:
                    ring(wake)
            return after
        waiter = self._subs.get(msg["sub"])
        if waiter is None:
            return None  # after unsubscribe: ignored, as the protocol says
        if msg.get("error") is not None:
            waiter.fail(error_from_json(msg.get("error")))
        else:
            waiter.set(msg)
        return None

    def _feed_batch_locked(self, feed: _LiveFeed, msg: Mapping[str, Any]) -> bool:
        """A batch (or the error that ended it) for the live feed; True when the feed
        overflowed and was dropped (the caller unsubscribes it)."""
        if msg.get("error") is not None:
            feed.dead = True  # the server ended the subscription
            self.feed = None
            if feed.waiter is not None:
                feed.waiter.fail(error_from_json(msg.get("error")))
            return False
        if feed.waiter is not None and not feed.waiter.is_set():
            feed.waiter.set(msg)
            return False
        if len(feed.batches) < MAX_FEED_BATCHES:
            feed.batches.append(msg)
            return False
        # nobody takes them: drop the feed; the next wait subscribes from its own since
        self.feed = None
        feed.dead = True
        feed.batches.clear()
        return True

    def end_locked(self) -> tuple[list[Waiter], Callable[[], Any] | None]:
        """The channel ends: its waits (to be failed) and the listen wake-up, if any."""
        waiters = list(self._subs.values())
        self._subs.clear()
        feed, self.feed = self.feed, None
        if feed is None:
            return waiters, None
        feed.dead = True
        wake, feed.wake = feed.wake, None
        if feed.waiter is not None:
            waiters.append(feed.waiter)
        return waiters, wake


def ring(wake: Callable[[], Any]) -> None:
    """Call a ``listen`` wake-up on the reader thread; it must never kill that thread."""
    try:
        wake()
    except Exception:
        log.exception("changes wake-up %r raised", wake)
