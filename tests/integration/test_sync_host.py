"""A ``Sync`` hosted on a small fake ``SyncHost`` (the seam in ``client/host.py``): the
sync needs nothing else from a ``Client``, and tells its host when it has finished."""

from __future__ import annotations

import threading

import pytest

from pouchsync_sync import LocalDatabase
from pouchsync_sync.client.backoff import Backoff
from pouchsync_sync.client.link import Link
from pouchsync_sync.client.host import HostedSync
from pouchsync_sync.client.sync import Sync
from pouchsync_sync.errors import PouchSyncError, Unreachable
from pouchsync_sync.store.base import Database

WAIT = 10.0


class FakeHost:
    """A host that never has a connection: its syncs wait until cancelled, or until it
    gives up (``give_up``)."""

    backoff = Backoff()
    open_timeout = 1.0
    longpoll_timeout = 1.0
    local_poll_interval = 0.25

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self._failure: PouchSyncError | None = None
        self.waiting = threading.Event()
        self.wakes = 0
        self.finished: list[HostedSync] = []

    @property
    def failure(self) -> PouchSyncError | None:
        with self.cond:
            return self._failure

    def give_up(self, error: PouchSyncError) -> None:
        with self.cond:
            self._failure = error
            self.cond.notify_all()

    def wait_connection(self, sync: HostedSync,
                        avoid: Link | None) -> Link | None:
        with self.cond:
            self.waiting.set()
            # a long slice: only wake() or give_up() end this wait within the test's WAIT
            while not sync.cancelled and self._failure is None:
                self.cond.wait(60.0)
            return None

    def wake(self) -> None:
        with self.cond:
            self.wakes += 1
            self.cond.notify_all()

    def jitter(self) -> float:
        return 0.0

    def sync_finished(self, sync: HostedSync) -> None:
        with self.cond:
            self.finished.append(sync)


@pytest.fixture
def db():
    database = LocalDatabase(":memory:", name="todos")
    yield database
    database.close()


def _sync(host: FakeHost, db: Database, **options: object) -> Sync:
    return Sync(host, db, **options)  # type: ignore[arg-type]


def test_a_cancel_wakes_the_hosts_wait_and_the_sync_tells_its_host_it_finished(db):
    host = FakeHost()
    sync = _sync(host, db, live=True)
    sync.start()
    assert host.waiting.wait(WAIT)
    sync.cancel()
    result = sync.wait(timeout=WAIT)
    assert result.cancelled and sync.state.value == "cancelled"
    assert host.wakes >= 1
    assert host.finished == [sync]
    assert sync.join(WAIT)


def test_a_host_that_gave_up_ends_the_sync_with_its_failure(db):
    host = FakeHost()
    sync = _sync(host, db)
    sync.start()
    assert host.waiting.wait(WAIT)
    host.give_up(Unreachable("gave up connecting after 3 attempts: refused"))
    with pytest.raises(Unreachable, match="gave up"):
        sync.wait(timeout=WAIT)
    assert sync.state.value == "error" and host.finished == [sync]
    assert sync.join(WAIT)


def test_a_sync_cancelled_before_it_starts_finishes_at_once_and_starts_once(db):
    host = FakeHost()
    sync = _sync(host, db)
    sync.cancel()
    assert sync.wait(timeout=WAIT).cancelled and host.finished == [sync]
    sync.start()
    sync.start()  # again: a no-op, not a second thread
    assert sync.join(WAIT)
    assert host.finished == [sync]  # the final state is entered once
    assert not host.waiting.is_set()
