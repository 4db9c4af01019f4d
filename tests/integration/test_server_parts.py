"""The server's parts on their own: worker pool, change followers, grant policy."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import pouchsync_sync as ps
from pouchsync_sync.server.follower import FollowerRegistry
from pouchsync_sync.server.grant import Grant, as_grant, database_uuid, refusal, refusals
from pouchsync_sync.server.pool import Lane, WorkerPool
from pouchsync_sync.server.timer import Timer

WAIT = 10.0


# -- WorkerPool ---------------------------------------------------------------------------

def test_pool_creates_threads_lazily_up_to_its_size_and_close_joins_them() -> None:
    pool = WorkerPool(3, "pouchsync-test-pool")
    assert pool.threads == 0
    release = threading.Event()
    started = threading.Semaphore(0)
    done: list[int] = []

    def task(n: int) -> None:
        started.release()
        release.wait(WAIT)
        done.append(n)

    for n in range(6):
        assert pool.submit(task, n)
    for _ in range(3):
        assert started.acquire(timeout=WAIT)
    assert pool.threads == 3  # bounded: the other 3 tasks wait
    release.set()
    for _ in range(3):
        assert started.acquire(timeout=WAIT)
    assert pool.close(timeout=WAIT) == []
    assert sorted(done) == list(range(6))
    assert not pool.submit(task, 99)  # closed


def test_pool_reuses_an_idle_thread_and_survives_a_failing_task() -> None:
    pool = WorkerPool(4, "pouchsync-test-pool")
    ran = threading.Event()

    def boom() -> None:
        raise RuntimeError("task failed")

    try:
        pool.submit(boom)
        for _ in range(20):
            ran.clear()
            pool.submit(ran.set)
            assert ran.wait(WAIT)
        # one task at a time: idle threads are reused (a second one may start while
        # the first is still finishing the failed task)
        assert 1 <= pool.threads <= 2
    finally:
        assert pool.close(timeout=WAIT) == []


def test_pool_close_drops_queued_work() -> None:
    pool = WorkerPool(1, "pouchsync-test-pool")
    gate = threading.Event()
    entered = threading.Event()
    ran: list[str] = []

    def first() -> None:
        entered.set()
        gate.wait(WAIT)
        ran.append("first")

    pool.submit(first)
    assert entered.wait(WAIT)
    pool.submit(ran.append, "queued")
    closer = threading.Thread(target=pool.close, kwargs={"timeout": WAIT}, name="pouchsync-test-closer")
    closer.start()
    gate.set()
    closer.join(WAIT)
    assert ran == ["first"]


# -- followers ---------------------------------------------------------------------------

class FlakyDatabase(ps.LocalDatabase):
    """Fails its longpolls while ``broken`` is set (a CouchDB that went away)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.broken = threading.Event()
        self.failures = 0

    def changes(self, **kwargs: Any) -> dict[str, Any]:
        if self.broken.is_set() and kwargs.get("feed") == "longpoll":
            self.failures += 1
            raise ps.TransportError("connection refused")
        return super().changes(**kwargs)


def test_registry_shares_one_follower_per_identity_and_stops_it_with_the_last_user(tmp_path) -> None:
    path = tmp_path / "shared.sqlite"
    one, two = ps.LocalDatabase(path), ps.LocalDatabase(path)  # same file: same identity
    other = ps.LocalDatabase(":memory:", name="other")
    registry = FollowerRegistry(poll_timeout=0.2)
    try:
        f1, f2, f3 = registry.acquire(one), registry.acquire(two), registry.acquire(other)
        assert f1 is f2 and f1 is not f3
        assert registry.active() == 2 and registry.started_total == 2
        generation = f1.generation
        two.put({"_id": "x"})
        assert f1.wait(generation, WAIT, lambda: False)  # woken by a write
        registry.release(f1)
        assert registry.active() == 2  # still used once
        registry.release(f2)
        assert registry.active() == 1 and f1.join(WAIT)
        again = registry.acquire(one)
        assert again is not f1 and registry.started_total == 3
        registry.release(again)
        registry.release(f3)
    finally:
        assert registry.close(5.0) == []
        for db in (one, two, other):
            db.close()
    with pytest.raises(RuntimeError):
        registry.acquire(other)


