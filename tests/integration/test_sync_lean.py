"""Lean live syncs (issue 14, point 3, client half): an idle live sync holds one thread.

Both directions of a live sync run on the sync's own thread, which, caught up, waits
on one wake-up: a batch on the pull's subscription, a write to the local database (in
this process at once; by another process within ``local_poll_interval``), a cancel or a
lost connection. Read-ahead and upload threads exist only while a batch moves.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from pouchsync_sync import signals
from pouchsync_sync.client import SyncState
from pouchsync_sync.store.local import LocalDatabase
from tests.fault.proxy import wait_until
from tests.integration.test_sync_checkpoints import TOKEN, Checkpoints, last_seq
from tests.sync_fixtures import Hub, clients, local, recorders  # noqa: F401 - fixtures

WAIT = 30.0
ROOT = Path(__file__).resolve().parents[2]

#: the library threads a client runs: its own, its socket's reader, and the syncs'
CLIENT_THREADS = ("pouchsync-client", "pouchsync-sync", "pouchsync-replicate",
                  "pouchsync-changes-ahead", "pouchsync-upload")
#: per client, not per sync: ``pouchsync-client`` and ``pouchsync-client-reader``
PER_CLIENT = 2


def client_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith(CLIENT_THREADS))


def settles_at(count: int) -> bool:
    """The client's threads come down to ``count`` (read-ahead ends once caught up)."""
    return wait_until(lambda: len(client_threads()) == count, timeout=WAIT)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    h = Hub(tmp_path / "server", TOKEN)
    yield h
    h.close()


@pytest.fixture
def server(hub: Hub) -> Iterator[Any]:
    from pouchsync_sync.server import create_server

    srv = create_server(hub.on_request).start()
    yield srv
    srv.stop()


def ids(db: LocalDatabase) -> set[str]:
    return {row["id"] for row in db.all_docs()["rows"]}


def paused(syncs: list[Any]) -> bool:
    return wait_until(lambda: all(s.state is SyncState.PAUSED for s in syncs), timeout=WAIT)


# -- threads ----------------------------------------------------------------------------

def test_idle_live_syncs_hold_one_thread_each_and_come_back_to_it_after_a_burst(
        server, hub, clients, local):
    n = 20
    client = clients().connect(server.url)
    dbs = [local(f"db{i}") for i in range(n)]
    for db in dbs:
        db.put({"_id": "seed"})
    syncs = [client.sync(db, credentials=TOKEN, live=True) for db in dbs]
    for sync in syncs:
        sync.wait_in_sync(timeout=WAIT)
    assert paused(syncs)
    assert settles_at(n + PER_CLIENT), client_threads()
    assert client_threads().count("pouchsync-client") == 1
    assert client_threads().count("pouchsync-client-reader") == 1

    # a burst on both sides: backlogs big enough for read-ahead and uploads behind
    for i, db in enumerate(dbs):
        db.bulk_docs([{"_id": f"up-{i}-{k:04d}"} for k in range(600)])
        hub.db(f"db{i}").bulk_docs([{"_id": f"down-{i}-{k:04d}"} for k in range(600)])
    for sync in syncs:
        sync.wait_in_sync(timeout=WAIT)
        sync.wait_in_sync(timeout=WAIT)  # and the echoes of what it pulled
    for i, (db, sync) in enumerate(zip(dbs, syncs)):
        assert ids(db) == ids(hub.db(f"db{i}"))
        assert len(ids(db)) == 1201
        assert (sync.status.docs_pushed, sync.status.docs_pulled) == (601, 600)
    assert paused(syncs)
    assert settles_at(n + PER_CLIENT), client_threads()
    for sync in syncs:
        sync.cancel()
    for sync in syncs:
        assert sync.wait(timeout=WAIT).state is SyncState.CANCELLED
    assert settles_at(PER_CLIENT), client_threads()


