"""Live changes of one socket: longpoll calls and subscriptions, and channel state.

Theory of operation: every channel (``ChannelContext``) that reads live changes takes
one reference on the server's shared ``Follower`` of its database (released when the
channel closes). A longpoll ``changes`` call reads normally, and if nothing is new
waits on the follower's generation (or the channel's closing), then reads again. A
``Subscription`` registers a listener on the follower; each notification schedules one
push task (coalesced: at most one queued or running, re-run when dirty) that reads
``changes`` from the subscription's ``since`` in batches and sends them. Every send
re-checks, under the session's lock, that the channel and subscription are still the
ones the task works for, so nothing reaches a closed or reused channel.

``LiveChannels`` is a mixin of ``Session``: it uses the session's lock, protocol
connection, pool, follower registry and ``_send_locked``.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from ..protocol import Connection
from ..protocol import messages as m
from .dispatch import error_json, execute
from .follower import Follower, FollowerRegistry
from .grant import Grant
from .options import ServerOptions
from .pool import WorkerPool

__all__ = ["ChannelContext", "Subscription", "LiveChannels", "ChannelGone"]


class ChannelGone(Exception):
    """The channel a task works for was closed: drop the task's answer."""


class ChannelContext:
    """The server's side of one channel (``protocol.Channel.context``)."""

    def __init__(self, ch: int, db_name: str) -> None:
        self.ch = ch
        self.db_name = db_name
        self.grant: Grant | None = None
        self.closed = False
        self.follower: Follower | None = None
        self.flock = threading.Lock()
        self.subs: dict[int, Subscription] = {}


class Subscription:
    """One live push: a normal ``changes`` read after each change the follower sees."""

    def __init__(self, ctx: ChannelContext, sub: int, since: Any, kwargs: dict[str, Any],
                 batch: int) -> None:
        self.ctx = ctx
        self.sub = sub
        self.since = since
        self.kwargs = kwargs
        self.batch = batch
        self.lock = threading.Lock()
        self.scheduled = False
        self.dirty = False
        self.cancelled = False
        self.follower: Follower | None = None
        self.token: int | None = None


class LiveChannels:
    """Longpolls and subscriptions of one socket (a mixin of ``Session``)."""

    # provided by Session
    _lock: threading.Lock
    _closing: threading.Event
    proto: Connection
    pool: WorkerPool
    followers: FollowerRegistry
    options: ServerOptions
    _send_locked: Callable[[str], None]

    def _longpoll(self, ctx: ChannelContext, kwargs: dict[str, Any]) -> Any:
        timeout = kwargs.pop("timeout", None)
        timeout = self.options.longpoll_timeout if timeout is None else timeout
        timeout = min(float(timeout), self.options.max_longpoll_timeout)
        kwargs["feed"] = "normal"
        deadline = time.monotonic() + timeout
        follower = self._follower_for(ctx)

        def cancelled() -> bool:
            return ctx.closed or self._closing.is_set()

        while True:
            generation = follower.generation
            result = execute(ctx.grant, "changes", kwargs)
            remaining = deadline - time.monotonic()
            if result.get("results") or remaining <= 0:
                return result
            if result.get("last_seq") is not None:
                kwargs["since"] = result["last_seq"]
            follower.wait(generation, remaining, cancelled)
            if cancelled():
                raise ChannelGone

    def _follower_for(self, ctx: ChannelContext) -> Follower:
        with ctx.flock:
            if ctx.closed:
                raise ChannelGone
            if ctx.follower is not None:
                return ctx.follower
        follower = self.followers.acquire(ctx.grant.db)
        with ctx.flock:
            if not ctx.closed and ctx.follower is None:
                ctx.follower = follower
                return follower
            current = ctx.follower
        self.followers.release(follower)
        if current is None:
            raise ChannelGone
        return current

    # -- subscriptions ------------------------------------------------------------------
    def _start_subscription(self, sub: Subscription) -> None:
        try:
            follower = self._follower_for(sub.ctx)
        except ChannelGone:
            return
        except Exception as exc:
            self._end_subscription(sub, error_json(exc, what="subscribe"))
            return
        with sub.lock:
            if sub.cancelled:
                return
            sub.follower = follower
            sub.token = follower.add_listener(lambda: self._schedule(sub))
        self._schedule(sub)

    def _schedule(self, sub: Subscription) -> None:
        """Run the subscription's push soon (coalesced: at most one queued or running)."""
        with sub.lock:
            if sub.cancelled:
                return
            if sub.scheduled:
                sub.dirty = True
                return
            sub.scheduled = True
        if not self.pool.submit(self._pump, sub):
            with sub.lock:
                sub.scheduled = False

    def _pump(self, sub: Subscription) -> None:
        db = sub.ctx.grant.db
        while True:
            with sub.lock:
                if sub.cancelled:
                    sub.scheduled = False
                    return
                sub.dirty = False
            try:
                while not sub.cancelled:
                    result = db.changes(since=sub.since, limit=sub.batch, **sub.kwargs)
                    rows = result.get("results") or []
                    if rows:
                        msg = m.changes(sub.ctx.ch, sub.sub, rows, result.get("last_seq"),
                                        result.get("pending"))
                        if not self._send_for(sub, msg, m.encode(msg)):
                            break
                    if result.get("last_seq") is not None:
                        sub.since = result["last_seq"]
                    if len(rows) < sub.batch and not result.get("pending"):
                        break
            except Exception as exc:
                self._end_subscription(sub, error_json(exc, what="live changes"))
                with sub.lock:
                    sub.scheduled = False
                return
            with sub.lock:
                if sub.dirty and not sub.cancelled:
                    continue
                sub.scheduled = False
                return

    def _send_for(self, sub: Subscription, msg: dict[str, Any], text: str) -> bool:
        with self._lock:
            if sub.ctx.subs.get(sub.sub) is not sub:
                return False
            sendable = self.proto.send_if_current(msg, sub.ctx, text)
            if sendable is None:
                return False
            self._send_locked(sendable)
            return True

    def _end_subscription(self, sub: Subscription, err: dict[str, Any]) -> None:
        with self._lock:
            if sub.ctx.subs.get(sub.sub) is sub:
                del sub.ctx.subs[sub.sub]
                text = self.proto.send_if_current(m.changes_error(sub.ctx.ch, sub.sub, err), sub.ctx)
                if text is not None:
                    self._send_locked(text)
        self._cancel_subscription(sub)

    def _cancel_subscription(self, sub: Subscription) -> None:
        with sub.lock:
            sub.cancelled = True
            follower, token = sub.follower, sub.token
            sub.token = None
        if follower is not None and token is not None:
            follower.remove_listener(token)

    def _drop_channel_locked(self, ctx: ChannelContext) -> None:
        """Cancel a closed channel's subscriptions and longpolls; release its follower."""
        ctx.closed = True
        subs = list(ctx.subs.values())
        ctx.subs.clear()
        for sub in subs:
            self._cancel_subscription(sub)
        with ctx.flock:
            follower, ctx.follower = ctx.follower, None
        if follower is not None:
            follower.wake()
            self.followers.release(follower)