def test_follower_listeners_are_called_and_removable() -> None:
    db = ps.LocalDatabase(":memory:", name="listened")
    registry = FollowerRegistry(poll_timeout=0.2)
    calls = threading.Semaphore(0)
    try:
        follower = registry.acquire(db)
        token = follower.add_listener(calls.release)
        follower.add_listener(lambda: 1 / 0)  # a failing listener does not stop the others
        db.put({"_id": "a"})
        assert calls.acquire(timeout=WAIT)
        follower.remove_listener(token)
        generation = follower.generation
        db.put({"_id": "b"})
        assert follower.wait(generation, WAIT, lambda: False)
        assert not calls.acquire(timeout=0.3)
        registry.release(follower)
    finally:
        registry.close(5.0)
        db.close()


def test_follower_wait_is_cancellable_and_times_out() -> None:
    db = ps.LocalDatabase(":memory:", name="waited")
    registry = FollowerRegistry(poll_timeout=0.2)
    try:
        follower = registry.acquire(db)
        assert follower.wait(follower.generation, 0.05, lambda: False) is False
        cancelled = threading.Event()
        result: list[bool] = []
        waiter = threading.Thread(target=lambda: result.append(
            follower.wait(follower.generation, WAIT, cancelled.is_set)), name="pouchsync-test-waiter")
        waiter.start()
        cancelled.set()
        follower.wake()
        waiter.join(WAIT)
        assert result == [False]
        registry.release(follower)
    finally:
        registry.close(5.0)
        db.close()


def test_follower_backs_off_on_database_errors_and_recovers() -> None:
    db = FlakyDatabase(":memory:", name="flaky")
    registry = FollowerRegistry(poll_timeout=0.2)
    try:
        follower = registry.acquire(db)
        db.broken.set()
        generation = follower.generation
        db.put({"_id": "during-outage"})
        threading.Event().wait(0.8)
        assert 1 <= db.failures <= 3  # backing off (0.5 s, 1 s, ...), not spinning
        db.broken.clear()
        assert follower.wait(generation, WAIT, lambda: False)  # the change is seen after
        registry.release(follower)
    finally:
        assert registry.close(5.0) == []
        db.close()


def test_acquire_failure_releases_the_follower() -> None:
    class Unreadable(ps.LocalDatabase):
        def changes(self, **kwargs: Any) -> dict[str, Any]:
            raise ps.ServerError("down")

    db = Unreadable(":memory:", name="unreadable")
    registry = FollowerRegistry(poll_timeout=0.2)
    try:
        with pytest.raises(ps.ServerError):
            registry.acquire(db)
        assert registry.active() == 0 and registry.started_total == 0
    finally:
        registry.close(5.0)
        db.close()


# -- grants -------------------------------------------------------------------------------

