"""The circuit breaker: open after repeated failures, then one probe at a time (half-open)."""

from __future__ import annotations

import time

from kartka.resilience import CircuitBreaker, backoff

COOLDOWN = 0.05


def _opened() -> CircuitBreaker:
    breaker = CircuitBreaker(threshold=2, cooldown=COOLDOWN)
    breaker.record(False)
    assert breaker.allows()  # one failure is not enough
    breaker.record(False)
    assert not breaker.allows()
    assert 0 < breaker.remaining() <= COOLDOWN
    return breaker


def test_after_the_cooldown_one_probe_goes_and_its_success_closes_the_breaker() -> None:
    breaker = _opened()
    time.sleep(COOLDOWN * 1.2)
    assert breaker.allows()  # the probe
    assert not breaker.allows()  # the others wait for its answer
    breaker.record(True)
    assert breaker.allows()
    assert breaker.allows()
    assert breaker.remaining() == 0


def test_a_failed_probe_opens_the_breaker_again_at_once() -> None:
    breaker = _opened()
    time.sleep(COOLDOWN * 1.2)
    assert breaker.allows()
    breaker.record(False)  # one failure, not `threshold` of them
    assert not breaker.allows()
    time.sleep(COOLDOWN * 1.2)
    assert breaker.allows()


def test_a_probe_that_never_answers_is_given_up_after_a_cooldown() -> None:
    breaker = _opened()
    time.sleep(COOLDOWN * 1.2)
    assert breaker.allows()  # this caller is cancelled and never records
    assert not breaker.allows()
    time.sleep(COOLDOWN * 1.2)
    assert breaker.allows()


def test_backoff_doubles_to_its_cap_with_equal_jitter() -> None:
    for failures, full in ((1, 2.0), (2, 4.0), (3, 8.0), (4, 10.0), (50, 10.0)):
        for _ in range(20):
            assert full / 2 <= backoff(failures, base=2.0, cap=10.0) <= full
