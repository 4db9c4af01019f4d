"""Live changes of one socket: longpoll calls and subscriptions, and channel state.

Theory of operation: every channel (``ChannelContext``) that reads live changes takes
one reference on the server's shared ``Follower`` of its database (released when the
channel closes). Nothing here holds a thread while it waits:

- A longpoll ``changes`` call (``LongPoll``) reads normally on the session's lane; if
  nothing is new it registers a listener on the follower and a deadline on the server's
  ``Timer``, and its thread goes back to the pool. The first of the two schedules the
  next read; the call is answered when a read finds rows or the deadline has passed.
- A ``Subscription`` registers with the follower's ``FanOut`` (fanout.py), whose one
  pool task per change gives each subscription its next batch (``push_from_fanout``:
  one shared read, the frame queued and written at once if the socket takes it). Its
  catch-up at start, a batch that leaves more to read and a push resumed after a pause
  run as the subscription's own push task on the lane (``_pump``; coalesced: at most
  one queued or running, re-run when dirty), which reads ``changes`` from its ``since``
  in batches. While the socket's outgoing queue is over its high-water mark (a slow
  reader) the push pauses and resumes when the queue drains.

Every answer is checked, under the session's lock, against the channel and
subscription it works for, so nothing reaches a closed or reused channel.
``Live`` is the part of a ``Session`` (``session.live``) that does this.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from .. import jsoncodec
from ..protocol import messages as m
from .dispatch import error_json, execute
from .fanout import FanOut
from .follower import Follower
from .grant import Grant

if TYPE_CHECKING:  # pragma: no cover
    from .session import Session
    from .timer import TimerEntry

__all__ = ["ChannelContext", "Subscription", "LongPoll", "Live", "ChannelGone"]

#: what one batch of a push ended with (``Live._push_batch``)
_MORE, _CAUGHT_UP, _PAUSED = object(), object(), object()


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
        self.longpolls: set[LongPoll] = set()

    @property
    def granted(self) -> Grant:
        """``grant``, set before the channel opens (tasks only run for open channels)."""
        assert self.grant is not None, "a task for a channel that was never granted"
        return self.grant


class _Waiting:
    """What a waiting longpoll or subscription holds: a follower listener (and a
    deadline), and whether a task of it is queued or running."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.scheduled = False
        self.cancelled = False
        self.follower: Follower | None = None
        self.token: int | None = None
        self.deadline_entry: TimerEntry | None = None

    def detach(self) -> None:
        """Cancel and drop the listener and the deadline (call once ``cancelled``)."""
        with self.lock:
            follower, token, entry = self.follower, self.token, self.deadline_entry
            self.token = self.deadline_entry = None
        if follower is not None and token is not None:
            follower.remove_listener(token)
        if entry is not None:
            entry.cancel()


class Subscription(_Waiting):
    """One live push: a normal ``changes`` read after each change the follower sees."""

    def __init__(self, ctx: ChannelContext, sub: int, since: Any, kwargs: dict[str, Any],
                 batch: int) -> None:
        super().__init__()
        self.ctx = ctx
        self.sub = sub
        self.since = since
        self.kwargs = kwargs
        self.batch = batch
        self.dirty = False
        #: what makes two subscriptions' reads the same (with their ``since``)
        self.read_key = (batch, jsoncodec.dumps(sorted(kwargs.items())))
        self.fanout: FanOut | None = None

    def detach(self) -> None:
        with self.lock:  # its token is the fan-out's, not a listener of the follower
            fanout, token = self.fanout, self.token
            if fanout is not None:
                self.fanout = self.token = None
        if fanout is not None and token is not None:
            fanout.remove(token)
        super().detach()


class LongPoll(_Waiting):
    """One longpoll ``changes`` call waiting for a change or its deadline."""

    def __init__(self, ctx: ChannelContext, call_id: int, kwargs: dict[str, Any],
                 deadline: float) -> None:
        super().__init__()
        self.ctx = ctx
        self.call_id = call_id
        self.kwargs = kwargs
        self.deadline = deadline