def test_grant_policy() -> None:
    db = ps.LocalDatabase(":memory:", name="g")
    try:
        plain, ro, design = as_grant(db), Grant(db, read_only=True), Grant(db, allow_design=True)
        assert plain == Grant(db)
        assert refusal(plain, "a") is None and refusal(plain, None) is None
        assert refusal(plain, "_design/x") == "writes to design documents are not allowed"
        assert refusal(design, "_design/x") is None
        assert refusal(ro, "a") == refusal(ro, None) == "this database is granted read-only"
        assert refusal(ro, "_design/x") is not None
        assert refusal(ro, "_local/checkpoint") is None and refusal(plain, "_local/x") is None
        # a batch: the refusals of each id, in one call
        ids = ["a", "_design/x", None, "_local/cp"]
        for grant in (plain, ro, design):
            assert refusals(grant, ids) == [(i, refusal(grant, doc_id)) for i, doc_id in enumerate(ids)
                                            if refusal(grant, doc_id) is not None]
        assert refusals(plain, ["a", "b"]) == [] and refusals(ro, []) == []
        # the one search over all ids: an id holding "\0_design/" is no design doc, an
        # empty or missing one is none either, a design id anywhere is found
        assert refusals(plain, ["a\x00_design/x", "", None, "b_design/"]) == []
        for ids in (["_design/x"], ["a", "b", "_design/x"], [None, "_design/x", ""]):
            assert [why for _, why in refusals(plain, ids)] == [
                "writes to design documents are not allowed"]
        with pytest.raises(ps.Denied, match="not allowed"):
            as_grant(None)
        with pytest.raises(TypeError, match="Database, a Grant or None"):
            as_grant("todos")
        with pytest.raises(TypeError):
            Grant("not a db")  # type: ignore[arg-type]
        uuid = database_uuid("http://admin:secret@127.0.0.1:5984/todos")
        assert len(uuid) == 32 and "secret" not in uuid
        assert uuid == database_uuid("http://admin:secret@127.0.0.1:5984/todos")
    finally:
        db.close()


def test_idle_pool_threads_end_and_come_back_when_needed() -> None:
    pool = WorkerPool(2, "pouchsync-test-pool", idle_exit=0.1)
    ran = threading.Event()
    try:
        pool.submit(ran.set)
        assert ran.wait(WAIT)
        deadline = threading.Event()
        for _ in range(100):
            if pool.threads == 0:
                break
            deadline.wait(0.05)
        assert pool.threads == 0
        ran.clear()
        pool.submit(ran.set)
        assert ran.wait(WAIT) and pool.threads == 1
    finally:
        assert pool.close(timeout=WAIT) == []


# -- the socket given to simple-websocket ---------------------------------------------------

def test_serialized_socket_writes_whole_frames_even_with_a_timeout() -> None:
    import socket

    from pouchsync_sync.server.transport import SerializedSocket, serialized_environ

    payload = bytes(range(256)) * 40_000  # ~10 MB: far beyond the socket buffers
    writer, reader = socket.socketpair()
    try:
        writer.settimeout(5.0)  # what socket.setdefaulttimeout() would do
        # a plain send() on a socket with a timeout writes only what fits (simple-
        # websocket ignores the count, so the rest of the frame would be lost)
        written = writer.send(payload)
        assert written < len(payload)
        got = bytearray()
        done = threading.Event()

        def drain(expected: int) -> None:
            while len(got) < expected:
                chunk = reader.recv(1 << 16)
                if not chunk:
                    break
                got.extend(chunk)
            done.set()

        thread = threading.Thread(target=drain, args=(written + len(payload),), daemon=True,
                                  name="pouchsync-test-drain")
        thread.start()
        wrapped = SerializedSocket(writer)
        assert wrapped.send(payload) == len(payload)  # sendall: the whole frame
        assert done.wait(WAIT) and bytes(got[written:]) == payload
        thread.join(WAIT)
        assert wrapped.fileno() == writer.fileno()  # everything else is the real socket's
        env = serialized_environ({"werkzeug.socket": writer, "PATH_INFO": "/"})
        assert isinstance(env["werkzeug.socket"], SerializedSocket) and env["PATH_INFO"] == "/"
    finally:
        writer.close()
        reader.close()


class _Buffered:
    """A socket's reading end at its seam: ``recv(n)`` gives what is buffered, up to
    ``n``, and records each ``n`` asked for."""

    def __init__(self) -> None:
        self.buffered = b""
        self.asked: list[int] = []

    def recv(self, size: int) -> bytes:
        self.asked.append(size)
        data, self.buffered = self.buffered[:size], self.buffered[size:]
        return data


