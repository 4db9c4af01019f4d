"""The server's line of endings (``server/ending.py``): passes, hand-offs, patience."""

from __future__ import annotations

import threading
import time

import pytest

from pouchsync_sync.server.ending import EndingLine
from tests.fault.proxy import wait_until

WAIT = 10.0


def _start(target, name: str) -> threading.Thread:
    thread = threading.Thread(target=target, name=f"pouchsync-test-{name}", daemon=True)
    thread.start()
    return thread


def test_at_most_limit_threads_hold_a_pass_and_none_is_lost() -> None:
    line = EndingLine(limit=2, patience=WAIT)
    lock = threading.Lock()
    holding = [0]
    most = [0]
    rounds = 200

    def worker() -> None:
        for _ in range(rounds):
            assert line.enter()
            with lock:
                holding[0] += 1
                most[0] = max(most[0], holding[0])
            time.sleep(0)  # let another thread run while this one holds its pass
            with lock:
                holding[0] -= 1
            line.leave()

    threads = [_start(worker, f"ending-{i}") for i in range(8)]
    for thread in threads:
        thread.join(WAIT * 3)
        assert not thread.is_alive()
    assert most[0] == 2  # the line was full at times, never over
    assert (line.free, line.waiting) == (2, 0)  # every pass back, nobody left waiting


def test_a_leaving_thread_hands_its_pass_to_the_first_one_waiting() -> None:
    line = EndingLine(limit=1, patience=WAIT)
    assert line.enter()
    order: list[int] = []

    def wait_in_line(n: int) -> None:
        assert line.enter()
        order.append(n)
        line.leave()

    threads = []
    for n in range(3):  # each one in line before the next comes
        threads.append(_start(lambda n=n: wait_in_line(n), f"ending-{n}"))
        assert wait_until(lambda n=n: line.waiting == n + 1, WAIT)
    assert line.free == 0
    line.leave()
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive()
    assert order == [0, 1, 2]
    assert (line.free, line.waiting) == (1, 0)


def test_a_thread_out_of_patience_goes_on_without_a_pass() -> None:
    line = EndingLine(limit=1, patience=0.2)
    assert line.enter()
    got: list[bool] = []
    thread = _start(lambda: got.append(line.enter()), "ending-patience")
    thread.join(WAIT)
    assert got == [False] and line.waiting == 0  # out of the line, without a pass
    line.leave()
    assert (line.free, line.waiting) == (1, 0)  # the held pass came back, no other made


def test_a_line_needs_a_pass() -> None:
    with pytest.raises(ValueError, match="at least one pass"):
        EndingLine(limit=0)


def test_a_turn_holds_a_pass_for_its_block_only_when_wanted() -> None:
    line = EndingLine(limit=1, patience=WAIT)
    with line.turn():
        assert line.free == 0
    assert line.free == 1
    with line.turn(False):
        assert line.free == 1  # no pass taken
    with pytest.raises(RuntimeError), line.turn():
        raise RuntimeError("a teardown failed")
    assert (line.free, line.waiting) == (1, 0)  # given back all the same
