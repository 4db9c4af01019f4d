"""Compare Replication Logs, the log update and the checkpoint schedule, pure."""

from __future__ import annotations

from typing import Any

from pouchsync_sync.replication.checkpoint import (
    HISTORY_SIZE,
    LOWEST_SEQ,
    CheckpointSchedule,
    compare_rep_history,
    compare_replication_logs,
    updated_replication_log,
)


def entry(session: str, seq: object) -> dict:
    return {"session_id": session, "recorded_seq": seq}


def test_no_logs_means_full_replication() -> None:
    assert compare_replication_logs(None, None) == LOWEST_SEQ
    assert compare_replication_logs({"session_id": "a", "source_last_seq": 5}, None) == LOWEST_SEQ
    assert compare_replication_logs(None, {"session_id": "a", "source_last_seq": 5}) == LOWEST_SEQ


def test_same_last_session_uses_source_last_seq() -> None:
    src = {"session_id": "s2", "source_last_seq": "12-abc", "history": [entry("s2", "12-abc")]}
    tgt = {"session_id": "s2", "source_last_seq": "12-abc", "history": [entry("s2", "12-abc")]}
    assert compare_replication_logs(src, tgt) == "12-abc"


def test_target_ahead_of_source_falls_back_to_common_session() -> None:
    # the target got s3's checkpoint, the source did not (crash between the writes)
    src = {"session_id": "s2", "source_last_seq": 20,
           "history": [entry("s2", 20), entry("s1", 10)]}
    tgt = {"session_id": "s3", "source_last_seq": 30,
           "history": [entry("s3", 30), entry("s2", 20), entry("s1", 10)]}
    assert compare_replication_logs(src, tgt) == 20


def test_source_ahead_of_target_uses_targets_head_when_source_knows_it() -> None:
    src = {"session_id": "s3", "source_last_seq": 30,
           "history": [entry("s3", 30), entry("s2", 20), entry("s1", 10)]}
    tgt = {"session_id": "s2", "source_last_seq": 20,
           "history": [entry("s2", 20), entry("s1", 10)]}
    assert compare_replication_logs(src, tgt) == 20


def test_histories_without_common_session_start_over() -> None:
    src = {"session_id": "a", "history": [entry("a", 5), entry("b", 3)]}
    tgt = {"session_id": "c", "history": [entry("c", 7), entry("d", 2)]}
    assert compare_replication_logs(src, tgt) == LOWEST_SEQ
    assert compare_rep_history([], [entry("a", 1)]) == LOWEST_SEQ


def test_walks_down_both_histories() -> None:
    src = [entry("x1", 9), entry("x2", 8), entry("common", 4)]
    tgt = [entry("y1", 7), entry("y2", 6), entry("common", 4)]
    assert compare_rep_history(src, tgt) == 4


def test_none_session_ids_never_match() -> None:
    src = {"session_id": None, "source_last_seq": 9, "history": []}
    tgt = {"session_id": None, "source_last_seq": 9, "history": []}
    assert compare_replication_logs(src, tgt) == LOWEST_SEQ


def test_read_only_source_trusts_target_log() -> None:
    tgt = {"session_id": "s", "source_last_seq": "7-x", "history": [entry("s", "7-x")]}
    assert compare_replication_logs(None, tgt, source_read_only=True) == "7-x"
    assert compare_replication_logs(None, tgt, source_read_only=False) == LOWEST_SEQ


def test_malformed_logs_do_not_crash() -> None:
    assert compare_replication_logs({"session_id": "a", "history": "junk"},
                                    {"session_id": "b", "history": [1, None]}) == LOWEST_SEQ


def test_updated_log_puts_session_first_replaces_its_entry_and_is_bounded() -> None:
    previous = {"_id": "_local/r", "_rev": "0-3", "session_id": "old0",
                "history": [entry(f"old{i}", i) for i in range(HISTORY_SIZE)]}
    snapshot = repr(previous)
    stats = dict(log_id="_local/r", session_id="new", start_last_seq=0, start_time="t0",
                 end_time="t1", docs_read=1, docs_written=1, doc_write_failures=0)
    first = updated_replication_log(previous, recorded_seq=10, **stats)
    assert repr(previous) == snapshot  # never mutates its input
    assert first["_rev"] == "0-3" and first["_id"] == "_local/r"
    assert first["session_id"] == "new" and first["source_last_seq"] == 10
    assert [h["session_id"] for h in first["history"]] == ["new", "old0", "old1", "old2", "old3"]
    second = updated_replication_log(first, recorded_seq=11, **stats)
    assert [h["session_id"] for h in second["history"]] == ["new", "old0", "old1", "old2", "old3"]
    assert second["history"][0]["recorded_seq"] == 11
    assert len(second["history"]) == HISTORY_SIZE


def test_updated_log_from_nothing_has_no_rev() -> None:
    doc = updated_replication_log(None, log_id="_local/r", session_id="s", recorded_seq="3-a",
                                  start_last_seq=0, start_time="t", end_time="t",
                                  docs_read=0, docs_written=0, doc_write_failures=0)
    assert "_rev" not in doc
    assert doc["history"] == [{"session_id": "s", "recorded_seq": "3-a", "start_last_seq": 0,
                               "start_time": "t", "end_time": "t", "docs_read": 0,
                               "docs_written": 0, "doc_write_failures": 0}]
    # both sides written by one session then agree on the seq
    assert compare_replication_logs(doc, dict(doc)) == "3-a"


# -- CheckpointSchedule: when a checkpoint may wait ---------------------------------------

class _Recorder:
    """A ``Checkpointer`` stand-in at the seam: records what it was asked to record."""

    def __init__(self) -> None:
        self.recorded: list[Any] = []

    def record_checkpoint(self, **stats: Any) -> None:
        self.recorded.append(stats["recorded_seq"])


