"""Issue 16: one hostile client cannot stall, exhaust or flood the server.

Each attack runs against an in-process server while a bystander (another socket, on
another database) calls ``info`` in a loop and measures its own latency: every one of
its calls must be answered within ``BYSTANDER_BOUND`` while the attack runs. Memory is
the test process's RSS (the server is in-process): its growth during an attack stays
under the bound each test states. After the attacker leaves, its threads end and the
server holds no reply bytes for it. Each attack is a few seconds; ``--full`` runs the
bigger versions.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import socket
import threading
import time
import tracemalloc
from typing import Any

import pytest

from pouchsync_sync import Grant, LocalDatabase
from pouchsync_sync.errors import ServerError
from tests.rawpeer import RawPeer

from .attackers import Bystander, rss_bytes
from .helpers import TOKEN, thread_stacks
from .proxy import wait_until

BYSTANDER_BOUND = 1.0  # seconds, generous on 2 shared cores (a call takes ~1 ms)
MB = 1024 * 1024


def _session_threads() -> list[str]:
    return [t.name for t in threading.enumerate()
            if t.name.startswith(("pouchsync-server-ws", "pouchsync-server-worker",
                                  "pouchsync-server-longpoll"))]


def _request_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if "process_request_thread" in t.name]


@pytest.fixture
def public(hub):
    """on_request: ``public-*`` databases are granted read-only to anyone (no
    credentials); the others need the token."""
    def on_request(credentials: Any, name: str) -> Any:
        if name.startswith("public"):
            return Grant(hub.db(name), read_only=True)
        return hub.on_request(credentials, name)
    return on_request


def _open(peer: RawPeer, db: str, credentials: Any = TOKEN, ch: int = 1) -> None:
    peer.send({"type": "open", "ch": ch, "db": db, "credentials": credentials})
    granted, _ = peer.until(lambda m: m.get("ch") == ch)
    assert granted["type"] == "granted", granted


def _call(peer: RawPeer, op: str, args: dict[str, Any], call_id: int = 1, *,
          timeout: float = 30.0) -> dict[str, Any]:
    peer.send({"type": "call", "ch": 1, "id": call_id, "op": op, "args": args})
    answer, _ = peer.until(lambda m: m.get("id") == call_id, timeout=timeout)
    assert isinstance(answer, dict), answer
    return answer


def _left_cleanly(server: Any, connections: int = 0) -> None:
    """The attacker's socket, threads and held replies are gone."""
    assert wait_until(lambda: server.stats()["connections"] <= connections, timeout=20), server.stats()
    assert wait_until(lambda: server.stats()["reply_bytes_held"] == 0, timeout=10), server.stats()
    if connections == 0:
        assert wait_until(lambda: not _session_threads(), timeout=10), thread_stacks(_session_threads())


# -- 1. $regex selectors --------------------------------------------------------------------

@pytest.mark.parametrize("selector, values", [
    ({"_id": {"$regex": "^(.|.|.|.|.|.)*~"}}, None),      # the issue's, on a read-only grant
    ({"_id": {"$regex": "^(x|x)*$"}}, None),
    ({"t": {"$regex": "^(a|a)*$"}}, "a" * 40 + "b"),
], ids=["issue-pattern", "ids-alternation", "value-alternation"])
def test_catastrophic_regex_is_a_400_and_stalls_no_one(hub, servers, public, selector, values) -> None:
    server = servers(public)
    db = hub.db("public-regex")
    db.bulk_docs([{"_id": "x" * 40 + f"{i:04d}", "t": values or "a"} for i in range(200)])
    hub.db("bystander").put({"_id": "b"})
    bystander = Bystander(server.url)
    attacker = RawPeer(server.url)
    _open(attacker, "public-regex", credentials=None)
    before = rss_bytes()
    try:
        started = time.monotonic()
        answer = _call(attacker, "changes", {"selector": selector, "include_docs": True})
        took = time.monotonic() - started
        refused = "error" in answer
        if refused:  # the regex package's engine answers the pattern at once
            assert answer["error"]["status"] == 400, answer
            assert "$regex" in answer["error"]["reason"] and "took over" in answer["error"]["reason"]
        else:
            assert answer["ok"]["results"] == [] and "^(.|" in str(selector), answer
        # the same on a live subscription
        attacker.send({"type": "subscribe", "ch": 1, "sub": 1, "since": 0, "selector": selector})
        ended, _ = attacker.until(lambda m: m.get("sub") == 1 and (m.get("error") or m.get("results")),
                                  timeout=30) if refused else ({}, [])
        assert not refused or ended.get("error", {}).get("status") == 400, ended
        # a harmless regex still works, on the same socket
        fine = _call(attacker, "changes", {"selector": {"_id": {"$regex": "0001$"}}}, call_id=2)
        assert [r["id"] for r in fine["ok"]["results"]] == ["x" * 40 + "0001"]
        # writes to the attacked database go on meanwhile (no database lock held)
        writer_started = time.monotonic()
        db.put({"_id": "written-meanwhile"})
        assert time.monotonic() - writer_started < BYSTANDER_BOUND
    finally:
        calls, worst = bystander.stop()
        attacker.close()
    print(f"\nregex {list(selector.values())[0]}: {'400' if refused else 'answered'} after {took:.2f}s; bystander "
          f"{calls} calls, worst {worst * 1000:.0f} ms; RSS +{(rss_bytes() - before) / MB:.0f} MB")
    assert calls > 0 and worst < BYSTANDER_BOUND
    assert rss_bytes() - before < 100 * MB  # stated bound: 100 MB
    _left_cleanly(server)