def test_a_backlog_reads_ahead_on_a_thread_that_ends_when_caught_up(server, hub, clients,
                                                                    local):
    seen: set[str] = set()
    a = local("todos")
    client = clients().connect(server.url)
    sync = client.sync(a, credentials=TOKEN, live=True, direction="pull", batch_size=50)
    sync.wait_in_sync(timeout=WAIT)

    def on_change(sender: Any, **kwargs: Any) -> None:
        seen.update(client_threads())

    signals.sync_change.connect(on_change, sender=sync)
    try:
        hub.db("todos").bulk_docs([{"_id": f"d{k:04d}"} for k in range(1000)])
        sync.wait_in_sync(timeout=WAIT)
    finally:
        signals.sync_change.disconnect(on_change, sender=sync)
    assert len(ids(a)) == 1000
    assert sync.status.docs_pulled == 1000
    assert any(name.startswith("pouchsync-replicate-reader") for name in seen), seen
    assert settles_at(1 + PER_CLIENT), client_threads()
    sync.cancel()
    sync.wait(timeout=WAIT)


# -- promptness, counts -----------------------------------------------------------------

@pytest.mark.parametrize("direction", ["both", "pull", "push"])
def test_a_change_on_either_side_arrives_and_is_counted_at_once(server, hub, clients, local,
                                                                direction):
    a = local("todos")
    served = hub.db("todos")
    client = clients().connect(server.url)
    sync = client.sync(a, credentials=TOKEN, live=True, direction=direction)
    sync.wait_in_sync(timeout=WAIT)
    pulls = direction in ("both", "pull")
    pushes = direction in ("both", "push")
    for i in range(5):
        if pulls:
            served.put({"_id": f"down-{i}"})
        if pushes:
            a.put({"_id": f"up-{i}"})
        sync.wait_in_sync(timeout=WAIT)
        if pulls:
            assert f"down-{i}" in ids(a)
            # counted as soon as the batch is written, not at the next wait
            assert sync.status.docs_pulled == i + 1
        if pushes:
            assert f"up-{i}" in ids(served)
            assert sync.status.docs_pushed == i + 1
    assert ("down-0" in ids(a)) is pulls
    assert ("up-0" in ids(served)) is pushes
    assert settles_at(1 + PER_CLIENT), client_threads()
    sync.cancel()
    assert sync.wait(timeout=WAIT).state is SyncState.CANCELLED


def test_a_write_by_another_process_is_pushed(server, hub, clients, local, tmp_path):
    """Not seen by this process's notifier: the periodic re-read finds it."""
    a = local("todos")
    client = clients(local_poll_interval=0.05).connect(server.url)
    sync = client.sync(a, credentials=TOKEN, live=True, direction="push")
    sync.wait_in_sync(timeout=WAIT)
    code = ("import sys; from pouchsync_sync.store.local import LocalDatabase; "
            "db = LocalDatabase(sys.argv[1]); db.put({'_id': 'from-elsewhere'}); db.close()")
    subprocess.run([sys.executable, "-c", code, a.path], cwd=ROOT, check=True, timeout=60)
    assert wait_until(lambda: "from-elsewhere" in ids(hub.db("todos")), timeout=WAIT)
    sync.wait_in_sync(timeout=WAIT)
    assert sync.status.docs_pushed == 1
    sync.cancel()
    sync.wait(timeout=WAIT)


# -- stopping ---------------------------------------------------------------------------

def test_cancel_while_idle_records_the_deferred_checkpoints(server, hub, clients, local):
    a = local("todos")
    served = hub.db("todos")
    client = clients().connect(server.url)
    sync = client.sync(a, credentials=TOKEN, live=True, checkpoint_interval=600)
    sync.wait_in_sync(timeout=WAIT)
    marks = Checkpoints(client, a, served)
    a.put({"_id": "up"})
    served.put({"_id": "down"})
    sync.wait_in_sync(timeout=WAIT)
    sync.wait_in_sync(timeout=WAIT)
    assert paused([sync])
    assert settles_at(1 + PER_CLIENT), client_threads()
    assert marks.recorded("push") != (last_seq(a),) * 2  # deferred
    sync.cancel()
    result = sync.wait(timeout=WAIT)
    assert result.state is SyncState.CANCELLED
    assert result.push is not None and result.pull is not None
    assert (result.push.status, result.pull.status) == ("cancelled", "cancelled")
    assert marks.recorded("push") == (last_seq(a),) * 2
    assert marks.recorded("pull") == (last_seq(served),) * 2
    assert settles_at(PER_CLIENT), client_threads()


