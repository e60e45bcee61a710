"""Receipts without a card over HTTP: recording, idempotency, refunds, the bulk back-fill."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from kartka.db import Connection
from kartka.keys import Scope
from tests.conftest import START
from tests.helpers import Keys, problem

Client = AsyncTestClient[Litestar]


async def post_receipt(
    client: Client, headers: dict[str, str], body: dict[str, Any], *, key: str | None = None, expect: int = 201
) -> dict[str, Any]:
    response = await client.post(
        "/v1/pos/receipts", json=body, headers=headers | {"Idempotency-Key": key or uuid.uuid4().hex}
    )
    assert response.status_code == expect, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_a_receipt_is_recorded_once_and_a_retry_replays_it(
    client: Client, pos: dict[str, str], conn: Connection
) -> None:
    body = {
        "receipt_id": "100231",
        "total": 1_150,
        "lines": [
            {"sku": "milk", "qty": 2, "unit_price": 400},
            {"sku": "bread", "qty": 1, "unit_price": 400, "discount": 50},
        ],
    }
    first = await post_receipt(client, pos, body, key="k-1")
    assert first == {
        "receipt_id": "100231",
        "channel": "pos",
        "store": "store-1",
        "terminal": "till-1",
        "total": 1_150,
        "refunded_amount": 0,
        "purchased_at": "2026-03-02T09:00:00Z",
    }
    again = await client.post("/v1/pos/receipts", json=body, headers=pos | {"Idempotency-Key": "k-1"})
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first
    # The same key with another body, the same id under another key: 409, nothing written.
    other = await client.post(
        "/v1/pos/receipts", json={"receipt_id": "100231", "total": 1}, headers=pos | {"Idempotency-Key": "k-1"}
    )
    assert problem(other)["code"] == "idempotency-key-reused"
    reused = await client.post("/v1/pos/receipts", json=body, headers=pos | {"Idempotency-Key": "k-2"})
    assert reused.status_code == 409
    assert problem(reused)["code"] == "receipt-conflict"
    assert await conn.fetchval("SELECT count(*) FROM receipts") == 1
    assert await conn.fetchval("SELECT count(*) FROM receipt_lines") == 2


async def test_receipt_ids_belong_to_their_store(client: Client, keys: Keys, conn: Connection) -> None:
    one = await keys.headers(Scope.POS, store="store-1")
    two = await keys.headers(Scope.POS, store="store-2", terminal="till-9")
    await post_receipt(client, one, {"receipt_id": "7", "total": 100})
    await post_receipt(client, two, {"receipt_id": "7", "total": 200})
    online = await keys.headers(Scope.INTEGRATION)
    response = await client.post(
        "/v1/integrations/receipts",
        json={"receipt_id": "7", "total": 300},
        headers=online | {"Idempotency-Key": uuid.uuid4().hex},
    )
    assert response.status_code == 201, response.text
    assert response.json()["channel"] == "online"
    rows = await conn.fetch("SELECT channel, store, total FROM receipts ORDER BY total")
    assert [tuple(r) for r in rows] == [("pos", "store-1", 100), ("pos", "store-2", 200), ("online", None, 300)]


async def test_bad_receipts_are_422_and_write_nothing(client: Client, pos: dict[str, str], conn: Connection) -> None:
    for body in (
        {"receipt_id": "1", "total": -1},
        {"receipt_id": "", "total": 1},
        {"receipt_id": "1", "total": 100, "lines": [{"sku": "a", "qty": 1, "unit_price": 99}]},
        {"receipt_id": "1", "total": 1, "purchased_at": (START + timedelta(hours=1)).isoformat()},
        {"receipt_id": "1", "total": 1, "purchased_at": (START - timedelta(days=31)).isoformat()},
        {"receipt_id": "1", "total": 1, "card": "123"},
    ):
        response = await client.post("/v1/pos/receipts", json=body, headers=pos | {"Idempotency-Key": "x"})
        assert response.status_code == 422, (body, response.text)
        problem(response)
    no_key = await client.post("/v1/pos/receipts", json={"receipt_id": "1", "total": 1}, headers=pos)
    assert no_key.status_code == 422  # the Idempotency-Key header is required
    assert await conn.fetchval("SELECT count(*) FROM receipts") == 0


async def test_refunds_never_exceed_the_receipt(client: Client, pos: dict[str, str], conn: Connection) -> None:
    await post_receipt(client, pos, {"receipt_id": "r1", "total": 1_000})

    async def refund(refund_id: str, amount: int, *, key: str | None = None) -> Any:
        return await client.post(
            "/v1/pos/receipts/r1/refunds",
            json={"refund_id": refund_id, "amount": amount},
            headers=pos | {"Idempotency-Key": key or uuid.uuid4().hex},
        )

    first = await refund("f1", 600, key="rk")
    assert first.status_code == 201, first.text
    assert first.json() == {"refund_id": "f1", "receipt_id": "r1", "amount": 600, "refunded_amount": 600}
    replay = await refund("f1", 600, key="rk")
    assert replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    too_much = await refund("f2", 401)
    assert too_much.status_code == 409
    assert problem(too_much)["code"] == "return-exceeds-sale"
    assert problem(too_much)["refundable"] == 400
    rest = await refund("f2", 400)
    assert rest.status_code == 201
    assert rest.json()["refunded_amount"] == 1_000
    missing = await client.post(
        "/v1/pos/receipts/nope/refunds",
        json={"refund_id": "f3", "amount": 1},
        headers=pos | {"Idempotency-Key": uuid.uuid4().hex},
    )
    assert missing.status_code == 404
    assert await conn.fetchval("SELECT refunded_amount FROM receipts") == 1_000
    assert await conn.fetchval("SELECT count(*) FROM receipt_refunds") == 2


async def test_import_reports_created_existing_and_invalid(
    client: Client, keys: Keys, pos: dict[str, str], conn: Connection
) -> None:
    await post_receipt(client, pos, {"receipt_id": "a1", "total": 500})
    integration = await keys.headers(Scope.INTEGRATION)
    body = (
        "receipt_id,store,terminal,purchased_at,total\n"
        "a1,store-1,till-1,2026-01-05T10:00:00+03:00,500\n"  # already recorded by the till
        "a2,store-1,till-1,2026-01-05T11:00:00+03:00,700\n"
        "a3,store-2,,2025-06-01T08:00:00Z,900\n"
        "a3,store-2,,2025-06-01T08:00:00Z,900\n"  # twice in the file
        "a4,,till-1,2026-01-05T11:00:00+03:00,100\n"  # a till's receipt names its store
        "a5,store-1,till-1,2026-01-05 11:00,100\n"  # no offset
        "a6,store-1,till-1,2030-01-01T00:00:00Z,100\n"  # in the future
        "a7,store-1,till-1,2026-01-05T11:00:00+03:00,-5\n"
        "a8,store-1,till-1,2026-01-05T11:00:00+03:00\n"
    )
    response = await client.post(
        "/v1/integrations/receipts/import", content=body.encode(), headers=integration | {"Content-Type": "text/csv"}
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["created"], report["existing"], report["invalid"]) == (2, 2, 5)
    assert [e["line"] for e in report["invalid_rows"]] == [6, 7, 8, 9, 10]
    ndjson = b'{"receipt_id": "o1", "purchased_at": "2026-02-01T12:00:00+03:00", "total": 1200}\n{"receipt_id": 5}\n'
    online = await client.post(
        "/v1/integrations/receipts/import?channel=online",
        content=ndjson,
        headers=integration | {"Content-Type": "application/x-ndjson"},
    )
    assert online.status_code == 200, online.text
    assert (online.json()["created"], online.json()["invalid"]) == (1, 1)
    rows = await conn.fetch("SELECT receipt_id, channel, store, imported FROM receipts ORDER BY receipt_id")
    assert [tuple(r) for r in rows] == [
        ("a1", "pos", "store-1", False),
        ("a2", "pos", "store-1", True),
        ("a3", "pos", "store-2", True),
        ("o1", "online", None, True),
    ]
    bad_header = await client.post(
        "/v1/integrations/receipts/import",
        content=b"id,total\n1,2\n",
        headers=integration | {"Content-Type": "text/csv"},
    )
    assert bad_header.status_code == 422
    wrong_type = await client.post(
        "/v1/integrations/receipts/import", content=b"{}", headers=integration | {"Content-Type": "application/json"}
    )
    assert wrong_type.status_code == 415


async def test_tills_cannot_import_and_integrations_cannot_use_the_till_path(
    client: Client, pos: dict[str, str], integration: dict[str, str]
) -> None:
    refused = await client.post("/v1/integrations/receipts/import", content=b"", headers=pos)
    assert refused.status_code == 403
    wrong = await client.post(
        "/v1/pos/receipts", json={"receipt_id": "1", "total": 1}, headers=integration | {"Idempotency-Key": "k"}
    )
    assert wrong.status_code == 403
