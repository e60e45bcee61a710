"""Staff: password sign-in, roles on the admin API beside admin keys, limits on failures that a stranger
cannot turn into a lock-out, and unlocking."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import jwt
from litestar import Litestar
from litestar.testing import AsyncTestClient

from api.state import services_of
from kartka.clock import FakeClock
from kartka.crypto import derive_key
from kartka.db import Connection, Pool
from kartka.errors import DomainError, RateLimited
from kartka.keys import Scope
from kartka.settings import DEV_SECRET_KEY, Settings
from kartka.staff import Passwords, Role, StaffSignIn, create_staff, disable_staff, set_password
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
    # Valid tokens of the other audience: refused as not covering the endpoint (README: 403).
    assert (await client.get("/v1/me", headers=admin)).status_code == 403
    shopper = await sign_in(client, pool, "+375291234567")
    refused = await client.post("/v1/admin/campaigns", json=CAMPAIGN, headers=shopper["headers"])
    assert refused.status_code == 403
    assert "shopper's access token" in problem(refused)["detail"]


def _claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


async def test_a_token_is_honoured_only_on_its_own_subjects_session(
    client: Client, pool: Pool, settings: Settings
) -> None:
    """A token signed with the real key but naming a session of another kind or subject is refused:
    the session must be alive *and* be the token's subject's session of the token's kind."""
    await staff(pool, "ada", Role.ADMIN)
    admin = _claims((await login(client, "ada")).json()["access_token"])
    shopper = _claims((await sign_in(client, pool, "+375291234567"))["access_token"])
    other = _claims((await sign_in(client, pool, "+375297654321"))["access_token"])
    key = derive_key(DEV_SECRET_KEY, "jwt")

    def signed(claims: dict[str, Any]) -> dict[str, str]:
        return {"Authorization": f"Bearer {jwt.encode(claims, key, algorithm='HS256')}"}

    assert admin["iss"] == settings.public_base
    staff_on_shopper_session = signed(admin | {"sid": shopper["sid"]})
    staff_as_shopper = signed(admin | {"sid": shopper["sid"], "sub": shopper["sub"]})
    shopper_on_staff_session = signed(shopper | {"sid": admin["sid"], "sub": admin["sub"]})
    shopper_on_anothers_session = signed(shopper | {"sid": other["sid"]})
    for what, headers in {
        "staff token, shopper's session": staff_on_shopper_session,
        "staff token naming the shopper and their session": staff_as_shopper,
    }.items():
        refused = await client.post("/v1/admin/campaigns", json=CAMPAIGN, headers=headers)
        assert refused.status_code == 401, what
        assert problem(refused)["code"] == "session-ended", what
    for what, headers in {
        "shopper token, staff session": shopper_on_staff_session,
        "shopper token, another shopper's session": shopper_on_anothers_session,
    }.items():
        refused = await client.get("/v1/me", headers=headers)
        assert refused.status_code == 401, what
        problem(refused)
    # The genuine ones, re-signed unchanged, still work: only the binding refused the others.
    assert (await client.post("/v1/admin/campaigns", json=CAMPAIGN, headers=signed(admin))).status_code == 202
    assert (await client.get("/v1/me", headers=signed(shopper))).status_code == 200


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


async def test_failures_per_username_and_address_grow_delays_and_a_success_clears_them(
    client: Client, pool: Pool, clock: FakeClock
) -> None:
    await staff(pool, "ada", Role.ADMIN)
    for _ in range(4):
        assert (await login(client, "ada", "wrong password, long enough")).status_code == 401
    assert (await login(client, "ada")).status_code == 200  # clears the four failures
    for _ in range(5):
        assert (await login(client, "ada", "wrong password, long enough")).status_code == 401
    # From here each try from this address waits twice as long as the last: 1, 2, 4 minutes...
    for minutes in (1, 2, 4, 8):
        locked = await login(client, "ada")  # even the right password waits
        assert locked.status_code == 429
        assert locked.headers["retry-after"] == str(minutes * 60)
        clock.advance(timedelta(minutes=minutes))
        assert (await login(client, "ada", "wrong password, long enough")).status_code == 401
    clock.advance(timedelta(minutes=16))
    assert (await login(client, "ada")).status_code == 200