def test_regex_patterns_are_bounded_in_length(hub, servers, public) -> None:
    server = servers(public)
    hub.db("public-long").put({"_id": "a"})
    peer = RawPeer(server.url)
    _open(peer, "public-long", credentials=None)
    answer = _call(peer, "changes", {"selector": {"_id": {"$regex": "a" * 5000}}})
    peer.close()
    assert answer["error"]["status"] == 400 and "at most 1000 characters" in answer["error"]["reason"]


# -- 2. big frames before the hello, deflated frames ----------------------------------------

@pytest.mark.parametrize("deflated", [False, True], ids=["plain", "deflated"])
def test_big_frame_before_the_hello_is_closed_unread(hub, servers, public, deflated, full_run) -> None:
    """No credentials: a 60 MB hello (deflated: ~60 KB on the wire) is refused at
    max_hello_size (8 KiB) without being inflated or buffered."""
    server = servers(public)
    hub.db("bystander").put({"_id": "b"})
    size = (60 if full_run else 20) * MB
    hello = '{"type":"hello","versions":[1],"agent":"%s"}' % ("x" * size)
    frames: list[tuple[Any, bytes]] = []
    for _ in range(3):  # framed (masked, compressed) before measuring: the server's share
        peer = RawPeer(server.url, hello=False, deflate=deflated)
        frames.append((peer, peer.frame(hello)))
    del hello
    bystander = Bystander(server.url)  # after the framing (the test's own CPU work)
    before = rss_bytes()
    try:
        for peer, frame in frames:
            peer.send_raw(frame)  # the server closes after 8 KiB: this may fail
            answer = peer.recv() if deflated else peer.until(lambda m: False)[0]
            peer.close()
            assert answer in (("close", 1009), ("gone", None)), answer
        grown = rss_bytes() - before
    finally:
        calls, worst = bystander.stop()
    print(f"\nhello of {size // MB} MB ({'deflated' if deflated else 'plain'}) x3: "
          f"bystander {calls} calls, worst {worst * 1000:.0f} ms; RSS +{grown / MB:.0f} MB")
    assert calls > 0 and worst < BYSTANDER_BOUND
    assert grown < 30 * MB  # stated bound: 30 MB (the server buffers at most 8 KiB)
    _left_cleanly(server)


def test_deflated_frames_inflate_no_further_than_max_message_size(hub, servers, public) -> None:
    server = servers(public, max_message_size=1 * MB)
    hub.db("public-z").put({"_id": "a"})
    peer = RawPeer(server.url, hello=False, deflate=True)
    peer.send('{"type":"hello","versions":[1],"agent":"deflate"}')
    assert peer.recv()["type"] == "welcome"
    peer.send('{"type":"open","ch":1,"db":"public-z","credentials":null}')
    assert peer.recv()["type"] == "granted"
    # compression works for a normal call ...
    peer.send('{"type":"call","ch":1,"id":1,"op":"info","args":{},"pad":"%s"}' % ("y" * 500_000))
    answer = peer.recv()
    assert answer.get("ok", {}).get("doc_count") == 1, answer
    # ... and a message inflating past 1 MB closes the socket (1009): 50 MB of zeros
    before = rss_bytes()
    peer.send('{"type":"call","ch":1,"id":2,"op":"info","args":{},"pad":"%s"}' % ("0" * 50 * MB))
    answer = peer.recv()
    peer.close()
    assert answer in (("close", 1009), ("gone", None)), answer
    assert rss_bytes() - before < 60 * MB  # the sender's own 50 MB string, not the server's
    _left_cleanly(server)


# -- 3. a client that never reads -----------------------------------------------------------

