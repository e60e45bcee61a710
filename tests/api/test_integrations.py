"""The online shop and CRM: registration with a source, and streamed bulk import."""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from kartka.db import Connection, Pool
from kartka.keys import Scope, create_key
from tests.helpers import Keys, problem
from wallet.customers import Origin
from wallet.importer import Importer, ImportReport, ValidRow
from wallet.models import Source

Client = AsyncTestClient[Litestar]


@pytest.mark.parametrize("source", ["website", "online_order", "crm_import", "app", "qr_poster", "manual"])
async def test_register_records_the_source(
    client: Client, integration: dict[str, str], conn: Connection, source: str
) -> None:
    response = await client.post(
        "/v1/integrations/customers",
        json={"phone": "+375331234567", "source": source, "name": "Ольга", "email": "Olga@Example.COM"},
        headers=integration,
    )
    assert response.status_code == 201, response.text
    assert response.json()["created"] is True
    row = await conn.fetchrow(
        "SELECT c.source, c.email, r.source AS reg FROM customers c JOIN registrations r ON r.customer_id = c.id"
    )
    assert row is not None
    assert (row["source"], row["reg"], row["email"]) == (source, source, "Olga@example.com")


async def test_register_rejects_unknown_source_and_bad_email(client: Client, integration: dict[str, str]) -> None:
    unknown = await client.post(
        "/v1/integrations/customers", json={"phone": "+375331234567", "source": "fax"}, headers=integration
    )
    assert unknown.status_code == 422
    assert problem(unknown)["errors"][0]["field"] == "source"
    till = await client.post(
        "/v1/integrations/customers", json={"phone": "+375331234567", "source": "pos"}, headers=integration
    )
    assert till.status_code == 422
    assert "tills" in problem(till)["detail"]
    email = await client.post(
        "/v1/integrations/customers",
        json={"phone": "+375331234567", "source": "website", "email": "not-an-email"},
        headers=integration,
    )
    assert email.status_code == 422
    assert problem(email)["errors"][0]["field"] == "email"


CSV = """phone,name,email
+375291000001,Анна,anna@example.com
80291000002,Борис,
not-a-phone,Bad,
+375291000001,Анна again,
"+375 29 100-00-03","Smith, John",john@example.com
+375291000004,Ева,broken-email
"""


