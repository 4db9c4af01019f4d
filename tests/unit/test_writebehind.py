"""WriteBehind: writes in flight on real threads, results and batch ends in order."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from pouchsync_sync.replication.writebehind import WriteBehind

WAIT = 10.0


class Gate:
    """A write that blocks until released, and says when it started."""

    def __init__(self, value: Any) -> None:
        self.value = value
        self.started = threading.Event()
        self.go = threading.Event()

    def __call__(self, arg: Any) -> Any:
        self.started.set()
        assert self.go.wait(WAIT)
        if isinstance(self.value, BaseException):
            raise self.value
        return (arg, self.value)


def _behind(log: list[Any], depth: int = 2) -> WriteBehind:
    return WriteBehind("pouchsync-test-upload", on_done=lambda tag, res: log.append(("done", tag, res)),
                       on_end=lambda item: log.append(("end", item)), depth=depth)


def test_results_and_ends_come_in_submission_order() -> None:
    log: list[Any] = []
    behind = _behind(log)
    first, second = Gate("a"), Gate("b")
    try:
        behind.submit(first, 1, "w1")
        behind.end("e1")
        behind.submit(second, 2, "w2")  # both in flight: the caller goes on
        assert first.started.wait(WAIT) and second.started.wait(WAIT)
        behind.end("e2")
        assert log == [] and behind.busy
        second.go.set()  # the second finishes first: nothing is taken out of turn
        first.go.set()
        behind.drain()
        assert log == [("done", "w1", (1, "a")), ("end", "e1"),
                       ("done", "w2", (2, "b")), ("end", "e2")]
        assert not behind.busy
        behind.end("e3")  # nothing in flight: at once
        assert log[-1] == ("end", "e3")
    finally:
        first.go.set()
        second.go.set()
        behind.close()


def test_a_submit_beyond_the_depth_waits_for_the_oldest() -> None:
    log: list[Any] = []
    behind = _behind(log, depth=2)
    gates = [Gate(i) for i in range(3)]
    try:
        behind.submit(gates[0], 0, "w0")
        behind.submit(gates[1], 1, "w1")
        done = threading.Event()

        def third() -> None:
            behind.submit(gates[2], 2, "w2")
            done.set()

        caller = threading.Thread(target=third, name="pouchsync-test-caller")
        caller.start()
        assert not done.wait(0.2)  # blocked: two already in flight
        gates[0].go.set()
        assert done.wait(WAIT)  # the oldest was taken, the third is in flight
        caller.join(WAIT)
        assert [entry[1] for entry in log] == ["w0"]
        gates[1].go.set()
        gates[2].go.set()
        behind.drain()
        assert [entry[1] for entry in log] == ["w0", "w1", "w2"]
    finally:
        for gate in gates:
            gate.go.set()
        behind.close()


def test_an_error_is_raised_after_the_writes_in_flight_end_and_drops_what_is_held() -> None:
    log: list[Any] = []
    behind = _behind(log)
    bad, after = Gate(RuntimeError("write failed")), Gate("x")
    try:
        behind.submit(bad, 1, "w1")
        behind.end("e1")
        behind.submit(after, 2, "w2")
        behind.end("e2")
        bad.go.set()
        finished = threading.Event()

        def release_later() -> None:
            assert after.started.wait(WAIT)
            finished.set()
            after.go.set()

        helper = threading.Thread(target=release_later, name="pouchsync-test-release")
        helper.start()
        with pytest.raises(RuntimeError, match="write failed"):
            behind.drain()
        helper.join(WAIT)
        assert finished.is_set()  # the write after it ran to its end before the raise
        assert log == [] and not behind.busy  # no result, no end after an error
    finally:
        bad.go.set()
        after.go.set()
        behind.close()


def test_close_waits_for_the_writes_in_flight_and_ends_its_threads() -> None:
    log: list[Any] = []
    behind = _behind(log)
    gate = Gate("a")
    behind.submit(gate, 1, "w1")
    assert gate.started.wait(WAIT)
    closer = threading.Thread(target=behind.close, name="pouchsync-test-close")
    closer.start()
    closer.join(0.2)
    assert closer.is_alive()  # waiting for the write
    gate.go.set()
    closer.join(WAIT)
    assert not closer.is_alive() and log == []
    assert not [t for t in threading.enumerate() if t.name.startswith("pouchsync-test-upload")]
