"""``RemoteDatabase``: the ``Database`` interface as calls over a granted channel.

Each method sends one ``call`` whose ``args`` are the method's own keyword arguments and
blocks for its ``reply``; many threads may call at once (replies are matched by id).
Errors come back as the same exception classes (``errors.error_from_json``); a lost
connection fails in-flight calls with ``TransportError`` (retryable). A reply of the
wrong shape (``changes`` without a list of rows, ``revs_diff`` not an object...) raises
``ProtocolError`` naming the op (``protocol.ops.decode_result``): not retryable, so a
``Sync`` meeting one ends with state ``error`` rather than retrying forever. A longpoll
``changes`` waits on the server (which follows the database once for all channels), so
its reply deadline is the longpoll timeout plus a margin.

Thread safety: fully thread-safe. One instance lives as long as its channel; after a
reconnect the sync asks for a new channel and builds a new ``RemoteDatabase``, whose
``identity()`` is the same (server URL + database name + the grant's uuid), so
replication checkpoints carry over.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Callable

from ..errors import BadRequest
from ..protocol import ops
from ..store.base import Database
from .channel import Channel
from .transport import safe_url

__all__ = ["RemoteDatabase"]

log = logging.getLogger(__name__)

#: seconds a longpoll reply may take beyond its own timeout (server and network latency)
LONGPOLL_MARGIN = 15.0
#: a longpoll's wait when the caller gives no timeout (CouchDB's default is 60 s)
DEFAULT_LONGPOLL = 60.0


def _plain(value: Any) -> Any:
    """A mapping as a dict (JSON-encodable), anything else as is: the server validates."""
    if isinstance(value, Mapping) and not isinstance(value, dict):
        return dict(value)
    return value


def _plain_list(values: Any) -> Any:
    if isinstance(values, (list, tuple)):
        return [_plain(v) for v in values]
    return values


def _given(**kwargs: Any) -> dict[str, Any]:
    """Only the arguments that differ from ``None``: the server applies its defaults."""
    return {key: value for key, value in kwargs.items() if value is not None}


def _changes_args(*, since: Any, limit: int | None, include_docs: bool, conflicts: bool,
                  style: str, doc_ids: Sequence[str] | None,
                  selector: Mapping[str, Any] | None, feed: str, descending: bool = False,
                  timeout: float | None = None, attachments: bool = False) -> dict[str, Any]:
    """A ``changes`` call's args: what was given, flags only when set."""
    args = _given(since=since, limit=limit,
                  doc_ids=list(doc_ids) if doc_ids is not None else None,
                  selector=dict(selector) if selector is not None else None,
                  timeout=timeout)
    args["style"] = style
    args["feed"] = feed
    for key, flag in (("include_docs", include_docs), ("conflicts", conflicts),
                      ("descending", descending), ("attachments", attachments)):
        if flag:
            args[key] = True
    return args


def _live_options(args: Mapping[str, Any]) -> dict[str, Any]:
    """The subscription options of a longpoll ``changes`` call's args."""
    options = {key: args[key] for key in ("style", "include_docs", "conflicts",
                                          "doc_ids", "selector") if key in args}
    if "limit" in args:
        options["batch"] = max(1, int(args["limit"]))
    return options


