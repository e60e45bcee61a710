"""Phone sign-in: codes and every limit on them, tokens, refresh rotation, sign-out."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import warnings
from datetime import timedelta
from typing import Any

import jwt
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from api.state import services_of
from boot.services import build_services, make_dispatcher
from engine.embedded import EmbeddedEngine
from kartka.clock import FakeClock
from kartka.crypto import derive_key
from kartka.db import Connection, Pool
from kartka.errors import RateLimited
from kartka.settings import DEV_SECRET_KEY, Settings
from tests.helpers import latest_code, problem, sign_in
from wallet.program import DEFAULT_PROGRAM
from wallet.signin import SignInService, WrongCode

Client = AsyncTestClient[Litestar]
PHONE = "+375291234567"


async def send(client: Client, phone: str = PHONE) -> Any:
    return await client.post("/v1/auth/otp", json={"phone": phone})


async def token(client: Client, code: str, phone: str = PHONE) -> Any:
    return await client.post("/v1/auth/token", json={"phone": phone, "code": code})


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


# -- codes ----------------------------------------------------------------------------------------


async def test_a_code_goes_out_and_signs_the_shopper_in_creating_the_card(
    client: Client, pool: Pool, conn: Connection
) -> None:
    sent = await send(client, "8 029 123-45-67")
    assert sent.status_code == 202, sent.text
    assert sent.json() == {"expires_in": 300, "resend_after": 60}
    row = await conn.fetchrow("SELECT channel, recipient, category, params FROM outbox WHERE template = 'otp'")
    assert row is not None
    assert (row["channel"], row["recipient"], row["category"]) == ("viber", PHONE, "transactional")
    code = row["params"]["code"]
    assert len(code) == 6
    assert code.isdigit()
    stored = await conn.fetchrow("SELECT * FROM signin_codes")
    assert stored is not None
    assert code.encode() not in bytes(stored["code_hash"])  # only a keyed hash is kept
    assert code not in json.dumps({k: str(v) for k, v in dict(stored).items()})

    answer = await token(client, code)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in", "card_created"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert body["card_created"] is True
    customer = await conn.fetchrow("SELECT id, phone, source FROM customers")
    assert customer is not None
    assert (customer["phone"], customer["source"]) == (PHONE, "app")
    assert await conn.fetchval("SELECT count(*) FROM cards") == 1
    assert await conn.fetchval("SELECT count(*) FROM signin_codes") == 0  # single use

    me = await client.get("/v1/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json()["profile"]["id"] == str(customer["id"])


async def test_the_code_reaches_the_dev_inbox_and_leaves_the_outbox(
    client: Client, pool: Pool, settings: Settings, clock: FakeClock
) -> None:
    await send(client)
    services = build_services(
        settings, pool=pool, clock=clock, program=DEFAULT_PROGRAM, engine=EmbeddedEngine(DEFAULT_PROGRAM)
    )
    dispatcher = make_dispatcher(services)
    assert await dispatcher.run_once() == 1
    inbox = (await client.get("/dev/inbox", params={"to": PHONE})).json()
    assert len(inbox) == 1
    assert inbox[0]["channel"] == "viber"
    code = inbox[0]["text"].split("Kartka: ", 1)[1][:6]
    assert await pool.fetchval("SELECT params FROM outbox WHERE template = 'otp'") == {}
    assert (await token(client, code)).status_code == 200


async def test_second_sign_in_finds_the_same_customer_and_a_till_customer_gets_no_new_card(
    client: Client, pool: Pool, pos: dict[str, str], conn: Connection, clock: FakeClock
) -> None:
    first = await sign_in(client, pool, PHONE)
    clock.advance(timedelta(minutes=2))
    again = await sign_in(client, pool, PHONE)
    assert first["card_created"] is True
    assert again["card_created"] is False
    assert (await client.get("/v1/me", headers=first["headers"])).json() == (
        await client.get("/v1/me", headers=again["headers"])
    ).json()

    till = await client.post("/v1/pos/customers", json={"phone": "+375297654321"}, headers=pos)
    signed = await sign_in(client, pool, "+375297654321")
    assert signed["card_created"] is False
    me = (await client.get("/v1/me", headers=signed["headers"])).json()
    assert me["card"] == till.json()["card"]
    assert await conn.fetchval("SELECT count(*) FROM cards") == 2
    # Signing in is not registering: the till's registration stays the only one.
    assert await conn.fetchval("SELECT count(*) FROM registrations WHERE source = 'app'") == 1


async def test_the_answer_does_not_tell_whether_the_phone_is_a_customer(client: Client, pos: dict[str, str]) -> None:
    await client.post("/v1/pos/customers", json={"phone": PHONE}, headers=pos)
    known, unknown = await send(client, PHONE), await send(client, "+375297654321")
    assert (known.status_code, known.json()) == (unknown.status_code, unknown.json())
    assert set(known.headers) == set(unknown.headers)


async def test_an_invalid_phone_is_422_and_sends_nothing(client: Client, conn: Connection) -> None:
    response = await send(client, "12")
    assert response.status_code == 422
    assert problem(response)["errors"][0]["field"] == "phone"
    assert await conn.fetchval("SELECT count(*) FROM outbox") == 0
    bad_code = await client.post("/v1/auth/token", json={"phone": PHONE, "code": "12ab56"})
    assert bad_code.status_code == 422
    assert problem(bad_code)["errors"][0]["field"] == "code"


async def test_a_code_is_single_use(client: Client, pool: Pool) -> None:
    await send(client)
    code = await latest_code(pool, PHONE)
    assert (await token(client, code)).status_code == 200
    again = await token(client, code)
    assert again.status_code == 401
    assert problem(again)["code"] == "wrong-code"


async def test_five_wrong_tries_from_an_address_end_its_tries_at_the_code(client: Client, pool: Pool) -> None:
    await send(client)
    code = await latest_code(pool, PHONE)
    left = []
    for _ in range(5):
        response = await token(client, wrong(code))
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        left.append(problem(response)["tries_left"])
    assert left == [4, 3, 2, 1, 0]
    dead = await token(client, code)  # the right code, too late from here: it is not even checked
    assert dead.status_code == 401
    assert problem(dead)["tries_left"] == 0
    assert "ask for a new code" in problem(dead)["detail"]


async def test_a_code_expires_after_five_minutes(client: Client, pool: Pool, clock: FakeClock) -> None:
    await send(client)
    code = await latest_code(pool, PHONE)
    clock.advance(timedelta(seconds=300))
    expired = await token(client, code)
    assert expired.status_code == 401
    assert "expired" in problem(expired)["detail"]


async def test_a_new_send_replaces_the_old_code_and_resets_its_tries(
    client: Client, pool: Pool, clock: FakeClock
) -> None:
    await send(client)
    first = await latest_code(pool, PHONE)
    await token(client, wrong(first))
    clock.advance(timedelta(seconds=61))
    assert (await send(client)).status_code == 202
    second = await latest_code(pool, PHONE)
    assert await pool.fetchval("SELECT attempts FROM signin_codes") == 0
    if first != second:  # one time in a million the new code is the old one
        assert (await token(client, first)).status_code == 401
    assert (await token(client, second)).status_code == 200


async def test_resend_cooldown_is_sixty_seconds(client: Client, clock: FakeClock) -> None:
    assert (await send(client)).status_code == 202
    clock.advance(timedelta(seconds=45))
    early = await send(client)
    assert early.status_code == 429
    assert early.headers["retry-after"] == "15"
    assert problem(early)["code"] == "rate-limited"
    clock.advance(timedelta(seconds=15))
    assert (await send(client)).status_code == 202


async def test_the_resend_wait_doubles_but_a_stranger_cannot_block_a_phone_for_long(
    client: Client, pool: Pool, clock: FakeClock
) -> None:
    """Five codes used to block a phone's sign-in for an hour, so anyone could lock a shopper out. Now
    each code waits twice as long as the one before (a few texts an hour at most), never more than 15
    minutes, and signing in resets it."""
    waits = []
    for _ in range(7):
        sent = await send(client)
        assert sent.status_code == 202, sent.text
        wait = sent.json()["resend_after"]
        early = await send(client)
        assert early.status_code == 429
        assert early.headers["retry-after"] == str(wait)
        waits.append(wait)
        clock.advance(timedelta(seconds=wait))
    assert waits == [60, 120, 240, 480, 900, 900, 900]
    assert (await send(client, "+375297654321")).json()["resend_after"] == 60  # another phone is not affected
    assert (await send(client)).json()["resend_after"] == 900
    assert (await token(client, await latest_code(pool, PHONE))).status_code == 200
    assert (await send(client)).json()["resend_after"] == 60  # the owner signed in: back to the first wait


async def test_codes_are_limited_per_client_address(client: Client, clock: FakeClock, conn: Connection) -> None:
    for n in range(20):
        assert (await send(client, f"+37529555{n:04d}")).status_code == 202
    refused = await send(client, "+375295559999")
    assert refused.status_code == 429
    assert 0 < int(refused.headers["retry-after"]) <= 3600
    assert "this address" in problem(refused)["detail"]
    assert await conn.fetchval("SELECT count(*) FROM signin_codes WHERE phone = '+375295559999'") == 0
    clock.advance(timedelta(hours=1))
    assert (await send(client, "+375295559999")).status_code == 202


async def test_code_checks_are_limited_per_client_address(client: Client, pool: Pool) -> None:
    await send(client)
    code = await latest_code(pool, PHONE)
    for n in range(60):  # guessing across many phones (none has a code) still counts
        assert (await token(client, "123456", phone=f"+37529444{n:04d}")).status_code == 401
    refused = await token(client, code)
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) > 0


async def test_concurrent_sign_ins_of_a_new_phone_make_one_customer_and_one_card(
    client: Client, pool: Pool, conn: Connection
) -> None:
    await send(client)
    code = await latest_code(pool, PHONE)
    answers = await asyncio.gather(*(token(client, code) for _ in range(12)))
    assert sorted(a.status_code for a in answers) == [200] + [401] * 11
    assert await conn.fetchval("SELECT count(*) FROM customers") == 1
    assert await conn.fetchval("SELECT count(*) FROM cards") == 1


async def test_a_sign_in_racing_a_till_registration_makes_one_customer_and_one_card(
    client: Client, pool: Pool, pos: dict[str, str], conn: Connection
) -> None:
    phones = [f"+37529666{n:04d}" for n in range(8)]
    for phone in phones:
        await send(client, phone)
    codes = {phone: await latest_code(pool, phone) for phone in phones}
    answers = await asyncio.gather(
        *(token(client, codes[phone], phone) for phone in phones),
        *(client.post("/v1/pos/customers", json={"phone": phone}, headers=pos) for phone in phones),
    )
    assert all(a.status_code in (200, 201) for a in answers), [a.text for a in answers]
    created_by_app = sum(a.json().get("card_created", False) for a in answers[:8])
    created_by_till = sum(a.status_code == 201 for a in answers[8:])
    assert created_by_app + created_by_till == 8
    assert await conn.fetchval("SELECT count(*) FROM customers") == 8
    assert await conn.fetchval("SELECT count(*) FROM cards") == 8


async def test_concurrent_sends_to_one_phone_send_one_code(client: Client, conn: Connection) -> None:
    answers = await asyncio.gather(*(send(client) for _ in range(8)))
    assert sorted(a.status_code for a in answers) == [202] + [429] * 7
    assert await conn.fetchval("SELECT count(*) FROM outbox WHERE template = 'otp'") == 1


async def test_no_code_reaches_the_logs(client: Client, pool: Pool, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        await send(client)
        code = await latest_code(pool, PHONE)
        await token(client, wrong(code))
        await token(client, code)
    assert code not in caplog.text


# -- tokens ---------------------------------------------------------------------------------------


def _forge(access: str, **changes: Any) -> str:
    """The token with its payload changed and the original signature kept."""
    header, payload, signature = access.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{header}.{body}.{signature}"


def _hs512(claims: dict[str, Any], key: bytes) -> str:
    with warnings.catch_warnings():  # our key is short for HS512; that is the point: it is refused anyway
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.encode(claims, key, algorithm="HS512")


async def test_an_access_token_expires_after_fifteen_minutes(client: Client, pool: Pool, clock: FakeClock) -> None:
    signed = await sign_in(client, pool, PHONE)
    clock.advance(timedelta(minutes=15))
    assert (await client.get("/v1/me", headers=signed["headers"])).status_code == 200  # within the leeway
    clock.advance(timedelta(seconds=31))
    expired = await client.get("/v1/me", headers=signed["headers"])
    assert expired.status_code == 401
    assert problem(expired)["code"] == "token-expired"


async def test_tampered_and_foreign_tokens_are_refused(client: Client, pool: Pool, settings: Settings) -> None:
    signed = await sign_in(client, pool, PHONE)
    other = await sign_in(client, pool, "+375297654321")
    access = signed["access_token"]
    claims = jwt.decode(access, options={"verify_signature": False})
    key = derive_key(DEV_SECRET_KEY, "jwt")
    forged = {
        "another subject, same signature": _forge(
            access, sub=jwt.decode(other["access_token"], options={"verify_signature": False})["sub"]
        ),
        "a longer life, same signature": _forge(access, exp=claims["exp"] + 86_400),
        "signature cut": access.rsplit(".", 1)[0] + ".",
        "alg none": jwt.encode(claims, "", algorithm="none"),
        "signed with another key": jwt.encode(claims, b"x" * 32, algorithm="HS256"),
        "HS512 with our key": _hs512(claims, key),
        "another audience": jwt.encode(claims | {"aud": "kartka-staff"}, key, algorithm="HS256"),
        "another issuer": jwt.encode(claims | {"iss": "https://evil.example"}, key, algorithm="HS256"),
        "no session": jwt.encode({k: v for k, v in claims.items() if k != "sid"}, key, algorithm="HS256"),
        "a session that does not exist": jwt.encode(
            claims | {"sid": "00000000-0000-4000-8000-000000000000"}, key, algorithm="HS256"
        ),
        "garbage": "not-a-token",
        "an API key's shape": "kk_pos_0123456789ab_" + "x" * 43,
    }
    for what, token_text in forged.items():
        response = await client.get("/v1/me", headers={"Authorization": f"Bearer {token_text}"})
        assert response.status_code == 401, what
        problem(response)
    assert (await client.get("/v1/me", headers=signed["headers"])).status_code == 200
    assert (await client.get("/v1/me")).status_code == 401


async def test_refresh_rotates_and_a_spent_token_ends_the_session(client: Client, pool: Pool) -> None:
    signed = await sign_in(client, pool, PHONE)
    first = signed["refresh_token"]
    rotated = await client.post("/v1/auth/refresh", json={"refresh_token": first})
    assert rotated.status_code == 200, rotated.text
    pair = rotated.json()
    assert set(pair) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert pair["refresh_token"] != first
    fresh = {"Authorization": f"Bearer {pair['access_token']}"}
    assert (await client.get("/v1/me", headers=fresh)).status_code == 200

    reused = await client.post("/v1/auth/refresh", json={"refresh_token": first})
    assert reused.status_code == 401
    assert problem(reused)["code"] == "refresh-token-reused"
    # The whole family is gone: the newest refresh token and every access token of the session.
    after = await client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert after.status_code == 401
    assert problem(after)["code"] == "session-ended"
    assert (await client.get("/v1/me", headers=fresh)).status_code == 401
    assert (await client.get("/v1/me", headers=signed["headers"])).status_code == 401
    # Another session of the same shopper is untouched.
    other = await sign_in(client, pool, PHONE)
    assert (await client.get("/v1/me", headers=other["headers"])).status_code == 200


async def test_refresh_tokens_lapse_after_thirty_days(client: Client, pool: Pool, clock: FakeClock) -> None:
    signed = await sign_in(client, pool, PHONE)
    clock.advance(timedelta(days=29))
    renewed = await client.post("/v1/auth/refresh", json={"refresh_token": signed["refresh_token"]})
    assert renewed.status_code == 200
    clock.advance(timedelta(days=30, seconds=1))
    late = await client.post("/v1/auth/refresh", json={"refresh_token": renewed.json()["refresh_token"]})
    assert late.status_code == 401


async def test_logout_ends_the_session_at_once(client: Client, pool: Pool) -> None:
    signed = await sign_in(client, pool, PHONE)
    out = await client.post("/v1/auth/logout", json={"refresh_token": signed["refresh_token"]})
    assert out.status_code == 204
    assert (await client.get("/v1/me", headers=signed["headers"])).status_code == 401
    assert (await client.post("/v1/auth/refresh", json={"refresh_token": signed["refresh_token"]})).status_code == 401
    unknown = await client.post("/v1/auth/logout", json={"refresh_token": "krt_" + "x" * 43})
    assert unknown.status_code == 204  # nothing to end, and nothing to tell


async def test_a_bad_refresh_token_is_401(client: Client) -> None:
    for value in ("nope", "krt_" + "a" * 43, "krt_" + "a" * 10):
        response = await client.post("/v1/auth/refresh", json={"refresh_token": value})
        assert response.status_code == 401
        problem(response)


def _on(app: Litestar, pool: Pool) -> SignInService:
    """The app's sign-in service with its settings, on the test's own pool (the app's lives in another loop)."""
    app_signin = services_of(app.state).signin
    return SignInService(
        pool=pool,
        customers=app_signin.customers,
        tokens=app_signin.tokens,
        limiter=app_signin.limiter,
        texts=app_signin.texts,
        key=derive_key(DEV_SECRET_KEY, "otp"),
        config=app_signin.config,
        clock=app_signin.clock,
    )


async def test_concurrent_first_sends_from_many_addresses_send_one_code(
    app: Litestar, client: Client, pool: Pool, conn: Connection
) -> None:
    """Shoppers behind different addresses racing to one new phone: one code, the rest told to wait.
    (The test client has one address, so this drives the app's sign-in service, on this loop's pool.)"""
    signin = _on(app, pool)
    results = await asyncio.gather(
        *(signin.send_code(PHONE, client=f"10.0.0.{n}", locale=None) for n in range(8)), return_exceptions=True
    )
    sent = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, RateLimited)]
    assert (len(sent), len(refused)) == (1, 7), results
    assert all(55 <= r.retry_after <= 60 for r in refused)
    assert await conn.fetchval("SELECT count(*) FROM outbox WHERE template = 'otp'") == 1


