"""One client socket on the server: reader loop, send lock, worker pool, channels.

Theory of operation: the WSGI handler thread runs ``Session.run``, the socket's only
reader. Each frame goes through the sans-IO ``protocol.Connection`` under the
session's one lock, which is also the send lock (simple-websocket's ``send`` is not
thread-safe), so protocol state and frame order always agree: nothing about a channel
is sent after its ``closed``, and a late reply never reaches a channel that reuses the
number (``send_if_current``). Anything slow (``on_request``, database calls, live
pushes) runs on the session's bounded ``WorkerPool``; the reader only validates and
queues. Live changes (longpolls, subscriptions) are in ``live.py``, a mixin of
``Session``; they come from the server's shared ``Follower`` of each database.

Shutdown: ``shutdown()`` (any thread) sends a close frame and shuts the socket down;
the reader sees the connection end and ``_teardown`` cancels channels, joins the pool
and the transport's thread, then sets ``done``.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any, Callable

from simple_websocket import ConnectionClosed
from wsproto.utilities import LocalProtocolError  # simple-websocket's, once closing

from .. import gcpause
from ..errors import BadRequest, CouchError, Denied
from ..protocol import ChannelState, Connection, choose_version, ops
from ..protocol import messages as m
from ..protocol.messages import BadMessage
from .budget import ReplyBudget
from .dispatch import bounded, error_json, execute
from .follower import FollowerRegistry
from .grant import Grant, as_grant, database_uuid
from .handler import RateLimit
from .live import ChannelContext, ChannelGone, LiveChannels, Subscription
from .localquota import LocalQuota
from .options import ServerOptions
from .pool import WorkerPool

__all__ = ["Session"]

log = logging.getLogger(__name__)

_DEBUG_CHARS = 300
_RECEIVE_SLICE = 1.0     # the reader re-checks closing and stuck sends this often
_CLOSE_GRACE = 1.0       # time for the peer to answer our close frame
_LOCK_GRACE = 2.0        # time to wait for a sender before forcing the socket down
_EVICT_SEND = 0.5        # longest an evicted socket's close frame may take to send


def _short(data: Any) -> str:
    text = data if isinstance(data, str) else repr(data)
    return text if len(text) <= _DEBUG_CHARS else f"{text[:_DEBUG_CHARS]}… ({len(text)} chars)"


def _redacted(msg: dict[str, Any], data: Any) -> Any:
    """What to log of an incoming frame: never the credentials of an ``open``."""
    if msg.get("type") == "open":
        return m.encode({**msg, "credentials": "<redacted>" if msg.get("credentials") is not None else None})
    return data


class _Gone(Exception):
    """The WebSocket is closed."""


class Session(LiveChannels):
    """One WebSocket. ``run`` on the handler thread; ``shutdown`` from anywhere."""

    def __init__(self, ws: Any, *, conn_id: int, peer: str, options: ServerOptions,
                 on_request: Callable[[Any, str], Any], followers: FollowerRegistry,
                 server_stopping: threading.Event, agent: str,
                 budget: ReplyBudget | None = None, local_quota: LocalQuota | None = None,
                 complaints: RateLimit | None = None) -> None:
        self.ws = ws
        self.conn_id = conn_id
        self.peer = peer
        self.name = f"#{conn_id} {peer}"
        self.options = options
        self.on_request = on_request
        self.followers = followers
        self.server_stopping = server_stopping
        self.agent = agent
        self.budget = budget or ReplyBudget(options.reply_memory)
        self.local_quota = local_quota or LocalQuota(options.max_local_doc_size, options.max_local_docs)
        #: the server-wide rate of INFO lines about clients' mistakes (any client can cause them)
        self.complaints = complaints or RateLimit()
        self.max_reply_size = options.max_reply_size or options.max_message_size
        self.proto = Connection("server")
        self.pool = WorkerPool(options.workers, f"pouchsync-server-worker[{conn_id}]")
        #: longpoll calls wait here, so waiting ones never starve the other calls
        #: (bounded by max_calls; threads exist only while longpolls wait)
        self.longpolls = WorkerPool(options.max_calls, f"pouchsync-server-longpoll[{conn_id}]")
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._calls = 0
        self._errors = 0
        self._send_started: float | None = None

    # -- reader -------------------------------------------------------------------------
    def run(self) -> None:
        """Serve the socket until it closes; always tears down."""
        try:
            if self._handshake():
                self._serve()
        except _Gone:
            pass
        except Exception:
            log.exception("connection %s failed", self.name)
            self._close_ws(1011, "internal error")
        finally:
            self._teardown()

    def _receive(self, timeout: float) -> Any:
        if self._closing.is_set():
            raise _Gone
        try:
            return self.ws.receive(timeout=timeout)
        except ConnectionClosed:
            raise _Gone from None

    def _handshake(self) -> bool:
        limit = self.options.hello_timeout
        deadline = time.monotonic() + limit
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.info("connection %s: no hello within %.1f s, closing", self.name, limit)
                self._fatal(m.error(408, "hello_timeout", f"no hello within {limit} s",
                                    fatal=True), 1008, "hello timeout")
                return False
            data = self._receive(min(remaining, _RECEIVE_SLICE))
            if data is None:
                continue
            with self._lock:
                try:
                    hello = self.proto.receive(data)
                except BadMessage as exc:
                    reason = exc.reason
                    if "hello first" not in reason:
                        reason = f"expected a hello first: {reason}"
                    msg = m.error(exc.status, exc.error, reason, fatal=True)
                    self._send_locked(self.proto.send(msg))
                    code = 1002
                else:
                    version = choose_version(hello["versions"])
                    if version is None:
                        offered = hello["versions"][:10]
                        msg = m.error(400, "unsupported_version",
                                      f"server speaks versions {list(m.PROTOCOL_VERSIONS)}, "
                                      f"client offered {offered}", fatal=True)
                        self._send_locked(self.proto.send(msg))
                        code = 1002
                    else:
                        welcome = m.welcome(version, self.options.limits(), agent=self.agent)
                        # the hello limit ends with the welcome (clients wait for it)
                        self.ws.max_message_size = self.options.max_message_size
                        self._send_locked(self.proto.send(welcome))
                        log.info("connection %s: hello from %r, protocol v%d", self.name,
                                 hello.get("agent"), version)
                        return True
            self._close_ws(code, "protocol error")
            return False

    def _serve(self) -> None:
        while not self._closing.is_set():
            data = self._receive(_RECEIVE_SLICE)
            if data is None:
                self._check_send_stuck()
                continue
            fatal = None
            if not self._acquire_as_reader():
                return
            try:
                try:
                    with gcpause.paused_for(data):  # a batch of docs: thousands of objects
                        msg = self.proto.receive(data)
                except BadMessage as exc:
                    fatal = self._answer_bad_locked(exc)
                else:
                    if log.isEnabledFor(logging.DEBUG):
                        log.debug("%s <- %s", self.name, _short(_redacted(msg, data)))
                    self._HANDLERS[msg["type"]](self, msg)
            finally:
                self._lock.release()
            if fatal is not None:
                self._close_ws(*fatal)
                return

    def _acquire_as_reader(self) -> bool:
        """Take the lock, watching meanwhile for a send stuck on a peer that does not
        read (which would otherwise hold the lock until TCP gives up)."""
        while not self._lock.acquire(timeout=_RECEIVE_SLICE):
            self._check_send_stuck()
            if self._closing.is_set():
                return False
        return True

    def _check_send_stuck(self) -> None:
        started = self._send_started
        if started is not None and time.monotonic() - started > self.options.send_timeout:
            log.warning("connection %s: a send has been blocked for over %.0f s "
                        "(the peer does not read); closing", self.name, self.options.send_timeout)
            self.force_close()

    def _answer_bad_locked(self, exc: BadMessage) -> tuple[int, str] | None:
        self._errors += 1
        msg = exc.to_message()
        close: tuple[int, str] | None = None
        if exc.fatal:
            close = (exc.close_code, "protocol error")
        elif self._errors >= self.options.max_errors:
            msg["reason"] = f"{exc.reason} (too many errors: {self._errors}, closing)"
            msg["fatal"] = True
            close = (1008, "too many errors")
        self._complain("connection %s: %s %s", self.name, exc.error, exc.reason)
        self._send_locked(self.proto.send(msg))
        return close

    # -- message handlers (reader thread, under the lock) -------------------------------
    def _on_open(self, msg: dict[str, Any]) -> None:
        ch = msg["ch"]
        chan = self.proto.channel(ch)
        assert chan is not None
        active = sum(1 for c in self.proto.channels()
                     if c.state in (ChannelState.OPENING, ChannelState.OPEN))
        refusal = None
        if self.server_stopping.is_set():
            refusal = {"status": 503, "error": "shutting_down", "reason": "the server is stopping"}
        elif active > self.options.max_channels:
            refusal = {"status": 429, "error": "too_many_channels",
                       "reason": f"at most {self.options.max_channels} channels per socket"}
        if refusal is not None:
            self._complain("connection %s: channel %d refused: %s", self.name, ch, refusal["reason"])
            self._send_locked(self.proto.send(m.denied(ch, refusal)))
            return
        ctx = ChannelContext(ch, msg["db"])
        chan.context = ctx
        self.pool.submit(self._open_task, ctx, msg["credentials"])

    def _on_close(self, msg: dict[str, Any]) -> None:
        chan = self.proto.channel(msg["ch"])
        ctx = chan.context if chan is not None else None
        self._send_locked(self.proto.send(m.closed(msg["ch"])))
        if isinstance(ctx, ChannelContext):
            self._drop_channel_locked(ctx)
            log.debug("connection %s: channel %d (%s) closed", self.name, ctx.ch, ctx.db_name)

    def _on_call(self, msg: dict[str, Any]) -> None:
        ctx = self.proto.channel(msg["ch"]).context
        ch, call_id = msg["ch"], msg["id"]
        try:
            kwargs = bounded(msg["op"], ops.validate_call(msg["op"], msg["args"]), self.options.max_rows)
        except BadRequest as exc:
            self._send_locked(self.proto.send(m.reply_error(ch, call_id, exc.to_json())))
            return
        if self._calls >= self.options.max_calls:
            err = {"status": 429, "error": "too_many_requests",
                   "reason": f"at most {self.options.max_calls} calls in flight per socket"}
            self._send_locked(self.proto.send(m.reply_error(ch, call_id, err)))
            return
        self._calls += 1
        pool = self.longpolls if msg["op"] == "changes" and kwargs.get("feed") == "longpoll" else self.pool
        if not pool.submit(self._call_task, ctx, call_id, msg["op"], kwargs):
            self._calls -= 1

    def _on_subscribe(self, msg: dict[str, Any]) -> None:
        ctx = self.proto.channel(msg["ch"]).context
        options = {k: msg[k] for k in ("style", "include_docs", "conflicts", "doc_ids", "selector")}
        try:
            kwargs = ops.validate_changes_args(options)
        except BadRequest as exc:  # pragma: no cover - the message schema checks these first
            self._send_locked(self.proto.send(m.changes_error(ctx.ch, msg["sub"], exc.to_json())))
            return
        if self._subscriptions_locked() >= self.options.max_subscriptions:
            err = {"status": 429, "error": "too_many_subscriptions",
                   "reason": f"at most {self.options.max_subscriptions} subscriptions per socket"}
            self._send_locked(self.proto.send(m.changes_error(ctx.ch, msg["sub"], err)))
            return
        batch = min(msg["batch"] or self.options.live_batch, self.options.live_batch)
        sub = Subscription(ctx, msg["sub"], msg["since"], kwargs, batch)
        ctx.subs[sub.sub] = sub
        self.pool.submit(self._start_subscription, sub)

    def _subscriptions_locked(self) -> int:
        return sum(len(c.context.subs) for c in self.proto.channels()
                   if isinstance(c.context, ChannelContext))

    def _on_unsubscribe(self, msg: dict[str, Any]) -> None:
        ctx = self.proto.channel(msg["ch"]).context
        sub = ctx.subs.pop(msg["sub"], None)
        if sub is not None:
            self._cancel_subscription(sub)

    _HANDLERS: dict[str, Callable[["Session", dict[str, Any]], None]] = {
        "open": _on_open,
        "close": _on_close,
        "call": _on_call,
        "subscribe": _on_subscribe,
        "unsubscribe": _on_unsubscribe,
    }

    # -- worker tasks -------------------------------------------------------------------
    def _open_task(self, ctx: ChannelContext, credentials: Any) -> None:
        grant: Grant | None = None
        err: dict[str, Any] | None = None
        try:
            if self.server_stopping.is_set():
                raise Denied("the server is stopping")
            grant = as_grant(self.on_request(credentials, ctx.db_name))
            uuid = database_uuid(grant.db.identity())
        except Denied as exc:
            err = exc.to_json()
        except Exception as exc:  # any exception of on_request denies, with its message
            reason = exc.reason if isinstance(exc, CouchError) else str(exc)
            err = Denied(reason or type(exc).__name__).to_json()
            log.debug("on_request raised for %r", ctx.db_name, exc_info=True)
        with self._lock:
            if err is not None:
                text = self.proto.send_if_current(m.denied(ctx.ch, err), ctx)
                if text is not None:
                    self._complain("connection %s: channel %d denied %r: %s", self.name, ctx.ch,
                                   ctx.db_name, err["reason"])
                    self._send_locked(text)
                return
            ctx.grant = grant
            text = self.proto.send_if_current(
                m.granted(ctx.ch, ctx.db_name, uuid, grant.read_only), ctx)
            if text is not None:
                log.info("connection %s: channel %d granted %r%s", self.name, ctx.ch,
                         ctx.db_name, " (read-only)" if grant.read_only else "")
                self._send_locked(text)

    def _call_task(self, ctx: ChannelContext, call_id: int, op: str, kwargs: dict[str, Any]) -> None:
        reply: dict[str, Any] | None = None
        text: str | None = None
        try:
            if op == "changes" and kwargs.get("feed") == "longpoll":
                result = self._longpoll(ctx, dict(kwargs))
            else:
                self.local_quota.check(ctx.grant, op, kwargs)
                result = execute(ctx.grant, op, kwargs)
            reply = m.reply_ok(ctx.ch, call_id, result)
            text = m.encode(reply)
            if len(text) > self.max_reply_size:
                reply, text = self._too_large(ctx, call_id, op, len(text)), None
        except ChannelGone:
            reply = None
        except Exception as exc:
            reply = m.reply_error(ctx.ch, call_id, error_json(exc, what=op))
            text = None
        held = len(text) if text is not None else 0
        if held:  # waits whole in memory until sent: counted server-wide
            self.budget.hold(self, held)
        try:
            with self._lock:
                self._calls -= 1
                if reply is not None and not self._closing.is_set():
                    sendable = self.proto.send_if_current(reply, ctx, text)
                    if sendable is not None:
                        self._send_locked(sendable)
        finally:
            if held:
                self.budget.release(self, held)

    def _complain(self, fmt: str, *args: Any) -> None:
        """An INFO line about a client's mistake, rate-limited server-wide."""
        allowed, suppressed = self.complaints.allow()
        if allowed:
            log.info(fmt + ("%s" if suppressed else ""), *args,
                     *([f" ({suppressed} similar lines left out)"] if suppressed else []))

    def _too_large(self, ctx: ChannelContext, call_id: int, op: str, size: int) -> dict[str, Any]:
        self._complain("connection %s: %s reply of %d bytes over max_reply_size (%d): refused",
                       self.name, op, size, self.max_reply_size)
        return m.reply_error(ctx.ch, call_id, {
            "status": 413, "error": "too_large",
            "reason": f"the reply to {op} would be {size} bytes, over the server's "
                      f"max_reply_size of {self.max_reply_size}; ask for less (limit)"})

    def evict(self, reason: str) -> None:
        """Drop this socket now, from any thread, without waiting on its sends (the
        reply budget's choice: its peer does not read). A close frame goes out only if
        no send is in progress; either way the socket is shut down at once."""
        if self._closing.is_set():
            return
        self._closing.set()
        if self._lock.acquire(timeout=0):  # nothing is being sent: a close can go out
            try:
                sock = getattr(self.ws, "sock", None)
                if sock is not None:
                    sock.settimeout(_EVICT_SEND)  # the socket is shut down right after
                if self.ws.connected:
                    self.ws.close(1008, reason[:120])
            except (ConnectionClosed, LocalProtocolError, OSError) as exc:
                log.debug("connection %s: close frame not sent: %s", self.name, exc)
            finally:
                self._lock.release()
        self._shutdown_socket()

    # -- sending and closing ------------------------------------------------------------
    def _send_locked(self, text: str) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s -> %s", self.name, _short(text))
        self._send_started = time.monotonic()
        try:
            self.ws.send(text)
        except (ConnectionClosed, LocalProtocolError, OSError) as exc:
            log.debug("connection %s: send failed: %s", self.name, exc)
            self._closing.set()
        finally:
            self._send_started = None

    def _fatal(self, msg: dict[str, Any], code: int, reason: str) -> None:
        with self._lock:
            self._send_locked(self.proto.send(msg))
        self._close_ws(code, reason)

    def _close_ws(self, code: int, reason: str, grace: float = _CLOSE_GRACE) -> None:
        """Send a close frame (if the socket is still up), give the peer up to
        ``grace`` seconds to answer, then shut the socket down so every thread blocked
        on it returns."""
        self.send_close(code, reason)
        self.wait_transport(grace)
        self._shutdown_socket()

    def send_close(self, code: int, reason: str) -> None:
        """Send the close frame; the reader then ends (any thread)."""
        self._closing.set()
        if self._lock.acquire(timeout=_LOCK_GRACE):
            try:
                if self.ws.connected:
                    try:
                        self.ws.close(code, reason)
                    except (ConnectionClosed, LocalProtocolError, OSError):
                        pass
            finally:
                self._lock.release()

    def wait_transport(self, timeout: float) -> bool:
        """Wait for the transport's reader thread to end (the peer answered the close)."""
        thread = getattr(self.ws, "thread", None)
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(max(0.0, timeout))
        return not thread.is_alive()

    def _shutdown_socket(self) -> None:
        sock = getattr(self.ws, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        event = getattr(self.ws, "event", None)
        if event is not None:
            event.set()

    def shutdown(self, code: int = 1001, reason: str = "server shutting down",
                 grace: float = _CLOSE_GRACE) -> None:
        """Close the socket from any thread; the reader then tears down."""
        if not self._closing.is_set():
            log.info("connection %s: closing (%d %s)", self.name, code, reason)
        self._close_ws(code, reason, grace)

    def force_close(self) -> None:
        """Shut the socket down now (after ``send_close`` and a grace period)."""
        self._closing.set()
        self._shutdown_socket()

    def _teardown(self) -> None:
        self._closing.set()
        if not self._lock.acquire(timeout=_LOCK_GRACE):
            # a send is blocked on a peer that is gone or does not read: unblock it
            self.force_close()
            self._lock.acquire()
        try:
            contexts = [c.context for c in self.proto.channels()
                        if isinstance(c.context, ChannelContext)]
            self.proto.mark_closed()
            for ctx in contexts:
                self._drop_channel_locked(ctx)
        finally:
            self._lock.release()
        if self.ws.connected:
            self._close_ws(1000, "")
        self._shutdown_socket()
        stuck = self.pool.close(timeout=10.0) + self.longpolls.close(timeout=10.0)
        if stuck:
            log.error("connection %s: worker threads did not stop: %s", self.name, stuck)
        thread = getattr(self.ws, "thread", None)
        if thread is not None:
            thread.join(5.0)
            if not thread.is_alive():
                self._drain_socket()
        log.info("connection %s: disconnected", self.name)
        self.done.set()

    def _drain_socket(self) -> None:
        """Discard bytes the transport left unread (say, the peer's answer to our close
        frame), so the WSGI server does not read them as a next HTTP request. The
        socket is shut down, so ``recv`` returns what is queued and then b"" at once."""
        sock = getattr(self.ws, "sock", None)
        if sock is None:
            return
        try:
            for _ in range(64):
                if not sock.recv(65536):
                    break
        except OSError:
            pass

    # -- introspection ------------------------------------------------------------------
    def stats(self) -> dict[str, int]:
        """Counts, read without the session's lock (a send blocked on a slow peer must
        not block monitoring); they may be a moment out of date."""
        channels = [c for c in self.proto.channels() if isinstance(c.context, ChannelContext)]
        return {
            "channels": len(channels),
            "subscriptions": sum(len(c.context.subs) for c in channels),
            "calls_in_flight": self._calls,
            "workers": self.pool.threads + self.longpolls.threads,
        }
