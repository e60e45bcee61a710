"""Stores are the wallet's: created or replaced through ``wallet.stores``, refused when their code or time
zone could not work."""

from __future__ import annotations

from decimal import Decimal

import pytest

from kartka.db import Connection
from kartka.errors import InvalidInput
from wallet.stores import Location, Store, get_store, put_store


async def test_putting_a_store_twice_replaces_it(conn: Connection) -> None:
    first = Store(code="minsk-1", name="Минск, Немига", timezone="Europe/Minsk")
    moved = Store(
        code="minsk-1",
        name="Минск, Немига 5",
        timezone="Europe/Minsk",
        location=Location(latitude=Decimal("53.9045"), longitude=Decimal("27.5615")),
    )

    assert await put_store(conn, first) == first
    assert await get_store(conn, "minsk-1") == first
    await put_store(conn, moved)

    assert await get_store(conn, "minsk-1") == moved
    assert await conn.fetchval("SELECT count(*) FROM stores") == 1
    assert await get_store(conn, "nowhere") is None


@pytest.mark.parametrize(
    ("store", "field"),
    [
        (Store(code="no spaces", name="A", timezone="Europe/Minsk"), "code"),
        (Store(code="a", name="A", timezone="Europe/Atlantis"), "timezone"),
        (Store(code="a", name="", timezone="Europe/Minsk"), "name"),
    ],
)
async def test_a_store_that_could_not_work_is_refused(conn: Connection, store: Store, field: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        await put_store(conn, store)
    assert refused.value.field == field
    assert await conn.fetchval("SELECT count(*) FROM stores") == 0