class Live:
    """Longpolls and subscriptions of one socket (``Session.live``)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.lane = session.lane
        self.timer = session.timer
        self.followers = session.followers
        self.options = session.options
        #: reads the follower's fan-out task made for this socket's subscriptions, and
        #: push tasks run on its lane (counts for ``stats``; unlocked, a moment out of date)
        self.pushes_fanout = 0
        self.pushes_lane = 0

    # -- longpoll calls -----------------------------------------------------------------
    def start_longpoll(self, ctx: ChannelContext, call_id: int, kwargs: dict[str, Any]) -> None:
        """A longpoll ``changes`` call (on the lane): read now, wait without a thread."""
        kwargs = dict(kwargs)
        timeout = kwargs.pop("timeout", None)
        timeout = self.options.longpoll_timeout if timeout is None else timeout
        timeout = min(float(timeout), self.options.max_longpoll_timeout)
        kwargs["feed"] = "normal"
        poll = LongPoll(ctx, call_id, kwargs, time.monotonic() + timeout)
        with self.session.lock:
            gone = ctx.closed
            if not gone:
                ctx.longpolls.add(poll)
        if gone:
            self._answer_longpoll(poll, error=ChannelGone())
            return
        with poll.lock:
            poll.scheduled = True
        self._longpoll_step(poll)

    def _longpoll_step(self, poll: LongPoll) -> None:
        with poll.lock:
            poll.scheduled = False
            if poll.cancelled:
                return
        try:
            follower = self._follower_for(poll.ctx)
            generation = follower.generation
            result = execute(poll.ctx.granted, "changes", poll.kwargs)
        except Exception as exc:  # noqa: BLE001 - a pool task's top frame: the peer gets the error
            self._answer_longpoll(poll, error=exc)
            return
        if result.get("results") or time.monotonic() >= poll.deadline:
            self._answer_longpoll(poll, result=result)
            return
        if result.get("last_seq") is not None:
            poll.kwargs["since"] = result["last_seq"]
        with poll.lock:
            if poll.cancelled:
                return
            if poll.token is None:
                poll.follower = follower
                poll.token = follower.add_listener(lambda: self._wake(poll, self._longpoll_step))
            if poll.deadline_entry is None:
                poll.deadline_entry = self.timer.call_at(
                    poll.deadline, lambda: self._wake(poll, self._longpoll_step))
        if follower.generation != generation:  # a change between the read and the listener
            self._wake(poll, self._longpoll_step)

    def _answer_longpoll(self, poll: LongPoll, *, result: Any = None,
                         error: BaseException | None = None) -> None:
        with poll.lock:
            if poll.cancelled:
                return
            poll.cancelled = True
        poll.detach()
        with self.session.lock:
            poll.ctx.longpolls.discard(poll)
        from .calls import reply
        reply(self.session, poll.ctx, poll.call_id, "changes", result=result, error=error)

    def _wake(self, waiting: _Waiting, step: Callable[[Any], None]) -> None:
        """Run ``step(waiting)`` on the lane soon (coalesced: at most one queued)."""
        with waiting.lock:
            if waiting.cancelled or waiting.scheduled:
                if isinstance(waiting, Subscription) and waiting.scheduled:
                    waiting.dirty = True
                return
            waiting.scheduled = True
        if not self.lane.submit(step, waiting):
            with waiting.lock:
                waiting.scheduled = False

    def _follower_for(self, ctx: ChannelContext) -> Follower:
        with ctx.flock:
            if ctx.closed:
                raise ChannelGone
            if ctx.follower is not None:
                return ctx.follower
        follower = self.followers.acquire(ctx.granted.db)
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
    def start_subscription(self, sub: Subscription) -> None:
        try:
            follower = self._follower_for(sub.ctx)
        except ChannelGone:
            return
        except Exception as exc:  # noqa: BLE001 - the peer gets the error, the session goes on
            self._end_subscription(sub, error_json(exc, what="subscribe"))
            return
        fanout = FanOut.of(follower, self.lane.pool)
        with sub.lock:
            if sub.cancelled:
                return
            sub.follower = follower
            sub.fanout = fanout
            sub.token = fanout.add(self, sub)
        self._wake(sub, self._pump)

    def push_from_fanout(self, sub: Subscription) -> None:
        """After a change, on the fan-out's task: the subscription's next batch, here
        when nothing of it runs; the rest of the work (more batches, a pause) on its lane."""
        with sub.lock:
            if sub.cancelled:
                return
            if sub.scheduled:  # its own task runs or waits: it reads again after
                sub.dirty = True
                return
            sub.scheduled = True
            sub.dirty = False
        self.pushes_fanout += 1
        state = self._push_or_stop(sub, until_done=False)
        if state is None:
            return
        with sub.lock:
            if sub.cancelled or (state is _CAUGHT_UP and not sub.dirty):
                sub.scheduled = False
                return
        if not self.lane.submit(self._pump, sub):  # more to read: its own task, still scheduled
            with sub.lock:
                sub.scheduled = False

    def _pause(self, sub: Subscription) -> None:
        """The peer reads slowly: go on once it caught up."""
        with sub.lock:
            sub.scheduled = False
        self.session.outbox.on_drain(lambda: self._wake(sub, self._pump))

    def _pump(self, sub: Subscription) -> None:
        self.pushes_lane += 1
        while True:
            with sub.lock:
                if sub.cancelled:
                    sub.scheduled = False
                    return
                sub.dirty = False
            if self._push_or_stop(sub, until_done=True) is None:
                return
            with sub.lock:
                if sub.dirty and not sub.cancelled:
                    continue
                sub.scheduled = False
                return

    def _push_or_stop(self, sub: Subscription, *, until_done: bool) -> object | None:
        """``_push_batch`` once, or while there is more (``until_done``); ``None`` when
        the subscription stops for now: failed (ended, the peer told) or paused (it goes
        on when its socket drains), ``sub.scheduled`` cleared either way."""
        state: object = _MORE
        try:
            while state is _MORE and not sub.cancelled:
                state = self._push_batch(sub)
                if not until_done:
                    break
        except Exception as exc:  # noqa: BLE001 - a pool task's top frame: the peer gets it
            self._end_subscription(sub, error_json(exc, what="live changes"))
            with sub.lock:
                sub.scheduled = False
            return None
        if state is _PAUSED:
            self._pause(sub)
            return None
        return state

    def _push_batch(self, sub: Subscription) -> object:
        """Read one batch from ``sub.since`` and queue it: ``_MORE`` to read at once,
        ``_CAUGHT_UP``, or ``_PAUSED`` (nothing read: the socket is backlogged)."""
        if self.session.outbox.backlogged():
            return _PAUSED
        follower = sub.follower
        assert follower is not None
        db = sub.ctx.granted.db
        since = sub.since
        result = follower.shared_read(
            follower.generation, (jsoncodec.dumps(since), sub.read_key),
            lambda: db.changes(since=since, limit=sub.batch, **sub.kwargs))
        rows = result.get("results") or []
        pending = result.get("pending")
        if pending is None and len(rows) < sub.batch:
            pending = 0  # fewer rows than asked for: the read reached the feed's end
        if rows:
            msg = m.changes(sub.ctx.ch, sub.sub, rows, result.get("last_seq"), pending)
            if not self._send_for(sub, msg, m.encode(msg)):
                return _CAUGHT_UP  # the channel or the socket is gone: nothing more to do
        if result.get("last_seq") is not None:
            sub.since = result["last_seq"]
        if len(rows) < sub.batch and not pending:
            return _CAUGHT_UP
        return _MORE

    def _send_for(self, sub: Subscription, msg: dict[str, Any], text: str) -> bool:
        held = len(text)
        self.session.budget.hold(self.session, held)

        def build() -> str | None:
            if sub.ctx.subs.get(sub.sub) is not sub:
                return None
            return self.session.proto.send_if_current(msg, sub.ctx, text)

        return self.session.enqueue(build, held)

    def _end_subscription(self, sub: Subscription, err: dict[str, Any]) -> None:
        def build() -> str | None:
            if sub.ctx.subs.get(sub.sub) is not sub:
                return None
            del sub.ctx.subs[sub.sub]
            return self.session.proto.send_if_current(
                m.changes_error(sub.ctx.ch, sub.sub, err), sub.ctx)

        self.session.enqueue(build)
        self.cancel_subscription(sub)

    def cancel_subscription(self, sub: Subscription) -> None:
        with sub.lock:
            sub.cancelled = True
        sub.detach()

    def drop_channel_locked(self, ctx: ChannelContext) -> None:
        """Cancel a closed channel's subscriptions and longpolls (those get no answer);
        release its follower. Under the session's lock."""
        ctx.closed = True
        subs = list(ctx.subs.values())
        ctx.subs.clear()
        for sub in subs:
            self.cancel_subscription(sub)
        polls, ctx.longpolls = list(ctx.longpolls), set()
        for poll in polls:
            with poll.lock:
                answered, poll.cancelled = poll.cancelled, True
            poll.detach()
            if not answered:
                self.session.call_done_locked()  # the call ends without an answer
        with ctx.flock:
            follower, ctx.follower = ctx.follower, None
        if follower is not None:
            follower.wake()
            self.followers.release(follower)