def _signin(app: Litestar, pool: Pool, **limits: int) -> StaffSignIn:
    """The app's staff sign-in on the test's own pool (the app's lives in another loop), so that tests
    can say which address each attempt comes from."""
    app_signin = services_of(app.state).staff_signin
    return StaffSignIn(
        pool=pool,
        passwords=app_signin.passwords,
        tokens=app_signin.tokens,
        limiter=app_signin.limiter,
        clock=app_signin.clock,
        per_ip_per_hour=limits.get("per_ip_per_hour", app_signin.per_ip_per_hour),
        failures=app_signin.failures,
        per_account_per_hour=limits.get("per_account_per_hour", app_signin.per_account_per_hour),
    )


async def _status(signin: StaffSignIn, client: str, password: str = PASSWORD, username: str = "ada") -> int:
    try:
        await signin.login(username, password, client=client)
    except DomainError as exc:
        return 429 if isinstance(exc, RateLimited) else 401
    return 200


async def test_a_stranger_guessing_cannot_lock_the_staff_member_out(app: Litestar, pool: Pool) -> None:
    await staff(pool, "ada", Role.ADMIN)
    signin = _signin(app, pool)
    for _ in range(5):
        assert await _status(signin, "203.0.113.66", "guessing away, long enough") == 401
    assert await _status(signin, "203.0.113.66", "still guessing, long enough") == 429  # the guesser waits
    assert await _status(signin, "198.51.100.10") == 200  # ada, at her own address, does not


async def test_guessing_spread_over_many_addresses_is_capped_but_not_for_known_addresses(
    app: Litestar, pool: Pool, client: Client, keys: Keys, clock: FakeClock
) -> None:
    await staff(pool, "ada", Role.ADMIN)
    await staff(pool, "mark", Role.MARKETER)
    signin = _signin(app, pool, per_account_per_hour=6)
    assert await _status(signin, "198.51.100.10") == 200  # ada's office: known from now on
    clock.advance(timedelta(minutes=1))
    for n in range(5):  # a botnet, one try per address (ada's own success above counted as one attempt)
        assert await _status(signin, f"203.0.113.{n}", "guessing away, long enough") == 401
    assert await _status(signin, "203.0.113.99", "guessing away, long enough") == 429
    assert await _status(signin, "192.0.2.1") == 429  # ada on the road, at a new address, waits too...
    assert await _status(signin, "198.51.100.10") == 200  # ...but from her office she signs in
    assert await _status(signin, "192.0.2.1", username="mark") == 200  # and nobody else is affected
    # An admin lifts the limits at once; the new address works.
    unlocked = await client.post("/v1/admin/staff/ada/unlock", headers=await keys.headers(Scope.ADMIN))
    assert unlocked.status_code == 200, unlocked.text
    assert unlocked.json()["username"] == "ada"
    assert await _status(signin, "192.0.2.1") == 200


async def test_an_admin_unlocks_a_staff_member(client: Client, pool: Pool, clock: FakeClock) -> None:
    await staff(pool, "ada", Role.ADMIN)
    await staff(pool, "mark", Role.MARKETER)
    admin, marketer = await bearer(client, "ada"), await bearer(client, "mark")
    for _ in range(6):
        await login(client, "mark", "wrong password, long enough")
    assert (await login(client, "mark")).status_code == 429
    refused = await client.post("/v1/admin/staff/mark/unlock", headers=marketer)
    assert refused.status_code == 403  # only admins lift locks
    assert (await client.post("/v1/admin/staff/mark/unlock")).status_code == 401
    missing = await client.post("/v1/admin/staff/nobody/unlock", headers=admin)
    assert missing.status_code == 404
    assert problem(missing)["code"] == "not-found"
    unlocked = await client.post("/v1/admin/staff/mark/unlock", headers=admin)
    assert unlocked.status_code == 200
    assert set(unlocked.json()) == {"id", "username", "role", "created_at", "last_login_at", "disabled_at"}
    assert (await login(client, "mark")).status_code == 200
    # Unlocking forgives the failures so far; new ones count from zero.
    clock.advance(timedelta(seconds=1))
    for _ in range(5):
        assert (await login(client, "mark", "wrong password, long enough")).status_code == 401
    assert (await login(client, "mark")).status_code == 429


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
