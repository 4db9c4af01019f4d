"""Client syncs against the real server on 127.0.0.1:0, with real clients and threads.

Signals are the test's eyes: receivers record events and set Events the test waits on
with timeouts; nothing sleeps. Backoffs are short and jitter-free (injected).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from pouchsync_sync import signals
from pouchsync_sync.client import SyncState
from pouchsync_sync.errors import Denied, Timeout, TransportError
from pouchsync_sync.store.local import LocalDatabase
from tests.sync_fixtures import Hub, Recorder, clients, local, recorders  # noqa: F401 - fixtures

TOKEN = {"token": "some token"}


def make_server(on_request: Callable[..., Any], **options: Any) -> Any:
    from pouchsync_sync.server import create_server

    return create_server(on_request, **options)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    h = Hub(tmp_path / "server", TOKEN)
    yield h
    h.close()


@pytest.fixture
def server(hub: Hub) -> Iterator[Any]:
    srv = make_server(hub.on_request).start()
    yield srv
    srv.stop()




def put_many(db: LocalDatabase, prefix: str, n: int) -> None:
    db.bulk_docs([{"_id": f"{prefix}{i:05d}", "n": i} for i in range(n)])


def ids(db: Any) -> set[str]:
    return {row["id"] for row in db.all_docs()["rows"]}


def revs(db: Any) -> dict[str, str]:
    return {row["id"]: row["value"]["rev"] for row in db.all_docs()["rows"]}


# -- one-shot -------------------------------------------------------------------------

def test_wait_returns_after_the_final_signal_has_run(server, hub, clients, local):
    """A blocking caller may rely on its sync_complete receiver having run by the time
    wait() returns (a slow receiver used to be overtaken by wait())."""
    a = local("todos")
    a.put({"_id": "one"})
    seen: list[str] = []
    pause = threading.Event()  # never set: the receiver takes a while

    def slow_receiver(sender: Any, **kwargs: Any) -> None:
        pause.wait(0.3)
        seen.append(kwargs["result"].state.value)

    signals.sync_complete.connect(slow_receiver)  # before the sync exists: it may be quick
    try:
        sync = clients().connect(server.url).sync(a, credentials=TOKEN)
        sync.wait(timeout=30)
        assert seen == ["complete"]
    finally:
        signals.sync_complete.disconnect(slow_receiver)


def test_one_shot_push(server, hub, clients, local):
    a = local("todos")
    put_many(a, "a", 150)
    client = clients().connect(server.url)
    result = client.sync(a, credentials=TOKEN, direction="push").wait(timeout=30)
    assert result.state is SyncState.COMPLETE
    assert (result.docs_pushed, result.docs_pulled) == (150, 0)
    assert result.pull is None and result.push is not None and result.push.ok
    assert revs(hub.db("todos")) == revs(a)


def test_one_shot_pull(server, hub, clients, local):
    put_many(hub.db("todos"), "s", 120)
    a = local("todos")
    client = clients().connect(server.url)
    result = client.sync(a, credentials=TOKEN, direction="pull").wait(timeout=30)
    assert (result.docs_pushed, result.docs_pulled) == (0, 120)
    assert revs(a) == revs(hub.db("todos"))


def test_one_shot_both_and_remote_name(server, hub, clients, local):
    put_many(hub.db("server-side"), "s", 30)
    a = local("mine")
    put_many(a, "a", 40)
    client = clients().connect(server.url)
    sync = client.sync(a, remote_name="server-side", credentials=TOKEN)
    result = sync.wait(timeout=30)
    assert (result.docs_pushed, result.docs_pulled) == (40, 30)
    assert sync.state is SyncState.COMPLETE
    assert revs(a) == revs(hub.db("server-side")) and len(revs(a)) == 70
    assert hub.requests[-1] == (TOKEN, "server-side")
    status = sync.status
    assert status.docs_pushed == 40 and status.docs_pulled == 30 and status.last_error is None
    # a second run has nothing to do: checkpoints on both sides
    again = client.sync(a, remote_name="server-side", credentials=TOKEN).wait(timeout=30)
    assert (again.docs_pushed, again.docs_pulled) == (0, 0)


def test_sync_made_before_connect_starts_on_connect(server, hub, clients, local):
    a = local("todos")
    put_many(a, "a", 5)
    client = clients()
    sync = client.sync(a, credentials=TOKEN)
    assert sync.state is SyncState.CONNECTING
    client.connect(server.url)
    assert sync.wait(timeout=30).docs_pushed == 5


def test_complete_signal_once_and_wait_timeout(server, clients, local, recorders):
    a = local("todos")
    put_many(a, "a", 3)
    client = clients()  # not connected yet: wait() must time out
    sync = client.sync(a, credentials=TOKEN)
    complete = recorders(signals.sync_complete, sync)
    with pytest.raises(Timeout):
        sync.wait(timeout=0.05)
    client.connect(server.url)
    result = sync.wait(timeout=30)
    assert complete.wait_for(lambda ev: len(ev) == 1)
    assert complete.events[0]["result"] is result


# -- denied ---------------------------------------------------------------------------

@pytest.mark.parametrize("credentials", [
    {"token": "wrong"}, None, "just a string", ["a", 1], {"token": {"nested": True}},
], ids=["wrong", "missing", "string", "list", "nested"])
def test_denied(server, clients, local, recorders, credentials):
    a = local("todos")
    client = clients().connect(server.url)
    sync = client.sync(a, credentials=credentials, live=True)
    denied = recorders(signals.sync_denied, sync)
    errors = recorders(signals.sync_error, sync)
    with pytest.raises(Denied) as info:
        sync.wait(timeout=30)
    assert "bad or missing token" in str(info.value)
    assert sync.state is SyncState.DENIED
    assert denied.wait_for(lambda ev: len(ev) == 1)
    assert isinstance(denied.events[0]["error"], Denied)
    assert errors.events == []  # denied is reported once, as denied
    # the client is fine: another sync on the same socket is granted
    ok = client.sync(local("other"), credentials=TOKEN).wait(timeout=30)
    assert ok.state is SyncState.COMPLETE


# -- live -----------------------------------------------------------------------------

def test_live_a_to_server_to_b(server, hub, clients, local, recorders):
    a, b = local("todos"), local("todos")
    client_a = clients().connect(server.url)
    client_b = clients().connect(server.url)
    sync_a = client_a.sync(a, credentials=TOKEN, live=True)
    sync_b = client_b.sync(b, credentials=TOKEN, live=True)
    changes_b = recorders(signals.sync_change, sync_b)
    arrived = threading.Event()

    def watch(sender: Any, **kwargs: Any) -> None:
        if kwargs["direction"] == "pull" and any(d["_id"] == "hello" for d in kwargs["docs"]):
            arrived.set()

    signals.sync_change.connect(watch, sender=sync_b)
    try:
        a.put({"_id": "hello", "text": "from A"})
        assert arrived.wait(10)
        assert b.get("hello")["text"] == "from A"
        # and back
        b.put({"_id": "reply", "text": "from B"})
        sync_b.wait_in_sync(timeout=10)
        sync_a.wait_in_sync(timeout=10)
        assert a.get("reply")["text"] == "from B"
        assert sync_a.state in (SyncState.ACTIVE, SyncState.PAUSED)
        assert any(e["direction"] == "pull" for e in changes_b.events)
        counts = changes_b.events[-1]["counts"]
        assert counts["docs_pulled"] >= 1
    finally:
        signals.sync_change.disconnect(watch, sender=sync_b)
    sync_a.cancel()
    result = sync_a.wait(timeout=10)
    assert result.state is SyncState.CANCELLED and result.cancelled
    assert sync_a.state is SyncState.CANCELLED


def test_live_wait_in_sync_covers_every_earlier_write(server, hub, clients, local):
    a = local("todos")
    client = clients().connect(server.url)
    sync = client.sync(a, credentials=TOKEN, live=True)
    for round_no in range(3):
        put_many(a, f"r{round_no}-", 50)
        assert sync.wait_in_sync(timeout=20) is True
        assert ids(a) <= ids(hub.db("todos"))
    hub.db("todos").put({"_id": "from-server"})
    sync.wait_in_sync(timeout=20)
    assert "from-server" in ids(a)


def test_three_databases_over_one_client_without_cross_talk(server, hub, clients, local):
    client = clients().connect(server.url)
    names = ["alpha", "beta", "gamma"]
    dbs = {name: local(name) for name in names}
    for name in names:
        put_many(dbs[name], f"{name}-", 60)
        put_many(hub.db(name), f"srv-{name}-", 20)
    syncs = {name: client.sync(dbs[name], credentials=TOKEN, live=True, batch_size=7)
             for name in names}
    for name in names:
        syncs[name].wait_in_sync(timeout=30)
    for name in names:
        for db in (dbs[name], hub.db(name)):
            got = ids(db)
            assert len(got) == 80
            assert all(i.startswith((f"{name}-", f"srv-{name}-")) for i in got), name
    assert len(client.syncs) == 3
    client.close()
    assert all(s.state is SyncState.CANCELLED for s in syncs.values())


# -- cancel -----------------------------------------------------------------------------

def test_cancel_before_connect_never_opens(server, hub, clients, local):
    client = clients()
    sync = client.sync(local("todos"), credentials=TOKEN, live=True)
    sync.cancel()
    result = sync.wait(timeout=5)
    assert result.state is SyncState.CANCELLED
    client.connect(server.url)
    client.wait_connected(10)
    # another sync goes through the server, so the cancelled one had its chance
    client.sync(local("other"), credentials=TOKEN).wait(timeout=30)
    assert [name for _, name in hub.requests] == ["other"]


def test_cancel_during_a_batch(server, hub, clients, local, recorders):
    a = local("todos")
    put_many(a, "a", 2000)
    client = clients().connect(server.url)
    sync = client.sync(a, credentials=TOKEN, direction="push", batch_size=20)
    first = threading.Event()

    def on_change(sender: Any, **kwargs: Any) -> None:
        first.set()

    signals.sync_change.connect(on_change, sender=sync)
    try:
        assert first.wait(30)
        sync.cancel()
        result = sync.wait(timeout=10)
    finally:
        signals.sync_change.disconnect(on_change, sender=sync)
    assert result.state is SyncState.CANCELLED
    assert 0 < result.docs_pushed < 2000
    assert len(ids(hub.db("todos"))) < 2000
    # a new sync resumes from the checkpoint and finishes the job
    rest = client.sync(a, credentials=TOKEN, direction="push", batch_size=500).wait(timeout=60)
    assert ids(hub.db("todos")) == ids(a)
    assert rest.docs_pushed <= 2000 - result.docs_pushed + 20


def test_cancel_after_complete_is_a_no_op(server, clients, local, recorders):
    client = clients().connect(server.url)
    sync = client.sync(local("todos"), credentials=TOKEN)
    complete = recorders(signals.sync_complete, sync)
    result = sync.wait(timeout=30)
    sync.cancel()
    sync.cancel()
    assert sync.state is SyncState.COMPLETE
    assert sync.wait(timeout=1) is result
    assert complete.wait_for(lambda ev: len(ev) == 1)
    assert len(complete.events) == 1


# -- close, signals --------------------------------------------------------------------

def _client_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate()
                  if t.name.startswith(("pouchsync-client", "pouchsync-sync")))


def test_close_joins_every_thread_and_is_idempotent(server, clients, local):
    before = _client_threads()
    client = clients().connect(server.url)
    syncs = [client.sync(local(f"db{i}"), credentials=TOKEN, live=True) for i in range(3)]
    for sync in syncs:
        sync.wait_in_sync(timeout=30)
    assert len(_client_threads()) > len(before)
    closer = threading.Thread(target=client.close, name="closer")
    closer.start()
    client.destroy()  # concurrently, from another thread: safe
    closer.join(10)
    client.end()
    assert _client_threads() == before
    assert all(s.state is SyncState.CANCELLED for s in syncs)
    with pytest.raises(Exception):
        client.sync(local("late"), credentials=TOKEN)


def test_a_receiver_that_raises_does_not_hurt(server, hub, clients, local):
    def bad(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    sigs = [signals.sync_change, signals.sync_active, signals.sync_paused,
            signals.sync_complete, signals.client_connect]
    for sig in sigs:
        sig.connect(bad)
    try:
        a = local("todos")
        put_many(a, "a", 30)
        client = clients().connect(server.url)
        result = client.sync(a, credentials=TOKEN).wait(timeout=30)
        assert result.state is SyncState.COMPLETE and result.docs_pushed == 30
    finally:
        for sig in sigs:
            sig.disconnect(bad)


def test_connect_signal_and_database_handle(server, hub, clients, recorders):
    client = clients()
    connected = recorders(signals.client_connect, client)
    client.connect(server.url)
    assert connected.wait_for(lambda ev: len(ev) == 1)
    assert connected.events[0]["url"] == server.url
    remote = client.database("todos", credentials=TOKEN)
    remote.put({"_id": "x"})
    assert hub.db("todos").get("x")["_id"] == "x"
    assert remote.identity().startswith(server.url + "#todos#")
    with pytest.raises(Denied):
        client.database("todos", credentials=None)


def test_gives_up_after_max_attempts_and_every_sync_errors(clients, local, recorders):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = clients(max_attempts=3, connect_timeout=1)
    reconnects = recorders(signals.client_reconnect, client)
    sync = client.sync(local("todos"), credentials=TOKEN, live=True)
    errors = recorders(signals.sync_error, sync)
    client.connect(f"ws://127.0.0.1:{port}/")
    with pytest.raises(TransportError) as info:
        sync.wait(timeout=10)
    assert "gave up" in str(info.value)
    assert sync.state is SyncState.ERROR
    assert [(e["attempt"], e["delay"]) for e in reconnects.events] == [(1, 0.02), (2, 0.04)]
    assert errors.wait_for(lambda ev: len(ev) == 1)


def test_sync_made_after_the_connection_is_up(server, clients, local):
    client = clients().connect(server.url)
    client.wait_connected(10)
    assert client.connected
    a = local("todos")
    put_many(a, "a", 4)
    assert client.sync(a, credentials=TOKEN).wait(timeout=30).docs_pushed == 4


def test_only_websocket_urls(clients):
    with pytest.raises(ValueError):
        clients().connect("http://127.0.0.1:1/")


class Flaky(LocalDatabase):
    """A server database whose ``info()`` fails ``fails`` times (the server answers 500)."""

    fails = 0

    def info(self) -> dict[str, Any]:
        if self.fails > 0:
            self.fails -= 1
            raise RuntimeError("disk on fire")
        return super().info()


def _flaky_server(tmp_path: Path, fails: int) -> tuple[Any, Flaky]:
    flaky = Flaky(tmp_path / "flaky.sqlite", name="todos")
    flaky.fails = fails
    return make_server(lambda credentials, name: flaky).start(), flaky


def test_a_server_error_is_retried_with_backoff(tmp_path, clients, local, recorders):
    server, flaky = _flaky_server(tmp_path, fails=2)
    try:
        a = local("todos")
        put_many(a, "a", 5)
        client = clients(max_attempts=5).connect(server.url)
        sync = client.sync(a)
        paused = recorders(signals.sync_paused, sync)
        result = sync.wait(timeout=30)
        assert result.state is SyncState.COMPLETE and result.docs_pushed == 5
        offline = [e for e in paused.events if e["direction"] is None]
        assert len(offline) == 2  # went offline twice, then made it
        assert sync.status.rounds == 3
    finally:
        client.close()
        server.stop()
        flaky.close()


def test_a_server_error_that_persists_ends_the_sync_once(tmp_path, clients, local, recorders):
    from pouchsync_sync.errors import ServerError

    server, flaky = _flaky_server(tmp_path, fails=100)
    try:
        client = clients(max_attempts=2).connect(server.url)
        sync = client.sync(local("todos"), live=True)
        errors = recorders(signals.sync_error, sync)
        with pytest.raises(ServerError):
            sync.wait(timeout=30)
        assert sync.state is SyncState.ERROR
        assert isinstance(sync.status.last_error, ServerError)
        assert errors.wait_for(lambda ev: len(ev) >= 1)
        client.close()
        assert len(errors.events) == 1
    finally:
        client.close()
        server.stop()
        flaky.close()


def test_close_and_wait_from_a_receiver_on_the_syncs_own_thread(server, clients, local):
    import time

    client = clients().connect(server.url)
    a = local("todos")
    sync = client.sync(a, credentials=TOKEN, live=True)
    sync.wait_in_sync(timeout=30)
    seen: list[BaseException] = []
    closed = threading.Event()

    def receiver(sender: Any, **kwargs: Any) -> None:
        try:
            sender.wait(timeout=1)
        except Exception as exc:  # noqa: BLE001
            seen.append(exc)
        client.close()
        closed.set()

    signals.sync_change.connect(receiver, sender=sync)
    try:
        started = time.monotonic()
        a.put({"_id": "trigger"})
        assert closed.wait(10)
        assert time.monotonic() - started < 5  # no join of itself until a timeout
    finally:
        signals.sync_change.disconnect(receiver, sender=sync)
    assert sync.wait(timeout=10).state is SyncState.CANCELLED
    assert len(seen) == 1 and "own thread" in str(seen[0])


def test_many_live_syncs_share_one_socket(server, hub, clients, local):
    """More live syncs than the server has workers per socket: idle live pulls wait
    as subscriptions, so they hold no worker and no call slot, and nothing starves."""
    client = clients().connect(server.url)
    syncs = [client.sync(local(f"many{i}"), credentials=TOKEN, live=True) for i in range(20)]
    for sync in syncs:
        sync.wait_in_sync(timeout=30)
    for i, sync in enumerate(syncs):
        sync.db.put({"_id": f"doc{i}"})
    hub.db("many7").put({"_id": "from-server"})
    for sync in syncs:
        sync.wait_in_sync(timeout=30)
    for i in range(20):
        assert ids(hub.db(f"many{i}")) >= {f"doc{i}"}
    assert "from-server" in ids(syncs[7].db)


def test_too_many_channels_is_retried_not_denied(hub, clients, local):
    server = make_server(hub.on_request, max_channels=2).start()
    try:
        client = clients().connect(server.url)
        first = [client.sync(local(f"c{i}"), credentials=TOKEN, live=True) for i in range(2)]
        for sync in first:
            sync.wait_in_sync(timeout=30)
        third = client.sync(local("c2"), credentials=TOKEN, live=True)
        with pytest.raises(Timeout):
            third.wait_in_sync(timeout=0.5)
        assert third.state in (SyncState.CONNECTING, SyncState.OFFLINE)
        first[0].cancel()
        third.wait_in_sync(timeout=30)  # got the freed channel on a retry
        assert third.state in (SyncState.ACTIVE, SyncState.PAUSED)
    finally:
        client.close()
        server.stop()


class Missing(LocalDatabase):
    """A server database that answers 404 ("Database does not exist.") ``missing`` times."""

    missing = 0

    def info(self) -> dict[str, Any]:
        from pouchsync_sync.errors import NotFound

        if self.missing > 0:
            self.missing -= 1
            raise NotFound("Database does not exist.")
        return super().info()


@pytest.mark.parametrize("live", [True, False], ids=["live", "one-shot"])
def test_a_missing_remote_database(tmp_path, clients, local, live):
    """A live sync rides out its remote database missing for a while (being restored);
    a one-shot sync reports it at once."""
    from pouchsync_sync.errors import NotFound

    db = Missing(tmp_path / "missing.sqlite", name="todos")
    db.missing = 2
    server = make_server(lambda credentials, name: db).start()
    try:
        client = clients().connect(server.url)
        a = local("todos")
        a.put({"_id": "x"})
        sync = client.sync(a, live=live)
        if live:
            sync.wait_in_sync(timeout=30)
            status = sync.status
            assert "x" in ids(db) and status.rounds >= 2
            assert isinstance(status.last_error, NotFound)
        else:
            with pytest.raises(NotFound):
                sync.wait(timeout=30)
            assert sync.state is SyncState.ERROR
    finally:
        client.close()
        server.stop()
        db.close()


def test_docs_written_by_a_batch_cut_short_by_cancel_are_counted(server, hub, clients, tmp_path):
    """A cancel that lands while a batch is written: the docs it wrote are in the local
    store, so they are in the sync's counts too, though no batch end reported them."""
    put_many(hub.db("todos"), "s", 1200)
    holder: dict[str, Any] = {}

    class CancelOnFirstWrite(LocalDatabase):
        def write_missing_texts(self, rows: Any) -> Any:
            answer = super().write_missing_texts(rows)
            if "sync" in holder and not holder.get("cancelled"):
                holder["cancelled"] = True
                holder["sync"].cancel()
            return answer

    a = CancelOnFirstWrite(tmp_path / "cut-short.sqlite", name="todos")
    try:
        client = clients().connect(server.url)
        holder["sync"] = sync = client.sync(a, credentials=TOKEN, direction="pull",
                                            batch_size=500)
        result = sync.wait(timeout=30)
        assert result.state is SyncState.CANCELLED
        stored = len(ids(a))
        assert 0 < stored < 1200  # the cancel landed mid-sync
        assert result.docs_pulled == stored
        assert sync.status.docs_pulled == stored
    finally:
        a.close()
