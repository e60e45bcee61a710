"""Staff: password sign-in, roles on the admin API beside admin keys, limits on failures."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from kartka.clock import FakeClock
from kartka.db import Connection, Pool
from kartka.keys import Scope
from kartka.staff import Passwords, Role, create_staff, disable_staff, set_password
from tests.helpers import PASSWORDS, Keys, problem, sign_in

Client = AsyncTestClient[Litestar]
PASSWORD = "correct horse battery staple"
CAMPAIGN = {"name": "Coffee week", "texts": {"ru": "Кофе −20% до воскресенья"}}
GRANT = {"points": 1_000, "expires_in_days": 7, "reason": "sorry for the wait"}


async def staff(pool: Pool, username: str, role: Role) -> None:
    async with pool.acquire() as conn:
        await create_staff(conn, PASSWORDS, username=username, role=role, password=PASSWORD)


async def login(client: Client, username: str, password: str = PASSWORD) -> Any:
    return await client.post("/v1/admin/login", json={"username": username, "password": password})


async def bearer(client: Client, username: str) -> dict[str, str]:
    response = await login(client, username)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def customer(client: Client, pos: dict[str, str]) -> str:
    created = await client.post("/v1/pos/customers", json={"phone": "+375291234567"}, headers=pos)
    customer_id: str = created.json()["customer"]["id"]
    return customer_id


async def test_a_staff_member_signs_in_and_the_password_is_stored_as_argon2(
    client: Client, pool: Pool, conn: Connection
) -> None:
    await staff(pool, "Olga", Role.MARKETER)
    response = await login(client, "  olga ")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in", "role", "username"}
    assert (body["role"], body["username"], body["token_type"]) == ("marketer", "olga", "Bearer")
    stored = await conn.fetchval("SELECT password_hash FROM staff")
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    assert await conn.fetchval("SELECT last_login_at FROM staff") is not None
    refreshed = await client.post("/v1/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert refreshed.status_code == 200


async def test_a_password_hashed_at_another_cost_is_rehashed_at_the_configured_one(
    client: Client, conn: Connection
) -> None:
    await create_staff(conn, Passwords(), username="olga", role=Role.ADMIN, password=PASSWORD)  # production cost
    assert (await conn.fetchval("SELECT password_hash FROM staff")).startswith("$argon2id$v=19$m=65536,t=3,")
    assert (await login(client, "olga")).status_code == 200
    assert (await conn.fetchval("SELECT password_hash FROM staff")).startswith("$argon2id$v=19$m=32,t=1,")
    assert (await login(client, "olga")).status_code == 200
    assert (await login(client, "olga", "wrong horse battery staple")).status_code == 401


async def test_roles_decide_what_staff_may_do(client: Client, pool: Pool, keys: Keys, pos: dict[str, str]) -> None:
    for name, role in (("ada", Role.ADMIN), ("mark", Role.MARKETER), ("sue", Role.SUPPORT)):
        await staff(pool, name, role)
    who = await customer(client, pos)
    admin_key = await keys.headers(Scope.ADMIN)
    store = {"name": "Minsk 1", "timezone": "Europe/Minsk"}

    async def statuses(headers: dict[str, str]) -> tuple[int, int, int]:
        grant = await client.post(f"/v1/admin/customers/{who}/grants", json=GRANT, headers=headers)
        campaign = await client.post("/v1/admin/campaigns", json=CAMPAIGN, headers=headers)
        stores = await client.put("/v1/admin/stores/minsk-1", json=store, headers=headers)
        return grant.status_code, campaign.status_code, stores.status_code

    assert await statuses(await bearer(client, "ada")) == (201, 202, 200)
    assert await statuses(await bearer(client, "mark")) == (403, 202, 403)
    assert await statuses(await bearer(client, "sue")) == (201, 403, 403)
    assert await statuses(admin_key) == (201, 202, 200)
    assert await statuses(pos) == (403, 403, 403)
    assert await statuses({}) == (401, 401, 401)

    refused = await client.post("/v1/admin/campaigns", json=CAMPAIGN, headers=await bearer(client, "sue"))
    assert "support may not" in problem(refused)["detail"]


async def test_who_acted_is_recorded(client: Client, pool: Pool, pos: dict[str, str], conn: Connection) -> None:
    await staff(pool, "sue", Role.SUPPORT)
    who = await customer(client, pos)
    await client.post(f"/v1/admin/customers/{who}/grants", json=GRANT, headers=await bearer(client, "sue"))
    staff_id = await conn.fetchval("SELECT id FROM staff")
    assert await conn.fetchval("SELECT actor FROM ledger_entries WHERE kind = 'grant'") == f"staff:{staff_id}"


async def test_tokens_do_not_cross_audiences(client: Client, pool: Pool) -> None:
    await staff(pool, "ada", Role.ADMIN)
    admin = await bearer(client, "ada")
    assert (await client.get("/v1/me", headers=admin)).status_code == 401
    shopper = await sign_in(client, pool, "+375291234567")
    refused = await client.post("/v1/admin/campaigns", json=CAMPAIGN, headers=shopper["headers"])
    assert refused.status_code == 401
    assert "not for this API" in problem(refused)["detail"]


async def test_a_failed_sign_in_says_the_same_for_any_reason(client: Client, pool: Pool) -> None:
    await staff(pool, "ada", Role.ADMIN)
    await staff(pool, "gone", Role.ADMIN)
    async with pool.acquire() as conn:
        await disable_staff(conn, "gone", FakeClock().now())
    answers = [
        await login(client, "ada", "wrong password, long enough"),
        await login(client, "nobody"),
        await login(client, "gone"),
        await login(client, "NOT A VALID USERNAME!"),
    ]
    details = {(a.status_code, problem(a)["detail"], problem(a)["code"]) for a in answers}
    assert details == {(401, "wrong username or password", "wrong-credentials")}


async def test_failures_per_username_are_limited_and_a_success_clears_them(
    client: Client, pool: Pool, clock: FakeClock
) -> None:
    await staff(pool, "ada", Role.ADMIN)
    for _ in range(4):
        assert (await login(client, "ada", "wrong password, long enough")).status_code == 401
    assert (await login(client, "ada")).status_code == 200  # clears the four failures
    for _ in range(5):
        assert (await login(client, "ada", "wrong password, long enough")).status_code == 401
    locked = await login(client, "ada")  # even the right password waits now
    assert locked.status_code == 429
    assert 0 < int(locked.headers["retry-after"]) <= 15 * 60
    clock.advance(timedelta(minutes=15))
    assert (await login(client, "ada")).status_code == 200


async def test_sign_ins_are_limited_per_client_address(client: Client, pool: Pool) -> None:
    await staff(pool, "ada", Role.ADMIN)
    for n in range(60):
        assert (await login(client, f"user{n}", "x")).status_code == 401
    refused = await login(client, "ada")
    assert refused.status_code == 429
    assert "this address" in problem(refused)["detail"]


async def test_disabling_a_staff_member_ends_their_access_at_once(client: Client, pool: Pool) -> None:
    await staff(pool, "mark", Role.MARKETER)
    signed = (await login(client, "mark")).json()
    headers = {"Authorization": f"Bearer {signed['access_token']}"}
    assert (await client.post("/v1/admin/campaigns", json=CAMPAIGN, headers=headers)).status_code == 202
    async with pool.acquire() as conn:
        await disable_staff(conn, "mark", FakeClock().now())
    assert (await client.post("/v1/admin/campaigns", json=CAMPAIGN, headers=headers)).status_code == 401
    assert (await client.post("/v1/auth/refresh", json={"refresh_token": signed["refresh_token"]})).status_code == 401
    assert (await login(client, "mark")).status_code == 401


async def test_bad_login_bodies_are_422(client: Client) -> None:
    for body in ({}, {"username": "ada"}, {"username": "", "password": "x"}, {"username": "a", "password": "x" * 1025}):
        response = await client.post("/v1/admin/login", json=body)
        assert response.status_code == 422, body
        problem(response)


async def test_parallel_guesses_cannot_slip_under_the_failure_limit(client: Client, pool: Pool) -> None:
    await staff(pool, "ada", Role.ADMIN)
    answers = await asyncio.gather(*(login(client, "ada", f"guess number {n:04d}") for n in range(12)))
    assert sorted(a.status_code for a in answers) == [401] * 5 + [429] * 7


async def test_a_new_password_ends_the_old_sessions(client: Client, pool: Pool) -> None:
    await staff(pool, "ada", Role.ADMIN)
    signed = (await login(client, "ada")).json()
    async with pool.acquire() as conn:
        await set_password(conn, PASSWORDS, "ada", "another long password", FakeClock().now())
    assert (await client.post("/v1/auth/refresh", json={"refresh_token": signed["refresh_token"]})).status_code == 401
    headers = {"Authorization": f"Bearer {signed['access_token']}"}
    assert (await client.post("/v1/admin/campaigns", json=CAMPAIGN, headers=headers)).status_code == 401
    assert (await login(client, "ada", "another long password")).status_code == 200