def test_cancel_while_a_batch_moves_ends_every_thread(server, hub, clients, local):
    a = local("todos")
    a.bulk_docs([{"_id": f"up-{k:05d}"} for k in range(3000)])
    hub.db("todos").bulk_docs([{"_id": f"down-{k:05d}"} for k in range(3000)])
    client = clients().connect(server.url)
    sync = client.sync(a, credentials=TOKEN, live=True, batch_size=100)
    moving = threading.Event()

    def on_change(sender: Any, **kwargs: Any) -> None:
        moving.set()

    signals.sync_change.connect(on_change, sender=sync)
    try:
        assert moving.wait(WAIT)
        sync.cancel()
        result = sync.wait(timeout=WAIT)
    finally:
        signals.sync_change.disconnect(on_change, sender=sync)
    assert result.state is SyncState.CANCELLED
    assert result.pull is not None and result.pull.status == "cancelled"
    assert result.pull.error is None
    assert settles_at(PER_CLIENT), client_threads()
    # what was written stays written and checkpointed: a new sync resumes, nothing lost
    again = clients().connect(server.url).sync(a, credentials=TOKEN).wait(timeout=WAIT)
    # (docs of a batch cut short are written and counted by its replicator, not reported)
    assert again.docs_pulled + result.pull.docs_written == 3000
    assert ids(a) == ids(hub.db("todos"))


def test_a_connection_lost_while_idle_stops_the_round_at_once(hub, clients, local, recorders):
    from pouchsync_sync.server import create_server

    srv = create_server(hub.on_request).start()
    a = local("todos")
    client = clients(max_attempts=1, max_delay=0.05).connect(srv.url)
    sync = client.sync(a, credentials=TOKEN, live=True)
    offline = recorders(signals.sync_paused, sync)
    try:
        sync.wait_in_sync(timeout=WAIT)
        assert paused([sync])
        assert settles_at(1 + PER_CLIENT), client_threads()
    finally:
        srv.stop()
    assert offline.wait_for(lambda ev: any(e["direction"] is None and e["error"] is not None
                                           for e in ev))
    with pytest.raises(Exception):
        sync.wait(timeout=WAIT)  # the client gave up reconnecting
    assert sync.state is SyncState.ERROR
    assert not [name for name in client_threads() if name.startswith("pouchsync-sync")]


@pytest.mark.parametrize("option", ["local_poll_interval", "longpoll_timeout"])
@pytest.mark.parametrize("bad", [0, -0.5, float("nan"), float("inf"), True, "0.25", None])
def test_bad_poll_intervals_are_refused(option, bad):
    """They pace an idle live sync's re-reads: 0 would spin, nonsense would crash it later."""
    from pouchsync_sync import Client

    with pytest.raises(ValueError, match=option):
        Client(**{option: bad})


def test_a_connection_cut_while_a_batch_moves_resumes_and_settles_to_one_thread(
        server, hub, clients, local, recorders):
    from urllib.parse import urlsplit

    from tests.fault.proxy import FaultProxy

    a = local("todos")
    a.bulk_docs([{"_id": f"up-{k:05d}"} for k in range(2000)])
    hub.db("todos").bulk_docs([{"_id": f"down-{k:05d}"} for k in range(2000)])
    with FaultProxy(urlsplit(server.url).port or 0) as proxy:
        client = clients().connect(proxy.url())
        sync = client.sync(a, credentials=TOKEN, live=True, batch_size=100)
        moving = threading.Event()
        offline = recorders(signals.sync_paused, sync)

        def on_change(sender: Any, **kwargs: Any) -> None:
            moving.set()

        signals.sync_change.connect(on_change, sender=sync)
        try:
            assert moving.wait(WAIT)
            assert proxy.cut_all() >= 1  # mid-backlog
        finally:
            signals.sync_change.disconnect(on_change, sender=sync)
        assert offline.wait_for(lambda ev: any(e["direction"] is None for e in ev))
        sync.wait_in_sync(timeout=WAIT)
        sync.wait_in_sync(timeout=WAIT)
        assert ids(a) == ids(hub.db("todos"))
        assert len(ids(a)) == 4000
        assert sync.status.rounds >= 2
        assert paused([sync])
        assert settles_at(1 + PER_CLIENT), client_threads()
        sync.cancel()
        assert sync.wait(timeout=WAIT).state is SyncState.CANCELLED
        client.close()
