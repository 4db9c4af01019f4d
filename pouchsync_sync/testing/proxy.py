"""A TCP proxy on 127.0.0.1 that forwards to a target and misbehaves on request (the
engine of ``network_fault``; our own fault tests use it directly).

- ``cut_all()``: reset every open connection now (RST, no FIN handshake);
- ``cut_after(n)``: every connection (open or new) is reset once ``n`` more bytes went
  through it in either direction, so the cut lands inside a WebSocket frame;
- ``delay = seconds``: each forwarded chunk waits that long first;
- ``stall_current()``: the connections open now stop forwarding in both directions
  (bytes pile up in the kernel; no FIN, no RST: a hung peer) until ``resume()``; new
  connections flow normally;
- ``stall_all()``: the same, and new connections start stalled too, until ``resume()``;
- ``refuse = True``: new connections are accepted and reset at once (a dead backend);
- ``record = True``: keep what clients send upstream (``sent``), e.g. HTTP request lines.

Threads are named ``pouchsync-fault-proxy...``; ``close()`` stops and joins every one of them.
Waits are on Events with timeouts; the deliberate stall waits on an Event too.
"""

from __future__ import annotations

import socket
import struct
import threading

__all__ = ["FaultProxy"]

_CHUNK = 16384
_POLL = 0.1


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), waking any thread blocked on it."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class _Link:
    """One proxied connection: client socket, upstream socket, two pump threads."""

    def __init__(self, proxy: FaultProxy, client: socket.socket, upstream: socket.socket,
                 number: int) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.number = number
        self.flowing = threading.Event()
        self.flowing.set()
        self.dead = threading.Event()
        self.lock = threading.Lock()
        self.budget: int | None = proxy._cut_after
        self.forwarded = 0
        self.upstream_bytes = bytearray()
        if proxy.record:
            proxy.sent.append(self.upstream_bytes)
        self.threads = [
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True,
                             name=f"pouchsync-fault-proxy[{number}]-up"),
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True,
                             name=f"pouchsync-fault-proxy[{number}]-down"),
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def cut(self) -> None:
        with self.lock:
            if self.dead.is_set():
                return
            self.dead.set()
        self.flowing.set()
        _reset(self.client)
        _reset(self.upstream)

    def _take(self, want: int) -> tuple[int, bool]:
        """How many of ``want`` bytes may pass, and whether to cut after them."""
        with self.lock:
            if self.budget is None:
                self.forwarded += want
                return want, False
            allowed = min(want, self.budget)
            self.budget -= allowed
            self.forwarded += allowed
            return allowed, self.budget <= 0

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        stop = self.proxy._stop
        try:
            src.settimeout(_POLL)
            while not self.dead.is_set() and not stop.is_set():
                while not self.flowing.wait(_POLL):  # a deliberate stall
                    if stop.is_set() or self.dead.is_set():
                        return
                try:
                    data = src.recv(_CHUNK)
                except socket.timeout:
                    continue
                if not data:
                    break
                delay = self.proxy.delay
                if delay:
                    if stop.wait(delay):
                        break
                while not self.flowing.wait(_POLL):
                    if stop.is_set() or self.dead.is_set():
                        return
                allowed, cut = self._take(len(data))
                if allowed:
                    if dst is self.upstream and self.proxy.record:
                        self.upstream_bytes += data[:allowed]
                    dst.sendall(data[:allowed])
                if cut:
                    self.proxy.cuts += 1
                    break
        except OSError:
            pass
        finally:
            self.cut()
            self.proxy._forget(self)


class FaultProxy:
    """A TCP proxy on 127.0.0.1 in front of ``(host, port)``. Thread-safe."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1",
                 listen_port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.delay = 0.0
        self.refuse = False
        #: when true, every byte a client sends upstream is kept in ``sent`` (per link)
        self.record = False
        self.sent: list[bytearray] = []
        self.cuts = 0
        self.connections_total = 0
        self._cut_after: int | None = None
        self._stall_new = False
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._links: set[_Link] = set()
        self._finished: list[threading.Thread] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", listen_port))
        self._listener.listen(128)
        self._listener.settimeout(_POLL)
        self.port = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True,
                                          name="pouchsync-fault-proxy-accept")
        self._acceptor.start()

    def url(self, scheme: str = "ws") -> str:
        return f"{scheme}://127.0.0.1:{self.port}/"

    # -- faults -------------------------------------------------------------------------
    def cut_all(self) -> int:
        with self._lock:
            links = list(self._links)
        for link in links:
            link.cut()
        self.cuts += len(links)
        return len(links)

    def cut_after(self, nbytes: int | None) -> None:
        """Reset each connection after ``nbytes`` more bytes (``None``: stop cutting)."""
        with self._lock:
            self._cut_after = nbytes
            links = list(self._links)
        for link in links:
            with link.lock:
                link.budget = nbytes

    def stall_current(self) -> int:
        with self._lock:
            links = list(self._links)
        for link in links:
            link.flowing.clear()
        return len(links)

    def stall_all(self) -> int:
        """Stall the open connections and every new one until ``resume()``."""
        with self._lock:
            self._stall_new = True
            links = list(self._links)
        for link in links:
            link.flowing.clear()
        return len(links)

    def resume(self) -> None:
        with self._lock:
            self._stall_new = False
            links = list(self._links)
        for link in links:
            link.flowing.set()

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._links)

    # -- plumbing -----------------------------------------------------------------------
    def _accept_loop(self) -> None:
        number = 0
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if self.refuse:
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5.0)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            number += 1
            link = _Link(self, client, upstream, number)
            with self._lock:
                if self._stop.is_set():
                    _reset(client)
                    _reset(upstream)
                    return
                if self.refuse:  # refused while this one was connecting upstream
                    _reset(client)
                    _reset(upstream)
                    continue
                if self._stall_new:
                    link.flowing.clear()
                self._links.add(link)
                self.connections_total += 1
            link.start()

    def _forget(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)
            self._finished.extend(link.threads)

    def close(self, timeout: float = 5.0) -> None:
        """Reset every connection, stop accepting, join every thread. Idempotent."""
        self._stop.set()
        try:
            self._listener.close()
        except OSError:
            pass
        self._acceptor.join(timeout)
        with self._lock:
            links = list(self._links)
        for link in links:
            link.cut()
        for link in links:
            for thread in link.threads:
                thread.join(timeout)
        with self._lock:
            finished, self._finished = self._finished, []
        current = threading.current_thread()
        for thread in finished:
            if thread is not current:
                thread.join(timeout)
        mine = [self._acceptor] + finished + [t for link in links for t in link.threads]
        alive = [t.name for t in mine if t.is_alive() and t is not current]
        assert not alive, f"proxy threads did not stop: {alive}"

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

