"""What follows a round of a sync, and when the client gives up connecting
(``pouchsync_sync.client.policy``): pure decisions, checked as rules."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pouchsync_sync.client.backoff import Backoff
from pouchsync_sync.client.policy import Reconnects, RoundRetry, Step, retryable
from pouchsync_sync.errors import (
    BadRequest,
    Denied,
    NotASyncServer,
    NotFound,
    TLSError,
    TransportError,
    Unreachable,
)

NEVER = Backoff(initial_delay=1.0, factor=2.0, max_delay=8.0, max_attempts=None, jitter=0.0)


def _no_random() -> float:
    raise AssertionError("the jitter is drawn only for a retry")


def test_which_errors_are_retryable():
    assert retryable(TransportError("cut"), live=False)
    assert retryable(Unreachable("refused"), live=True)
    assert not retryable(Denied("no"), live=True)
    assert not retryable(BadRequest("bad"), live=True)
    assert not retryable(ValueError("a bug"), live=True)
    # a live sync rides out its remote database missing for a while; a one-shot does not
    assert retryable(NotFound("gone"), live=True)
    assert not retryable(NotFound("gone"), live=False)


def test_a_round_without_error_completes_a_one_shot_and_reconnects_a_live_sync():
    assert RoundRetry(live=False).after(None, lost=False, progressed=True, backoff=NEVER,
                                        random=_no_random) == (Step.COMPLETE, 0.0)
    live = RoundRetry(live=True, failures=3)
    assert live.after(None, lost=True, progressed=False, backoff=NEVER,
                      random=_no_random) == (Step.RECONNECT, 0.0)
    assert live.failures == 0


def test_an_error_no_retry_fixes_ends_the_sync_and_is_not_offline():
    retry = RoundRetry(live=True)
    assert not retry.offline(Denied("no")) and not retry.offline(None)
    assert retry.after(BadRequest("bad"), lost=True, progressed=False, backoff=NEVER,
                       random=_no_random) == (Step.FAIL, 0.0)


def test_a_lost_connection_waits_for_the_next_one_and_counts_afresh():
    retry = RoundRetry(live=False, failures=4)
    error = TransportError("connection lost")
    assert retry.offline(error)
    assert retry.after(error, lost=True, progressed=False, backoff=NEVER,
                       random=_no_random) == (Step.RECONNECT, 0.0)
    assert retry.failures == 0


def test_failures_on_a_live_connection_back_off_until_max_attempts():
    backoff = Backoff(initial_delay=1.0, factor=2.0, max_delay=8.0, max_attempts=3, jitter=0.5)
    retry = RoundRetry(live=True)
    error = TransportError("server error")
    steps = [retry.after(error, lost=False, progressed=False, backoff=backoff,
                         random=lambda: 0.0) for _ in range(3)]
    assert steps == [(Step.RETRY, 1.0), (Step.RETRY, 2.0), (Step.FAIL, 0.0)]


def test_a_round_that_got_somewhere_restarts_the_count():
    retry = RoundRetry(live=True, failures=5)
    error = TransportError("server error")
    step = retry.after(error, lost=False, progressed=True, backoff=NEVER, random=lambda: 0.0)
    assert step == (Step.RETRY, 1.0) and retry.failures == 1


@given(st.lists(st.tuples(st.sampled_from(["none", "retryable", "fatal"]), st.booleans(),
                          st.booleans()), max_size=30),
       st.integers(min_value=1, max_value=6), st.booleans())
def test_the_rules_hold_for_any_sequence_of_rounds(rounds, max_attempts, live):
    """No error: complete or reconnect; a fatal error: fail; a retryable one: reconnect
    when lost, else retry with a jittered delay within the backoff's base, failing once
    ``max_attempts`` rounds in a row failed on a live connection."""
    backoff = Backoff(initial_delay=0.5, factor=2.0, max_delay=4.0,
                      max_attempts=max_attempts, jitter=0.5)
    retry = RoundRetry(live=live)
    in_a_row = 0
    for kind, lost, progressed in rounds:
        error = {"none": None, "fatal": Denied("no"),
                 "retryable": TransportError("x")}[kind]
        step, delay = retry.after(error, lost=lost, progressed=progressed, backoff=backoff,
                                  random=lambda: 0.5)
        if kind == "none":
            assert step is (Step.RECONNECT if live else Step.COMPLETE)
            if not live:
                return
            in_a_row = 0
        elif kind == "fatal":
            assert step is Step.FAIL
            return
        elif lost:
            assert step is Step.RECONNECT
            in_a_row = 0
        else:
            in_a_row = 1 if progressed else in_a_row + 1
            if in_a_row >= max_attempts:
                assert step is Step.FAIL
                return
            assert step is Step.RETRY
            assert delay == backoff.base_delay(in_a_row) * 0.75
        assert retry.failures == in_a_row


def test_reconnects_give_up_at_once_on_a_url_that_never_worked():
    attempts = Reconnects()
    wrong = NotASyncServer("404 Not Found", status=404)
    assert attempts.failed(wrong, NEVER) is wrong
    assert attempts.failed(TLSError("bad certificate"), NEVER) is not None


def test_reconnects_retry_a_url_that_worked_and_count_from_one_after_a_loss():
    attempts = Reconnects()
    attempts.connected()
    assert attempts.failed(NotASyncServer("404 Not Found", status=404), NEVER) is None
    assert (attempts.failures, attempts.retries) == (1, 1)
    attempts.connected()
    assert (attempts.failures, attempts.retries) == (0, 0)
    attempts.lost()
    assert attempts.retries == 1


def test_reconnects_give_up_after_max_attempts_with_the_same_class():
    backoff = Backoff(max_attempts=2)
    attempts = Reconnects()
    assert attempts.failed(Unreachable("refused"), backoff) is None
    gave_up = attempts.failed(Unreachable("refused"), backoff)
    assert isinstance(gave_up, Unreachable) and "after 2 attempts" in str(gave_up)
