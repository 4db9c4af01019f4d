"""Issue 16: one hostile client cannot stall, exhaust or flood the server.

Each attack runs against an in-process server while a bystander (another socket, on
another database) calls ``info`` in a loop and measures its own latency: every one of
its calls must be answered within ``BYSTANDER_BOUND`` while the attack runs. Memory is
the test process's RSS (the server is in-process): its growth during an attack stays
under the bound each test states. After the attacker leaves, its threads end and the
server holds no reply bytes for it. Each attack is a few seconds; ``--full`` runs the
bigger versions. Attacks 1-4 are here (sockets, frames, handshakes); 5-7 (payloads)
are in ``test_hostile_payloads.py``.
"""

from __future__ import annotations

import gc
import logging
import socket
import threading
import time
import tracemalloc
from typing import Any

import pytest

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
    rss_bytes,
)
from .helpers import thread_stacks
from .proxy import wait_until

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
    open_channel(attacker, "public-regex", credentials=None)
    before = rss_bytes()
    try:
        started = time.monotonic()
        answer = call(attacker, "changes", {"selector": selector, "include_docs": True})
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
        fine = call(attacker, "changes", {"selector": {"_id": {"$regex": "0001$"}}}, call_id=2)
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
    left_cleanly(server)


def test_regex_patterns_are_bounded_in_length(hub, servers, public) -> None:
    server = servers(public)
    hub.db("public-long").put({"_id": "a"})
    peer = RawPeer(server.url)
    open_channel(peer, "public-long", credentials=None)
    answer = call(peer, "changes", {"selector": {"_id": {"$regex": "a" * 5000}}})
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
    left_cleanly(server)


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
    left_cleanly(server)


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
                open_channel(peer, "big")
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
        left_cleanly(server)
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
    open_channel(peer, "pages")
    big = call(peer, "all_docs", {"include_docs": True, "limit": 30})
    assert big["error"]["status"] == 413 and "max_reply_size" in big["error"]["reason"], big
    page = call(peer, "changes", {}, call_id=2)["ok"]
    assert len(page["results"]) == 10 and page["pending"] == 20
    rest = call(peer, "changes", {"since": page["last_seq"], "limit": 5}, call_id=3)["ok"]
    assert len(rest["results"]) == 5  # a smaller limit is kept
    peer.close()
    left_cleanly(server)


# -- 4. trickled handshakes -----------------------------------------------------------------

def test_trickled_handshakes_are_closed_at_one_deadline(hub, servers, caplog, full_run) -> None:
    """Sockets sending one header byte every 0.2 s: each read is quick, the request
    never ends. hello_timeout (1 s here) bounds the whole request."""
    caplog.set_level(logging.INFO)
    server = servers(hub.on_request, hello_timeout=1.0)
    hub.db("bystander").put({"_id": "b"})
    port = int(server.url.rstrip("/").rsplit(":", 1)[1])
    bystander = Bystander(server.url)
    before = set(request_threads())
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
        leftover = lambda: [t for t in set(request_threads()) - before if t.is_alive()]  # noqa: E731
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
