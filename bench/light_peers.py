"""Light protocol-level live syncs for ``bench_scale.py``: thousands of WebSockets in ONE
thread (``selectors`` + wsproto, no asyncio, no pouchsync_sync client).

    python3 bench/light_peers.py URL --sockets 4500 [--channels-per-socket 1]

Each socket: HTTP upgrade, ``hello``, then per channel ``open`` on database ``bench``,
after ``granted`` an ``info`` call, then ``subscribe`` from the sequence before the
current one, so the server pushes the last change at once: that first ``changes`` is
the proof that the subscription is live ("ready"). Frames as in docs/protocol.md.

Prints one JSON line ``{"ready", ...}`` when every sync is ready or has failed (the
failures counted by reason: a limit of the machine shows here instead of a crash), then
for each line ``ID`` on stdin waits until every ready sync got a ``changes`` carrying
``ID`` (or ``--timeout``) and prints the arrival times (``time.monotonic()``). EOF on
stdin closes every socket and ends the process. Every ``changes`` frame is parsed
(orjson) and each change counted only with its id and a seq past the one subscribed at.
"""

from __future__ import annotations

import argparse
import errno
import os
import resource
import selectors
import socket
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import orjson
from wsproto import ConnectionType, WSConnection
from wsproto.events import (AcceptConnection, CloseConnection, Ping, RejectConnection, Request,
                            TextMessage)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import own_usage, raise_nofile  # noqa: E402
from scale_limits import machine_threads  # noqa: E402

DB = "bench"
PREFIX = "fan-"


class Peer:
    """One socket and its channels; all state of the handshake and the live syncs."""

    __slots__ = ("idx", "sock", "ws", "state", "out", "started", "parts", "channels",
                 "ready_chs", "seqs")

    def __init__(self, idx: int, sock: socket.socket, channels: int) -> None:
        self.idx = idx
        self.sock = sock
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.state = "connecting"
        self.out = bytearray()
        self.started = time.monotonic()
        self.parts: list[str] = []
        self.channels = channels
        self.ready_chs: set[int] = set()
        self.seqs: dict[int, Any] = {}

    def send_msg(self, msg: dict[str, Any]) -> None:
        self.out += self.ws.send(TextMessage(data=orjson.dumps(msg).decode()))


