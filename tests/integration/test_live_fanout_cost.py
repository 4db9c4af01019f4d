"""What one change costs a live pull: pushed batches say ``pending``, so a replicator
caught up by a subscription delivery makes no extra ``changes`` call."""

from __future__ import annotations

import threading
from typing import Any

from pouchsync_sync.client.remote import RemoteDatabase
from pouchsync_sync.errors import NotFound
from pouchsync_sync.protocol import messages as m
from pouchsync_sync.replication import Replicator
from tests.integration.test_server import TOKEN as SERVER_TOKEN
from tests.integration.test_server import dbs, make_server  # noqa: F401  (fixtures)
from tests.integration.test_sync import TOKEN, clients, hub, local, server  # noqa: F401
from tests.rawpeer import RawPeer

WAIT = 10.0


def test_pushed_batches_carry_pending_and_the_last_one_says_caught_up(make_server) -> None:
    srv = make_server(live_batch=3)
    client = RawPeer(srv.url, credentials=SERVER_TOKEN)
    writer = RawPeer(srv.url, credentials=SERVER_TOKEN)
    try:
        client.open(1, "todos")
        writer.open(1, "todos")
        writer.ok(1, "bulk_docs", {"docs": [{"_id": f"d{i:02}"} for i in range(8)]})
        client.send(m.subscribe(1, 4, since=0, batch=50))
        batches = []
        while sum(len(b["results"]) for b in batches) < 8:
            batches.append(client.expect(type="changes", sub=4))
        assert len(batches) >= 3  # capped at 3 rows a batch
        assert all(b["pending"] > 0 for b in batches[:-1])
        assert batches[-1]["pending"] == 0
        writer.ok(1, "put", {"doc": {"_id": "later"}})
        later = client.expect(type="changes", sub=4)
        assert [r["id"] for r in later["results"]] == ["later"] and later["pending"] == 0
    finally:
        client.close()
        writer.close()


def test_changes_message_pending_is_optional_and_checked() -> None:
    plain = m.validate({"type": "changes", "ch": 1, "sub": 2, "results": [], "last_seq": 3},
                       sender="server")
    assert "pending" not in plain
    given = m.validate(m.changes(1, 2, [], 3, 0), sender="server")
    assert given["pending"] == 0
    assert "pending" not in m.changes(1, 2, [], 3, None)
    assert "pending" not in m.changes(1, 2, [], 3, "many")  # never sends a non-integer
    try:
        m.validate({"type": "changes", "ch": 1, "sub": 2, "results": [], "last_seq": 3,
                    "pending": "x"}, sender="server")
    except m.BadMessage:
        pass
    else:
        raise AssertionError("a non-integer pending was accepted")


class CountingRemote(RemoteDatabase):
    """A ``RemoteDatabase`` that counts the normal ``changes`` calls it makes."""

    def __init__(self, channel: Any) -> None:
        super().__init__(channel)
        self.normal_reads = 0
        self.lock = threading.Lock()

    def changes(self, **kwargs: Any) -> dict[str, Any]:
        if kwargs.get("feed", "normal") == "normal":
            with self.lock:
                self.normal_reads += 1
        return super().changes(**kwargs)


def test_live_pull_makes_no_extra_changes_call_per_pushed_change(hub, server, clients,
                                                                 local) -> None:
    client = clients().connect(server.url)
    remote = client.database("todos", credentials=TOKEN, timeout=WAIT)
    source = CountingRemote(remote._channel)
    target = local("todos")
    served = hub.db("todos")
    served.put({"_id": "before"})
    pauses: list[int] = []  # normal reads made when the replicator paused (caught up)
    cond = threading.Condition()

    def on_state(state: str) -> None:
        if state == "paused":
            with cond:
                pauses.append(source.normal_reads)
                cond.notify_all()

    cancel = threading.Event()
    rep = Replicator(source, target, live=True, cancel=cancel, longpoll_timeout=5.0,
                     batches_limit=1, on_state=on_state)
    thread = threading.Thread(target=rep.run, name="pouchsync-test-live-pull")
    thread.start()
    try:
        with cond:
            assert cond.wait_for(lambda: len(pauses) == 1, WAIT)
        for i in range(5):
            served.put({"_id": f"live-{i}"})
            with cond:
                assert cond.wait_for(lambda: len(pauses) == i + 2, WAIT)
            assert target.get(f"live-{i}")["_id"] == f"live-{i}"
        assert pauses[-1] == pauses[0], "a pushed change cost extra changes calls"
        assert rep.wait_caught_up(WAIT)
    finally:
        cancel.set()
        thread.join(WAIT)
    assert not thread.is_alive()


def _live_pull(source: Any, target: Any, **options: Any) -> tuple[Replicator, threading.Event,
                                                                  threading.Thread]:
    cancel = threading.Event()
    rep = Replicator(source, target, live=True, cancel=cancel, longpoll_timeout=1.0,
                     **options)
    thread = threading.Thread(target=rep.run, name="pouchsync-test-live-pull")
    thread.start()
    return rep, cancel, thread


def _recorded(db: Any, rep: Replicator) -> Any:
    """The seq ``rep`` recorded on ``db``; None when it recorded none yet."""
    try:
        return db.get(f"_local/{rep.replication_id}")["source_last_seq"]
    except NotFound:
        return None


