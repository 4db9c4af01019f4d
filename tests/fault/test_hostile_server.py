"""A server that answers calls with replies of the wrong shape.

The client checks each reply's shape where replies enter it (``RemoteDatabase``, via
``protocol.ops.decode_result``): a wrong one raises ``ProtocolError`` naming the op,
both for a direct call and inside a sync, which then ends with state ``error`` carrying
that ``ProtocolError`` (not retried: a server that breaks the protocol would only break
it again) -- never an ``AttributeError``/``TypeError`` from deep in the replicator, never
a hang, no thread left (the autouse leak check).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, Callable

import pytest

from pouchsync_sync import LocalDatabase
from pouchsync_sync.client import Client
from pouchsync_sync.errors import ProtocolError
from pouchsync_sync.signals import sync_error
from tests.memtransport import MemoryTransport

from .hostile import MemoryHostileServer

# op -> wrong ``ok`` values a reply to it may carry
BAD_REPLIES: dict[str, list[Any]] = {
    "info": [[], 5, "db", None],
    "get": [5, [], "doc", {"no_id": 1}],
    "put": [[], {"ok": True}, {"ok": True, "id": 5, "rev": "1-a"}, 7],
    "post": [None, {"ok": True, "id": "a"}],
    "delete": ["ok", {"ok": True, "rev": 1}],
    "bulk_docs": [{"ok": True}, [1, 2], "x"],
    "write_missing": [[], {"written": [0]}, {"written": [5], "failures": []},
                      {"written": ["0"], "failures": []}, {"written": [], "failures": [1]}],
    "all_docs": [[], {"rows": 5}, {"rows": [1]}],
    "changes": [{"results": 5}, [1], {"results": [1, 2]}, {"no": "results"},
                {"results": [{"id": "a", "changes": "1-x"}]},
                {"results": [{"id": "a", "changes": [5]}]},
                {"results": [{"changes": [{"rev": "1-x"}]}]},
                {"results": [], "last_seq": 1, "pending": "0"}],
    "changes_texts": [{"results": 5}, [1], {"results": [1, 2]}, {"no": "results"},
                      {"results": [[1, "a", ["1-x"], False]]},
                      {"results": [[1, 5, ["1-x"], False, None]]},
                      {"results": [[1, "a", "1-x", False, None]]},
                      {"results": [[1, "a", [5], False, None]]},
                      {"results": [[1, "a", ["1-x"], 0, None]]},
                      {"results": [[1, "a", ["1-x"], False, {"x": 1}]]},
                      {"results": [], "last_seq": 1, "pending": "0"}],
    "write_missing_texts": [[], {"written": [0]}, {"written": [5], "failures": []},
                            {"written": ["0"], "failures": []}, {"written": [], "failures": [1]}],
    "revs_diff": ["abc", [], {"a": [1]}, {"a": {"missing": "1-x"}},
                  {"a": {"missing": ["1-x"], "possible_ancestors": [1]}}],
    "bulk_get": [{"results": [1, 2]}, [], {"results": 5},
                 {"results": [{"id": "a", "docs": 5}]}, {"results": [{"id": "a", "docs": [3]}]}],
    "get_attachment": [{"data": 5}, [], {"nodata": "AAAA"}],
}

DIRECT_CALLS: dict[str, Callable[[Any], Any]] = {
    "info": lambda db: db.info(),
    "get": lambda db: db.get("a"),
    "put": lambda db: db.put({"_id": "new"}),
    "post": lambda db: db.post({"x": 1}),
    "delete": lambda db: db.delete("a", "1-x"),
    "bulk_docs": lambda db: db.bulk_docs([{"_id": "b"}]),
    "write_missing": lambda db: db.write_missing(
        [{"_id": "w", "_rev": "1-a", "_revisions": {"start": 1, "ids": ["a"]}}]),
    "all_docs": lambda db: db.all_docs(),
    "changes": lambda db: db.changes(since=0, style="all_docs"),
    "changes_texts": lambda db: db.changes_texts(since=0),
    "write_missing_texts": lambda db: db.write_missing_texts([["w", "1-a", "{}"]]),
    "revs_diff": lambda db: db.revs_diff({"a": ["1-x"]}),
    "bulk_get": lambda db: db.bulk_get([{"id": "a"}], revs=True),
    "get_attachment": lambda db: db.get_attachment("a", "att.txt"),
}

CASES = [(op, i) for op, values in BAD_REPLIES.items() for i in range(len(values))]


@pytest.fixture
def network() -> Iterator[MemoryTransport]:
    net = MemoryTransport()
    yield net
    net.close()
    assert not net.errors(), net.errors()


@pytest.fixture
def hostile(tmp_path, network) -> Iterator[Callable[..., MemoryHostileServer]]:
    """``make(bad)`` -> a hostile server over a fresh database holding doc "a"."""
    made: list[LocalDatabase] = []

    def make(bad: dict[str, Any]) -> MemoryHostileServer:
        db = LocalDatabase(tmp_path / f"hostile-{len(made)}.sqlite", name="hostile")
        db.put({"_id": "a", "x": 1})
        made.append(db)
        return MemoryHostileServer(db, bad, network, f"ws://hostile-{len(made)}.test/")

    yield make
    for db in made:
        db.close()


@pytest.fixture
def client(network) -> Iterator[Client]:
    # a live sync reads the changes once its subscription is quiet this long
    c = Client(initial_delay=0.02, max_delay=0.25, jitter=0.0, longpoll_timeout=0.5,
               transport=network)
    yield c
    c.close()


@pytest.mark.parametrize("op,index", CASES)
def test_a_direct_call_raises_protocol_error_naming_the_op(hostile, client, op: str, index: int) -> None:
    bad = BAD_REPLIES[op][index]
    server = hostile({op: bad})
    db = client.connect(server.url).database("hostile", timeout=10)
    with pytest.raises(ProtocolError, match=op):
        DIRECT_CALLS[op](db)
    # the channel and the connection stay usable: it was one bad reply
    if op != "info":
        assert db.info()["db_name"] == "hostile"


def test_good_replies_pass_the_checks(hostile, client) -> None:
    """The same calls against honest answers (the real database behind the server)."""
    server = hostile({})
    db = client.connect(server.url).database("hostile", timeout=10)
    assert db.get("a")["x"] == 1
    assert db.get("a", open_revs="all")[0]["ok"]["_id"] == "a"
    rev = db.put({"_id": "new"})["rev"]
    assert db.delete("new", rev)["ok"] is True
    assert db.bulk_docs([{"_id": "b"}])[0]["id"] == "b"
    assert [row["id"] for row in db.all_docs()["rows"]] == ["a", "b"]
    assert len(db.changes(since=0, style="all_docs")["results"]) == 3
    assert db.revs_diff({"a": ["9-x"]})["a"]["missing"] == ["9-x"]
    assert [row[1] for row in db.changes_texts(since=0)["results"]] == ["a", "new", "b"]
    assert db.write_missing_texts([["t", "1-t", '{"v":1}']]) == ([0], [])
    assert db.bulk_get([{"id": "a"}], revs=True)["results"][0]["docs"][0]["ok"]["_id"] == "a"


# one bad reply per op a sync calls on the remote side; each is reached by a sync of a
# local database holding "t" (first generation) and "l" (second) with the server's
# holding "a" (second): pull reads the server's changes_texts, diffs and fetches "a",
# checkpoints; push uploads "t" as a text row, diffs "l" and uploads it with bulk_docs;
# only a live sync reads changes (its longpoll once caught up)
SYNC_CASES = [("info", []), ("get", 5), ("changes_texts", {"results": [1, 2]}),
              ("changes_texts", {"results": 5}), ("write_missing_texts", {"written": [9]}),
              ("bulk_get", {"results": [1, 2]}), ("revs_diff", "abc"),
              ("bulk_docs", {"ok": True}), ("put", [])]
LIVE_ONLY = [("changes", {"results": [1, 2]}), ("changes", {"results": 5})]
SYNC_PARAMS = [pytest.param(op, bad, live, id=f"{'live' if live else 'one-shot'}-{op}-{i}")
               for live in (False, True)
               for i, (op, bad) in enumerate(SYNC_CASES + (LIVE_ONLY if live else []))]


@pytest.mark.parametrize("op,bad,live", SYNC_PARAMS)
def test_a_sync_ends_with_the_protocol_error(hostile, client, tmp_path, caplog, op: str,
                                             bad: Any, live: bool) -> None:
    caplog.set_level(logging.WARNING, logger="pouchsync_sync")
    server = hostile({op: bad})
    rev = server.db.get("a")["_rev"]
    server.db.put({"_id": "a", "_rev": rev, "x": 2})
    local = LocalDatabase(tmp_path / "local.sqlite", name="hostile")
    signalled: list[tuple[Any, Any]] = []

    def on_error(sender: Any, **kwargs: Any) -> None:
        signalled.append((sender, kwargs["error"]))

    sync_error.connect(on_error, weak=False)  # before the sync exists: it may end at once
    try:
        local.put({"_id": "l", "_rev": local.put({"_id": "l"})["rev"], "v": 2})
        local.put({"_id": "t"})
        sync = client.connect(server.url).sync(local, live=live)
        with pytest.raises(ProtocolError, match=f"reply to {op} ") as raised:
            sync.wait(timeout=30)
        assert server.called(op)
        assert sync.state.value == "error"
        assert sync.status.last_error is raised.value
        assert sync.join(10)  # its thread sent the signal, then ended
        # one sync_error signal, one round: no retries
        assert [error for sender, error in signalled if sender is sync] == [raised.value]
        assert sync.status.rounds == 1
    finally:
        sync_error.disconnect(on_error)
        client.close()
        local.close()
    crashes = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not crashes, [r.getMessage() for r in crashes]


def test_a_bad_live_push_ends_a_live_sync(hostile, client, tmp_path) -> None:
    """A subscription's ``changes`` message whose rows are not change rows."""
    server = hostile({"subscribe": [1, "two"]})
    local = LocalDatabase(tmp_path / "local.sqlite", name="hostile")
    try:
        sync = client.connect(server.url).sync(local, live=True, direction="pull")
        with pytest.raises(ProtocolError, match="reply to changes"):
            sync.wait(timeout=60)
        assert server.called("subscribe")
        assert local.get("a")["x"] == 1  # the honest part came through first
    finally:
        client.close()
        local.close()
