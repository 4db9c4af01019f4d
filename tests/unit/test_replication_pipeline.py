"""The read-ahead thread: order, bounded queue, errors cross to the consumer, clean stop."""

from __future__ import annotations

import threading
from typing import Iterator

import pytest

from pouchsync_sync.replication.pipeline import Prefetcher


def test_items_arrive_in_order_and_the_thread_ends() -> None:
    def produce(stop: threading.Event) -> Iterator[int]:
        yield from range(50)

    reader = Prefetcher(produce, depth=3, name="pouchsync-test-reader", join_timeout=5).start()
    try:
        assert list(reader.items(lambda: False)) == list(range(50))
    finally:
        reader.close()
    assert not any(t.name == "pouchsync-test-reader" for t in threading.enumerate())


def test_producer_error_is_raised_on_the_consumer_thread() -> None:
    def produce(stop: threading.Event) -> Iterator[int]:
        yield 1
        raise ValueError("read failed")

    reader = Prefetcher(produce, depth=2, name="pouchsync-test-reader", join_timeout=5).start()
    got = []
    try:
        with pytest.raises(ValueError, match="read failed"):
            for item in reader.items(lambda: False):
                got.append(item)
    finally:
        reader.close()
    assert got == [1]


def test_close_stops_a_producer_blocked_on_a_full_queue() -> None:
    produced = []

    def produce(stop: threading.Event) -> Iterator[int]:
        n = 0
        while not stop.is_set():
            produced.append(n)
            yield n
            n += 1

    reader = Prefetcher(produce, depth=2, name="pouchsync-test-reader", join_timeout=5).start()
    items = reader.items(lambda: False)
    assert next(items) == 0
    reader.close()
    assert len(produced) <= 5  # bounded: it never ran far ahead
    assert not any(t.name == "pouchsync-test-reader" for t in threading.enumerate())


def test_consumer_stop_flag_ends_iteration_while_the_producer_waits() -> None:
    release = threading.Event()

    def produce(stop: threading.Event) -> Iterator[int]:
        yield 1
        while not stop.is_set() and not release.is_set():
            stop.wait(0.05)

    reader = Prefetcher(produce, depth=2, name="pouchsync-test-reader", join_timeout=5).start()
    flag = threading.Event()
    got = []
    try:
        for item in reader.items(flag.is_set):
            got.append(item)
            flag.set()
    finally:
        reader.close()
    assert got == [1]