def _stats(seq: Any) -> dict[str, Any]:
    return dict(recorded_seq=seq, start_last_seq=0, start_time="t0", end_time="t1",
                docs_read=1, docs_written=1, doc_write_failures=0)


def _schedule(interval: float, *, live: bool, now: list[float]) -> tuple[Any, _Recorder]:
    schedule = CheckpointSchedule(interval, live=live, clock=lambda: now[0],
                                  jitter=lambda low, high: 1.0)
    recorder = _Recorder()
    schedule.start(recorder)  # type: ignore[arg-type]
    return schedule, recorder


def test_schedule_without_a_checkpointer_never_defers() -> None:
    schedule = CheckpointSchedule(30.0, live=False)
    assert not schedule.may_defer(live_read=False, caught_up=True)
    schedule.hold(5, 0)
    schedule.record(**_stats(5))  # nothing to record through: only forgets what it held
    assert schedule.held is None


def test_schedule_one_shot_defers_within_the_interval_after_a_record() -> None:
    now = [100.0]
    schedule, recorder = _schedule(30.0, live=False, now=now)
    assert not schedule.may_defer(live_read=False, caught_up=False)  # none recorded yet
    schedule.record(**_stats(1))
    assert recorder.recorded == [1]
    now[0] = 129.0
    assert schedule.may_defer(live_read=False, caught_up=False)
    schedule.hold(2, 3)
    assert schedule.held == (2, 3)
    now[0] = 130.0
    assert not schedule.may_defer(live_read=False, caught_up=False)
    schedule.record(**_stats(2))
    assert recorder.recorded == [1, 2] and schedule.held is None


def test_schedule_live_defers_only_caught_up_live_reads() -> None:
    now = [0.0]
    schedule, _recorder = _schedule(30.0, live=True, now=now)
    schedule.record(**_stats(1))
    assert schedule.may_defer(live_read=True, caught_up=True)
    assert not schedule.may_defer(live_read=False, caught_up=True)  # a backlog read
    assert not schedule.may_defer(live_read=True, caught_up=False)  # more pending


def test_schedule_interval_zero_records_every_batch() -> None:
    now = [0.0]
    schedule, _recorder = _schedule(0.0, live=False, now=now)
    schedule.record(**_stats(1))
    assert not schedule.may_defer(live_read=True, caught_up=True)


def test_schedule_jitters_the_next_interval_by_a_quarter() -> None:
    asked: list[tuple[float, float]] = []
    now = [0.0]

    def jitter(low: float, high: float) -> float:
        asked.append((low, high))
        return 1.25

    schedule = CheckpointSchedule(40.0, live=False, clock=lambda: now[0], jitter=jitter)
    schedule.start(_Recorder())  # type: ignore[arg-type]
    schedule.record(**_stats(1))
    assert asked == [(0.75, 1.25)]
    now[0] = 49.0
    assert schedule.may_defer(live_read=False, caught_up=False)  # 40 * 1.25 = 50 s
    now[0] = 50.0
    assert not schedule.may_defer(live_read=False, caught_up=False)


def test_schedule_live_counts_its_start_as_a_record_and_defers_the_first_change() -> None:
    now = [100.0]
    draws = iter([1.0, 0.0])  # the start's interval jitter, then the wait's part

    schedule = CheckpointSchedule(30.0, live=True, clock=lambda: now[0],
                                  jitter=lambda low, high: next(draws))
    schedule.start(_Recorder())  # type: ignore[arg-type]
    assert schedule.due_in() is None  # nothing held
    now[0] = 105.0
    assert schedule.may_defer(live_read=True, caught_up=True)  # 5 s after the start
    schedule.hold(7, 0)
    assert schedule.due_in() == 25.0  # 30 s after the start
    now[0] = 131.0
    assert schedule.due_in() == 0.0
    assert not schedule.may_defer(live_read=True, caught_up=True)  # a batch end past it


def test_schedule_live_spreads_an_overdue_wait_over_a_quarter_interval() -> None:
    """Long after the last record, a change does not make every live replication record
    at once: each waits its own random part of a quarter interval first."""
    asked: list[tuple[float, float]] = []
    now = [0.0]

    def jitter(low: float, high: float) -> float:
        asked.append((low, high))
        return 1.0 if low == 0.75 else 0.2

    schedule = CheckpointSchedule(40.0, live=True, clock=lambda: now[0], jitter=jitter)
    recorder = _Recorder()
    schedule.start(recorder)  # type: ignore[arg-type]
    now[0] = 500.0  # the last record is long overdue
    assert schedule.may_defer(live_read=True, caught_up=True)
    assert asked[-1] == (0.0, 0.25)
    schedule.hold(3, 0)
    assert schedule.due_in() == 8.0  # 40 s * 0.2
    now[0] = 504.0
    assert schedule.may_defer(live_read=True, caught_up=True)  # a second batch: same wait
    schedule.hold(4, 0)
    assert schedule.held == (4, 0) and schedule.due_in() == 4.0
    now[0] = 508.0
    assert schedule.due_in() == 0.0
    schedule.record(**_stats(4))
    assert recorder.recorded == [4] and schedule.due_in() is None
    assert not schedule.may_defer(live_read=False, caught_up=True)  # a backlog: at once


def test_schedule_one_shot_has_no_timer() -> None:
    now = [0.0]
    schedule, _recorder = _schedule(30.0, live=False, now=now)
    schedule.record(**_stats(1))
    assert schedule.may_defer(live_read=False, caught_up=False)
    schedule.hold(2, 0)
    assert schedule.due_in() is None  # its end records it