def test_unread_replies_are_bounded_server_wide(hub, servers) -> None:
    """Calls with big replies, never read, on four sockets: the server-wide reply budget
    (reply_memory, 8 MB here) evicts the sockets holding the most, while a bystander is
    served. The attack runs twice: RSS is measured in the first round; the second runs
    under tracemalloc, and after it the Python heap (RSS alone also counts what the
    allocator keeps) is back where it was: nothing of the attacker is kept."""
    server = servers(hub.on_request, reply_memory=8 * MB, send_timeout=60.0, ping_interval=None)
    blob = "x" * 100_000
    hub.db("big").bulk_docs([{"_id": f"d{i:03d}", "blob": blob} for i in range(30)])  # 3 MB
    hub.db("bystander").put({"_id": "b"})
    hub.db("big").all_docs(include_docs=True)  # warm: SQLite's cache is not the attack's
    before = rss_bytes()
    peaks, afters, evictions = [], [], []
    heap = 0
    for round_ in range(2):
        if round_ == 1:
            tracemalloc.start()
            heap = tracemalloc.get_traced_memory()[0]
        bystander = Bystander(server.url)
        peak = 0
        deaf = []
        first = server.stats()["evictions"]
        try:
            for _ in range(4):
                peer = RawPeer(server.url)
                peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                _open(peer, "big")
                for i in range(1, 17):  # 16 x 3 MB = 48 MB asked, never read
                    peer.send({"type": "call", "ch": 1, "id": i, "op": "all_docs",
                               "args": {"include_docs": True}})
                deaf.append(peer)

            def sampled(done: Any) -> bool:
                nonlocal peak
                peak = max(peak, rss_bytes() - before)
                return done()
            assert wait_until(lambda: sampled(lambda: server.stats()["evictions"] > first), timeout=30)
            assert wait_until(lambda: sampled(lambda: server.stats()["connections"] <= 1), timeout=30), \
                server.stats()
        finally:
            calls, worst = bystander.stop()
            for peer in deaf:
                peer.sock.close()
        _left_cleanly(server)
        gc.collect()
        evictions.append(server.stats()["evictions"] - first)
        peaks.append(peak)
        afters.append(tracemalloc.get_traced_memory()[0] - heap if round_ else rss_bytes() - before)
        assert calls > 0 and worst < BYSTANDER_BOUND, (calls, worst)
    tracemalloc.stop()
    print(f"\nunread replies, 2 rounds: evictions {evictions}; bystander worst {worst * 1000:.0f} ms; "
          f"round 1: RSS +{peaks[0] / MB:.0f} MB at most, +{afters[0] / MB:.0f} MB after; round 2: "
          f"Python heap {afters[1] / MB:+.1f} MB after")
    assert peaks[0] < 400 * MB  # stated bound (process-wide RSS, noisy after other tests)
    assert afters[1] < 5 * MB  # the memory comes back: the attacker's replies are freed


def test_a_reply_is_capped_and_pages_are_max_rows(hub, servers) -> None:
    server = servers(hub.on_request, max_reply_size=1 * MB, max_rows=10)
    db = hub.db("pages")
    db.bulk_docs([{"_id": f"d{i:02d}", "blob": "x" * 200_000} for i in range(30)])
    peer = RawPeer(server.url)
    _open(peer, "pages")
    big = _call(peer, "all_docs", {"include_docs": True, "limit": 30})
    assert big["error"]["status"] == 413 and "max_reply_size" in big["error"]["reason"], big
    page = _call(peer, "changes", {}, call_id=2)["ok"]
    assert len(page["results"]) == 10 and page["pending"] == 20
    rest = _call(peer, "changes", {"since": page["last_seq"], "limit": 5}, call_id=3)["ok"]
    assert len(rest["results"]) == 5  # a smaller limit is kept
    peer.close()
    _left_cleanly(server)


# -- 4. trickled handshakes -----------------------------------------------------------------

def test_trickled_handshakes_are_closed_at_one_deadline(hub, servers, caplog, full_run) -> None:
    """Sockets sending one header byte every 0.2 s: each read is quick, the request
    never ends. hello_timeout (1 s here) bounds the whole request."""
    caplog.set_level(logging.INFO)
    server = servers(hub.on_request, hello_timeout=1.0)
    hub.db("bystander").put({"_id": "b"})
    port = int(server.url.rstrip("/").rsplit(":", 1)[1])
    bystander = Bystander(server.url)
    before = set(_request_threads())
    count = 50 if full_run else 20
    socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]
    request = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nX-Slow: " + b"a" * 1000
    pace = threading.Event()
    open_socks = set(range(count))
    started = time.monotonic()
    try:
        for i in range(len(request)):
            for n in list(open_socks):
                try:
                    socks[n].sendall(request[i:i + 1])
                except OSError:
                    open_socks.discard(n)
            if not open_socks or time.monotonic() - started > 10:
                break
            pace.wait(0.2)
        took = time.monotonic() - started
        leftover = lambda: [t for t in set(_request_threads()) - before if t.is_alive()]  # noqa: E731
        assert wait_until(lambda: not leftover(), timeout=10), thread_stacks(t.name for t in leftover())
    finally:
        calls, worst = bystander.stop()
        for sock in socks:
            sock.close()
    print(f"\ntrickled handshakes: {count} sockets closed after {took:.1f}s; bystander {calls} "
          f"calls, worst {worst * 1000:.0f} ms")
    assert not open_socks and took < 8.0  # generous bound for a 1 s deadline
    assert calls > 0 and worst < BYSTANDER_BOUND
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors[:3]