async def test_csv_import_reports_counts_and_bad_lines(
    client: Client, integration: dict[str, str], conn: Connection
) -> None:
    await client.post(
        "/v1/integrations/customers",
        json={"phone": "+375291000002", "source": "website"},
        headers=integration,
    )
    response = await client.post(
        "/v1/integrations/customers/import",
        content=CSV.encode(),
        headers=integration | {"content-type": "text/csv"},
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["created"] == 2  # ...0001 and ...0003
    assert report["existing"] == 2  # ...0002 (registered before) and the repeated ...0001
    assert report["invalid"] == 2
    assert [e["line"] for e in report["invalid_rows"]] == [4, 7]
    assert "phone" in report["invalid_rows"][0]["error"]
    assert "email" in report["invalid_rows"][1]["error"]
    names = {r["phone"]: r["name"] for r in await conn.fetch("SELECT phone, name FROM customers")}
    assert names == {"+375291000001": "Анна", "+375291000002": "Борис", "+375291000003": "Smith, John"}
    assert await conn.fetchval("SELECT count(*) FROM cards") == 3
    sources = await conn.fetch("SELECT DISTINCT source FROM registrations WHERE source <> 'website'")
    assert [r["source"] for r in sources] == ["crm_import"]


async def test_semicolon_csv_with_bom_and_crlf(client: Client, integration: dict[str, str]) -> None:
    body = "\ufeffphone;name\r\n+375291000001;Анна\r\n+375291000002;Борис\r\n".encode()
    response = await client.post(
        "/v1/integrations/customers/import?source=website&store=minsk-1",
        content=body,
        headers=integration | {"content-type": "text/csv; charset=utf-8"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["created"] == 2
    assert response.json()["invalid"] == 0


async def test_ndjson_import(client: Client, integration: dict[str, str], conn: Connection) -> None:
    lines = [
        b'{"phone": "+375291000001", "name": "A"}',
        b'{"phone": "+375291000002", "extra": 1}',
        b"{broken",
        b"",
        b'{"phone": "+375291000003", "email": "c@example.com"}',
    ]
    response = await client.post(
        "/v1/integrations/customers/import",
        content=b"\n".join(lines),
        headers=integration | {"content-type": "application/x-ndjson"},
    )
    report = response.json()
    assert (report["created"], report["existing"], report["invalid"]) == (2, 0, 2)
    assert [e["line"] for e in report["invalid_rows"]] == [2, 3]
    assert "extra" in report["invalid_rows"][0]["error"]
    assert await conn.fetchval("SELECT count(*) FROM customers") == 2


async def test_csv_with_unknown_columns_is_refused_before_writing(
    client: Client, integration: dict[str, str], conn: Connection
) -> None:
    response = await client.post(
        "/v1/integrations/customers/import",
        content=b"phone,birthday\n+375291000001,2000-01-01\n",
        headers=integration | {"content-type": "text/csv"},
    )
    assert response.status_code == 422
    assert "header" in problem(response)["detail"]
    assert await conn.fetchval("SELECT count(*) FROM customers") == 0


async def test_import_needs_a_known_media_type(client: Client, integration: dict[str, str]) -> None:
    response = await client.post(
        "/v1/integrations/customers/import",
        content=b"phone\n+375291000001\n",
        headers=integration | {"content-type": "application/pdf"},
    )
    assert response.status_code == 415
    assert "text/csv" in problem(response)["detail"]


async def test_import_streams_files_far_beyond_the_body_limit(
    client: Client, integration: dict[str, str], conn: Connection
) -> None:
    # About 1.1 MB, above the 1 MiB JSON body limit. (The test transport buffers the body; the end-to-end
    # test streams a file to a real server.)
    rows = 16_000

    def body() -> Iterator[bytes]:
        yield b"phone,name,email\n"
        for start in range(0, rows, 1_000):
            yield "".join(
                f"+3752920{n:05d},Customer number {n} with a longish name,c{n}@example.com\n"
                for n in range(start, start + 1_000)
            ).encode()

    response = await client.post(
        "/v1/integrations/customers/import",
        content=b"".join(body()),
        headers=integration | {"content-type": "text/csv"},
    )
    assert response.status_code == 200, response.text
    report = msgspec.json.decode(response.content)
    assert report["created"] == rows
    assert report["invalid"] == 0
    assert await conn.fetchval("SELECT count(*) FROM cards WHERE status = 'active'") == rows
    assert await conn.fetchval("SELECT count(DISTINCT number) FROM cards") == rows


async def test_overlong_line_is_one_bad_row(client: Client, integration: dict[str, str]) -> None:
    body = b"phone,name\n+375291000001," + b"x" * 100_000 + b"\n+375291000002,ok\n"
    response = await client.post(
        "/v1/integrations/customers/import", content=body, headers=integration | {"content-type": "text/csv"}
    )
    report = response.json()
    assert (report["created"], report["invalid"]) == (1, 1)
    assert report["invalid_rows"][0]["line"] == 2


async def test_a_row_the_database_refuses_costs_only_that_row(
    client: Client, integration: dict[str, str], conn: Connection
) -> None:
    body = "phone,name,email\n+375297200061,,\n+375297200062,,a\u0000b@example.com\n+375297200063,Ok,\n".encode()
    response = await client.post(
        "/v1/integrations/customers/import", content=body, headers=integration | {"content-type": "text/csv"}
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["created"], report["invalid"]) == (2, 1)
    assert report["invalid_rows"][0]["line"] == 3
    assert await conn.fetchval("SELECT count(*) FROM customers") == 2


async def test_rows_the_database_refuses_are_isolated_from_their_batch(pool: Pool, conn: Connection) -> None:
    """Rows reach the database only after validation; should one still be refused there, the rest of its
    batch is written row by row and only that row is reported."""
    importer = Importer(pool, region="BY", card_prefix="2")
    rows = [
        ValidRow(line=2, phone="+375297200071", name="Ok", email=None),
        ValidRow(line=3, phone="+375297200072", name="a\u0000b", email=None),  # bypasses clean_name
        ValidRow(line=4, phone="+375297200073", name=None, email=None),
    ]
    report = ImportReport()
    await importer._write(rows, Origin(source=Source.CRM_IMPORT), report)
    assert (report.created, report.invalid) == (2, 1)
    assert report.invalid_rows[0].line == 3
    assert await conn.fetchval("SELECT count(*) FROM cards") == 2


async def test_a_store_bound_key_acts_for_its_store_and_a_chain_wide_key_for_all(
    client: Client, pool: Pool, conn: Connection, keys: Keys
) -> None:
    """S1's key registers for S1 only and reads only what happened in S1 (its orders and their refunds),
    though customers are chain-wide; a key made without a store is the chain's and sees everything."""

    async def key(store: str | None) -> dict[str, str]:
        async with pool.acquire() as c:
            text, _ = await create_key(c, scope=Scope.INTEGRATION, store=store)
        return {"Authorization": f"Bearer {text}"}

    s1, s2, chain = await key("s1"), await key("s2"), await key(None)
    till = await keys.headers(Scope.POS, store="s2")
    phone = "+375291234567"
    registered = await client.post("/v1/pos/customers", json={"phone": phone}, headers=till)
    customer = registered.json()["customer"]["id"]
    lines = [{"sku": "milk", "qty": 2, "unit_price": 25_000}]
    for path, headers, order in (("/v1/pos/orders", till, "till-order"), ("/v1/integrations/orders", s1, "web-order")):
        body = {"order_id": order, "card": phone, "lines": lines}
        bought = await client.post(path, json=body, headers=headers | {"Idempotency-Key": order})
        assert bought.status_code == 201, bought.text
    assert {tuple(r) for r in await conn.fetch("SELECT order_id, store FROM orders")} == {
        ("till-order", "s2"),
        ("web-order", "s1"),
    }

    async def orders_seen(headers: dict[str, str]) -> set[str]:
        page = await client.get(f"/v1/integrations/customers/{customer}/transactions", headers=headers)
        assert page.status_code == 200, page.text
        return {item["order_id"] for item in page.json()["items"]}

    assert await orders_seen(s1) == {"web-order"}
    assert await orders_seen(s2) == {"till-order"}
    assert await orders_seen(chain) == {"till-order", "web-order"}

    # Registrations: a store-bound key's are its store's; naming another store is refused, writing nothing.
    before = await conn.fetchval("SELECT count(*) FROM registrations")
    elsewhere = await client.post(
        "/v1/integrations/customers", json={"phone": phone, "source": "website", "store": "s2"}, headers=s1
    )
    assert elsewhere.status_code == 403
    assert problem(elsewhere)["code"] == "forbidden"
    refused_import = await client.post(
        "/v1/integrations/customers/import?store=s2",
        content=b"phone\n+375297654321\n",
        headers=s1 | {"Content-Type": "text/csv"},
    )
    assert refused_import.status_code == 403
    assert await conn.fetchval("SELECT count(*) FROM registrations") == before
    fresh = await client.post(
        "/v1/integrations/customers", json={"phone": "+375297654321", "source": "website"}, headers=s1
    )
    assert fresh.status_code == 201
    imported = await client.post(
        "/v1/integrations/customers/import",
        content=b"phone\n+375297654322\n",
        headers=s1 | {"Content-Type": "text/csv"},
    )
    assert imported.json()["created"] == 1
    stores = await conn.fetch(
        "SELECT r.store FROM registrations r JOIN customers c ON c.id = r.customer_id WHERE c.phone <> $1", phone
    )
    assert [r["store"] for r in stores] == ["s1", "s1"]
    assert (
        await client.post(
            "/v1/integrations/customers", json={"phone": phone, "source": "website", "store": "s2"}, headers=chain
        )
    ).status_code == 200
