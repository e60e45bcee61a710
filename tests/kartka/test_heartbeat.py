"""The worker's watch over its loops (kartka.heartbeat.Loops): a loop is stuck only while inside a round
or a step for longer than it may be; sleeping between rounds, and time the process did not run, are not
held against it."""

from __future__ import annotations

import time

from kartka.heartbeat import Loops

WITHIN = 0.05


def test_a_loop_is_stuck_only_inside_a_round_past_its_bound() -> None:
    loops = Loops()
    loops.watch("jobs", WITHIN)
    time.sleep(WITHIN * 2)
    assert loops.stuck() == {}  # sleeping between rounds
    with loops.round("jobs"):
        assert loops.stuck() == {}
        time.sleep(WITHIN * 2)
        assert set(loops.stuck()) == {"jobs"}
        loops.came_round("jobs")  # a step is done: the round goes on
        assert loops.stuck() == {}
    time.sleep(WITHIN * 2)
    assert loops.stuck() == {}


def test_a_loop_with_its_own_clock_and_a_bound_of_zero() -> None:
    loops = Loops()
    last = time.monotonic()
    loops.watch("outbox", WITHIN, alive=lambda: last)
    loops.watch("unjudged", 0)
    with loops.round("unjudged"):
        time.sleep(WITHIN * 2)
        assert set(loops.stuck()) == {"outbox"}
    last = time.monotonic()
    assert loops.stuck() == {}


def test_time_the_process_did_not_run_is_forgiven() -> None:
    loops = Loops()
    loops.watch("jobs", WITHIN)
    with loops.round("jobs"):
        time.sleep(WITHIN * 2)  # as if the process had been stopped meanwhile
        loops.resumed()
        assert loops.stuck() == {}
        time.sleep(WITHIN * 2)
        assert set(loops.stuck()) == {"jobs"}  # and after that, judged again
