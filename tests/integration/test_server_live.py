"""Live changes through the server: longpoll calls, subscriptions, shared followers."""

from __future__ import annotations

import threading

import pytest

import pouchsync_sync as ps
from pouchsync_sync.protocol import messages as m
from tests.integration.test_server import (  # noqa: F401  (fixtures)
    TOKEN,
    WAIT,
    _eventually,
    clients,
    dbs,
    make_server,
    server,
)
from tests.rawpeer import RawPeer


def now(client: RawPeer, ch: int = 1) -> object:
    """The channel's database's current sequence ("now" in a subscribe is resolved when
    the server starts the subscription, on its worker pool, so tests pin it first)."""
    return client.ok(ch, "changes", {"since": "now"})["last_seq"]


def test_longpoll_call_is_woken_by_a_write_through_another_socket(clients) -> None:
    reader, writer = clients(), clients()
    reader.open(1, "todos")
    writer.open(7, "todos")
    since = reader.ok(1, "changes", {"since": "now"})["last_seq"]
    call_id = reader.start_call(1, "changes", {"feed": "longpoll", "since": since,
                                               "timeout": 30, "include_docs": True})
    writer.ok(7, "put", {"doc": {"_id": "fresh", "v": 1}})
    reply = reader.expect(type="reply", id=call_id, timeout=5)
    rows = reply["ok"]["results"]
    assert [r["id"] for r in rows] == ["fresh"] and rows[0]["doc"]["v"] == 1


def test_longpoll_returns_at_once_when_changes_exist_and_empty_after_timeout(clients) -> None:
    client = clients()
    client.open(1, "todos")
    client.ok(1, "put", {"doc": {"_id": "a"}})
    assert client.ok(1, "changes", {"feed": "longpoll", "since": 0, "timeout": 30})["results"]
    empty = client.ok(1, "changes", {"feed": "longpoll", "since": "now", "timeout": 0.2})
    assert empty["results"] == [] and empty["last_seq"] is not None


def test_subscribe_pushes_existing_then_new_changes_in_batches(make_server) -> None:
    server = make_server(live_batch=3)
    client, writer = RawPeer(server.url, credentials=TOKEN), RawPeer(server.url, credentials=TOKEN)
    try:
        client.open(1, "todos")
        writer.open(1, "todos")
        writer.ok(1, "bulk_docs", {"docs": [{"_id": f"d{i:02}"} for i in range(8)]})
        client.send(m.subscribe(1, 4, since=0, include_docs=True, batch=50))
        seen: list[str] = []
        while len(seen) < 8:
            batch = client.expect(type="changes", sub=4)
            assert 1 <= len(batch["results"]) <= 3  # capped by live_batch
            seen += [r["id"] for r in batch["results"]]
        assert seen == [f"d{i:02}" for i in range(8)]
        writer.ok(1, "put", {"doc": {"_id": "later", "n": 1}})
        batch = client.expect(type="changes", sub=4)
        assert [r["id"] for r in batch["results"]] == ["later"]
        assert batch["results"][0]["doc"]["n"] == 1 and batch["last_seq"] == batch["results"][0]["seq"]
    finally:
        client.close()
        writer.close()


def test_subscription_filters_doc_ids_and_selector(clients, dbs) -> None:
    client, writer = clients(), clients()
    client.open(1, "todos")
    writer.open(1, "todos")
    client.send(m.subscribe(1, 1, since=now(client), doc_ids=["watched"]))
    client.send(m.subscribe(1, 2, since=now(client), selector={"kind": "task"}))
    writer.ok(1, "put", {"doc": {"_id": "ignored", "kind": "note"}})
    writer.ok(1, "put", {"doc": {"_id": "watched", "kind": "note"}})
    writer.ok(1, "put", {"doc": {"_id": "t1", "kind": "task"}})
    assert [r["id"] for r in client.expect(type="changes", sub=1)["results"]] == ["watched"]
    got = []
    while "t1" not in got:
        got += [r["id"] for r in client.expect(type="changes", sub=2)["results"]]
    assert got == ["t1"]


