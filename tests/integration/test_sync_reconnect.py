"""Reconnection: the server goes away mid live sync and comes back on the same port.

Every open sync negotiates its channel again and resumes from its checkpoints: nothing
lost, nothing replayed, no replication left running behind (the original leaks one
zombie per reconnect).
"""

from __future__ import annotations

import threading
from typing import Any

from pouchsync_sync import signals
from pouchsync_sync.client import SyncState
from pouchsync_sync.testing import RunningServer
from tests.fault.proxy import wait_until
from tests.integration.test_sync import (  # noqa: F401 - fixtures
    TOKEN,
    clients,
    hub,
    ids,
    local,
    put_many,
    recorders,
    revs,
)


def _replicator_threads() -> list[str]:
    """The threads of syncs and their replications (read-ahead, uploads)."""
    return sorted(t.name for t in threading.enumerate()
                  if t.name.startswith(("pouchsync-sync[", "pouchsync-replicate",
                                        "pouchsync-changes-ahead", "pouchsync-upload")))


def _one_thread_per_sync(count: int) -> bool:
    """Each idle live sync runs both directions on its one thread: no zombie replication
    (the read-ahead of a batch ends when it is caught up: waited for, bounded)."""
    return wait_until(lambda: _replicator_threads() == ["pouchsync-sync[todos]"] * count,
                      timeout=10)


def test_server_restart_mid_live_sync_resumes_without_loss(hub, clients, local, recorders,
                                                          tmp_path):
    server = RunningServer(hub.on_request, tmp_path / "unused").start()  # the hub's stores
    url = server.url
    try:
        a, b = local("todos"), local("todos")
        client_a, client_b = clients(), clients()
        reconnects = recorders(signals.client_reconnect, client_a)
        disconnects = recorders(signals.client_disconnect, client_a)
        connects = recorders(signals.client_connect, client_a)
        sync_a = client_a.connect(url).sync(a, credentials=TOKEN, live=True)
        sync_b = client_b.connect(url).sync(b, credentials=TOKEN, live=True)
        offline_a = recorders(signals.sync_paused, sync_a)

        put_many(a, "before-", 100)
        sync_a.wait_in_sync(timeout=20)
        sync_b.wait_in_sync(timeout=20)
        assert ids(b) == ids(a)
        assert _one_thread_per_sync(2), _replicator_threads()

        server.stop()
        assert disconnects.wait_for(lambda ev: len(ev) >= 1)
        assert disconnects.events[0]["error"] is not None
        assert offline_a.wait_for(lambda ev: any(e["direction"] is None for e in ev))
        assert sync_a.state is SyncState.OFFLINE
        # writes on both sides while the server is away
        put_many(a, "during-", 100)
        b.put({"_id": "b-during"})
        # the client keeps trying, with growing delays
        assert reconnects.wait_for(lambda ev: len(ev) >= 3)
        attempts = [e["attempt"] for e in reconnects.events[:3]]
        delays = [e["delay"] for e in reconnects.events[:3]]
        assert attempts == [1, 2, 3]
        assert delays == [0.02, 0.04, 0.08]

        server.start()  # same port
        assert server.url == url
        assert connects.wait_for(lambda ev: len(ev) >= 2, timeout=20)
        sync_a.wait_in_sync(timeout=30)
        sync_b.wait_in_sync(timeout=30)
        sync_a.wait_in_sync(timeout=30)
        server_db = hub.db("todos")
        assert revs(a) == revs(b) == revs(server_db)
        assert len(ids(a)) == 201
        # nothing replayed: each doc went up exactly once
        assert sync_a.status.docs_pushed == 200
        assert sync_b.status.docs_pulled == 200
        assert sync_a.status.docs_pulled == 1
        assert sync_a.status.rounds == 2 and sync_b.status.rounds == 2
        # no zombies: one push and one pull replicator per sync, on the sync's thread
        assert _one_thread_per_sync(2), _replicator_threads()
        pushes: list[list[str]] = []

        def on_change(sender: Any, **kwargs: Any) -> None:
            if kwargs["direction"] == "push":
                pushes.append([d["_id"] for d in kwargs["docs"]])

        signals.sync_change.connect(on_change, sender=sync_a)
        try:
            a.put({"_id": "after"})
            sync_a.wait_in_sync(timeout=20)
        finally:
            signals.sync_change.disconnect(on_change, sender=sync_a)
        assert pushes == [["after"]]
        sync_b.wait_in_sync(timeout=20)
        assert "after" in ids(b)
    finally:
        for client in (locals().get("client_a"), locals().get("client_b")):
            if client is not None:
                client.close()
        server.close()


def test_one_shot_sync_survives_a_restart_before_it_starts(hub, clients, local, tmp_path):
    """A one-shot sync made while the server is down completes once it is back."""
    server = RunningServer(hub.on_request, tmp_path / "unused").start()  # the hub's stores
    port = server.port
    server.stop()
    try:
        a = local("todos")
        put_many(a, "a", 25)
        client = clients().connect(f"ws://127.0.0.1:{port}/")
        sync = client.sync(a, credentials=TOKEN)
        assert sync.state is SyncState.CONNECTING
        server.start()  # same port
        result = sync.wait(timeout=30)
        assert result.docs_pushed == 25
    finally:
        server.close()