def test_serialized_socket_reads_more_while_reads_come_back_big() -> None:
    from pouchsync_sync.server.transport import MAX_RECEIVE, SerializedSocket

    base = 65536
    raw = _Buffered()
    sock = SerializedSocket(raw)
    raw.buffered = b"x" * (3 * MAX_RECEIVE)  # a stream of big messages
    got = b""
    while raw.buffered:
        got += sock.recv(base)
    assert len(got) == 3 * MAX_RECEIVE
    # each filled read asks for 4 times more, up to MAX_RECEIVE
    assert raw.asked[:4] == [base, 4 * base, 16 * base, MAX_RECEIVE] and max(raw.asked) == MAX_RECEIVE
    # a read bigger than the base (the rest of a batch) keeps the size: the next message
    # comes in one read
    raw.buffered = b"y" * 100_000
    assert len(sock.recv(base)) == 100_000 and raw.asked[-1] == MAX_RECEIVE
    # a small read (a live change, a ping) goes back to the base size
    raw.buffered = b"z" * 100
    assert sock.recv(base) == b"z" * 100
    raw.buffered = b"w" * 200_000
    assert len(sock.recv(base)) == base and raw.asked[-1] == base
    assert len(sock.recv(base)) == 200_000 - base and raw.asked[-1] == 4 * base
    assert sock.recv(base) == b"" and raw.asked[-1] == 4 * base  # the end: ""


# -- Lane ---------------------------------------------------------------------------------

def test_lane_runs_at_most_its_limit_at_once_in_order_and_close_waits_for_running() -> None:
    pool = WorkerPool(8, "pouchsync-test-pool")
    lane = Lane(pool, 2, "test-lane")
    gate = threading.Event()
    running: list[int] = []
    most = [0]
    started = threading.Semaphore(0)
    lock = threading.Lock()
    order: list[int] = []

    def task(n: int) -> None:
        with lock:
            running.append(n)
            most[0] = max(most[0], len(running))
            order.append(n)
        started.release()
        gate.wait(WAIT)
        with lock:
            running.remove(n)

    try:
        for n in range(6):
            assert lane.submit(task, n)
        for _ in range(2):
            assert started.acquire(timeout=WAIT)
        assert not started.acquire(timeout=0.2)  # the third waits for a slot
        assert lane.running == 2
        gate.set()
        for _ in range(4):
            assert started.acquire(timeout=WAIT)
        assert lane.close(timeout=WAIT)
        assert most[0] == 2
        assert sorted(order) == list(range(6)) and order[:2] == sorted(order[:2])
        assert not lane.submit(task, 99)  # closed
    finally:
        gate.set()
        assert pool.close(timeout=WAIT) == []


def test_a_busy_lane_does_not_starve_another_lane_of_the_same_pool() -> None:
    pool = WorkerPool(1, "pouchsync-test-pool")  # one thread: turns must alternate
    busy, quiet = Lane(pool, 1, "busy"), Lane(pool, 1, "quiet")
    gate, holding = threading.Event(), threading.Event()
    ran: list[str] = []
    done = threading.Event()
    try:
        pool.submit(lambda: (holding.set(), gate.wait(WAIT)))  # the pool's thread waits
        assert holding.wait(WAIT)
        for _ in range(500):
            busy.submit(ran.append, "busy")
        quiet.submit(lambda: (ran.append("quiet"), done.set()))
        gate.set()
        assert done.wait(WAIT)
        # the busy lane ran one task, then went behind the quiet one
        assert ran.index("quiet") == 1
    finally:
        gate.set()
        busy.close(WAIT)
        quiet.close(WAIT)
        assert pool.close(timeout=WAIT) == []