# -- 5. revision-tree merges ------------------------------------------------------------------

def test_many_conflicting_revisions_merge_fast_and_stop_at_max_leaves(hub, servers, full_run) -> None:
    server = servers(hub.on_request)
    hub.db("bystander").put({"_id": "b"})
    bystander = Bystander(server.url)
    attacker = RawPeer(server.url, timeout=60)
    _open(attacker, "poison")
    batches = 5 if full_run else 2
    try:
        for b in range(batches):
            docs = [{"_id": "poison", "_rev": "1-" + hashlib.md5(f"{b}-{i}".encode()).hexdigest()}
                    for i in range(10_000)]
            answer = _call(attacker, "write_missing", {"docs": docs}, call_id=b + 1, timeout=60)
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
    _left_cleanly(server)


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
    _open(peer, "ids")
    answer = _call(peer, "changes", {"doc_ids": ids})
    assert [r["id"] for r in answer["ok"]["results"]] == [f"d{i}" for i in range(10)]
    peer.send({"type": "subscribe", "ch": 1, "sub": 1, "since": 0, "doc_ids": ids})
    pushed, _ = peer.until(lambda m: m.get("sub") == 1, timeout=30)
    assert pushed["type"] == "changes" and len(pushed["results"]) == 10, pushed
    keys = _call(peer, "all_docs", {"keys": ids[:10_000]}, call_id=2)
    assert len(keys["ok"]["rows"]) == 10_000
    # a read whose reply grows with its list is refused past max_rows, naming it
    for call_id, (op, args) in enumerate([("all_docs", {"keys": ids[:10_001]}),
                                          ("bulk_get", {"docs": [{"id": i} for i in ids[:10_001]]})], 3):
        refused = _call(peer, op, args, call_id=call_id)
        assert refused["error"]["status"] == 400 and "max_rows" in refused["error"]["reason"], refused
    assert len(db.all_docs(keys=ids[:35_000])["rows"]) == 35_000  # the store itself: chunked
    peer.close()
    _left_cleanly(server)


class _Broken(LocalDatabase):
    """A store whose ``info`` fails as SQLite would (a seam: what on_request returns)."""

    def info(self) -> dict[str, Any]:
        raise ServerError("SQLite error: database disk image is malformed")


def test_internal_error_text_never_reaches_the_client(servers, caplog, tmp_path) -> None:
    broken = _Broken(tmp_path / "broken.sqlite")
    server = servers(lambda credentials, name: broken)
    caplog.set_level(logging.INFO)
    peer = RawPeer(server.url)
    _open(peer, "broken")
    answer = _call(peer, "info", {})
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
    assert wait_until(lambda: not _request_threads(), timeout=10)
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
    _open(peer, "public-local", credentials=None)
    big = _call(peer, "put", {"doc": {"_id": "_local/big", "blob": "x" * 10 * MB}})
    assert big["error"]["status"] == 413 and "max_local_doc_size" in big["error"]["reason"], big
    revs = []
    for n in range(3):
        ok = _call(peer, "put", {"doc": {"_id": f"_local/cp{n}", "n": n}}, call_id=10 + n)
        assert ok["ok"]["ok"] is True, ok
        revs.append(ok["ok"]["rev"])
    over = _call(peer, "put", {"doc": {"_id": "_local/cp3"}}, call_id=20)
    assert over["error"]["status"] == 403 and "max_local_docs" in over["error"]["reason"], over
    # rewriting existing ones stays allowed (checkpoints are rewritten every batch)
    again = _call(peer, "put", {"doc": {"_id": "_local/cp0", "_rev": revs[0], "n": 9}}, call_id=21)
    existing = _call(peer, "put", {"doc": {"_id": "_local/existing", "n": 2,
                                           "_rev": db.get("_local/existing")["_rev"]}}, call_id=22)
    assert again["ok"]["ok"] is True and existing["ok"]["ok"] is True, (again, existing)
    peer.close()
    with pytest.raises(Exception):
        db.get("_local/big")
    # a read-write grant is not capped
    writer = RawPeer(server.url)
    _open(writer, "rw-local")
    fine = _call(writer, "put", {"doc": {"_id": "_local/big", "blob": "x" * MB}})
    writer.close()
    assert fine["ok"]["ok"] is True
    _left_cleanly(server)


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
    _left_cleanly(server, connections=1)
