"""Small resilience pieces shared by every outbound client: a circuit breaker and a token bucket."""

from __future__ import annotations

import asyncio
import random
import time


def backoff(failures: int, *, base: float, cap: float) -> float:
    """Seconds to wait after the ``failures``-th failure in a row: ``base``, doubling with each failure up
    to ``cap``, with equal jitter (between half of it and all of it), so that many processes retrying
    together spread out and none comes back at once."""
    doubled: float = base * 2.0 ** min(failures - 1, 30)
    return min(cap, doubled) * random.uniform(0.5, 1)  # noqa: S311 - jitter, not security


class CircuitBreaker:
    """Closed, calls go through; ``threshold`` consecutive failures open it for ``cooldown`` seconds.
    Then it is half-open: one call goes through as a probe while the others are still refused; the
    probe's success closes the breaker, its failure opens it again for another ``cooldown`` at once
    (not after ``threshold`` more failures). A probe that never reports back (its caller was cancelled)
    is given up after a ``cooldown``, and another call probes."""

    def __init__(self, threshold: int = 3, cooldown: float = 10.0) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.failures = 0
        self.open_until = 0.0
        self._open = False
        self._probe_since: float | None = None

    def allows(self) -> bool:
        """Whether a call may go now; in the half-open state, the caller it says yes to is the probe."""
        if not self._open:
            return True
        now = time.monotonic()
        if now < self.open_until:
            return False
        if self._probe_since is not None and now - self._probe_since < self.cooldown:
            return False  # a probe is out: the others wait for its answer
        self._probe_since = now
        return True

    def remaining(self) -> float:
        """Seconds until the breaker may let a call through again (0 when closed)."""
        if not self._open:
            return 0.0
        now = time.monotonic()
        if self._probe_since is not None:
            return max(0.0, self._probe_since + self.cooldown - now)
        return max(0.0, self.open_until - now)

    def record(self, ok: bool) -> None:
        probing, self._probe_since = self._probe_since is not None, None
        if ok:
            self._open = False
            self.failures = 0
            return
        self.failures += 1
        if probing or self.failures >= self.threshold:
            self._open = True
            self.open_until = time.monotonic() + self.cooldown
            self.failures = 0


class TokenBucket:
    """At most ``rate`` acquisitions per second on average, bursts up to ``burst``; ``acquire`` waits."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = burst if burst is not None else max(rate, 1.0)
        self._tokens = self.capacity
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self, tokens: float = 1.0) -> None:
        """Take ``tokens`` (a batch of messages takes one per message), waiting for them to accrue."""
        tokens = min(tokens, self.capacity)
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= tokens:
                    self._tokens -= tokens
                    return
                await asyncio.sleep((tokens - self._tokens) / self.rate)