class RemoteDatabase(Database):
    """A database on a sync server, reached through one channel of a client connection.

    Example::

        import pouchsync_sync as ps

        shared = ps.LocalDatabase(":memory:", name="todos")
        shared.put({"_id": "milk", "title": "Buy milk"})
        server = ps.create_server(lambda credentials, name: shared).start(port=0)
        with ps.create_client() as client:
            client.connect(server.url)
            remote = client.database("todos")              # granted, then the Database calls
            print(remote.get("milk")["title"])              # Buy milk
        server.stop()
    """

    write_round_trip = True

    def __init__(self, channel: Channel, *, url: str | None = None) -> None:
        self._channel = channel
        self.name = channel.db
        self._url = safe_url(url if url is not None else channel.link.url)
        self.uuid = channel.uuid or ""
        self.read_only = channel.read_only
        self._unknown_ops: set[str] = set()  # ops an older server said it does not know

    def __repr__(self) -> str:
        return f"<RemoteDatabase {self.name!r} at {self._url}>"

    @property
    def max_message_size(self) -> int | None:
        """The largest message the server takes (its welcome's limit), None if it set none."""
        return self._channel.link.max_message_size

    def _call(self, op: str, args: Mapping[str, Any], timeout: float | None = None) -> Any:
        """One call's result, its shape checked (``ProtocolError`` naming the op)."""
        return ops.decode_result(op, self._channel.call(op, args, timeout=timeout), args)

    # -- identity -----------------------------------------------------------------
    def identity(self) -> str:
        return f"{self._url}#{self.name}#{self.uuid}"

    def info(self) -> dict[str, Any]:
        return self._call("info", {})

    # -- documents ----------------------------------------------------------------
    def put(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        return self._call("put", {"doc": _plain(doc)})

    def post(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        return self._call("post", {"doc": _plain(doc)})

    def get(self, doc_id: str, *, rev: str | None = None, revs: bool = False,
            revs_info: bool = False, conflicts: bool = False,
            open_revs: Sequence[str] | str | None = None, latest: bool = False,
            attachments: bool = False) -> Any:
        if open_revs is not None and not isinstance(open_revs, str):
            open_revs = list(open_revs)
        args = _given(doc_id=doc_id, rev=rev, open_revs=open_revs)
        for key, flag in (("revs", revs), ("revs_info", revs_info), ("conflicts", conflicts),
                          ("latest", latest), ("attachments", attachments)):
            if flag:
                args[key] = True
        return self._call("get", args)

    def delete(self, doc_id: str, rev: str) -> dict[str, Any]:
        return self._call("delete", {"doc_id": doc_id, "rev": rev})

    def bulk_docs(self, docs: Sequence[Mapping[str, Any]], *,
                  new_edits: bool = True) -> list[dict[str, Any]]:
        return self._call("bulk_docs", {"docs": _plain_list(docs),
                                        "new_edits": new_edits})

    def write_missing(self, docs: Sequence[Mapping[str, Any]]
                      ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """One ``write_missing`` call (the server answers indexes into ``docs``); on a
        server without that op, ``revs_diff`` then ``bulk_docs`` as any database."""
        answer = self._call_if_known("write_missing", {"docs": _plain_list(docs)})
        if answer is None:
            return super().write_missing(docs)
        return [docs[i] for i in answer["written"]], answer["failures"]

    def write_missing_texts(self, rows: Sequence[Sequence[Any]]
                            ) -> tuple[list[int], list[dict[str, Any]]]:
        """One ``write_missing_texts`` call; on a server without it, the default
        (``write_missing`` of the rows as docs)."""
        if not isinstance(rows, (list, tuple)):
            raise BadRequest("rows must be a list")
        sent = rows if rows.__class__ is list else list(rows)  # tuple rows go as arrays
        answer = self._call_if_known("write_missing_texts", {"rows": sent})
        if answer is None:
            return super().write_missing_texts(rows)
        return answer["written"], answer["failures"]

    def changes_texts(self, *, since: Any = 0, limit: int | None = None,
                      max_bytes: int | None = None) -> dict[str, Any]:
        """One ``changes_texts`` call; on a server without it, the default (a
        ``changes(include_docs)`` call)."""
        answer = self._call_if_known("changes_texts", _given(since=since, limit=limit,
                                                             max_bytes=max_bytes))
        if answer is None:
            return super().changes_texts(since=since, limit=limit, max_bytes=max_bytes)
        return answer

    def _call_if_known(self, op: str, args: Mapping[str, Any]) -> Any:
        """``_call(op, args)``, or None when the server does not know ``op`` (an older
        server: remembered, it is not asked again)."""
        if op in self._unknown_ops:
            return None
        try:
            return self._call(op, args)
        except BadRequest as exc:
            if not exc.reason.startswith(f"unknown op {op!r}"):
                raise
        log.info("%s: the server does not know %s; using the long way", self._url, op)
        self._unknown_ops.add(op)
        return None

    def all_docs(self, *, include_docs: bool = False, keys: Sequence[str] | None = None,
                 startkey: str | None = None, endkey: str | None = None,
                 limit: int | None = None, skip: int = 0,
                 descending: bool = False, conflicts: bool = False) -> dict[str, Any]:
        args = _given(keys=list(keys) if keys is not None else None, startkey=startkey,
                      endkey=endkey, limit=limit)
        if include_docs:
            args["include_docs"] = True
        if skip:
            args["skip"] = skip
        if descending:
            args["descending"] = True
        if conflicts:
            args["conflicts"] = True
        return self._call("all_docs", args)

    def changes(self, *, since: Any = 0, limit: int | None = None,
                include_docs: bool = False, conflicts: bool = False,
                style: str = "main_only", doc_ids: Sequence[str] | None = None,
                selector: Mapping[str, Any] | None = None, descending: bool = False,
                feed: str = "normal", timeout: float | None = None,
                attachments: bool = False) -> dict[str, Any]:
        args = _changes_args(since=since, limit=limit, include_docs=include_docs,
                             conflicts=conflicts, style=style, doc_ids=doc_ids,
                             selector=selector, descending=descending, feed=feed,
                             timeout=timeout, attachments=attachments)
        if feed == "longpoll" and not descending and not attachments:
            return self._longpoll(args, timeout)
        deadline: float | None = None
        if feed == "longpoll":
            deadline = None if timeout is None else timeout + LONGPOLL_MARGIN
            if deadline is not None and deadline < self._channel.link.call_timeout:
                deadline = self._channel.link.call_timeout
        return self._call("changes", args, deadline)

    def listen_changes(self, wake: Callable[[], Any], *, since: Any = 0,
                       limit: int | None = None, include_docs: bool = False,
                       conflicts: bool = False, style: str = "main_only",
                       doc_ids: Sequence[str] | None = None,
                       selector: Mapping[str, Any] | None = None) -> Callable[[], None]:
        """Call ``wake()`` (on the connection's reader thread; it must not block) once
        changes after ``since`` have come, without a thread waiting: the channel's live
        subscription stays open, and the next ``changes(feed="longpoll", ...)`` with the
        same arguments and any timeout (0 too) takes the batch that came. Returns the
        function that stops the calls (the subscription stays for that next read)."""
        args = _changes_args(since=since, limit=limit, include_docs=include_docs,
                             conflicts=conflicts, style=style, doc_ids=doc_ids,
                             selector=selector, feed="longpoll")
        self._channel.listen(since, _live_options(args), wake)
        return self._channel.unlisten

    def _longpoll(self, args: dict[str, Any], timeout: float | None) -> dict[str, Any]:
        """A longpoll read as a wait on the channel's live subscription (see
        ``Channel.wait_changes``: kept open between waits that continue one another).

        The answer carries ``pending`` when the server's message did (0 says the read
        was caught up, so a replicator need not read again to learn it); without it the
        caller reads on normally. On timeout a normal read gives the usual shape (and
        ``last_seq``).
        """
        since = args.get("since", 0)
        wait = DEFAULT_LONGPOLL if timeout is None else float(timeout)
        msg = self._channel.wait_changes(since, _live_options(args), wait)
        if msg is not None:
            answer = {"results": msg.get("results") or [], "last_seq": msg.get("last_seq")}
            if msg.get("pending") is not None:
                answer["pending"] = msg["pending"]
            return ops.decode_result("changes", answer, args)
        normal = {key: value for key, value in args.items() if key != "timeout"}
        normal["feed"] = "normal"
        return self._call("changes", normal)

    def revs_diff(self, revs: Mapping[str, Sequence[str]]) -> dict[str, Any]:
        if isinstance(revs, Mapping):
            revs = {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in revs.items()}
        return self._call("revs_diff", {"revs": revs})

    def bulk_get(self, docs: Sequence[Mapping[str, Any]], *, revs: bool = False,
                 latest: bool = False, attachments: bool = False) -> dict[str, Any]:
        args: dict[str, Any] = {"docs": _plain_list(docs)}
        if revs:
            args["revs"] = True
        if latest:
            args["latest"] = True
        if attachments:
            args["attachments"] = True
        return self._call("bulk_get", args)

    def get_attachment(self, doc_id: str, name: str, rev: str | None = None) -> bytes:
        return self._call("get_attachment", _given(doc_id=doc_id, name=name, rev=rev))

    # -- lifecycle ----------------------------------------------------------------
    def close(self) -> None:
        """Close the channel (in-flight calls fail with ``Cancelled``). Idempotent."""
        self._channel.close()