class LightPeers:
    """The event loop: opens ``sockets`` peers, at most ``concurrency`` mid-handshake."""

    def __init__(self, url: str, *, sockets: int, channels: int, concurrency: int,
                 handshake_timeout: float, max_machine_threads: int = 0) -> None:
        parsed = urlparse(url)
        self.addr = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.target = parsed.path or "/"
        self.host = f"{self.addr[0]}:{self.addr[1]}"
        self.sockets = sockets
        self.channels = channels
        self.concurrency = concurrency
        self.handshake_timeout = handshake_timeout
        self.max_machine_threads = max_machine_threads
        self.sel = selectors.DefaultSelector()
        self.peers: dict[int, Peer] = {}      # by fileno
        self.opened = 0
        self.pending = 0                      # sockets not yet ready nor failed
        self.ready_syncs = 0
        self.ready_sockets = 0
        self.failed: Counter[str] = Counter()
        self.failed_at: dict[str, int] = {}   # reason -> syncs ready when it first happened
        self.stop_opening: str | None = None
        self.arrivals: dict[str, dict[tuple[int, int], float]] = {}
        self.lost_after_ready = 0
        self.stdin_buf = b""
        self.stdin_eof = False
        self.next_scan = 0.0                  # when step() next looks for stalled handshakes

    # -- opening ------------------------------------------------------------------------
    def _open_more(self) -> None:
        if (self.max_machine_threads and self.stop_opening is None
                and self.pending < self.concurrency and self.opened < self.sockets):
            threads = machine_threads()
            if threads >= self.max_machine_threads:
                pid_max = Path("/proc/sys/kernel/pid_max").read_text().strip()
                self._limit(f"stopped opening: the machine runs {threads} threads, the cap is "
                            f"{self.max_machine_threads} (kernel.pid_max {pid_max} counts every "
                            "thread of every process; the rest is left to the others)")
                return
        while (self.stop_opening is None and self.opened < self.sockets
               and self.pending < self.concurrency):
            try:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            except OSError as exc:  # EMFILE / ENFILE: the fd limit binds
                self._limit(f"socket(): {errno.errorcode.get(exc.errno or 0, exc)} "
                            f"(ulimit -n {resource.getrlimit(resource.RLIMIT_NOFILE)[0]})")
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            rc = sock.connect_ex(self.addr)
            if rc not in (0, errno.EINPROGRESS):
                sock.close()
                self._limit(f"connect(): {errno.errorcode.get(rc, rc)}")
                return
            peer = Peer(self.opened, sock, self.channels)
            self.opened += 1
            self.pending += 1
            self.peers[sock.fileno()] = peer
            self.sel.register(sock, selectors.EVENT_WRITE, peer)

    def _limit(self, reason: str) -> None:
        self.stop_opening = reason
        self.failed[reason] += 1
        self.failed_at.setdefault(reason, self.ready_syncs)

    # -- I/O ----------------------------------------------------------------------------
    def _writable(self, peer: Peer) -> None:
        if peer.state == "connecting":
            err = peer.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._fail(peer, f"connect: {errno.errorcode.get(err, err)}")
                return
            peer.state = "upgrading"
            peer.out += peer.ws.send(Request(host=self.host, target=self.target))
        self._flush(peer)

    def _flush(self, peer: Peer) -> None:
        if peer.out:
            try:
                sent = peer.sock.send(peer.out)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                self._fail(peer, f"send in state {peer.state}: {exc.strerror or exc}")
                return
            del peer.out[:sent]
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if peer.out else 0)
        self.sel.modify(peer.sock, events, peer)

    def _readable(self, peer: Peer, now: float) -> None:
        try:
            data = peer.sock.recv(262144)
        except BlockingIOError:
            return
        except OSError as exc:
            self._fail(peer, f"recv in state {peer.state}: {exc.strerror or exc}")
            return
        if not data:
            self._fail(peer, f"closed by the server in state {peer.state}")
            return
        try:
            peer.ws.receive_data(data)
            for event in peer.ws.events():
                self._event(peer, event, now)
                if peer.state == "dead":
                    return
        except (LocalProtocolError, RemoteProtocolError) as exc:
            self._fail(peer, f"websocket protocol error in state {peer.state}: {exc}")
            return
        if peer.state != "dead":
            self._flush(peer)

    def _event(self, peer: Peer, event: Any, now: float) -> None:
        if isinstance(event, AcceptConnection):
            peer.state = "hello"
            peer.send_msg({"type": "hello", "versions": [1], "agent": "bench-light"})
        elif isinstance(event, RejectConnection):
            self._fail(peer, f"upgrade refused: HTTP {event.status_code}")
        elif isinstance(event, Ping):
            peer.out += peer.ws.send(event.response())
        elif isinstance(event, CloseConnection):
            self._fail(peer, f"close {event.code} ({event.reason or 'no reason'}) "
                             f"in state {peer.state}")
        elif isinstance(event, TextMessage):
            peer.parts.append(event.data)
            if event.message_finished:
                text = "".join(peer.parts)
                peer.parts.clear()
                self._message(peer, orjson.loads(text), now)

    def _message(self, peer: Peer, msg: dict[str, Any], now: float) -> None:
        kind = msg.get("type")
        ch = msg.get("ch", 0)
        if kind == "welcome":
            peer.state = "opening"
            for c in range(1, peer.channels + 1):
                peer.send_msg({"type": "open", "ch": c, "db": DB, "credentials": None})
        elif kind == "granted":
            peer.send_msg({"type": "call", "ch": ch, "id": 1, "op": "info", "args": {}})
        elif kind == "reply" and "ok" in msg:
            seq = msg["ok"].get("update_seq")
            # from the sequence before the last: the server pushes that change at once
            since = seq - 1 if isinstance(seq, int) and seq > 0 else seq
            peer.seqs[ch] = seq
            peer.send_msg({"type": "subscribe", "ch": ch, "sub": 1, "since": since,
                           "style": "all_docs"})
        elif kind == "changes" and "results" in msg:
            if ch not in peer.ready_chs:
                peer.ready_chs.add(ch)
                self.ready_syncs += 1
                if len(peer.ready_chs) == peer.channels:
                    peer.state = "ready"
                    self.pending -= 1
                    self.ready_sockets += 1
            for row in msg["results"]:
                doc_id = row.get("id", "")
                if doc_id.startswith(PREFIX):
                    seq, before = row.get("seq"), peer.seqs.get(ch)
                    if seq is None or (type(seq) is int and type(before) is int
                                       and seq <= before):
                        # written after the subscription began: its seq is past update_seq
                        self._fail(peer, f"change {doc_id} with seq {seq!r} (update_seq "
                                         f"was {before!r} at subscribe)")
                        return
                    self.arrivals.setdefault(doc_id, {}).setdefault((peer.idx, ch), now)
        elif kind in ("denied", "error") or (kind in ("reply", "changes") and "error" in msg):
            self._fail(peer, f"{kind} in state {peer.state}: {msg.get('error')} "
                             f"{msg.get('reason', '')}".strip())

    def _fail(self, peer: Peer, reason: str) -> None:
        if peer.state == "dead":
            return
        if peer.state == "ready":
            self.lost_after_ready += 1
            self.ready_syncs -= len(peer.ready_chs)
            self.ready_sockets -= 1
        else:
            self.pending -= 1
            self.ready_syncs -= len(peer.ready_chs)
        reason = reason[:160]
        self.failed[reason] += 1
        self.failed_at.setdefault(reason, self.ready_syncs)
        peer.state = "dead"
        try:
            self.sel.unregister(peer.sock)
        except (KeyError, ValueError):
            pass
        self.peers.pop(peer.sock.fileno(), None)
        peer.sock.close()

    # -- loop ---------------------------------------------------------------------------
    def step(self, timeout: float) -> None:
        self._open_more()
        events = self.sel.select(timeout)
        now = time.monotonic()  # after the wait: what it returned arrived by now
        for key, mask in events:
            if key.data is None:  # stdin
                chunk = os.read(sys.stdin.fileno(), 65536)
                if not chunk:
                    self.stdin_eof = True
                    self.sel.unregister(key.fileobj)
                self.stdin_buf += chunk
                continue
            peer = key.data
            if peer.state == "dead":
                continue
            if mask & selectors.EVENT_WRITE:
                self._writable(peer)
            if peer.state != "dead" and mask & selectors.EVENT_READ:
                self._readable(peer, now)
        if self.pending and now >= self.next_scan:  # a look at every peer: once a second
            self.next_scan = now + 1.0
            for peer in list(self.peers.values()):
                if peer.state != "ready" and now - peer.started > self.handshake_timeout:
                    self._fail(peer, f"no progress within {self.handshake_timeout:.0f} s "
                                     f"in state {peer.state}")

    def connect_all(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            self.step(0.2)
            if self.pending == 0 and (self.opened >= self.sockets or self.stop_opening):
                return
        for peer in list(self.peers.values()):
            if peer.state != "ready":
                self._fail(peer, f"not ready by the deadline, in state {peer.state}")

    def end_connect_phase(self) -> None:
        """No socket is opened after the connect phase (the changes are timed on the
        syncs that were ready, not on newcomers)."""
        if self.opened < self.sockets and self.stop_opening is None:
            self.stop_opening = "connect phase over"
            self.failed[f"not opened: the connect phase ended ({self.sockets - self.opened})"] += 1

    def wait_for(self, doc_id: str, timeout: float) -> dict[tuple[int, int], float]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.arrivals.get(doc_id, {})) >= self.ready_syncs:
                break
            self.step(0.05)
        return self.arrivals.get(doc_id, {})

    def next_line(self) -> str | None:
        """The next command from stdin, serving the sockets while waiting; None at EOF."""
        while b"\n" not in self.stdin_buf:
            if self.stdin_eof:
                return None
            self.step(0.5)
        line, _, self.stdin_buf = self.stdin_buf.partition(b"\n")
        return line.decode().strip()

    def close(self) -> None:
        for peer in list(self.peers.values()):
            try:
                peer.sock.close()
            except OSError:
                pass
        self.sel.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--channels-per-socket", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=100,
                        help="sockets mid-handshake at once")
    parser.add_argument("--handshake-timeout", type=float, default=120.0)
    parser.add_argument("--ready-timeout", type=float, default=900.0)
    parser.add_argument("--timeout", type=float, default=60.0, help="per change")
    parser.add_argument("--max-machine-threads", type=int, default=0,
                        help="stop opening sockets when the machine runs this many threads")
    args = parser.parse_args()
    nofile = raise_nofile()
    peers = LightPeers(args.url, sockets=args.sockets, channels=args.channels_per_socket,
                       concurrency=args.concurrency, handshake_timeout=args.handshake_timeout,
                       max_machine_threads=args.max_machine_threads)
    peers.sel.register(sys.stdin.fileno(), selectors.EVENT_READ, None)
    t0 = time.monotonic()
    peers.connect_all(t0 + args.ready_timeout)
    peers.end_connect_phase()
    print(orjson.dumps({"ready": peers.ready_syncs, "sockets_ready": peers.ready_sockets,
                        "sockets": args.sockets, "syncs": args.sockets * args.channels_per_socket,
                        "seconds": time.monotonic() - t0, "failed": dict(peers.failed),
                        "ready_when_failed": peers.failed_at, "nofile": nofile,
                        **own_usage()}).decode(), flush=True)
    try:
        while True:
            doc_id = peers.next_line()
            if doc_id is None:
                break
            if not doc_id:
                continue
            cpu0 = time.process_time()
            got = peers.wait_for(doc_id, args.timeout)
            print(orjson.dumps({"id": doc_id, "arrived": len(got), "of": peers.ready_syncs,
                                "times": list(got.values()), "lost": peers.lost_after_ready,
                                "failed": dict(peers.failed),
                                "cpu_s_during": time.process_time() - cpu0,
                                **own_usage()}).decode(), flush=True)
    finally:
        peers.close()


if __name__ == "__main__":
    main()
