"""``kartka serve``'s supervisor restarts a worker that keeps exiting after a growing wait (doubling up to
a cap), and from the shortest wait again once a worker has run long enough to count as healthy. Real
child processes; each records when it started, and the gaps between starts are the waits."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

from kartka.supervisor import Supervisor


def _starts(log: Path) -> list[float]:
    return [float(line) for line in log.read_text().split()] if log.exists() else []


def _supervise(log: Path, *, runs: int, seconds: float = 0.0, **backoff: float) -> list[float]:
    """Start a child that records its start and exits after ``seconds``; stop after ``runs`` starts."""
    script = f"date +%s.%N >> {log}" + (f"; sleep {seconds}" if seconds else "")
    supervisor = Supervisor(["/bin/sh", "-c", script], {"PATH": "/usr/bin:/bin"}, name="test child", **backoff)
    supervisor.start()
    try:
        deadline = time.monotonic() + 20
        while len(_starts(log)) < runs:
            assert time.monotonic() < deadline, f"only {len(_starts(log))} starts"
            time.sleep(0.01)
    finally:
        supervisor.stop(timeout=5)
    return _starts(log)[:runs]


def test_a_child_that_keeps_exiting_waits_longer_each_time_up_to_the_cap(tmp_path: Path) -> None:
    starts = _supervise(tmp_path / "starts", runs=6, min_backoff=0.1, max_backoff=0.4, healthy_after=60)
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    for gap, wait in zip(gaps, [0.1, 0.2, 0.4, 0.4, 0.4], strict=True):
        # A start costs a few milliseconds on top of the wait (more on a busy machine), never less; the
        # wait after the cap would have been 0.8 s, then 1.6 s.
        assert wait <= gap < wait + 0.3, f"gaps {[round(g, 3) for g in gaps]}"


def test_a_child_that_ran_long_enough_restarts_after_the_shortest_wait(tmp_path: Path) -> None:
    # Each child runs 0.3 s, past healthy_after: every exit counts as the first failure (or the waits
    # would be 0.1, 0.2, 0.4, 0.8 s).
    starts = _supervise(tmp_path / "starts", runs=5, seconds=0.3, min_backoff=0.1, max_backoff=5, healthy_after=0.2)
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    for gap in gaps:
        assert 0.4 <= gap < 0.4 + 0.25, f"gaps {[round(g, 3) for g in gaps]}"
