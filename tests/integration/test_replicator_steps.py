"""``Replicator`` driven step by step (``open``, ``catch_up``, ``listen``, ``finish``): what
a client's live sync does on its one thread, between embedded stores and over a socket."""

from __future__ import annotations

import threading
from typing import Any, Iterator

import pytest

from pouchsync_sync import Client, LocalDatabase, PouchSyncError, Replicator
from tests.fault.proxy import wait_until

WAIT = 20.0


@pytest.fixture
def pair() -> Iterator[tuple[LocalDatabase, LocalDatabase]]:
    a, b = LocalDatabase(":memory:", name="a"), LocalDatabase(":memory:", name="b")
    yield a, b
    a.close()
    b.close()


def reader_threads() -> list[str]:
    return [t.name for t in threading.enumerate()
            if t.name.startswith(("pouchsync-replicate-reader", "pouchsync-changes-ahead"))]


def test_steps_replicate_wake_and_finish_with_a_checkpoint(pair):
    a, b = pair
    a.bulk_docs([{"_id": f"d{k:04d}"} for k in range(250)])
    states: list[str] = []
    rep = Replicator(a, b, live=True, batch_size=50, checkpoint_interval=600,
                     on_state=states.append)
    rung = threading.Event()
    rep.open()
    assert rep.state == "active"
    rep.listen(rung.set)
    assert rep.catch_up() is True
    assert rep.state == "paused"
    assert len(b.all_docs()["rows"]) == 250
    assert wait_until(lambda: not reader_threads(), timeout=WAIT)  # ended with the pass
    assert rep.polls  # an embedded store: other processes' writes need a re-read
    assert not rung.is_set()  # its own writes went to the target (and _local docs)

    rung.clear()
    a.put({"_id": "late"})
    assert rung.wait(WAIT)  # the store's notifier rang, no thread waiting on it
    assert rep.catch_up(woken=True) is True
    assert b.get("late")["_id"] == "late"
    assert rep.wait_caught_up(WAIT)
    checkpoint_id = "_local/" + str(rep.replication_id)
    deferred = b.get(checkpoint_id)["source_last_seq"]
    assert deferred != a.changes(since="now")["last_seq"]  # a live read's: deferred

    result = rep.finish()
    assert result.status == "cancelled" and result.ok  # a live run stops when told
    assert result.docs_written == 251
    assert b.get(checkpoint_id)["source_last_seq"] == a.changes(since="now")["last_seq"]
    assert states == ["active", "paused", "active", "paused", "cancelled"]
    rung.clear()
    a.put({"_id": "after"})
    assert not rung.is_set()  # finish() removed the listener


def test_steps_refuse_a_second_run_and_listen_before_open(pair):
    a, b = pair
    rep = Replicator(a, b, live=True)
    with pytest.raises(PouchSyncError, match="listen"):
        rep.listen(lambda: None)
    rep.open()
    with pytest.raises(PouchSyncError, match="runs once"):
        rep.open()
    with pytest.raises(PouchSyncError, match="runs once"):
        rep.run()
    assert rep.finish().status == "cancelled"


def test_finish_with_an_error_reports_it(pair):
    a, b = pair
    rep = Replicator(a, b, live=True)
    rep.open()
    rep.catch_up()
    error = PouchSyncError("the owner's step failed")
    result = rep.finish(error)
    assert (result.status, result.ok, result.error) == ("error", False, error)
    assert rep.state == "error"


def test_a_cancelled_pass_returns_false(pair):
    a, b = pair
    a.bulk_docs([{"_id": f"d{k}"} for k in range(10)])
    cancel = threading.Event()
    rep = Replicator(a, b, live=True, cancel=cancel)
    rep.open()
    cancel.set()
    assert rep.catch_up() is False
    assert rep.finish().status == "cancelled"


def test_a_remote_source_wakes_through_its_subscription(pair):
    """Pulling from a ``RemoteDatabase``: armed once caught up, no re-read needed, and
    the woken pass takes the batch the subscription delivered."""
    from pouchsync_sync.server import create_server

    served, local = pair
    server = create_server(lambda credentials, name: served).start()
    client = Client()
    try:
        client.connect(server.url)
        remote = client.database("a", timeout=WAIT)
        rep = Replicator(remote, local, live=True)
        rung = threading.Event()
        rep.open()
        rep.listen(rung.set)  # not caught up yet: nothing subscribed
        assert rep.catch_up() is True
        assert not rep.polls
        rep.listen(rung.set)
        served.put({"_id": "pushed"})
        assert rung.wait(WAIT)
        assert rep.catch_up(woken=True) is True
        assert local.get("pushed")["_id"] == "pushed"
        assert rep.finish().docs_written == 1
    finally:
        client.close()
        server.stop()


def test_listen_changes_rings_and_a_zero_timeout_longpoll_takes_the_batch(pair):
    from pouchsync_sync.server import create_server

    served, _ = pair
    server = create_server(lambda credentials, name: served).start()
    client = Client()
    try:
        client.connect(server.url)
        remote = client.database("a", timeout=WAIT)
        since = remote.changes(since="now")["last_seq"]
        rung = threading.Event()
        args: dict[str, Any] = dict(limit=10, style="all_docs", include_docs=True)
        unlisten = remote.listen_changes(rung.set, since=since, **args)
        served.put({"_id": "x"})
        assert rung.wait(WAIT)
        answer = remote.changes(since=since, feed="longpoll", timeout=0, **args)
        assert [row["id"] for row in answer["results"]] == ["x"]
        assert answer["results"][0]["doc"]["_id"] == "x"
        unlisten()
        rung.clear()
        remote.listen_changes(rung.set, since=answer["last_seq"], **args)
        remote.close()  # the channel ends: no more wake-ups, and no error
        with pytest.raises(PouchSyncError):
            remote.listen_changes(rung.set, since=answer["last_seq"], **args)
    finally:
        client.close()
        server.stop()
