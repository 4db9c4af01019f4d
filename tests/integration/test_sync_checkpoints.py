"""Live sync checkpoints (``checkpoint_interval``) and quiet cancels, over a real socket.

A caught-up live sync records its checkpoint (``_local/<replication id>`` on both sides)
after every batch with ``checkpoint_interval=0``; with a long interval it defers it, and
records it when the sync is cancelled or its client closed, so a resumed sync reads no
change twice. Cancelling a live sync mid-call ends it as "cancelled" without a warning.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from pouchsync_sync import Client, create_client, signals
from pouchsync_sync.client import SyncState
from pouchsync_sync.errors import NotFound
from pouchsync_sync.replication.ids import generate_replication_id
from pouchsync_sync.store.local import LocalDatabase
from tests.fault.proxy import wait_until
from tests.sync_fixtures import Hub, clients, local, recorders  # noqa: F401 - fixtures

TOKEN = {"token": "checkpoint token"}
WAIT = 20.0


class Counting(LocalDatabase):
    """A store that counts the change rows read from it (not counting ``since="now"``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rows_read = 0
        self._count_lock = threading.Lock()

    def changes(self, **kwargs: Any) -> dict[str, Any]:
        answer = super().changes(**kwargs)
        with self._count_lock:
            self.rows_read += len(answer.get("results") or [])
        return answer


class CountingHub(Hub):
    def db(self, name: str) -> LocalDatabase:
        with self.lock:
            if name not in self.dbs:
                self.dbs[name] = Counting(self.root / f"{name}.sqlite", name=name)
            return self.dbs[name]


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[CountingHub]:
    h = CountingHub(tmp_path / "server", TOKEN)
    yield h
    h.close()


@pytest.fixture
def server(hub: CountingHub) -> Iterator[Any]:
    from pouchsync_sync.server import create_server

    srv = create_server(hub.on_request).start()
    yield srv
    srv.stop()


@pytest.fixture
def counting_local(tmp_path: Path) -> Iterator[Any]:
    """Local stores that count the change rows read from them."""
    made: list[LocalDatabase] = []

    def make(name: str) -> Counting:
        db = Counting(tmp_path / f"counting-{len(made)}-{name}.sqlite", name=name)
        made.append(db)
        return db

    yield make
    for db in made:
        db.close()


def last_seq(db: LocalDatabase) -> Any:
    return db.changes(since="now")["last_seq"]


class Checkpoints:
    """Reads the push and pull checkpoint docs of ``local`` <-> ``served`` on both sides."""

    def __init__(self, client: Client, local_db: LocalDatabase, served: LocalDatabase) -> None:
        remote = client.database(served.name, credentials=TOKEN, timeout=WAIT)
        self.local, self.served = local_db, served
        self.push_id = "_local/" + generate_replication_id(local_db.identity(), remote.identity())
        self.pull_id = "_local/" + generate_replication_id(remote.identity(), local_db.identity())
        remote.close()

    def recorded(self, direction: str) -> tuple[Any, Any]:
        """The seq recorded by ``direction`` on (its source, its target); None on a side
        where no checkpoint was recorded yet."""
        doc_id = self.push_id if direction == "push" else self.pull_id
        return (_recorded_seq(self.local, doc_id), _recorded_seq(self.served, doc_id))


def _recorded_seq(db: LocalDatabase, doc_id: str) -> Any:
    try:
        return db.get(doc_id)["source_last_seq"]
    except NotFound:
        return None


def in_sync(local_db: LocalDatabase, served: LocalDatabase) -> bool:
    def ids(db: LocalDatabase) -> set[str]:
        return {row["id"] for row in db.all_docs()["rows"]}
    return ids(local_db) == ids(served)


# -- checkpoint_interval ------------------------------------------------------------------

def test_interval_zero_records_a_checkpoint_after_every_caught_up_batch(server, hub, clients,
                                                                         local):
    a = local("todos")
    served = hub.db("todos")
    client = clients().connect(server.url)
    sync = client.sync(a, credentials=TOKEN, live=True, checkpoint_interval=0)
    assert sync.checkpoint_interval == 0.0
    sync.wait_in_sync(timeout=WAIT)
    marks = Checkpoints(client, a, served)
    seen = set()
    for i in range(3):
        a.put({"_id": f"up-{i}"})
        served.put({"_id": f"down-{i}"})
        sync.wait_in_sync(timeout=WAIT)
        # again: the first wait may end before each side has read back the other's write
        # (an echo, a change of its own source made during that wait)
        sync.wait_in_sync(timeout=WAIT)
        push, pull = last_seq(a), last_seq(served)
        assert marks.recorded("push") == (push, push)
        assert marks.recorded("pull") == (pull, pull)
        seen.add((push, pull))
    assert len(seen) == 3  # the checkpoint docs moved each time
    sync.cancel()
    assert sync.wait(timeout=WAIT).state is SyncState.CANCELLED


@pytest.mark.parametrize("stop", ["cancel", "client.close"])
def test_long_interval_defers_and_the_stop_records_the_checkpoint(server, hub, clients,
                                                                  counting_local, stop):
    a = counting_local("todos")
    served = hub.db("todos")
    a.bulk_docs([{"_id": f"old-up-{i}"} for i in range(30)])
    served.bulk_docs([{"_id": f"old-down-{i}"} for i in range(30)])
    client = clients().connect(server.url)
    sync = client.sync(a, credentials=TOKEN, live=True, checkpoint_interval=600,
                       batch_size=10)
    sync.wait_in_sync(timeout=WAIT)
    marks = Checkpoints(client, a, served)
    for i in range(3):
        a.put({"_id": f"up-{i}"})
        served.put({"_id": f"down-{i}"})
        sync.wait_in_sync(timeout=WAIT)  # written, not held back by the deferred checkpoint
    assert in_sync(a, served)
    sync.wait_in_sync(timeout=WAIT)  # and each side has read back the last echo
    # caught-up batches since the backlog: none recorded yet
    assert marks.recorded("push") != (last_seq(a),) * 2
    assert marks.recorded("pull") != (last_seq(served),) * 2
    if stop == "cancel":
        sync.cancel()
    else:
        client.close()
    assert sync.wait(timeout=WAIT).state is SyncState.CANCELLED
    # recorded on the way out, on both sides of both directions
    assert marks.recorded("push") == (last_seq(a),) * 2
    assert marks.recorded("pull") == (last_seq(served),) * 2
    # so a sync of the same pair resumes there: no change row is read again
    a_rows, served_rows = a.rows_read, served.rows_read
    again = clients().connect(server.url).sync(a, credentials=TOKEN).wait(timeout=WAIT)
    assert (again.docs_pushed, again.docs_pulled) == (0, 0)
    assert again.push is not None and again.pull is not None
    assert again.push.ok and again.pull.ok
    assert (a.rows_read, served.rows_read) == (a_rows, served_rows)


def test_a_deferred_checkpoint_is_recorded_when_due_with_no_further_change(server, hub,
                                                                           clients, local):
    """The live round's timer records a caught-up batch's deferred checkpoint once it is
    due: nothing else has to happen (no later batch, no stop)."""
    a = local("todos")
    served = hub.db("todos")
    a.put({"_id": "before"})  # the backlog's batch records the first checkpoint
    client = clients().connect(server.url)
    sync = client.sync(a, credentials=TOKEN, live=True, direction="push",
                       checkpoint_interval=1.0)
    sync.wait_in_sync(timeout=WAIT)
    marks = Checkpoints(client, a, served)
    a.put({"_id": "late"})  # a caught-up live batch: its checkpoint waits
    sync.wait_in_sync(timeout=WAIT)
    want = (last_seq(a),) * 2
    # a _local write wakes no notifier to wait on: polled
    assert wait_until(lambda: marks.recorded("push") == want, timeout=WAIT), \
        "the deferred checkpoint was never recorded"
    assert sync.state is not SyncState.CANCELLED  # recorded while it runs, not by a stop
    sync.cancel()
    assert sync.wait(timeout=WAIT).state is SyncState.CANCELLED


def test_the_client_default_applies_and_a_sync_overrides_it(server, hub, local):
    client = create_client(checkpoint_interval=0, initial_delay=0.02, jitter=0.0)
    try:
        assert client.checkpoint_interval == 0.0
        client.connect(server.url)
        a, b = local("one"), local("two")
        a.put({"_id": "first"})
        b.put({"_id": "first"})
        default = client.sync(a, credentials=TOKEN, live=True, direction="push")
        override = client.sync(b, credentials=TOKEN, live=True, direction="push",
                               checkpoint_interval=600)
        assert (default.checkpoint_interval, override.checkpoint_interval) == (0.0, 600.0)
        default.wait_in_sync(timeout=WAIT)
        override.wait_in_sync(timeout=WAIT)
        marks_a = Checkpoints(client, a, hub.db("one"))
        marks_b = Checkpoints(client, b, hub.db("two"))
        b_start = marks_b.recorded("push")
        for i in range(2):
            a.put({"_id": f"x{i}"})
            b.put({"_id": f"x{i}"})
            default.wait_in_sync(timeout=WAIT)
            override.wait_in_sync(timeout=WAIT)
            assert marks_a.recorded("push") == (last_seq(a),) * 2  # the client's 0
            assert marks_b.recorded("push") == b_start  # the sync's 600: deferred
    finally:
        client.close()
    assert marks_b.recorded("push") == (last_seq(b),) * 2  # recorded by the close


@pytest.mark.parametrize("bad", [-1, -0.5, True, False, "5", float("nan"), float("inf"), [1]])
def test_bad_intervals_are_refused(bad, clients, local):
    client = clients()
    with pytest.raises(ValueError, match="checkpoint_interval"):
        client.sync(local("todos"), live=True, checkpoint_interval=bad)
    assert client.syncs == []
    with pytest.raises(ValueError, match="checkpoint_interval"):
        Client(checkpoint_interval=bad)
    with pytest.raises(ValueError, match="checkpoint_interval"):
        Client(checkpoint_interval=None)  # on a sync, None means "the client's"


# -- quiet cancels ------------------------------------------------------------------------

class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def captured() -> Iterator[Capture]:
    handler = Capture()
    logger = logging.getLogger("pouchsync_sync")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def test_cancelling_a_live_sync_mid_call_is_quiet(server, hub, clients, local, captured):
    """Cancelled while the pull waits in the server's longpoll (a call in flight) and
    while the push is busy: both replications end "cancelled", no warning."""
    a = local("todos")
    a.bulk_docs([{"_id": f"doc-{i:05d}"} for i in range(3000)])
    client = clients().connect(server.url)
    sync = client.sync(a, credentials=TOKEN, live=True, batch_size=50)
    started = threading.Event()

    def on_change(sender: Any, **kwargs: Any) -> None:
        started.set()

    signals.sync_change.connect(on_change, sender=sync)
    try:
        assert started.wait(WAIT)
        sync.cancel()  # the push is mid-backlog; the pull waits on the server
        result = sync.wait(timeout=WAIT)
    finally:
        signals.sync_change.disconnect(on_change, sender=sync)
    assert result.state is SyncState.CANCELLED
    assert result.push is not None and result.pull is not None
    assert (result.push.status, result.pull.status) == ("cancelled", "cancelled")
    assert result.push.error is None and result.pull.error is None
    warnings = [r for r in captured.records if r.levelno >= logging.WARNING]
    assert warnings == [], [r.getMessage() for r in warnings]
    assert any("cancelled" in r.getMessage() for r in captured.records
               if r.name == "pouchsync_sync.replication.replicator")


def test_a_server_death_is_still_an_error_with_its_warning(hub, clients, local, captured):
    from pouchsync_sync.server import create_server

    srv = create_server(hub.on_request).start()
    try:
        a = local("todos")
        client = clients(max_attempts=1, max_delay=0.05).connect(srv.url)
        sync = client.sync(a, credentials=TOKEN, live=True)
        sync.wait_in_sync(timeout=WAIT)
    finally:
        srv.stop()
    with pytest.raises(Exception):
        sync.wait(timeout=WAIT)
    assert sync.state is SyncState.ERROR
    # the warning comes from the replicator when a call of it failed first, or from the
    # sync when the lost connection cancelled its replicators first (a race, both right)
    assert any(r.levelno == logging.WARNING and "failed" in r.getMessage()
               for r in captured.records if r.name in ("pouchsync_sync.replication.replicator",
                                                       "pouchsync_sync.client.sync"))


class Stuck(LocalDatabase):
    """A server store whose writes of replicated docs hang until ``release`` (at most 30 s)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.entered = threading.Event()
        self.release = threading.Event()

    def bulk_docs(self, docs: Any, **kwargs: Any) -> Any:
        self.entered.set()
        self.release.wait(30)
        return super().bulk_docs(docs, **kwargs)

    def write_missing_texts(self, rows: Any) -> Any:
        self.entered.set()
        self.release.wait(30)
        return super().write_missing_texts(rows)


@pytest.fixture
def stuck_server(tmp_path) -> Iterator[tuple[Stuck, str]]:
    """A server whose store's replicated writes hang until released (at teardown)."""
    from pouchsync_sync.server import create_server

    stuck = Stuck(tmp_path / "stuck.sqlite", name="todos")
    srv = create_server(lambda credentials, name: stuck).start()
    try:
        yield stuck, srv.url
    finally:
        stuck.release.set()
        srv.stop()
        stuck.close()


def _replication_warnings(captured: Capture) -> list[str]:
    return [r.getMessage() for r in captured.records if r.levelno >= logging.WARNING
            and r.name.startswith("pouchsync_sync.replication")]


def test_a_call_stuck_past_the_grace_is_cut_and_the_sync_ends_quietly(stuck_server, clients,
                                                                       local, captured):
    import time

    from pouchsync_sync.client.policy import STOP_GRACE

    stuck, url = stuck_server
    a = local("todos")
    a.put({"_id": "x"})
    client = clients().connect(url)
    sync = client.sync(a, live=True, direction="push")
    assert stuck.entered.wait(WAIT)  # the push's write is in flight, unanswered
    started = time.monotonic()
    sync.cancel()
    result = sync.wait(timeout=WAIT)
    took = time.monotonic() - started
    client.close()
    assert result.state is SyncState.CANCELLED
    assert result.push is not None and result.push.status == "cancelled"
    assert STOP_GRACE - 0.5 <= took < STOP_GRACE + 3  # waited the grace, then cut the call
    assert _replication_warnings(captured) == []


def test_a_cancel_with_two_writes_in_flight_ends_them_and_their_threads(stuck_server, clients,
                                                                        local, captured):
    import time

    from pouchsync_sync.client.policy import STOP_GRACE

    stuck, url = stuck_server
    a = local("todos")
    a.bulk_docs([{"_id": f"d{i:04d}"} for i in range(600)])
    client = clients().connect(url)
    sync = client.sync(a, live=True, direction="push", batch_size=100)
    assert stuck.entered.wait(WAIT)  # a big write is in flight, unanswered
    uploads = [t for t in threading.enumerate() if t.name.startswith("pouchsync-upload")]
    assert uploads  # the write-behind threads carry it
    started = time.monotonic()
    sync.cancel()
    result = sync.wait(timeout=WAIT)
    took = time.monotonic() - started
    client.close()
    for thread in uploads:
        thread.join(WAIT)
    assert not [t.name for t in uploads if t.is_alive()]
    assert result.state is SyncState.CANCELLED
    assert took < STOP_GRACE + 3
    assert result.push is not None and result.push.status == "cancelled"
    assert result.push.docs_written == 0  # nothing was answered
    assert _replication_warnings(captured) == []