async def _sign_in_from(signin: SignInService, client: str, code: str) -> object:
    """The sign-in's answer from address ``client``: "in", the tries left, or "no code" (none, or dead)."""
    try:
        await signin.sign_in(PHONE, code, client=client, locale=None)
    except WrongCode as exc:
        return exc.extra.get("tries_left", "no code")
    return "in"


async def test_a_stranger_guessing_at_a_code_cannot_spoil_it_for_its_owner(
    app: Litestar, client: Client, pool: Pool, clock: FakeClock
) -> None:
    """A stranger used to ask for a code for someone's phone, send five wrong tries and so kill the code
    the owner received, again after every wait: the owner could never sign in. Tries count per address
    now: the stranger's own run out, the owner's do not."""
    signin = _on(app, pool)
    await signin.send_code(PHONE, client="203.0.113.66", locale=None)
    code = await latest_code(pool, PHONE)
    assert [await _sign_in_from(signin, "203.0.113.66", wrong(code)) for _ in range(5)] == [4, 3, 2, 1, 0]
    assert await _sign_in_from(signin, "203.0.113.66", code) == 0  # the stranger is done with this code
    assert await _sign_in_from(signin, "198.51.100.10", wrong(code)) == 4  # the owner mistypes once...
    assert await _sign_in_from(signin, "198.51.100.10", code) == "in"  # ...and signs in


async def test_wrong_tries_from_all_addresses_together_kill_the_code(app: Litestar, pool: Pool) -> None:
    """Guessing spread over many addresses gets twenty tries at a code in all, whoever makes them."""
    signin = _on(app, pool)
    await signin.send_code(PHONE, client="198.51.100.10", locale=None)
    code = await latest_code(pool, PHONE)
    left = [await _sign_in_from(signin, f"203.0.113.{n // 5}", wrong(code)) for n in range(19)]
    assert left == [4, 3, 2, 1, 0] * 3 + [4, 3, 2, 1]
    assert await _sign_in_from(signin, "203.0.113.3", wrong(code)) == 0  # the twentieth: the code is dead
    assert await pool.fetchval("SELECT count(*) FROM signin_codes") == 0
    assert await _sign_in_from(signin, "198.51.100.10", code) == "no code"  # the owner too must ask again
