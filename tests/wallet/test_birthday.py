"""The birthday bonus: from the birthday the shopper sets in the app, once a year, however often the job runs."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from kartka.clock import FakeClock
from kartka.db import Connection, Pool
from notifications.audience import ALL_CHANNELS
from notifications.triggers import Notifier
from tests.helpers import sign_in
from wallet.jobs import birthday_bonuses
from wallet.program import DEFAULT_PROGRAM

Client = AsyncTestClient[Litestar]
PROGRAM = msgspec.structs.replace(
    DEFAULT_PROGRAM, birthday_bonus_points=50_000, birthday_bonus_days=30, birthday_notice_days=0
)
NOTIFIER = Notifier(program=PROGRAM, public_base="https://kartka.example", available=ALL_CHANNELS)


async def shopper_born(client: Client, pool: Pool, phone: str, birthday: str) -> None:
    signed = await sign_in(client, pool, phone)
    response = await client.patch("/v1/me", json={"birthday": birthday}, headers=signed["headers"])
    assert response.status_code == 200, response.text


async def test_the_bonus_comes_on_the_birthday_once_a_year(
    client: Client, pool: Pool, conn: Connection, clock: FakeClock
) -> None:
    await shopper_born(client, pool, "+375291234567", "1990-03-02")  # the clock starts on 2 March 2026
    await shopper_born(client, pool, "+375297654321", "1985-07-19")
    assert await birthday_bonuses(pool, PROGRAM, NOTIFIER, clock.now()) == 1
    assert await birthday_bonuses(pool, PROGRAM, NOTIFIER, clock.now()) == 0  # a second run gives nothing
    lot = await conn.fetchrow("SELECT kind, points, available_at, expires_at FROM lots")
    assert lot is not None
    assert (lot["kind"], lot["points"]) == ("grant", 50_000)
    assert lot["available_at"] == clock.now()
    assert (lot["expires_at"] - clock.now()).days == 30
    entry = await conn.fetchrow("SELECT reason, actor FROM ledger_entries")
    assert entry is not None
    assert (entry["reason"], entry["actor"]) == ("birthday bonus", "program:birthday")
    message = await conn.fetchrow("SELECT template, params FROM outbox WHERE template = 'birthday_bonus'")
    assert message is not None
    assert message["params"] == {"points": 50_000, "expires_on": "2026-04-01"}

    clock.set(datetime(2027, 3, 2, 9, 0, tzinfo=UTC))
    assert await birthday_bonuses(pool, PROGRAM, NOTIFIER, clock.now()) == 1  # next year, again
    assert await conn.fetchval("SELECT count(*) FROM lots") == 2


async def test_the_day_is_the_programs_local_date(client: Client, pool: Pool, clock: FakeClock) -> None:
    await shopper_born(client, pool, "+375291234567", "1990-03-03")
    clock.set(datetime(2026, 3, 2, 20, 59, tzinfo=UTC))  # 23:59 in Minsk on the 2nd
    assert await birthday_bonuses(pool, PROGRAM, NOTIFIER, clock.now()) == 0
    clock.set(datetime(2026, 3, 2, 21, 0, tzinfo=UTC))  # midnight in Minsk: the 3rd
    assert await birthday_bonuses(pool, PROGRAM, NOTIFIER, clock.now()) == 1


@pytest.mark.parametrize(("today", "granted"), [("2027-02-28", 1), ("2028-02-28", 0), ("2028-02-29", 1)])
async def test_a_29_february_birthday_is_kept_on_the_28th_in_other_years(
    client: Client, pool: Pool, clock: FakeClock, today: str, granted: int
) -> None:
    await shopper_born(client, pool, "+375291234567", "1992-02-29")
    clock.set(datetime.fromisoformat(f"{today}T09:00:00+00:00"))
    assert await birthday_bonuses(pool, PROGRAM, NOTIFIER, clock.now()) == granted


async def test_no_bonus_when_the_program_has_none_or_the_account_is_closed(
    client: Client, pool: Pool, clock: FakeClock
) -> None:
    await shopper_born(client, pool, "+375291234567", "1990-03-02")
    assert await birthday_bonuses(pool, DEFAULT_PROGRAM, NOTIFIER, clock.now()) == 0
    signed = await sign_in(client, pool, "+375297654321")
    await client.patch("/v1/me", json={"birthday": "1990-03-02"}, headers=signed["headers"])
    await client.delete("/v1/me", headers=signed["headers"])
    assert await birthday_bonuses(pool, PROGRAM, NOTIFIER, clock.now()) == 1  # only the open account


async def test_a_birthday_set_just_before_brings_nothing_that_year(
    client: Client, pool: Pool, clock: FakeClock
) -> None:
    program = msgspec.structs.replace(PROGRAM, birthday_notice_days=30)
    await shopper_born(client, pool, "+375291234567", "1990-03-02")  # set on the day itself
    assert await birthday_bonuses(pool, program, NOTIFIER, clock.now()) == 0
    await shopper_born(client, pool, "+375297654321", "1990-03-31")
    clock.set(datetime(2026, 3, 31, 9, 0, tzinfo=UTC))  # 29 days after setting it
    assert await birthday_bonuses(pool, program, NOTIFIER, clock.now()) == 0
    clock.set(datetime(2027, 3, 2, 9, 0, tzinfo=UTC))  # next year it counts
    assert await birthday_bonuses(pool, program, NOTIFIER, clock.now()) == 1
