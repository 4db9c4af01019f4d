"""``store.notify``: listeners rung after every write, outside the lock, never failing it."""

from __future__ import annotations

import threading

from pouchsync_sync.store.local import LocalDatabase
from pouchsync_sync.store.notify import Notifier, notifier_of


def test_listeners_are_rung_on_every_notify_until_removed():
    notifier = Notifier()
    rung: list[str] = []
    first = notifier.add_listener(lambda: rung.append("a"))
    notifier.add_listener(lambda: rung.append("b"))
    assert notifier.listeners == 2
    notifier.notify()
    assert sorted(rung) == ["a", "b"]
    notifier.remove_listener(first)
    notifier.remove_listener(first)  # idempotent
    notifier.notify()
    assert sorted(rung) == ["a", "b", "b"]
    assert notifier.generation == 2


def test_a_failing_listener_is_logged_and_the_others_still_run(caplog):
    notifier = Notifier()
    rung = threading.Event()

    def bad() -> None:
        raise RuntimeError("boom")

    notifier.add_listener(bad)
    notifier.add_listener(rung.set)
    notifier.notify()
    assert rung.is_set()
    assert any("raised" in r.getMessage() for r in caplog.records)


def test_a_listener_may_use_the_notifier_it_is_rung_by():
    """Rung outside the notifier's lock: it may read the generation or remove itself."""
    notifier = Notifier()
    seen: list[int] = []
    token = 0

    def listener() -> None:
        seen.append(notifier.generation)
        notifier.remove_listener(token)

    token = notifier.add_listener(listener)
    notifier.notify()
    notifier.notify()
    assert seen == [1]


def test_an_embedded_store_rings_its_notifier_on_document_writes_only():
    db = LocalDatabase(":memory:", name="n")
    try:
        notifier = notifier_of(db)
        assert notifier is not None
        rung: list[int] = []
        notifier.add_listener(lambda: rung.append(1))
        db.put({"_id": "a"})
        db.bulk_docs([{"_id": "b"}, {"_id": "c"}])
        assert len(rung) == 2
        db.put({"_id": "_local/x"})  # not in the changes feed: no wake-up
        assert len(rung) == 2
    finally:
        db.close()


def test_other_objects_have_no_notifier():
    assert notifier_of(object()) is None
    assert notifier_of(None) is None
