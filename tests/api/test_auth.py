"""Bearer keys and tokens: 401 for missing, malformed, unknown or revoked ones; 403 for a valid one of the
wrong scope or kind."""

from __future__ import annotations

import asyncio

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from kartka.db import Pool
from kartka.keys import Scope, list_keys, revoke_key
from kartka.staff import Role, create_staff
from tests.helpers import PASSWORDS, Keys, problem, sign_in

Client = AsyncTestClient[Litestar]
BODY = {"phone": "+375291234567"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "kk_pos_123"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer kk_pos_000000000000_not-a-real-key"},
        {"Authorization": "Bearer " + "x" * 5000},
    ],
)
async def test_missing_or_bad_key_is_401(client: Client, headers: dict[str, str]) -> None:
    response = await client.post("/v1/pos/customers", json=BODY, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    problem(response)


async def test_key_of_another_scope_is_403(client: Client, keys: Keys) -> None:
    integration = await keys.headers(Scope.INTEGRATION)
    admin = await keys.headers(Scope.ADMIN)
    pos = await keys.headers(Scope.POS)
    for headers in (integration, admin):
        response = await client.post("/v1/pos/customers", json=BODY, headers=headers)
        assert response.status_code == 403
        assert "pos key" in problem(response)["detail"]
    response = await client.post("/v1/integrations/customers", json=BODY | {"source": "website"}, headers=pos)
    assert response.status_code == 403


async def test_revoked_key_stops_working_at_once(client: Client, keys: Keys, pool: Pool) -> None:
    pos = await keys.headers(Scope.POS)
    assert (await client.post("/v1/pos/customers", json=BODY, headers=pos)).status_code == 201
    async with pool.acquire() as conn:
        (key,) = await list_keys(conn)
        await revoke_key(conn, key.id)
    # The running app learns of the revocation over LISTEN/NOTIFY, without waiting for its cache TTL.
    for _ in range(100):
        response = await client.post("/v1/pos/customers", json=BODY, headers=pos)
        if response.status_code == 401:
            break
        await asyncio.sleep(0.02)
    assert response.status_code == 401


async def test_keys_are_stored_hashed(keys: Keys, pool: Pool) -> None:
    headers = await keys.headers(Scope.POS)
    key = headers["Authorization"].removeprefix("Bearer ")
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM api_keys")
    assert row is not None
    assert key.encode() not in bytes(row["key_hash"])
    assert all(key not in str(value) for value in row.values())


async def test_a_valid_credential_of_another_kind_is_403_and_a_dead_one_401(
    client: Client, keys: Keys, pool: Pool
) -> None:
    """The README's rule holds across kinds: a till key on the app's endpoints, or a shopper's token on a
    till's, is valid but does not cover the endpoint (403); garbage of either shape is 401."""
    pos = await keys.headers(Scope.POS)
    shopper = (await sign_in(client, pool, "+375291112233"))["headers"]
    async with pool.acquire() as conn:
        await create_staff(conn, PASSWORDS, username="kinds", role=Role.ADMIN, password="a long enough password")
    login = await client.post("/v1/admin/login", json={"username": "kinds", "password": "a long enough password"})
    staff = {"Authorization": f"Bearer {login.json()['access_token']}"}

    refused = [
        (await client.get("/v1/me", headers=pos), "pos key"),
        (await client.get("/v1/me", headers=staff), "staff access token"),
        (await client.post("/v1/pos/identify", json={"code": "1"}, headers=shopper), "shopper's access token"),
        (await client.post("/v1/pos/identify", json={"code": "1"}, headers=staff), "staff access token"),
        (await client.get("/v1/admin/campaigns/1", headers=shopper), "shopper's access token"),
    ]
    for response, kind in refused:
        assert response.status_code == 403, response.text
        assert kind in problem(response)["detail"]

    forged = {"Authorization": "Bearer " + shopper["Authorization"].removeprefix("Bearer ")[:-4] + "AAAA"}
    assert (await client.post("/v1/pos/identify", json={"code": "1"}, headers=forged)).status_code == 401
    assert (await client.get("/v1/me", headers={"Authorization": "Bearer kk_pos_0_nope"})).status_code == 401


@pytest.mark.parametrize(
    ("method", "path", "scheme"),
    [
        ("GET", "/passkit/v1/passes/pass.by.kartka/2000000000017", "ApplePass"),
        ("POST", "/v1/webhooks/infobip", "Basic"),
        ("POST", "/v1/webhooks/twilio", "TwilioSignature"),
        ("POST", "/v1/webhooks/google-wallet", "ECv2SigningOnly"),
    ],
)
async def test_a_401_names_the_scheme_of_the_place_that_refused(
    client: Client, method: str, path: str, scheme: str
) -> None:
    """RFC 9110: a 401 says how to authenticate there, not always as a bearer of a key."""
    response = await client.request(method, path, content=b"{}", headers={"Content-Type": "application/json"})
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].split()[0] == scheme
    problem(response)