def test_lane_close_drops_what_waits() -> None:
    pool = WorkerPool(2, "pouchsync-test-pool")
    lane = Lane(pool, 1, "test-lane")
    entered, gate = threading.Event(), threading.Event()
    ran: list[str] = []

    def first() -> None:
        entered.set()
        gate.wait(WAIT)
        ran.append("first")

    try:
        lane.submit(first)
        assert entered.wait(WAIT)
        lane.submit(ran.append, "queued")
        assert not lane.close(timeout=0.1)  # the first still runs
        gate.set()
        assert lane.close(timeout=WAIT)
        assert ran == ["first"]
    finally:
        gate.set()
        assert pool.close(timeout=WAIT) == []


# -- Timer --------------------------------------------------------------------------------

def test_timer_calls_in_time_order_skips_cancelled_and_repeats() -> None:
    timer = Timer("pouchsync-test-timer")
    calls: list[str] = []
    done = threading.Event()
    repeated = threading.Semaphore(0)
    try:
        now = time.monotonic()
        timer.call_at(now + 0.2, lambda: (calls.append("late"), done.set()))
        timer.call_at(now + 0.05, lambda: calls.append("early"))
        timer.call_at(now + 0.1, lambda: calls.append("cancelled")).cancel()
        timer.call_at(now + 0.01, lambda: 1 / 0)  # a failing callback is logged, not fatal
        every = timer.call_every(0.02, repeated.release)
        assert done.wait(WAIT)
        assert calls == ["early", "late"]
        for _ in range(3):
            assert repeated.acquire(timeout=WAIT)
        every.cancel()
    finally:
        assert timer.close(WAIT)
    assert timer.call_later(0, lambda: None).cancelled  # closed: nothing is scheduled


def _timer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "pouchsync-test-timer"]


def test_timer_thread_starts_with_an_entry_and_ends_when_all_are_cancelled() -> None:
    timer = Timer("pouchsync-test-timer")
    try:
        assert not _timer_threads()
        with pytest.raises(ValueError):
            timer.call_every(0, lambda: None)
        far = [timer.call_later(3600, lambda: None) for _ in range(3)]
        every = timer.call_every(3600, lambda: None)
        assert timer.pending == 4 and len(_timer_threads()) == 1
        for entry in far + [every, far[0]]:  # a second cancel changes nothing
            entry.cancel()
        assert timer.pending == 0
        for thread in _timer_threads():  # idle: ends without waiting an hour
            thread.join(WAIT)
        assert not _timer_threads()
        fired = threading.Event()
        timer.call_later(0, fired.set)  # a new entry starts a new thread
        assert fired.wait(WAIT)
    finally:
        assert timer.close(WAIT)


def test_shared_read_reads_once_per_key_and_generation_and_never_shares_a_failure(tmp_path) -> None:
    db = ps.LocalDatabase(str(tmp_path / "f.db"))
    registry = FollowerRegistry(poll_timeout=0.2)
    follower = registry.acquire(db)
    reads: list[str] = []

    def read(tag: str) -> Any:
        reads.append(tag)
        return {"tag": tag}

    try:
        gen = follower.generation
        assert follower.shared_read(gen, "k", lambda: read("a")) == {"tag": "a"}
        assert follower.shared_read(gen, "k", lambda: read("b")) == {"tag": "a"}  # shared
        assert follower.shared_read(gen, "other", lambda: read("c")) == {"tag": "c"}
        assert follower.shared_reads == 1
        db.put({"_id": "x"})  # a change: a new generation reads afresh
        assert follower.wait(gen, WAIT, lambda: False)
        assert follower.shared_read(follower.generation, "k", lambda: read("d")) == {"tag": "d"}

        def boom() -> Any:
            raise ps.TransportError("down")

        gen = follower.generation
        with pytest.raises(ps.TransportError):
            follower.shared_read(gen, "fails", boom)
        assert follower.shared_read(gen, "fails", lambda: read("e")) == {"tag": "e"}
        assert reads == ["a", "c", "d", "e"]
    finally:
        registry.release(follower)
        assert registry.close(5.0) == []
        db.close()