def test_unsubscribe_and_channel_close_drop_subscriptions_and_follower(server, clients, dbs) -> None:
    client, writer = clients(), clients()
    client.open(1, "todos")
    client.open(2, "todos")
    writer.open(1, "todos")
    client.send(m.subscribe(1, 1, since=now(client)))
    client.send(m.subscribe(2, 1, since=now(client)))
    assert _eventually(lambda: server.stats()["subscriptions"] == 2)
    writer.ok(1, "put", {"doc": {"_id": "one"}})
    client.expect(type="changes", ch=1, sub=1)
    client.expect(type="changes", ch=2, sub=1)
    client.send(m.unsubscribe(1, 1))
    client.send(m.close(2))
    client.expect(type="closed", ch=2)
    assert _eventually(lambda: server.stats()["subscriptions"] == 0)
    writer.ok(1, "put", {"doc": {"_id": "two"}})
    # a round trip after the write: nothing was pushed for the dropped subscriptions
    assert client.ok(1, "get", {"doc_id": "two"})["_id"] == "two"
    writer.ok(1, "info")
    assert [p for p in client.pending if p["type"] == "changes" and "two" in str(p)] == []
    # the follower stops with its last channel
    client.send(m.close(1))
    client.expect(type="closed", ch=1)
    assert _eventually(lambda: server.stats()["followers"] == 0)


def test_closing_a_channel_cancels_its_longpoll_without_a_reply(server, clients) -> None:
    client = clients()
    client.open(1, "todos")
    call_id = client.start_call(1, "changes", {"feed": "longpoll", "since": "now", "timeout": 30})
    assert _eventually(lambda: server.stats()["calls_in_flight"] == 1)
    client.send(m.close(1))
    client.expect(type="closed", ch=1)
    assert _eventually(lambda: server.stats()["calls_in_flight"] == 0)
    client.open(1, "todos")
    client.ok(1, "put", {"doc": {"_id": "after"}})
    assert [p for p in client.pending if p.get("id") == call_id] == []


def test_one_follower_per_database_shared_by_channels_and_sockets(server, clients) -> None:
    a, b = clients(), clients()
    for client in (a, b):
        client.open(1, "todos")
        client.open(2, "todos")
        client.send(m.subscribe(1, 1, since=now(client)))
        client.send(m.subscribe(2, 1, since=now(client)))
    a.open(3, "other")
    a.send(m.subscribe(3, 1, since=now(a, 3)))
    assert _eventually(lambda: server.stats()["subscriptions"] == 5)
    assert _eventually(lambda: server.stats()["followers_started"] == 2)
    stats = server.stats()
    assert stats["followers"] == 2 and stats["followers_started"] == 2
    # embedded databases are followed on the server's pool and timer: no thread each
    names = sorted(t.name for t in threading.enumerate() if t.name.startswith("pouchsync-follower"))
    assert names == []
    b.ok(1, "put", {"doc": {"_id": "x"}})
    for client in (a, b):
        for ch in (1, 2):
            assert client.expect(type="changes", ch=ch, sub=1)["results"][0]["id"] == "x"


def test_fan_out_to_many_subscribers(make_server) -> None:
    server = make_server()
    readers = [RawPeer(server.url, credentials=TOKEN) for _ in range(5)]
    writer = RawPeer(server.url, credentials=TOKEN)
    try:
        for reader in readers:
            for ch in range(1, 5):
                reader.open(ch, "todos")
                reader.send(m.subscribe(ch, 1, since=now(reader, ch)))
        writer.open(1, "todos")
        assert _eventually(lambda: server.stats()["subscriptions"] == 20)
        writer.ok(1, "put", {"doc": {"_id": "broadcast"}})
        for reader in readers:
            for ch in range(1, 5):
                assert reader.expect(type="changes", ch=ch)["results"][0]["id"] == "broadcast"
        assert server.stats()["followers_started"] == 1
    finally:
        for client in readers + [writer]:
            client.close()


def test_subscription_error_ends_it_with_an_error_message(clients, dbs) -> None:
    client = clients()
    client.open(1, "todos")
    client.send(m.subscribe(1, 1, since="not-a-seq"))
    msg = client.expect(type="changes", sub=1)
    assert msg["error"]["status"] == 400 and "since" in msg["error"]["reason"].lower()
    client.send(m.subscribe(1, 1, since=0))  # the number is free again
    client.ok(1, "put", {"doc": {"_id": "z"}})
    assert client.expect(type="changes", sub=1)["results"][0]["id"] == "z"


def test_write_through_embedded_db_reaches_subscriber_promptly(clients, dbs) -> None:
    client = clients()
    client.open(1, "todos")
    client.send(m.subscribe(1, 1, since=now(client)))
    dbs.dbs["todos"].put({"_id": "from-server-side"})
    got = client.expect(type="changes", sub=1, timeout=5)
    assert got["results"][0]["id"] == "from-server-side"


