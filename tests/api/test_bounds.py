"""Out-of-range numbers and times from outside are the client's error, never a 500 with a traceback in
the log: one test per kind of input (path, query and body integers, body times, protocol values)."""

from __future__ import annotations

import io
import json
import logging
import zipfile
from typing import Any

import asyncpg
import pytest
from litestar import Litestar, post
from litestar.params import JSONBody
from litestar.testing import AsyncTestClient

from api.errors import EXCEPTION_HANDLERS
from kartka.db import Connection, Pool
from kartka.keys import Scope
from kartka.settings import Settings
from tests.helpers import Keys, problem, sign_in

Client = AsyncTestClient[Litestar]
BIG = 2**63
LINES = [{"sku": "milk", "qty": 1, "unit_price": 10_000}]
CAMPAIGN: dict[str, Any] = {"name": "Coffee week", "texts": {"ru": "Кофе −20%"}}
#: The edges of what Python's datetime holds, with offsets that push them over when moved to UTC.
EDGES = ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z")


def no_traceback(caplog: pytest.LogCaptureFixture, what: object) -> None:
    logged = [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not logged, (what, logged)
    caplog.clear()


def refused(response: Any, caplog: pytest.LogCaptureFixture, what: object) -> None:
    assert response.status_code in (400, 404, 422), (what, response.status_code, response.text)
    problem(response)
    no_traceback(caplog, what)


async def test_path_integers(client: Client, keys: Keys, caplog: pytest.LogCaptureFixture) -> None:
    admin = await keys.headers(Scope.ADMIN)
    for value in (str(BIG), str(-BIG - 1), "9" * 40, "-1", "0"):
        refused(await client.get(f"/v1/admin/campaigns/{value}", headers=admin), caplog, value)


async def test_query_integers(client: Client, pool: Pool, caplog: pytest.LogCaptureFixture) -> None:
    signed = await sign_in(client, pool, "+375291234567")
    for value in (str(BIG), "9" * 40, "-5", "0"):
        response = await client.get("/v1/me/transactions", params={"limit": value}, headers=signed["headers"])
        refused(response, caplog, value)


async def test_body_integers(
    client: Client, keys: Keys, pos: dict[str, str], conn: Connection, caplog: pytest.LogCaptureFixture
) -> None:
    admin = await keys.headers(Scope.ADMIN)
    created = await client.post("/v1/pos/customers", json={"phone": "+375291234567"}, headers=pos)
    customer = created.json()["customer"]["id"]
    for points in (BIG, BIG - 1, 10**30):
        grant = {"points": points, "expires_in_days": 7, "reason": "x"}
        refused(await client.post(f"/v1/admin/customers/{customer}/grants", json=grant, headers=admin), caplog, points)
    segments: list[dict[str, Any]] = [{"spend_min": BIG}, {"spend_max": 10**30}, {"spend_min": BIG - 1}]
    for segment in segments:
        response = await client.post("/v1/admin/campaigns", json=CAMPAIGN | {"segment": segment}, headers=admin)
        refused(response, caplog, segment)
    for line in ({"qty": BIG}, {"unit_price": BIG}, {"unit_price": -1}):
        body = {"card": "+375291234567", "lines": [LINES[0] | line]}
        refused(await client.post("/v1/pos/orders/calculate", json=body, headers=pos), caplog, line)
    assert await conn.fetchval("SELECT count(*) FROM campaigns") == 0
    assert await conn.fetchval("SELECT count(*) FROM ledger_entries") == 0


async def test_body_times(
    client: Client, keys: Keys, pos: dict[str, str], conn: Connection, caplog: pytest.LogCaptureFixture
) -> None:
    admin = await keys.headers(Scope.ADMIN)
    await client.post("/v1/pos/customers", json={"phone": "+375291234567"}, headers=pos)
    for n, moment in enumerate((*EDGES, "2026-03-02T12:00:00")):  # the last has no offset
        order = {"order_id": f"o-{n}", "card": "+375291234567", "lines": LINES, "purchased_at": moment}
        response = await client.post("/v1/pos/orders", json=order, headers=pos | {"Idempotency-Key": f"k-{n}"})
        refused(response, caplog, moment)
        bodies = [
            CAMPAIGN | {"start_at": moment},
            CAMPAIGN | {"segment": {"last_purchase_before": moment}},
            CAMPAIGN | {"segment": {"last_purchase_after": moment}},
        ]
        for body in bodies:
            refused(await client.post("/v1/admin/campaigns", json=body, headers=admin), caplog, body)
    assert await conn.fetchval("SELECT count(*) FROM orders") == 0
    assert await conn.fetchval("SELECT count(*) FROM campaigns") == 0


async def test_report_days(client: Client, keys: Keys, caplog: pytest.LogCaptureFixture) -> None:
    """A period's days at the calendar's edges (the next midnight, or the time zone, overflows them)."""
    admin = await keys.headers(Scope.ADMIN)
    for first, end in (("0001-01-01", "0001-01-02"), ("9999-12-30", "9999-12-31"), ("1899-12-31", "1900-01-02")):
        for path in ("/v1/admin/reports/kpis", "/v1/admin/reports/promotions"):
            response = await client.get(path, params={"from": first, "to": end}, headers=admin)
            refused(response, caplog, (path, first))
            assert "`from` must be between 1900 and 2200" in response.json()["detail"], response.text


async def test_update_tags_and_http_dates_out_of_range_are_ignored(
    client: Client, pool: Pool, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """PassKit's tag and the If-Modified-Since header are protocol values: one that cannot be a tag we
    gave out (or an HTTP-date, RFC 9110 §13.1.3) is ignored, so the phone gets every serial / the pass."""
    signed = await sign_in(client, pool, "+375291234567")
    document = await client.get("/v1/me/card/apple-pass", headers=signed["headers"])
    with zipfile.ZipFile(io.BytesIO(document.content)) as pkpass:
        data = json.loads(pkpass.read("pass.json"))
    device = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
    auth = {"Authorization": f"ApplePass {data['authenticationToken']}"}
    registration = f"/passkit/v1/devices/{device}/registrations/{settings.pass_type_id}"
    registered = await client.post(
        f"{registration}/{data['serialNumber']}", json={"pushToken": "ab" * 32}, headers=auth
    )
    assert registered.status_code == 201
    for tag in ("999999999999", "253402300800", "9" * 30, "-1", "1e9", "٣٣"):
        listed = await client.get(registration, params={"passesUpdatedSince": tag})
        assert listed.status_code == 200, (tag, listed.status_code)
        assert listed.json()["serialNumbers"] == [data["serialNumber"]]
        no_traceback(caplog, tag)
    url = f"/passkit/v1/passes/{settings.pass_type_id}/{data['serialNumber']}"
    for since in (
        "Mon, 01 Jan 0001 00:00:00 +2359",
        "Fri, 31 Dec 9999 23:59:59 -2359",
        "Fri, 31 Dec 99999 23:59:59 GMT",
        "Sat, 01 Jan 10000 00:00:00 GMT",
        "garbage",
    ):
        response = await client.get(url, headers=auth | {"If-Modified-Since": since})
        assert response.status_code == 200, (since, response.status_code)
        no_traceback(caplog, since)


MILK: dict[str, Any] = {
    "id": "milk-10",
    "title": {"en": "-10% on milk"},
    "benefit": {"type": "percent_off", "lines": {"skus": ["milk"]}, "percent_bp": 1000},
}
#: A time the service can hold, to pair with an edge where a body needs two.
FINE = "2026-03-02T12:00:00Z"


async def test_promotion_and_offer_times(
    client: Client, keys: Keys, pos: dict[str, str], conn: Connection, caplog: pytest.LogCaptureFixture
) -> None:
    """The promotion engine's times: a promotion's `when`, a preview's moment (and its drafts'), a
    backtest's period and a personal offer's end."""
    admin = await keys.headers(Scope.ADMIN)
    created = await client.post("/v1/pos/customers", json={"phone": "+375291234567"}, headers=pos)
    customer = created.json()["customer"]["id"]
    stored = await client.post("/v1/admin/promotions", json=MILK | {"audience": {"personal": True}}, headers=admin)
    assert stored.status_code == 201, stored.text
    cart = {"lines": LINES}
    for moment in (*EDGES, "2026-03-02T12:00:00"):  # the last has no offset
        whens = [{"starts_at": moment}, {"ends_at": moment}, {"starts_at": FINE, "ends_at": moment}]
        for when in whens:
            draft = MILK | {"id": "milk-11", "when": when}
            response = await client.post("/v1/admin/promotions", json=draft, headers=admin)
            refused(response, caplog, when)
            if moment in EDGES:  # said of the time at fault
                assert "_at: must be between 1900 and 2200" in problem(response)["errors"][0]["message"], response.text
            refused(
                await client.put("/v1/admin/promotions/milk-10", json=MILK | {"when": when}, headers=admin),
                caplog,
                when,
            )
            preview = cart | {"drafts": [draft]}
            refused(await client.post("/v1/admin/promotions/preview", json=preview, headers=admin), caplog, when)
        at = cart | {"at": moment}
        refused(await client.post("/v1/admin/promotions/preview", json=at, headers=admin), caplog, at)
        for period in ({"from": moment, "to": FINE}, {"from": FINE, "to": moment}):
            response = await client.post("/v1/admin/promotions/milk-10/backtest", json=period, headers=admin)
            refused(response, caplog, period)
        offer = {"promotion": "milk-10", "valid_until": moment}
        response = await client.post(f"/v1/admin/customers/{customer}/offers", json=offer, headers=admin)
        refused(response, caplog, offer)
    assert await conn.fetchval("SELECT count(*) FROM promotions") == 1
    assert await conn.fetchval("SELECT count(*) FROM promotion_offers") == 0


async def test_an_argument_the_driver_cannot_encode_is_422_and_a_bug_in_our_sql_stays_500(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """The safety net behind the bounds. asyncpg refuses an argument it cannot encode with
    ``asyncpg.DataError`` (a ``PostgresError``), which the app's errors used to miss: they mapped
    ``asyncpg.exceptions._base.DataError``, which asyncpg never raises, so the refusal was a 500 with a
    traceback. Driven through the app's own handlers and a real connection, since every input the app
    takes is bounded before it gets this far."""
    assert settings.database_url is not None
    url = settings.database_url.reveal()

    @post("/probe", status_code=200)
    async def probe(data: JSONBody[dict[str, int]]) -> int:
        conn = await asyncpg.connect(url)
        try:
            return int(await conn.fetchval("SELECT $1::bigint / $2::int", data["n"], data["d"]))
        finally:
            await conn.close()

    async with AsyncTestClient(Litestar([probe], exception_handlers=EXCEPTION_HANDLERS, logging_config=None)) as client:
        for n in (2**63, -(2**63) - 1):
            response = await client.post("/probe", json={"n": n, "d": 1})
            assert response.status_code == 422, response.text
            assert problem(response)["code"] == "out-of-range"
            no_traceback(caplog, n)
        assert (await client.post("/probe", json={"n": 6, "d": 2})).json() == 3
        with caplog.at_level(logging.ERROR):
            bug = await client.post("/probe", json={"n": 1, "d": 0})  # PostgreSQL's division by zero: ours
        assert bug.status_code == 500
        assert any(r.exc_info for r in caplog.records)
