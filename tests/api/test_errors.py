"""Every error a client can cause is an RFC 9457 problem that says what is wrong."""

from __future__ import annotations

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from kartka.db import Connection
from tests.helpers import problem

Client = AsyncTestClient[Litestar]


async def test_unknown_route_is_404_problem(client: Client) -> None:
    response = await client.get("/v1/nowhere")
    assert response.status_code == 404
    assert "/v1/nowhere" in problem(response)["detail"]
    assert problem(response)["code"] == "not-found"


@pytest.mark.parametrize("path", ["/schema/nope", "/schema/rapidoc", "/schema/openapi.yaml", "/schema/nope.json"])
async def test_unknown_page_of_the_api_docs_is_404_problem(client: Client, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert problem(response)["code"] == "not-found"
    assert path in problem(response)["detail"]


async def test_the_api_docs_pages_are_still_there(client: Client) -> None:
    for path in ("/schema", "/schema/swagger", "/schema/redoc", "/schema/openapi.json"):
        assert (await client.get(path)).status_code == 200, path


async def test_wrong_method_is_405_problem(client: Client) -> None:
    response = await client.delete("/health")
    assert response.status_code == 405
    body = problem(response)
    assert body["code"] == "method-not-allowed"
    assert "DELETE" in body["detail"]
    assert "GET" in body["detail"]


async def test_malformed_json_is_400_problem(client: Client, pos: dict[str, str]) -> None:
    response = await client.post(
        "/v1/pos/customers", content=b'{"phone": "+3752', headers=pos | {"content-type": "application/json"}
    )
    assert response.status_code == 400
    body = problem(response)
    assert body["code"] == "malformed-json"
    assert "JSON" in body["detail"]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"phone": 375291234567}, "phone", "Expected `str`"),
        ({"phone": "+375291234567", "bonus": 100}, "bonus", "unknown field"),
        ({}, "phone", "missing required field"),
        ({"phone": "+375291234567", "name": "x" * 201}, "name", "length <= 200"),
        ({"phone": "+375291234567", "name": 5}, "name", "Expected `str | null`"),
        ([], "body", "Expected `object`"),
    ],
)
async def test_validation_failures_are_422_naming_the_field(
    client: Client, pos: dict[str, str], conn: Connection, body: object, field: str, words: str
) -> None:
    response = await client.post("/v1/pos/customers", json=body, headers=pos)
    assert response.status_code == 422, response.text
    problem_body = problem(response)
    assert problem_body["code"] == "validation-failed"
    assert problem_body["errors"][0]["field"] == field
    assert words in problem_body["errors"][0]["message"]
    assert await conn.fetchval("SELECT count(*) FROM customers") == 0


async def test_empty_body_is_422(client: Client, pos: dict[str, str]) -> None:
    response = await client.post("/v1/pos/customers", content=b"", headers=pos | {"content-type": "application/json"})
    assert response.status_code == 422
    assert "empty" in problem(response)["detail"]


async def test_huge_body_is_413_problem(client: Client, pos: dict[str, str], conn: Connection) -> None:
    huge = b'{"phone": "+375291234567", "name": "' + b"x" * 2_000_000 + b'"}'
    response = await client.post("/v1/pos/customers", content=huge, headers=pos | {"content-type": "application/json"})
    assert response.status_code == 413
    assert problem(response)["code"] == "body-too-large"
    assert await conn.fetchval("SELECT count(*) FROM customers") == 0


async def test_problem_carries_instance_and_type(client: Client, pos: dict[str, str]) -> None:
    response = await client.post("/v1/pos/customers", json={"phone": "12"}, headers=pos)
    body = problem(response)
    assert body["instance"] == "/v1/pos/customers"
    assert body["type"] == "/problems/invalid-phone"


async def test_text_that_cannot_be_stored_is_refused(
    client: Client, pos: dict[str, str], integration: dict[str, str], conn: Connection
) -> None:
    email = await client.post(
        "/v1/integrations/customers",
        json={"phone": "+375297300003", "source": "website", "email": "x@y.co\u0000"},
        headers=integration,
    )
    assert email.status_code == 422
    assert problem(email)["errors"][0]["field"] == "email"
    sku = await client.post(
        "/v1/pos/orders/calculate",
        json={"card": "+375297300003", "lines": [{"sku": "a\u0000b", "qty": 1, "unit_price": 1}]},
        headers=pos,
    )
    assert sku.status_code == 422
    assert "control characters" in problem(sku)["detail"]
    assert await conn.fetchval("SELECT count(*) FROM customers") == 0


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"phone":"+375291234572","name":"\xff\xfe"}', "UTF-8"),
        (b'{"phone":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nests too deeply"),
    ],
)
async def test_bad_encodings_are_400(client: Client, pos: dict[str, str], body: bytes, words: str) -> None:
    response = await client.post("/v1/pos/customers", content=body, headers=pos | {"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert words in problem(response)["detail"]


async def test_extension_members_sit_at_the_top_level(client: Client, pos: dict[str, str], conn: Connection) -> None:
    card = (await client.post("/v1/pos/customers", json={"phone": "+375291234567"}, headers=pos)).json()["card"]
    await conn.execute("UPDATE cards SET status = 'blocked'")
    body = problem(await client.post("/v1/pos/identify", json={"code": card["number"]}, headers=pos))
    assert body["card"] == card["number"]
    assert "extra" not in body


async def test_too_large_says_the_limit(client: Client, pos: dict[str, str]) -> None:
    huge = b'{"phone": "' + b"1" * 2_000_000 + b'"}'
    response = await client.post("/v1/pos/customers", content=huge, headers=pos | {"content-type": "application/json"})
    assert "at most 1048576 bytes" in problem(response)["detail"]
