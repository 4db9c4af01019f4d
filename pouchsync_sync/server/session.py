"""One client socket on the server: its two threads, its outgoing queue, its closing.

Theory of operation. A socket costs two threads: simple-websocket's reader (frames in,
pings, close replies) and the WSGI handler thread, which runs ``Session.run`` and is
the socket's only reader of messages *and* its only writer of frames. Each incoming
frame goes through the sans-IO ``protocol.Connection`` under the session's lock
(``calls.py`` handles it and starts tasks); everything slow (``on_request``, database
calls, live pushes) runs on the server's process-wide ``WorkerPool``, through this
socket's ``Lane`` (at most ``workers`` tasks at once). A task's answer is checked and
queued in its ``Outbox`` under the lock (``enqueue``), so protocol state and frame order
always agree: nothing about a channel is sent after its ``closed``, and a late reply never reaches a
channel that reuses the number. The handler thread sends what is queued; the task that
queued a small frame may write it itself when the socket takes it at once (``Outbox.
send_now``, one writer at a time), and nobody holds the lock while sending.

A peer that stops reading blocks only its handler thread: its replies wait in the
queue, counted in the server-wide ``ReplyBudget`` (which evicts the biggest holder),
live pushes pause above a high-water mark and resume when the queue drains, and the
server's watchdog closes a socket whose send has been stuck for ``send_timeout``.

Shutdown: ``send_close`` (any thread) asks the handler to send a close frame and end;
``force_close`` shuts the socket down, which unblocks a stuck send. ``_teardown`` (on
the handler thread) cancels channels, waits for the lane's running tasks and the
transport's thread, then sets ``done``.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any, Callable

from .. import gcpause
from ..protocol import Connection, choose_version
from ..protocol import messages as m
from ..protocol.messages import BadMessage
from . import calls
from .budget import ReplyBudget
from .ending import EndingLine
from .follower import FollowerRegistry
from .handler import RateLimit
from .live import ChannelContext, Live
from .localquota import LocalQuota
from .options import ServerOptions
from .outbox import HIGH_WATER, Outbox, short
from .pool import Lane, WorkerPool
from .timer import Timer

__all__ = ["Session", "HIGH_WATER"]

log = logging.getLogger(__name__)

_WAIT_SLICE = 30.0       # a safety net: closing and new frames set the event anyway
_CLOSE_GRACE = 1.0       # time for the peer to answer our close frame
_EVICT_SEND = 0.5        # longest an evicted socket's close frame may take to send


def _redacted(msg: dict[str, Any], data: Any) -> Any:
    """What to log of an incoming frame: never the credentials of an ``open``."""
    if msg.get("type") == "open":
        redacted = "<redacted>" if msg.get("credentials") is not None else None
        return m.encode({**msg, "credentials": redacted})
    return data


class _Gone(Exception):
    """The WebSocket is closed."""


class Session:
    """One WebSocket. ``run`` on the handler thread; ``send_close``, ``force_close``,
    ``evict`` and ``enqueue`` from any thread."""

    def __init__(self, ws: Any, *, conn_id: int, peer: str, options: ServerOptions,
                 on_request: Callable[[Any, str], Any], followers: FollowerRegistry,
                 server_stopping: threading.Event, agent: str, pool: WorkerPool, timer: Timer,
                 budget: ReplyBudget | None = None, local_quota: LocalQuota | None = None,
                 complaints: RateLimit | None = None,
                 ending: EndingLine | None = None) -> None:
        self.ws = ws
        self.conn_id = conn_id
        self.peer = peer
        self.name = f"#{conn_id} {peer}"
        self.options = options
        self.on_request = on_request
        self.followers = followers
        self.server_stopping = server_stopping
        self.agent = agent
        self.timer = timer
        self.budget = budget or ReplyBudget(options.reply_memory)
        self.local_quota = local_quota or LocalQuota(options.max_local_doc_size,
                                                     options.max_local_docs)
        #: the server-wide rate of INFO lines about clients' mistakes (any client can cause them)
        self.complaints = complaints or RateLimit()
        #: the server's line of endings (``ending.py``): a dropped socket's teardown
        #: takes its turn there
        self.ending = ending or EndingLine()
        self.max_reply_size = options.max_reply_size or options.max_message_size
        self.proto = Connection("server")
        self.lane = Lane(pool, options.workers, f"pouchsync-server-lane[{conn_id}]")
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.closing = threading.Event()
        self._close_frame: tuple[int, str] = (1000, "")
        self.calls_in_flight = 0
        self._errors = 0
        self.outbox = Outbox(ws, self.lock, self.closing, self.budget, self, self.call_done_locked,
                             self.name)
        #: longpolls and subscriptions of this socket
        self.live = Live(self)

    # -- the handler thread -------------------------------------------------------------
    def run(self, after: Callable[[], None] | None = None) -> None:
        """Serve the socket until it closes; always tears down, then calls ``after``
        (the server forgets the session), in the same turn of the ending line."""
        try:
            if self._handshake():
                self._serve()
        except _Gone:
            pass
        except Exception:
            log.exception("connection %s failed", self.name)
            self._close_frame = (1011, "internal error")
        finally:
            # a socket whose transport is gone (dropped, maybe with thousands of others)
            # ends in its turn; a graceful close ends as soon as its peer answered
            with self.ending.turn(not self.ws.connected):
                try:
                    self._teardown()
                finally:
                    if after is not None:
                        after()

    def _next_frame(self, deadline: float | None) -> Any:
        """The next incoming frame, after sending what is queued; ``None`` at the
        deadline or when it is time to look at the queue again. Raises ``_Gone``."""
        ws = self.ws
        while True:
            ws.event.clear()  # before looking: a frame or a wake-up after this sets it
            self.outbox.flush()
            if self.closing.is_set():
                raise _Gone
            if ws.input_buffer:
                return ws.input_buffer.pop(0)
            if not ws.connected:
                raise _Gone
            wait = (_WAIT_SLICE if deadline is None
                    else min(_WAIT_SLICE, deadline - time.monotonic()))
            if wait <= 0:
                return None
            ws.event.wait(wait)

    def _handshake(self) -> bool:
        limit = self.options.hello_timeout
        deadline = time.monotonic() + limit
        while True:
            data = self._next_frame(deadline)
            if data is None:
                if time.monotonic() < deadline:
                    continue
                log.info("connection %s: no hello within %.1f s, closing", self.name, limit)
                self._fatal(m.error(408, "hello_timeout", f"no hello within {limit} s",
                                    fatal=True), 1008, "hello timeout")
                return False
            with self.lock:
                try:
                    hello = self.proto.receive(data)
                except BadMessage as exc:
                    reason = exc.reason
                    if "hello first" not in reason:
                        reason = f"expected a hello first: {reason}"
                    self.outbox.put_locked(self.proto.send(m.error(exc.status, exc.error, reason,
                                                               fatal=True)))
                    code = 1002
                else:
                    version = choose_version(hello["versions"])
                    if version is None:
                        offered = hello["versions"][:10]
                        msg = m.error(400, "unsupported_version",
                                      f"server speaks versions {list(m.PROTOCOL_VERSIONS)}, "
                                      f"client offered {offered}", fatal=True)
                        self.outbox.put_locked(self.proto.send(msg))
                        code = 1002
                    else:
                        welcome = m.welcome(version, self.options.limits(), agent=self.agent)
                        # the hello limit ends with the welcome (clients wait for it)
                        self.ws.max_message_size = self.options.max_message_size
                        self.outbox.put_locked(self.proto.send(welcome))
                        log.info("connection %s: hello from %r, protocol v%d", self.name,
                                 hello.get("agent"), version)
                        return True
            self._fatal(None, code, "protocol error")
            return False

    def _serve(self) -> None:
        while True:
            data = self._next_frame(None)
            if data is not None and self._handle(data):
                return

    def _handle(self, data: Any) -> bool:
        """One incoming frame; True when the socket must close."""
        fatal = None
        with self.lock:
            if self.closing.is_set():
                return True
            try:
                with gcpause.paused_for(data):  # a batch of docs: thousands of objects
                    msg = self.proto.receive(data)
            except BadMessage as exc:
                fatal = self._answer_bad_locked(exc)
            else:
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("%s <- %s", self.name, short(_redacted(msg, data)))
                calls.HANDLERS[msg["type"]](self, msg)
        if fatal is not None:
            self._fatal(None, *fatal)
            return True
        return False

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
        self.complain("connection %s: %s %s", self.name, exc.error, exc.reason)
        self.outbox.put_locked(self.proto.send(msg))
        return close

    def _fatal(self, msg: dict[str, Any] | None, code: int, reason: str) -> None:
        """Send ``msg`` (if any) and what is queued, then close (handler thread)."""
        if msg is not None:
            with self.lock:
                self.outbox.put_locked(self.proto.send(msg))
        self.outbox.flush()
        self._close_frame = (code, reason)
        self.closing.set()

    # -- the outgoing queue -------------------------------------------------------------
    def call_done_locked(self) -> None:
        """A call in flight ended (answered, or dropped with its channel)."""
        self.calls_in_flight -= 1

    def enqueue(self, build: Callable[[], str | None], held: int = 0, reply: bool = False) -> bool:
        """Queue the frame ``build()`` makes under the session's lock (``None``: nothing
        to send, e.g. a channel closed meanwhile); any thread. ``held``: bytes already
        counted in the reply budget, released once sent or dropped. ``reply``: it answers
        a call (the call counts as in flight until it is sent)."""
        with self.lock:
            text = build()
            queued = text is not None and self.outbox.put_locked(text, held, reply, wake=False)
            if not queued and reply:
                self.calls_in_flight -= 1
        if queued:
            self.outbox.send_now()  # or the handler thread, woken there
        elif held:
            self.budget.release(self, held)
        return queued

    # -- closing (any thread) -----------------------------------------------------------
    def check_send_stuck(self) -> None:
        """The server's watchdog: close a socket whose send is blocked for over
        ``send_timeout`` (its peer does not read)."""
        started = self.outbox.send_started
        if started is not None and time.monotonic() - started > self.options.send_timeout:
            log.warning("connection %s: a send has been blocked for over %.0f s "
                        "(the peer does not read); closing", self.name, self.options.send_timeout)
            self.force_close()

    def evict(self, reason: str) -> None:
        """Drop this socket now, without waiting on its sends (the reply budget's
        choice: its peer does not read). A close frame goes out if no send is blocked;
        the socket is shut down within ``_EVICT_SEND`` seconds either way."""
        if self.closing.is_set():
            return
        self.send_close(1008, reason[:120])
        if self.outbox.send_started is not None:
            self.force_close()
        else:
            self.timer.call_later(_EVICT_SEND, self._shutdown_if_running)

    def _shutdown_if_running(self) -> None:
        if not self.done.is_set():
            self._shutdown_socket()

    def send_close(self, code: int, reason: str) -> None:
        """Ask the handler thread to send a close frame and end."""
        if not self.closing.is_set():
            self._close_frame = (code, reason)
            self.closing.set()
        self.ws.event.set()

    def wait_transport(self, timeout: float) -> bool:
        """Wait for the transport's reader thread to be done reading (the peer answered
        the close)."""
        thread = getattr(self.ws, "thread", None)
        if thread is None or thread is threading.current_thread():
            return True
        return bool(self.ws.reading_done.wait(max(0.0, timeout)))

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

    def force_close(self) -> None:
        """Shut the socket down now (after ``send_close`` and a grace period)."""
        self.closing.set()
        self._shutdown_socket()

    def _teardown(self) -> None:
        self.closing.set()
        with self.lock:
            contexts = [c.context for c in self.proto.channels()
                        if isinstance(c.context, ChannelContext)]
            self.proto.mark_closed()
            for ctx in contexts:
                self.live.drop_channel_locked(ctx)
        self.outbox.drop()
        if self.ws.connected:
            self.outbox.send_close(*self._close_frame)
            self.wait_transport(_CLOSE_GRACE)
        self._shutdown_socket()
        if not self.lane.close(timeout=10.0):
            log.error("connection %s: tasks still running after 10 s", self.name)
        self.outbox.drop()  # what those tasks queued meanwhile
        thread = getattr(self.ws, "thread", None)
        if thread is not None:
            self.ws.may_end.set()  # the reader thread ends now, in this turn
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

    # -- shared with calls.py and live.py -----------------------------------------------
    def complain(self, fmt: str, *args: Any) -> None:
        """An INFO line about a client's mistake, rate-limited server-wide."""
        allowed, suppressed = self.complaints.allow()
        if allowed:
            log.info(fmt + ("%s" if suppressed else ""), *args,
                     *([f" ({suppressed} similar lines left out)"] if suppressed else []))

    def stats(self) -> dict[str, int]:
        """Counts, read without the session's lock (a send blocked on a slow peer must
        not block monitoring); they may be a moment out of date."""
        channels = [c for c in self.proto.channels() if isinstance(c.context, ChannelContext)]
        return {
            "channels": len(channels),
            "subscriptions": sum(len(c.context.subs) for c in channels),
            "calls_in_flight": self.calls_in_flight,
            "workers": self.lane.running,
            "queued_bytes": self.outbox.size,
            "live_pushes_fanout": self.live.pushes_fanout,
            "live_pushes_lane": self.live.pushes_lane,
        }
