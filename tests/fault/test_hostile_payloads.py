"""Issue 16, continued from ``test_hostile_clients.py`` (same bystander and bounds):
hostile payloads rather than hostile sockets. Conflicting revisions by the ten
thousand, ``doc_ids`` lists past SQLite's variable limit, internal errors, client
misbehaviour that must not log at ERROR, and ``_local/`` documents on read-only grants.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import time
from typing import Any

import pytest

from pouchsync_sync import LocalDatabase
from pouchsync_sync.errors import ServerError
from tests.rawpeer import RawPeer

from .attackers import (  # noqa: F401 - public is a fixture
    BYSTANDER_BOUND,
    MB,
    Bystander,
    call,
    left_cleanly,
    open_channel,
    public,
    request_threads,
)
from .proxy import wait_until

# -- 5. revision-tree merges ------------------------------------------------------------------

def test_many_conflicting_revisions_merge_fast_and_stop_at_max_leaves(hub, servers, full_run) -> None:
    server = servers(hub.on_request)
    hub.db("bystander").put({"_id": "b"})
    bystander = Bystander(server.url)
    attacker = RawPeer(server.url, timeout=60)
    open_channel(attacker, "poison")
    batches = 5 if full_run else 2
    try:
        for b in range(batches):
            docs = [{"_id": "poison", "_rev": "1-" + hashlib.md5(f"{b}-{i}".encode()).hexdigest()}
                    for i in range(10_000)]
            answer = call(attacker, "write_missing", {"docs": docs}, call_id=b + 1, timeout=60)
            failures = answer["ok"]["failures"]
            assert len(answer["ok"]["written"]) + len(failures) == 10_000 or b > 0, answer["ok"].keys()
            assert failures and all(f["error"] == "too_large" and "max_leaves" in f["reason"]
                                    for f in failures)
        # another client's put on the same database is not held up
        started = time.monotonic()
        hub.db("poison").put({"_id": "unrelated"})
        put_took = time.monotonic() - started
    finally:
        calls, worst = bystander.stop()
        attacker.close()
    leaves = hub.db("poison").changes(style="all_docs", doc_ids=["poison"])["results"][0]["changes"]
    print(f"\npoison: {batches} x 10,000 conflicting revisions; {len(leaves)} leaves kept; "
          f"put {put_took * 1000:.0f} ms; bystander {calls} calls, worst {worst * 1000:.0f} ms")
    assert len(leaves) == 1000
    assert put_took < BYSTANDER_BOUND and calls > 0 and worst < BYSTANDER_BOUND
    left_cleanly(server)


def test_max_leaves_is_configurable_on_the_store(tmp_path) -> None:
    db = LocalDatabase(tmp_path / "leaves.sqlite", max_leaves=3)
    docs = [{"_id": "c", "_rev": f"1-{i:032x}"} for i in range(5)]
    failures = db.bulk_docs(docs, new_edits=False)
    assert [f["rev"] for f in failures] == [f"1-{i:032x}" for i in (3, 4)]
    assert failures[0]["error"] == "too_large" and "more than 3 leaf revisions" in failures[0]["reason"]
    # extending an existing leaf adds no leaf: still accepted
    failures = db.bulk_docs([{"_id": "c", "_rev": "2-a" + "0" * 31,
                              "_revisions": {"start": 2, "ids": ["a" + "0" * 31, f"{0:032x}"]}}],
                            new_edits=False)
    assert failures == []
    assert len(db.get("c", conflicts=True)["_conflicts"]) == 2
    db.close()
    with pytest.raises(Exception, match="max_leaves"):
        LocalDatabase(":memory:", max_leaves=0)


# -- 6. long doc_ids lists, internal errors ---------------------------------------------------

def test_doc_ids_beyond_sqlites_variable_limit(hub, servers, full_run) -> None:
    server = servers(hub.on_request, max_message_size=64 * MB)
    db = hub.db("ids")
    db.bulk_docs([{"_id": f"d{i}"} for i in range(10)])
    ids = [f"d{i}" for i in range(40_000 if not full_run else 260_000)]  # SQLite allows 32,766
    assert len(db.changes(doc_ids=ids)["results"]) == 10
    peer = RawPeer(server.url)
    open_channel(peer, "ids")
    answer = call(peer, "changes", {"doc_ids": ids})
    assert [r["id"] for r in answer["ok"]["results"]] == [f"d{i}" for i in range(10)]
    peer.send({"type": "subscribe", "ch": 1, "sub": 1, "since": 0, "doc_ids": ids})
    pushed, _ = peer.until(lambda m: m.get("sub") == 1, timeout=30)
    assert pushed["type"] == "changes" and len(pushed["results"]) == 10, pushed
    keys = call(peer, "all_docs", {"keys": ids[:10_000]}, call_id=2)
    assert len(keys["ok"]["rows"]) == 10_000
    # a read whose reply grows with its list is refused past max_rows, naming it
    for call_id, (op, args) in enumerate([("all_docs", {"keys": ids[:10_001]}),
                                          ("bulk_get", {"docs": [{"id": i} for i in ids[:10_001]]})], 3):
        refused = call(peer, op, args, call_id=call_id)
        assert refused["error"]["status"] == 400 and "max_rows" in refused["error"]["reason"], refused
    assert len(db.all_docs(keys=ids[:35_000])["rows"]) == 35_000  # the store itself: chunked
    peer.close()
    left_cleanly(server)


class _Broken(LocalDatabase):
    """A store whose ``info`` fails as SQLite would (a seam: what on_request returns)."""

    def info(self) -> dict[str, Any]:
        raise ServerError("SQLite error: database disk image is malformed")


def test_internal_error_text_never_reaches_the_client(servers, caplog, tmp_path) -> None:
    broken = _Broken(tmp_path / "broken.sqlite")
    server = servers(lambda credentials, name: broken)
    caplog.set_level(logging.INFO)
    peer = RawPeer(server.url)
    open_channel(peer, "broken")
    answer = call(peer, "info", {})
    peer.close()
    broken.close()
    assert answer["error"] == {"status": 500, "error": "internal_server_error",
                               "reason": "internal server error"}
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("SQLite error" in (r.getMessage() + str(r.exc_info)) for r in logged)


# -- 7. client misbehaviour never logs at ERROR ------------------------------------------------

def test_client_misbehaviour_is_not_logged_at_error(hub, servers, caplog) -> None:
    caplog.set_level(logging.INFO)
    server = servers(hub.on_request, hello_timeout=0.5)
    port = int(server.url.rstrip("/").rsplit(":", 1)[1])
    sent = [b"", b"GET / HTTP/1.1 extra\r\n\r\n", b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n", b"GET / HT",
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"]
    socks = []
    for payload in sent * 10:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            sock.sendall(payload)
        except OSError:
            pass
        socks.append(sock)
    answers = []
    for sock in socks:
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except OSError:
            pass
        sock.close()
        answers.append(data.split(b"\r\n", 1)[0])
    assert b"HTTP/1.1 400 Bad Request" in answers[-1] or answers[-1].startswith(b"HTTP/1.1 400")
    assert wait_until(lambda: not request_threads(), timeout=10)
    errors = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors[:3]
    http = [r for r in caplog.records if r.name == "pouchsync_sync.server.http"]
    assert 0 < len(http) <= 20  # rate-limited: 20 lines a minute


# -- also seen: _local/ documents on read-only grants -------------------------------------------

def test_local_docs_of_read_only_grants_are_capped(hub, servers, public) -> None:
    server = servers(public, max_local_docs=3)
    db = hub.db("public-local")
    db.put({"_id": "_local/existing", "n": 1})
    peer = RawPeer(server.url)
    open_channel(peer, "public-local", credentials=None)
    big = call(peer, "put", {"doc": {"_id": "_local/big", "blob": "x" * 10 * MB}})
    assert big["error"]["status"] == 413 and "max_local_doc_size" in big["error"]["reason"], big
    revs = []
    for n in range(3):
        ok = call(peer, "put", {"doc": {"_id": f"_local/cp{n}", "n": n}}, call_id=10 + n)
        assert ok["ok"]["ok"] is True, ok
        revs.append(ok["ok"]["rev"])
    over = call(peer, "put", {"doc": {"_id": "_local/cp3"}}, call_id=20)
    assert over["error"]["status"] == 403 and "max_local_docs" in over["error"]["reason"], over
    # rewriting existing ones stays allowed (checkpoints are rewritten every batch)
    again = call(peer, "put", {"doc": {"_id": "_local/cp0", "_rev": revs[0], "n": 9}}, call_id=21)
    existing = call(peer, "put", {"doc": {"_id": "_local/existing", "n": 2,
                                           "_rev": db.get("_local/existing")["_rev"]}}, call_id=22)
    assert again["ok"]["ok"] is True and existing["ok"]["ok"] is True, (again, existing)
    peer.close()
    with pytest.raises(Exception):
        db.get("_local/big")
    # a read-write grant is not capped
    writer = RawPeer(server.url)
    open_channel(writer, "rw-local")
    fine = call(writer, "put", {"doc": {"_id": "_local/big", "blob": "x" * MB}})
    writer.close()
    assert fine["ok"]["ok"] is True
    left_cleanly(server)


def test_pulls_past_max_local_docs_still_complete(hub, servers, public, clients, local, caplog) -> None:
    """Past the cap a client's checkpoint on a read-only source is refused (403); the
    replicator then treats the source as read-only and the pull completes anyway."""
    caplog.set_level(logging.WARNING, logger="pouchsync_sync.replication.checkpoint")
    server = servers(public, max_local_docs=1)
    hub.db("public-many").bulk_docs([{"_id": f"d{i}"} for i in range(20)])
    client = clients().connect(server.url)
    for n in range(3):
        mine = local(f"reader{n}")
        result = client.sync(mine, remote_name="public-many", direction="pull").wait(timeout=30)
        assert mine.info()["doc_count"] == 20, (n, result)
    refused = [r.getMessage() for r in caplog.records if "refuses checkpoint writes" in r.getMessage()]
    assert refused and "max_local_docs" in refused[0], refused
    left_cleanly(server, connections=1)
