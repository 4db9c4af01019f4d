"""``gcpause``: the collector is held during a step and given back as it was."""

from __future__ import annotations

import gc
import threading

from pouchsync_sync import gcpause


def test_paused_holds_and_restores_the_collector() -> None:
    assert gc.isenabled()
    with gcpause.paused():
        assert not gc.isenabled()
        with gcpause.paused():  # nested: still held, given back only by the outer one
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_collector_disabled_by_the_application_stays_disabled() -> None:
    gc.disable()
    try:
        with gcpause.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_given_back_when_the_step_raises() -> None:
    try:
        with gcpause.paused():
            raise KeyError("boom")
    except KeyError:
        pass
    assert gc.isenabled()


def test_overlapping_steps_on_threads_give_it_back_once_all_left() -> None:
    inside, leave = threading.Event(), threading.Event()

    def step() -> None:
        with gcpause.paused():
            inside.set()
            leave.wait(10)

    worker = threading.Thread(target=step, name="test-gcpause-step")
    worker.start()
    assert inside.wait(10)
    with gcpause.paused():
        pass
    assert not gc.isenabled()  # the worker's step still holds it
    leave.set()
    worker.join(10)
    assert gc.isenabled()


def test_only_batch_sized_frames_pause() -> None:
    with gcpause.paused_for("x" * 100):
        assert gc.isenabled()
    with gcpause.paused_for(b"x" * gcpause.BULK_FRAME):
        assert not gc.isenabled()
    assert gc.isenabled()
