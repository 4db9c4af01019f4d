"""``network_fault``: a loopback proxy between a client and a sync server that a test
can ``cut()``, ``stall()`` and ``heal()``, for reconnection tests.

- ``cut()``: the network goes down: every open connection is reset (RST, as a dead
  link or a crashed router), and new ones are refused until ``heal()``;
- ``drop()``: the open connections are reset once; reconnecting works at once;
- ``stall()``: bytes stop flowing both ways on every connection, open or new, with no
  FIN and no RST (a hung peer, a half-dead NAT), until ``heal()``; the client notices
  only through its own ping / dead-peer timeout;
- ``heal()``: everything flows again and new connections are accepted.

Connect the client to ``fault.url`` (or ``fault.connect(client)``), or hand
``network_fault`` a connected ``Client``, which it moves onto the proxy. Its threads are named
``pouchsync-fault-proxy…`` and all joined when the ``with`` block ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .proxy import FaultProxy

__all__ = ["NetworkFault", "network_fault"]


class NetworkFault:
    """A fault proxy in front of one sync server URL. Thread-safe; ``close()`` is
    idempotent."""

    def __init__(self, server_url: str) -> None:
        parts = urlsplit(server_url)
        if parts.scheme not in ("ws", "http") or not parts.port:
            raise ValueError(f"network_fault needs a ws://host:port/ URL with a port, "
                             f"got {server_url!r} (wss is not proxied)")
        self.target = server_url
        self._proxy = FaultProxy(parts.port, parts.hostname or "127.0.0.1")
        self.url = urlunsplit(("ws", f"127.0.0.1:{self._proxy.port}", parts.path or "/",
                               parts.query, ""))

    def connect(self, client: Any) -> Any:
        """``client.connect(self.url)``: a not yet connected client, through the proxy."""
        return client.connect(self.url)

    def cut(self) -> int:
        """Reset every open connection and refuse new ones until ``heal()``; returns
        how many were reset."""
        self._proxy.refuse = True
        return self._proxy.cut_all()

    def drop(self) -> int:
        """Reset every open connection once (new ones go through); how many."""
        return self._proxy.cut_all()

    def stall(self) -> int:
        """Stop forwarding on every connection, open or new, until ``heal()``."""
        return self._proxy.stall_all()

    def heal(self) -> None:
        """Undo ``cut()`` and ``stall()``."""
        self._proxy.refuse = False
        self._proxy.resume()

    @property
    def open_connections(self) -> int:
        return self._proxy.open_connections

    @property
    def connections_total(self) -> int:
        """Connections accepted so far (refused ones are not counted)."""
        return self._proxy.connections_total

    def close(self) -> None:
        """Reset every connection and join every proxy thread."""
        self._proxy.close()

    def __enter__(self) -> NetworkFault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<NetworkFault {self.url} -> {self.target}>"


@contextlib.contextmanager
def network_fault(client_or_url: Any) -> Iterator[NetworkFault]:
    """A ``NetworkFault`` in front of a sync server, closed when the block ends.

    Give it the server's URL, or anything with a ``url`` (a ``SyncServer``, the
    ``pouchsync_server`` fixture) and connect a client to ``fault.url``; or give it a
    connected ``Client``: it is moved onto the proxy (``Client.redirect``) for the
    block, its syncs resuming there, and moved back to the server after.
    """
    from ..client import Client
    from ..errors import PouchSyncError

    client = client_or_url if isinstance(client_or_url, Client) else None
    url = client_or_url if isinstance(client_or_url, str) else getattr(client_or_url, "url", None)
    if not isinstance(url, str):
        raise TypeError("network_fault needs a server URL, an object with .url or a connected "
                        f"Client, not {type(client_or_url).__name__}")
    fault = NetworkFault(url)
    try:
        if client is not None:
            client.redirect(fault.url)
        yield fault
    finally:
        fault.heal()
        if client is not None:
            with contextlib.suppress(PouchSyncError):  # closed in the block: stays closed
                client.redirect(url)
        fault.close()
