"""One channel of a link: a database on the server, opened by a grant.

``call`` sends a ``call`` and blocks for the ``reply`` with its id (many threads may
call at once; replies come back in any order); ``wait_changes`` and ``listen`` wait for
live changes (``client/livefeed.py``). The channel's state is the protocol's
(``ChannelState`` of its record in the link's ``protocol.Connection``, under the link's
lock); the link's reader thread hands each message for it to ``received_locked``. A
locally closed channel fails its waiters with ``Cancelled``, a lost connection (or a
server that ends the channel) with ``TransportError``.

Thread safety: every public method may be called from any thread.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, Callable

from ..errors import Cancelled, Denied, PouchSyncError, Timeout, TransportError, error_from_json
from ..protocol import messages as wire
from ..protocol.connection import ChannelState
from .livefeed import LiveFeeds, ring
from .waiter import Waiter

if TYPE_CHECKING:  # pragma: no cover
    from .link import Link

log = logging.getLogger(__name__)

__all__ = ["Channel"]


class Channel:
    """One granted (or being opened) channel: a database on the server.

    ``call`` may be used by many threads at once; each call waits only for its own reply.
    """

    def __init__(self, link: Link, ch: int, db: str) -> None:
        self.link = link
        self.ch = ch
        self.db = db
        self.uuid: str | None = None
        self.read_only = False
        self._ids = itertools.count(1)
        self._open = Waiter()
        self._calls: dict[int, Waiter] = {}
        self._denied = False
        self._closed_here = False
        self.live = LiveFeeds(self)

    def __repr__(self) -> str:
        return f"<Channel {self.ch} {self.db!r} {self.state.value}>"

    # -- state (the protocol's, under the link's lock) ----------------------------------
    @property
    def state(self) -> ChannelState:
        with self.link.lock:
            return self.state_locked()

    def state_locked(self) -> ChannelState:
        record = self.link.record_locked(self.ch)
        if record is None or record.context is not self:
            return ChannelState.NONE
        return record.state

    def is_open_locked(self) -> bool:
        return self.state_locked() is ChannelState.OPEN

    def check_open_locked(self) -> None:
        if self.state_locked() is not ChannelState.OPEN:
            raise self._unusable_locked()

    def _unusable_locked(self) -> PouchSyncError:
        if self._denied:
            return Denied(f"database {self.db!r} was denied")
        if self.link.lost_error is not None:
            return TransportError(f"connection lost: {self.link.lost_error}")
        return Cancelled(f"channel for {self.db!r} is closed")

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

    # -- calls --------------------------------------------------------------------
    def call(self, op: str, args: Mapping[str, Any] | None = None, *,
             timeout: float | None = None) -> Any:
        """Send one call and block for its reply (pipelined with other threads' calls)."""
        link = self.link
        with link.lock:
            self.check_open_locked()
        call_id = next(self._ids)
        msg = wire.call(self.ch, call_id, op, args)
        payload = wire.encode_bytes(msg)
        link.check_size(payload)
        waiter = Waiter()
        with link.lock:
            self.check_open_locked()
            frame = link.send_locked(msg, payload)
            self._calls[call_id] = waiter
        try:
            link.write(frame)
            if not waiter.wait(timeout if timeout is not None else link.call_timeout):
                raise Timeout(f"no reply to {op} on {self.db!r} within "
                              f"{link.call_timeout if timeout is None else timeout}s")
        finally:
            with link.lock:
                self._calls.pop(call_id, None)
        if waiter.error is not None:
            raise waiter.error
        return waiter.value

    # -- live changes (livefeed.py) -----------------------------------------------------
    def wait_changes(self, since: Any, options: Mapping[str, Any],
                     timeout: float) -> dict[str, Any] | None:
        """The first batch of changes after ``since`` (a ``changes`` message), or ``None``
        when none came within ``timeout`` seconds.

        Through a subscription: the server waits on its change follower without holding
        a worker or counting as a call in flight, so any number of channels may wait at
        once (a longpoll call would hold both). The channel's live feed serves one wait
        at a time; a second concurrent wait uses a one-shot subscription.
        """
        return self.live.wait_changes(since, options, timeout)

    def listen(self, since: Any, options: Mapping[str, Any], wake: Callable[[], Any]) -> None:
        """Keep the live feed open from ``since`` and call ``wake()`` when a batch of it
        arrives (or the feed ends: an error, an overflow, the channel closing), without
        a thread waiting; the batch is then taken by a ``wait_changes`` with the same
        ``since`` and ``options`` (a timeout of 0 does). ``wake`` runs on the link's
        reader thread, outside the lock: it must not block. Raises when the channel is
        not open."""
        self.live.listen(since, options, wake)

    def unlisten(self) -> None:
        """Stop calling the ``listen`` wake-up (the feed itself stays open)."""
        self.live.unlisten()

    def interrupt_waits(self, error: PouchSyncError) -> None:
        """Fail the ``wait_changes`` in progress with ``error``; the channel stays open
        for calls (a stopping sync records its checkpoints on it before closing it)."""
        self.live.interrupt(error)

    # -- messages from the server (the link's reader, under the link's lock) --------------
    def received_locked(self, msg: Mapping[str, Any]) -> Callable[[], None] | None:
        """A message for this channel the protocol just accepted (the state has moved);
        returns what to do once the lock is released, if anything."""
        kind = msg["type"]
        if kind == "reply" or (kind == "error" and msg.get("id") is not None):
            # the caller is woken once the lock is released (it takes the lock at once)
            waiter = self._calls.get(msg["id"])
            if waiter is None:
                call_id = msg["id"]
                return lambda: log.debug("reply for an unknown call %r on channel %s (late "
                                         "or cancelled)", call_id, self.ch)
            if kind == "error":  # about one call: fail that call
                return partial(waiter.fail, error_from_json(msg))
            if msg.get("error") is not None:
                return partial(waiter.fail, error_from_json(msg["error"]))
            return partial(waiter.set, msg.get("ok"))
        if kind == "changes":
            return self.live.received_locked(msg)
        state = self.state_locked()
        if kind == "granted" and state is ChannelState.OPEN:  # else closing: "closed" follows
            self.uuid = str(msg.get("uuid") or "")
            self.read_only = bool(msg.get("read_only", False))
            return partial(self._open.set, self)
        elif kind == "denied" and state is ChannelState.NONE:  # it was opening
            self._denied = True
            # "denied" is on_request's refusal; 429 too_many_channels and 503
            # shutting_down are retryable refusals (error_from_json gives ServerError)
            self._open.fail(error_from_json(msg))
        elif kind == "closed" and not self._closed_here:
            return self._end_locked(TransportError("channel closed by the server"))
        elif kind == "error":
            error = error_from_json(msg)
            return lambda: log.warning("server error on channel %s: %s", self.ch, error)
        return None

    def _end_locked(self, error: PouchSyncError) -> Callable[[], None] | None:
        """Fail every waiter with ``error``; the ``listen`` wake-up to ring, if any."""
        waiters = list(self._calls.values())
        self._calls.clear()
        feeds, wake = self.live.end_locked()
        self._open.fail(error)
        for waiter in waiters + feeds:
            waiter.fail(error)
        if wake is None:
            return None
        return lambda: ring(wake)

    def lost(self, error: TransportError) -> None:
        """The link is gone (called by the link, without its lock)."""
        with self.link.lock:
            after = self._end_locked(error)
        if after is not None:
            after()

    # -- closing ------------------------------------------------------------------
    def close(self) -> None:
        """Close the channel: fail its waiters with ``Cancelled`` and tell the server.

        Idempotent; never blocks on the network beyond one send.
        """
        link = self.link
        with link.lock:
            if self._closed_here or self.state_locked() not in (ChannelState.OPENING,
                                                                  ChannelState.OPEN):
                return  # closed, denied, ended by the server or the link is lost
            self._closed_here = True
            waiters = list(self._calls.values())
            self._calls.clear()
            feeds, _wake = self.live.end_locked()
            msg = wire.close(self.ch)
            # the server answers "closed" (even while opening); the number stays
            # reserved until then (channel numbers are never reused on a link anyway)
            frame = link.send_locked(msg, wire.encode_bytes(msg))
        error = Cancelled(f"channel for {self.db!r} closed")
        self._open.fail(error)
        for waiter in waiters + feeds:
            waiter.fail(error)
        link.write_quietly(frame)
