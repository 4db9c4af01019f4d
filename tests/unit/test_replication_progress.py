"""The replication's observable state: transition table, caught-up tickets."""

from __future__ import annotations

import pytest

from pouchsync_sync.errors import ProtocolError
from pouchsync_sync.replication.progress import TRANSITIONS, Progress


def test_transitions_and_illegal_moves() -> None:
    p = Progress()
    assert p.state == "idle"
    assert p.move("active") and not p.move("active")
    assert p.move("paused") and p.move("active") and p.move("complete")
    for final in ("complete", "cancelled", "error"):
        assert final not in TRANSITIONS
    with pytest.raises(ProtocolError, match="'complete' cannot become 'active'"):
        p.move("active")
    with pytest.raises(ProtocolError, match="'idle' cannot become 'paused'"):
        Progress().move("paused")


def test_caught_up_needs_a_read_begun_after_the_wait() -> None:
    p = Progress()
    p.move("active")
    before = p.begin_read()
    p.caught_up(before)
    assert not p.wait_caught_up(0.01, probe=lambda seq: pytest.fail("not paused, no probe"))
    later = p.begin_read()
    p.caught_up(later)
    assert not p.wait_caught_up(0.01, probe=lambda seq: False)  # `later` began before this wait


def test_paused_probe_from_the_done_seq() -> None:
    p = Progress(start_seq=0)
    p.move("active")
    p.batch_done("7-x", pending=0)
    p.move("paused")
    asked: list = []
    assert p.wait_caught_up(0.5, probe=lambda seq: asked.append(seq) or True)
    assert asked == ["7-x"] and p.pending == 0
    asked.clear()
    # a probe that sees new changes is not repeated until something changes
    assert not p.wait_caught_up(0.05, probe=lambda seq: asked.append(seq) or False)
    assert asked == ["7-x"]


def test_final_states_answer_at_once() -> None:
    done = Progress()
    done.move("active")
    done.move("complete")
    assert done.wait_caught_up(0, probe=lambda seq: False)
    failed = Progress()
    failed.move("error")
    assert not failed.wait_caught_up(5, probe=lambda seq: True)