def test_live_checkpoints_wait_for_the_interval_and_are_recorded_on_cancel(local) -> None:
    source, target = local("src"), local("tgt")
    source.bulk_docs([{"_id": f"old-{i}"} for i in range(30)])
    rep, cancel, thread = _live_pull(source, target, batch_size=10, checkpoint_interval=60)
    try:
        assert rep.wait_caught_up(WAIT)
        first = source.changes(since="now")["last_seq"]
        assert _recorded(target, rep) == first == _recorded(source, rep)  # end of the backlog
        for i in range(3):
            source.put({"_id": f"live-{i}"})
            assert rep.wait_caught_up(WAIT)  # docs written: not held back by the checkpoint
            assert target.get(f"live-{i}")["_id"] == f"live-{i}"
        assert _recorded(target, rep) == first  # deferred: interval not over
    finally:
        cancel.set()
        thread.join(WAIT)
    assert not thread.is_alive()
    last = source.changes(since="now")["last_seq"]
    assert _recorded(target, rep) == last == _recorded(source, rep)  # recorded on cancel
    again = Replicator(source, target).run()  # resumes there: nothing to re-read
    assert again.ok and again.docs_read == 0


def test_live_checkpoint_interval_zero_records_every_batch(local) -> None:
    source, target = local("src"), local("tgt")
    rep, cancel, thread = _live_pull(source, target, checkpoint_interval=0)
    try:
        assert rep.wait_caught_up(WAIT)
        for i in range(3):
            source.put({"_id": f"live-{i}"})
            assert rep.wait_caught_up(WAIT)
            seq = source.changes(since="now")["last_seq"]
            assert _recorded(target, rep) == seq == _recorded(source, rep)
    finally:
        cancel.set()
        thread.join(WAIT)
    assert not thread.is_alive()


def test_a_live_run_killed_between_checkpoints_resumes_without_losing_docs(local) -> None:
    """No cancel: the deferred checkpoint is never recorded, as if the process died."""
    source, target = local("src"), local("tgt")
    rep, cancel, thread = _live_pull(source, target, checkpoint_interval=60)
    try:
        assert rep.wait_caught_up(WAIT)
        for i in range(3):
            source.put({"_id": f"live-{i}"})
            assert rep.wait_caught_up(WAIT)
        stale = _recorded(target, rep)
    finally:
        rep._checkpoints.held = None  # what a killed process never gets to record
        cancel.set()
        thread.join(WAIT)
    assert stale != source.changes(since="now")["last_seq"]
    source.put({"_id": "after"})
    again = Replicator(source, target).run()  # from the stale checkpoint: re-reads a few
    assert again.ok and 1 <= again.docs_read <= 4
    assert sorted(r["id"] for r in target.changes()["results"]) == sorted(
        r["id"] for r in source.changes()["results"])


def test_live_feed_stays_subscribed_between_waits_and_misses_nothing(hub, server, clients) -> None:
    client = clients().connect(server.url)
    remote = client.database("todos", credentials=TOKEN, timeout=WAIT)
    channel = remote._channel
    served = hub.db("todos")
    since = served.changes(since="now")["last_seq"]
    opts = {"style": "all_docs", "batch": 100}
    got = []

    def wait_from(seq: Any, timeout: float = WAIT) -> Any:
        msg = channel.wait_changes(seq, opts, timeout)
        if msg is not None:
            got.extend(r["id"] for r in msg["results"])
        return msg

    writer = threading.Thread(target=lambda: served.put({"_id": "a"}), name="pouchsync-test-w")
    writer.start()
    first = wait_from(since)
    writer.join(WAIT)
    assert first["pending"] == 0
    sub = channel.live.feed.sub
    served.put({"_id": "b"})  # while nobody waits: held for the next wait
    served.put({"_id": "c"})
    seq = first["last_seq"]
    while got[-1:] != ["c"]:
        seq = wait_from(seq)["last_seq"]
    assert got == ["a", "b", "c"]
    assert channel.live.feed.sub == sub  # the same subscription all along
    assert wait_from(seq, timeout=0.3) is None  # a timeout keeps it too
    served.put({"_id": "d"})
    seq = wait_from(seq)["last_seq"]
    assert got[-1] == "d" and channel.live.feed.sub == sub
    # a wait from elsewhere (here: from the start) subscribes afresh, from there
    got.clear()
    while len(set(got)) < 4:
        wait_from(0)
    assert sorted(set(got)) == ["a", "b", "c", "d"] and channel.live.feed.sub != sub


def test_live_feed_concurrent_waits_and_close(hub, server, clients) -> None:
    from pouchsync_sync.errors import Cancelled

    client = clients().connect(server.url)
    remote = client.database("todos", credentials=TOKEN, timeout=WAIT)
    channel = remote._channel
    served = hub.db("todos")
    since = served.changes(since="now")["last_seq"]
    answers: list[Any] = []
    waits = [threading.Thread(target=lambda: answers.append(
        channel.wait_changes(since, {"batch": 10}, WAIT)), name=f"pouchsync-test-wait-{i}")
        for i in range(2)]
    for t in waits:
        t.start()
    served.put({"_id": "both"})
    for t in waits:
        t.join(WAIT)
    assert [[r["id"] for r in a["results"]] for a in answers] == [["both"], ["both"]]
    errors: list[BaseException] = []

    def wait_until_closed() -> None:
        try:
            channel.wait_changes(answers[0]["last_seq"], {"batch": 10}, WAIT)
        except Cancelled as exc:
            errors.append(exc)

    waiting = threading.Thread(target=wait_until_closed, name="pouchsync-test-closed")
    waiting.start()
    remote.close()
    waiting.join(WAIT)
    assert not waiting.is_alive() and len(errors) == 1
