"""The live fan-out's parts: one coalesced pool task per change for every subscription of
a database (``server/fanout.py``), and the spread of the sockets' ping intervals."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import pouchsync_sync as ps
from pouchsync_sync.server.fanout import FanOut
from pouchsync_sync.server.follower import FollowerRegistry
from pouchsync_sync.server.pool import WorkerPool
from pouchsync_sync.server.transport import PING_SPREAD, ping_interval_for

from tests.rawpeer import RawPeer

WAIT = 10.0


class Recorder:
    """A pusher (the seam ``FanOut`` calls): records each subscription it is given."""

    def __init__(self, *, fail: bool = False, gate: threading.Event | None = None) -> None:
        self.fail = fail
        self.gate = gate
        self.seen: list[Any] = []
        self.lock = threading.Lock()
        self.entered = threading.Event()

    def push_from_fanout(self, sub: Any) -> None:
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(WAIT)
        with self.lock:
            self.seen.append(sub)
        if self.fail:
            raise RuntimeError("this socket's push failed")


@pytest.fixture
def follower_and_pool():
    db = ps.LocalDatabase(":memory:", name="fanned")
    registry = FollowerRegistry(poll_timeout=0.2)
    pool = WorkerPool(4, "pouchsync-test-fanout")
    follower = registry.acquire(db)
    try:
        yield follower, pool
    finally:
        registry.release(follower)
        assert pool.close(WAIT) == []
        registry.close(5.0)
        db.close()


def _wait_idle(fan: FanOut) -> None:
    done = threading.Event()
    for _ in range(int(WAIT / 0.01)):
        if not fan.busy:
            return
        done.wait(0.01)
    raise AssertionError("the fan-out task did not end")


def test_one_task_pushes_every_subscription_and_a_failing_one_does_not_stop_the_others(
        follower_and_pool) -> None:
    follower, pool = follower_and_pool
    fan = FanOut.of(follower, pool)
    assert FanOut.of(follower, pool) is fan  # one per follower
    good, bad, gone = Recorder(), Recorder(fail=True), Recorder()
    fan.add(bad, "s-bad")
    fan.add(good, "s-good")
    token = fan.add(gone, "s-gone")
    fan.remove(token)
    assert len(fan) == 2
    fan.ring()
    _wait_idle(fan)
    assert good.seen == ["s-good"] and bad.seen == ["s-bad"] and gone.seen == []
    assert fan.runs == 1


def test_changes_during_a_run_are_coalesced_into_one_more_run(follower_and_pool) -> None:
    follower, pool = follower_and_pool
    fan = FanOut.of(follower, pool)
    gate = threading.Event()
    slow = Recorder(gate=gate)
    fan.add(slow, "s")
    fan.ring()
    assert slow.entered.wait(WAIT)
    for _ in range(50):  # changes while the task runs: it runs once more, not 50 times
        fan.ring()
    gate.set()
    _wait_idle(fan)
    assert fan.runs == 2 and slow.seen == ["s", "s"]


def test_a_write_rings_the_fan_out_through_the_follower(follower_and_pool) -> None:
    follower, pool = follower_and_pool
    fan = FanOut.of(follower, pool)
    rec = Recorder()
    fan.add(rec, "s")
    follower.db.put({"_id": "a"})
    assert rec.entered.wait(WAIT)
    _wait_idle(fan)


@given(interval=st.floats(min_value=0.001, max_value=1e6), seed=st.integers(0, 2**32))
def test_ping_intervals_are_spread_below_the_configured_one(interval: float, seed: int) -> None:
    rnd = random.Random(seed)
    got = [ping_interval_for(interval, rnd) for _ in range(20)]
    assert all(g is not None and interval * PING_SPREAD <= g <= interval for g in got)
    assert len(set(got)) > 1  # spread, not one value for every socket
    assert ping_interval_for(None, rnd) is None


def test_each_socket_of_a_server_pings_at_its_own_interval(tmp_path) -> None:
    data = ps.DataDir(tmp_path / "data")
    srv = ps.create_server(lambda credentials, name: data.database(name), ping_interval=8.0)
    srv.start()
    peers: list[RawPeer] = []
    try:
        peers = [RawPeer(srv.url, timeout=WAIT) for _ in range(6)]  # each has its welcome
        assert all(peer.welcome and peer.welcome["limits"]["ping_interval"] == 8.0
                   for peer in peers)  # the promise: at most this long between pings
        with srv._lock:
            intervals = [s.ws.ping_interval for s in srv._sessions]
        assert len(intervals) == 6
        assert all(8.0 * PING_SPREAD <= i <= 8.0 for i in intervals) and len(set(intervals)) > 1
    finally:
        for peer in peers:
            peer.close()
        srv.stop()
        data.close()


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_text_frames_are_the_bytes_wsproto_makes(size: int) -> None:
    from wsproto.connection import Connection, ConnectionType
    from wsproto.events import TextMessage

    from pouchsync_sync.server.outbox import text_frame

    text = ("é" * size)[:size] if size % 2 else "x" * size
    expected = Connection(ConnectionType.SERVER).send(TextMessage(data=text))
    assert text_frame(text.encode()) == expected


def test_pushes_reach_a_permessage_deflate_socket_and_a_plain_one_alike(tmp_path) -> None:
    data = ps.DataDir(tmp_path / "data")
    srv = ps.create_server(lambda credentials, name: data.database(name))
    srv.start()
    deflate = plain = None
    try:
        deflate = RawPeer(srv.url, timeout=WAIT, deflate=True)
        plain = RawPeer(srv.url, timeout=WAIT)
        for peer, send in ((deflate, deflate.send), (plain, plain.send)):
            send('{"type": "open", "ch": 1, "db": "both"}')
            while peer.recv()["type"] != "granted":
                pass
            send('{"type": "subscribe", "ch": 1, "sub": 1, "since": 0}')
        db = data.database("both")
        ids = [f"d{i:03d}" for i in range(30)]
        body = "é" * 300  # big enough to be compressed, not ASCII
        for doc_id in ids:
            db.put({"_id": doc_id, "body": body})
        for peer in (deflate, plain):
            got: list[str] = []
            while len(got) < len(ids):
                msg = peer.recv()
                assert isinstance(msg, dict), msg
                if msg["type"] == "changes":
                    got.extend(row["id"] for row in msg["results"])
            assert got == ids
        with srv._lock:  # which way each socket's frames were made
            plain_frames = sorted(s.outbox._plain is not None for s in srv._sessions)
        assert plain_frames == [False, True]  # wsproto for the deflate socket only
    finally:
        for peer in (deflate, plain):
            if peer is not None:
                peer.close()
        srv.stop()
        data.close()


class NoPending(ps.LocalDatabase):
    """A backend whose ``changes`` answers carry no ``pending`` (as pouchdb-server's)."""

    def changes(self, **kwargs: Any) -> dict[str, Any]:
        answer = dict(super().changes(**kwargs))
        answer.pop("pending", None)
        return answer


def test_a_push_that_reached_the_feeds_end_says_pending_0_even_if_the_backend_does_not(
        tmp_path) -> None:
    db = NoPending(str(tmp_path / "nopending.sqlite"))
    srv = ps.create_server(lambda credentials, name: db)
    srv.start()
    peer = None
    try:
        db.bulk_docs([{"_id": f"d{i}"} for i in range(8)])
        assert "pending" not in db.changes(since=0, limit=3)
        peer = RawPeer(srv.url, timeout=WAIT)
        peer.send({"type": "open", "ch": 1, "db": "x"})
        peer.until(lambda m: m.get("type") == "granted")
        peer.send({"type": "subscribe", "ch": 1, "sub": 1, "since": 0, "batch": 3})
        batches: list[dict[str, Any]] = []
        while sum(len(b["results"]) for b in batches) < 8:
            msg = peer.recv()
            assert isinstance(msg, dict), msg
            if msg.get("type") == "changes":
                batches.append(msg)
        db.put({"_id": "later"})
        msg, _ = peer.until(lambda m: m.get("type") == "changes")
        batches.append(msg)
        ids = [row["id"] for b in batches for row in b["results"]]
        assert ids == [f"d{i}" for i in range(8)] + ["later"]
        for batch in batches:  # full batches say nothing; a short one reached the end
            if len(batch["results"]) == 3:
                assert "pending" not in batch, batch
            else:
                assert batch["pending"] == 0, batch
        assert [len(b["results"]) for b in batches] == [3, 3, 2, 1]
    finally:
        if peer is not None:
            peer.close()
        srv.stop()
        db.close()
