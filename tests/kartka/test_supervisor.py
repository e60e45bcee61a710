"""``kartka serve``'s supervisor restarts a worker that keeps exiting after a growing wait (doubling up to
a cap), and from the shortest wait again once a worker has run long enough to count as healthy. Real
child processes; each records when it started, and the gaps between starts are the waits."""

from __future__ import annotations

import itertools
import logging
import time
from pathlib import Path

import pytest

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


def _waits(caplog: pytest.LogCaptureFixture, runs: int) -> list[float]:
    """The waits the supervisor chose, as it logged them (the wall clock adds a busy machine's delays)."""
    return [float(r.args[4]) for r in caplog.records if r.name == "kartka.supervisor" and r.args][: runs - 1]  # type: ignore[index, arg-type]


def test_a_child_that_keeps_exiting_waits_longer_each_time_up_to_the_cap(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "kartka.supervisor")
    starts = _supervise(tmp_path / "starts", runs=6, min_backoff=0.1, max_backoff=0.4, healthy_after=60)
    waits = [0.1, 0.2, 0.4, 0.4, 0.4]  # past the cap it would have been 0.8 s, then 1.6 s
    assert _waits(caplog, 6) == waits
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    # Each start really waited that long: never less (a busy machine may add to it).
    assert all(gap >= wait for gap, wait in zip(gaps, waits, strict=True)), f"gaps {[round(g, 3) for g in gaps]}"


def test_a_child_that_ran_long_enough_restarts_after_the_shortest_wait(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "kartka.supervisor")
    # Each child runs 0.3 s, past healthy_after: every exit counts as the first failure (or the waits
    # would be 0.1, 0.2, 0.4, 0.8 s).
    starts = _supervise(tmp_path / "starts", runs=5, seconds=0.3, min_backoff=0.1, max_backoff=5, healthy_after=0.2)
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert _waits(caplog, 5) == [0.1] * 4
    assert all(gap >= 0.4 for gap in gaps), f"gaps {[round(g, 3) for g in gaps]}"
