"""Helpers the tests share (fixtures live in conftest.py)."""

from __future__ import annotations

from typing import Any, Final

from kartka.db import Pool
from kartka.keys import Scope, create_key
from kartka.staff import Passwords
from notifications.audience import ALL_CHANNELS
from notifications.triggers import Notifier
from wallet.program import DEFAULT_PROGRAM

#: Staff passwords in the tests cost the least argon2 allows (production keeps OWASP's cost, see
#: kartka/settings.py): the suite hashes hundreds of them, and the hashing itself is argon2's business.
CHEAP_ARGON2: Final = {"argon2_memory_kib": 32, "argon2_rounds": 1}
PASSWORDS: Final = Passwords(memory_kib=CHEAP_ARGON2["argon2_memory_kib"], rounds=CHEAP_ARGON2["argon2_rounds"])

#: What the app's services tell the rest of the system, for tests that run jobs by hand.
NOTIFIER = Notifier(program=DEFAULT_PROGRAM, public_base="http://127.0.0.1:8000", available=ALL_CHANNELS)


class Keys:
    """Creates keys straight in the database and returns ready-made Authorization headers."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    async def headers(self, scope: Scope, *, store: str = "store-1", terminal: str = "till-1") -> dict[str, str]:
        async with self.pool.acquire() as conn:
            key, _ = await create_key(
                conn,
                scope=scope,
                store=store if scope is Scope.POS else None,
                terminal=terminal if scope is Scope.POS else None,
            )
        return {"Authorization": f"Bearer {key}"}


def problem(response: Any) -> dict[str, Any]:
    """Assert that a response is an RFC 9457 problem and return it."""
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code
    assert body["title"]
    assert body["detail"]
    return body


async def latest_code(pool: Pool, phone: str) -> str:
    """The sign-in code most recently queued for ``phone``: what the SMS will carry (the outbox keeps it
    until the worker has handed it to the provider)."""
    code: str | None = await pool.fetchval(
        "SELECT params->>'code' FROM outbox WHERE template = 'otp' AND recipient = $1 ORDER BY id DESC LIMIT 1", phone
    )
    assert code is not None, f"no sign-in code was queued for {phone}"
    return code


async def sign_in(client: Any, pool: Pool, phone: str, **headers: str) -> dict[str, Any]:
    """A shopper's whole phone sign-in; returns the token answer plus ready-made ``headers``."""
    sent = await client.post("/v1/auth/otp", json={"phone": phone}, headers=headers)
    assert sent.status_code == 202, sent.text
    answer = await client.post("/v1/auth/token", json={"phone": phone, "code": await latest_code(pool, phone)})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    body["headers"] = {"Authorization": f"Bearer {body['access_token']}"}
    return body


async def refresh(client: Any, signed: dict[str, Any]) -> dict[str, Any]:
    """Renew a signed-in shopper's tokens in place (after a test moved the clock past their life)."""
    answer = await client.post("/v1/auth/refresh", json={"refresh_token": signed["refresh_token"]})
    assert answer.status_code == 200, answer.text
    signed.update(answer.json())
    signed["headers"] = {"Authorization": f"Bearer {signed['access_token']}"}
    return signed
