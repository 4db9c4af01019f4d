from __future__ import annotations

import dataclasses

import pytest

from pouchsync_sync.client.backoff import Backoff


def test_exponential_growth_until_the_cap():
    b = Backoff(initial_delay=0.5, factor=2.0, max_delay=5.0, jitter=0.0)
    assert [b.delay(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_huge_attempt_numbers_do_not_overflow():
    b = Backoff(initial_delay=1.0, factor=3.0, max_delay=30.0, jitter=0.0)
    assert b.delay(10_000) == 30.0


def test_jitter_only_shortens_and_stays_within_bounds():
    b = Backoff(initial_delay=2.0, factor=2.0, max_delay=8.0, jitter=0.5)
    assert b.delay(1, 0.0) == 2.0
    assert b.delay(1, 0.5) == 1.5
    assert b.delay(1, lambda: 0.999999) == pytest.approx(1.0, abs=1e-5)
    assert b.delay(5, 1.0) == 4.0  # capped base 8 halved at most


def test_random_callable_is_called_once_per_delay():
    calls = []

    def rnd() -> float:
        calls.append(1)
        return 0.25

    b = Backoff(initial_delay=1.0, jitter=1.0)
    assert b.delay(1, rnd) == 0.75
    assert len(calls) == 1


def test_exhausted():
    assert not Backoff().exhausted(10**6)
    b = Backoff(max_attempts=3)
    assert [b.exhausted(n) for n in range(5)] == [False, False, False, True, True]
    assert Backoff(max_attempts=0).exhausted(0)


def test_immutable_and_replace():
    b = Backoff()
    with pytest.raises(dataclasses.FrozenInstanceError):
        b.factor = 3.0  # type: ignore[misc]
    c = b.replace(factor=3.0)
    assert (b.factor, c.factor) == (2.0, 3.0)


def test_zero_initial_delay_means_immediate_retries():
    assert Backoff(initial_delay=0.0).delay(7, 0.3) == 0.0


@pytest.mark.parametrize("kwargs", [
    {"initial_delay": -1}, {"factor": 0.5}, {"max_delay": -1},
    {"max_attempts": -1}, {"jitter": 1.5}, {"jitter": -0.1},
])
def test_rejects_invalid_policies(kwargs):
    with pytest.raises(ValueError):
        Backoff(**kwargs)


def test_attempt_is_one_based():
    with pytest.raises(ValueError):
        Backoff().delay(0)
