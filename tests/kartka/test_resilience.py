"""The circuit breaker: open after repeated failures, then one probe at a time (half-open)."""

from __future__ import annotations

import time

from kartka.resilience import CircuitBreaker

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