@pytest.mark.parametrize("n_clients", [3])
def test_socket_drop_releases_everything(make_server, n_clients) -> None:
    server = make_server()
    clients_ = [RawPeer(server.url, credentials=TOKEN) for _ in range(n_clients)]
    for client in clients_:
        client.open(1, "todos")
        client.send(m.subscribe(1, 1, since=now(client)))
        client.send(m.call(1, 99, "changes", {"feed": "longpoll", "since": "now", "timeout": 30}))
    assert _eventually(lambda: server.stats()["subscriptions"] == n_clients)
    for client in clients_:
        client.sock.close()  # drop without a close frame
    assert _eventually(lambda: server.stats()["connections"] == 0)
    stats = server.stats()
    assert stats["followers"] == 0 and stats["calls_in_flight"] == 0
    assert _eventually(lambda: not [t for t in threading.enumerate()
                                    if t.name.startswith(("pouchsync-server-worker", "pouchsync-server-longpoll", "pouchsync-server-ws"))])


def test_waiting_longpolls_never_starve_other_calls(make_server) -> None:
    server = make_server(workers=2, max_calls=20)
    client = RawPeer(server.url, credentials=TOKEN)
    try:
        client.open(1, "todos")
        since = now(client)
        waiting = [client.start_call(1, "changes", {"feed": "longpoll", "since": since, "timeout": 30})
                   for _ in range(6)]  # three times the worker pool
        assert _eventually(lambda: server.stats()["calls_in_flight"] == 6)
        assert client.ok(1, "put", {"doc": {"_id": "wake"}})["ok"]  # not queued behind them
        for call_id in waiting:
            assert client.expect(type="reply", id=call_id)["ok"]["results"][0]["id"] == "wake"
    finally:
        client.close()


def test_max_subscriptions_per_socket(make_server) -> None:
    server = make_server(max_subscriptions=2)
    client = RawPeer(server.url, credentials=TOKEN)
    try:
        client.open(1, "todos")
        since = now(client)
        for sub in (1, 2, 3):
            client.send(m.subscribe(1, sub, since=since))
        refused = client.expect(type="changes", sub=3)
        assert refused["error"]["status"] == 429 and "at most 2" in refused["error"]["reason"]
        client.send(m.unsubscribe(1, 1))
        client.send(m.subscribe(1, 3, since=since))
        client.ok(1, "put", {"doc": {"_id": "n"}})
        assert client.expect(type="changes", sub=3)["results"][0]["id"] == "n"
        assert client.expect(type="changes", sub=2)["results"][0]["id"] == "n"
    finally:
        client.close()


def test_client_pings_during_big_pushes_do_not_corrupt_frames(make_server, dbs) -> None:
    """The server's transport thread answers pings while workers send big frames: all
    socket writes go through one lock, so frames never interleave."""
    dbs.db("big").bulk_docs([{"_id": f"d{i:03}", "pad": "x" * 100_000} for i in range(120)])
    server = make_server(live_batch=4)
    client = RawPeer(server.url, credentials=TOKEN)
    stop = threading.Event()

    def pinger() -> None:
        while not stop.is_set():
            try:
                client.ping(b"p" * 64)
            except Exception:
                return
            stop.wait(0.001)

    pings = threading.Thread(target=pinger, name="pouchsync-test-pinger")
    try:
        client.open(1, "big")
        pings.start()
        client.send(m.subscribe(1, 1, since=0, include_docs=True))
        ids: list[str] = []
        while len(ids) < 120:
            batch = client.expect(type="changes", sub=1)  # each frame parses as JSON
            ids += [r["id"] for r in batch["results"]]
            assert all(len(r["doc"]["pad"]) == 100_000 for r in batch["results"])
        assert ids == [f"d{i:03}" for i in range(120)]
    finally:
        stop.set()
        if pings.is_alive():
            pings.join(WAIT)
        client.close()


def test_a_write_from_another_process_reaches_subscribers_without_a_follower_thread(
        tmp_path) -> None:
    """The embedded follower sees writes of other processes by looking at the file."""
    import subprocess
    import sys
    from pathlib import Path

    path = tmp_path / "shared.db"
    db = ps.LocalDatabase(str(path))
    server = ps.create_server(lambda credentials, name: db, follow_timeout=0.2).start()
    client = RawPeer(server.url, credentials=TOKEN)
    try:
        client.open(1, "shared")
        client.send(m.subscribe(1, 1, since=now(client)))
        assert _eventually(lambda: server.stats()["subscriptions"] == 1)
        script = ("import sys, pouchsync_sync as ps; d = ps.LocalDatabase(sys.argv[1]); "
                  "d.put({'_id': 'from-elsewhere'}); d.close()")
        subprocess.run([sys.executable, "-c", script, str(path)], check=True, timeout=60,
                       cwd=str(Path(__file__).resolve().parents[2]))
        assert client.expect(type="changes", ch=1, sub=1)["results"][0]["id"] == "from-elsewhere"
        assert not [t for t in threading.enumerate() if t.name.startswith("pouchsync-follower")]
    finally:
        client.close()
        server.stop()
        db.close()
