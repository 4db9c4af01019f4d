"""The server's options (limits and knobs), checked once at ``create_server``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = ["ServerOptions"]


@dataclass(frozen=True)
class ServerOptions:
    """Every ``create_server`` option with its default (docs/protocol.md §8)."""

    #: largest message accepted, bytes (simple-websocket closes 1009 above it)
    max_message_size: int = 64 * 1024 * 1024
    #: largest frame accepted before the welcome (the hello), bytes, inflated size
    max_hello_size: int = 8192
    #: largest reply to one call, bytes (larger: 413 too_large); None: max_message_size
    max_reply_size: int | None = None
    #: most rows a changes, changes_texts or all_docs call returns (a smaller limit
    #: is kept; the caller pages on, from last_seq or startkey)
    max_rows: int = 10000
    #: bytes of replies the server holds for all its sockets at once, unsent (a peer
    #: that does not read); past it the socket holding the most is closed (1008)
    reply_memory: int = 256 * 1024 * 1024
    #: largest ``_local/`` document a read-only grant may write, bytes of JSON
    max_local_doc_size: int = 64 * 1024
    #: new ``_local/`` ids read-only grants may create per database (and process)
    max_local_docs: int = 100
    #: channels open or opening at once per socket
    max_channels: int = 100
    #: calls in flight at once per socket (more are answered 429)
    max_calls: int = 64
    #: live subscriptions at once per socket (more are ended with 429)
    max_subscriptions: int = 1000
    #: seconds a new socket has to send its hello
    hello_timeout: float = 10.0
    #: seconds between pings; a peer that missed the previous one is dropped (None: off)
    ping_interval: float | None = 20.0
    #: tasks of one socket (on_request, calls, live pushes) running at once on the pool
    workers: int = 8
    #: threads of the process-wide pool that runs every socket's tasks (made lazily,
    #: ended after 2 s idle)
    pool_size: int = 64
    #: most rows per pushed ``changes`` message
    live_batch: int = 500
    #: default and maximum timeout of a longpoll ``changes`` call, seconds
    longpoll_timeout: float = 60.0
    max_longpoll_timeout: float = 300.0
    #: timeout of each longpoll the change follower makes, which bounds how long stop()
    #: waits for a follower. None: 0.5 s on the embedded store (its longpoll re-reads
    #: SQLite every 0.25 s anyway), 5 s on other databases (one request per 5 s idle)
    follow_timeout: float | None = None
    #: seconds a single send may stay blocked (a peer that stopped reading) before
    #: the server closes the socket
    send_timeout: float = 60.0
    #: errors on one socket before the server closes it
    max_errors: int = 100
    #: bytes one read of a socket asks for; while reads come back big (batches of
    #: docs) they ask for up to 1 MiB (``transport.MAX_RECEIVE``)
    receive_bytes: int = 65536
    #: what the welcome says the server is (None: "pouchsync_sync/<version>")
    agent: str | None = None

    def __post_init__(self) -> None:
        if self.max_reply_size is not None and (type(self.max_reply_size) is not int
                                                or self.max_reply_size < 1):
            raise ValueError(f"max_reply_size must be a positive integer or None, "
                             f"not {self.max_reply_size!r}")
        for name in ("max_message_size", "max_hello_size", "max_rows", "reply_memory",
                     "max_local_doc_size", "max_local_docs",
                     "max_channels", "max_calls", "max_subscriptions", "workers", "pool_size",
                     "live_batch", "max_errors", "receive_bytes"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        for name in ("hello_timeout", "longpoll_timeout", "max_longpoll_timeout",
                     "follow_timeout", "send_timeout"):
            value = getattr(self, name)
            if name == "follow_timeout" and value is None:
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
        if self.ping_interval is not None and (not isinstance(self.ping_interval, (int, float))
                                               or self.ping_interval <= 0):
            raise ValueError(f"ping_interval must be positive or None, not {self.ping_interval!r}")

    @classmethod
    def from_kwargs(cls, options: dict[str, Any]) -> ServerOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown server option {unknown[0]!r} "
                            f"(known: {', '.join(sorted(known))})")
        return cls(**options)

    def limits(self) -> dict[str, Any]:
        """The limits announced in the welcome."""
        return {
            "max_message_size": self.max_message_size,
            "max_channels": self.max_channels,
            "max_calls": self.max_calls,
            "max_subscriptions": self.max_subscriptions,
            "ping_interval": None if self.ping_interval is None else float(self.ping_interval),
            "hello_timeout": float(self.hello_timeout),
            "live_batch": self.live_batch,
        }

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
