"""The suite's own guarantees (tests/database.py): a test finds every table empty and every identity
sequence at its start, whatever the test before it wrote, and a ledger that does not balance fails."""

from __future__ import annotations

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from kartka.db import Connection
from tests.database import BIG, Schema, check_ledger


async def test_a_purchase_and_a_big_table_are_cleaned_away(
    client: AsyncTestClient[Litestar], pos: dict[str, str], conn: Connection, schema: Schema
) -> None:
    registered = await client.post("/v1/pos/customers", json={"phone": "+375291234567"}, headers=pos)
    card = registered.json()["card"]["number"]
    line = {"sku": "milk", "name": "Milk", "qty": 2, "unit_price": 1_000}
    order = {"order_id": "o-1", "card": card, "lines": [line]}
    bought = await client.post("/v1/pos/orders", json=order, headers=pos | {"Idempotency-Key": "k-1"})
    assert bought.status_code == 201, bought.text
    refund = {"refund_id": "r-1", "lines": [{"sku": "milk", "qty": 1}]}
    returned = await client.post("/v1/pos/orders/o-1/refunds", json=refund, headers=pos | {"Idempotency-Key": "k-2"})
    assert returned.status_code == 201, returned.text
    await conn.execute(
        "INSERT INTO job_runs (job, run_on) SELECT 'test', d FROM generate_series(1, $1) AS n,"
        " LATERAL (SELECT date '2000-01-01' + n AS d) AS days",
        BIG + 10,
    )
    written = [t for t in schema.tables if await conn.fetchval(f"SELECT EXISTS (SELECT FROM {t})")]
    assert {"customers", "cards", "orders", "refunds", "lots", "ledger_entries", "job_runs"} <= set(written)

    await schema.clean(conn)

    for table in schema.tables:
        assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0, table
    for _, sequence, start in schema.sequences:  # (nextval is not rolled back: setval puts it back)
        assert await conn.fetchval(f"SELECT nextval('{sequence}')") == start, sequence
        await conn.execute(f"SELECT setval('{sequence}', {start}, false)")


async def test_a_ledger_that_does_not_balance_fails(
    client: AsyncTestClient[Litestar], pos: dict[str, str], conn: Connection
) -> None:
    registered = await client.post("/v1/pos/customers", json={"phone": "+375291234567"}, headers=pos)
    customer = registered.json()["customer"]["id"]
    await check_ledger(conn)  # a customer without entries balances
    entry = await conn.fetchval(
        "INSERT INTO ledger_entries (customer_id, kind, points, reason, occurred_at)"
        " VALUES ($1, 'adjustment', 500, 'made up', now()) RETURNING id",
        customer,
    )
    try:
        with pytest.raises(AssertionError, match=rf"customer {customer}: entries 500, lots 0, debt 0"):
            await check_ledger(conn)
    finally:
        await conn.execute("DELETE FROM ledger_entries WHERE id = $1", entry)
