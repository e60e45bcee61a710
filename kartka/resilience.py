"""Small resilience pieces shared by every outbound client: a circuit breaker and a token bucket."""

from __future__ import annotations

import asyncio
import time


class CircuitBreaker:
    """Opens after ``threshold`` consecutive failures and stays open for ``cooldown`` seconds."""

    def __init__(self, threshold: int = 3, cooldown: float = 10.0) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.failures = 0
        self.open_until = 0.0

    def allows(self) -> bool:
        return time.monotonic() >= self.open_until

    def remaining(self) -> float:
        """Seconds until the breaker lets calls through again (0 when closed)."""
        return max(0.0, self.open_until - time.monotonic())

    def record(self, ok: bool) -> None:
        if ok:
            self.failures = 0
            return
        self.failures += 1
        if self.failures >= self.threshold:
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
