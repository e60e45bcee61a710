"""Phone-number sign-in: a code by SMS (or Viber), then tokens; the first sign-in issues the card.

Codes are random digits, kept only as a keyed hash, single use and short-lived; a new send replaces the
old code. Wrong tries count per client address *and* in all: one address gets a few tries at a code
(``max_attempts``), after which that address is told to ask for a new one while the code stays good
for everyone else, and the code dies after ``max_attempts_per_code`` wrong tries from all addresses
together. So a stranger guessing at someone's code from their own address cannot spoil it for its
owner, and guessing spread over many addresses still gets only a bounded number of tries per code
(docs/auth.md weighs the two numbers). Sending is limited by a wait per phone that doubles with every
code sent in the last hour (to 15 minutes: a stranger cannot block a phone for longer, and a sign-in
resets it) and a count per client address, and every code spends the hourly SMS budget (in all and per
destination country, :class:`kartka.ratelimit.TextBudget`); checking codes is limited per client address
too. Every limit answers 429 with Retry-After. The answers never depend on whether the phone is already a
customer, and no code is ever logged (it reaches the shopper through the outbox, which forgets it once
it is sent).

Wrong tries must count even though the request fails, so this service runs its own transaction
instead of the request's, commits the counter (and the attempt's place in the per-address limit), and
only then raises.
"""

from __future__ import annotations

import hmac
import math
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Final

import msgspec

from kartka.clock import Clock
from kartka.crypto import keyed_hash, verification_keys
from kartka.db import Connection, Pool
from kartka.errors import RateLimited, Unauthenticated
from kartka.ratelimit import RateLimiter, TextBudget
from kartka.tokens import SubjectKind, Tokens
from wallet.customers import CustomerService, Origin
from wallet.models import Source
from wallet.phones import country_of, normalize_phone

HOUR: Final = timedelta(hours=1)


class WrongCode(Unauthenticated):
    code = "wrong-code"


class SignInConfig(msgspec.Struct, frozen=True, kw_only=True):
    code_length: int = 6
    ttl_seconds: int = 300
    max_attempts: int = 5
    """Wrong tries at one code from one client address."""
    max_attempts_per_code: int = 20
    """Wrong tries at one code from all addresses together; then the code is dead."""
    resend_seconds: int = 60
    resend_max_seconds: int = 900
    per_ip_per_hour: int = 20
    checks_per_ip_per_hour: int = 60


class CodeSent(msgspec.Struct, frozen=True):
    expires_in: int
    """Seconds the code is valid for."""
    resend_after: int
    """Seconds before another code may be asked for (it doubles with every code sent in the last hour)."""


class SignedIn(msgspec.Struct, frozen=True):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int
    card_created: bool
    """True when this sign-in issued the shopper's card (their first contact with the program)."""


class SignInService:
    def __init__(
        self,
        *,
        pool: Pool,
        customers: CustomerService,
        tokens: Tokens,
        limiter: RateLimiter,
        texts: TextBudget,
        key: bytes,
        config: SignInConfig,
        clock: Clock,
    ) -> None:
        self.pool = pool
        self.customers = customers
        self.tokens = tokens
        self.limiter = limiter
        self.texts = texts
        self._key = key
        self.config = config
        self.clock = clock

    def _hash(self, phone: str, code: str) -> bytes:
        return keyed_hash(self._key, phone, code)

    def _matches(self, stored: bytes, phone: str, code: str) -> bool:
        """A code sent before an upgrade of the key derivation (``kartka.crypto``) still counts."""
        return any(hmac.compare_digest(stored, keyed_hash(key, phone, code)) for key in verification_keys(self._key))

    def _new_code(self) -> str:
        return "".join(secrets.choice("0123456789") for _ in range(self.config.code_length))

    async def send_code(self, raw_phone: str, *, client: str, locale: str | None) -> CodeSent:
        phone = normalize_phone(raw_phone, self.customers.region)
        config = self.config
        now = self.clock.now()
        code = self._new_code()
        async with self.pool.acquire() as conn, conn.transaction():
            await self.limiter.hit(
                conn,
                "otp-ip",
                client,
                limit=config.per_ip_per_hour,
                window=HOUR,
                now=now,
                message="too many sign-in codes were asked for from this address; try again later",
            )
            # Each code to a phone waits twice as long after the last as that one did after its own: the
            # shopper waits a minute, a stranger asking for codes again and again soon waits 15 (and the
            # phone gets a few texts an hour), but nobody can shut the owner out for longer than that.
            # Sends to one phone go one at a time, under the bucket's lock.
            delay = await self.limiter.backoff(
                conn,
                "otp-phone",
                phone,
                free=1,
                first_delay=timedelta(seconds=config.resend_seconds),
                max_delay=timedelta(seconds=config.resend_max_seconds),
                window=HOUR,
                now=now,
                message="a code was sent to this phone a moment ago; wait before asking for another",
            )
            language = await conn.fetchval(
                """
                WITH sent AS (
                    INSERT INTO signin_codes (phone, code_hash, sent_at, expires_at) VALUES ($1, $2, $3, $4)
                    ON CONFLICT (phone) DO UPDATE
                       SET code_hash = EXCLUDED.code_hash, sent_at = EXCLUDED.sent_at,
                           expires_at = EXCLUDED.expires_at, attempts = 0
                )
                SELECT language FROM customers WHERE phone = $1
                """,
                phone,
                self._hash(phone, code),
                now,
                now + timedelta(seconds=config.ttl_seconds),
            )
            await self.texts.spend(conn, country_of(phone), now)  # last: the code goes out unless this refuses
            await self.customers.events.send_otp(
                conn,
                phone=phone,
                code=code,
                ttl_seconds=config.ttl_seconds,
                key=uuid.uuid4().hex,
                now=now,
                locale=language or locale or self.customers.program.language,
            )
        return CodeSent(expires_in=config.ttl_seconds, resend_after=math.ceil(delay.total_seconds()))

    async def sign_in(self, raw_phone: str, code: str, *, client: str, locale: str | None) -> SignedIn:
        phone = normalize_phone(raw_phone, self.customers.region)
        config = self.config
        now = self.clock.now()
        refused: WrongCode
        async with self.pool.acquire() as conn, conn.transaction():
            await self.limiter.hit(
                conn,
                "signin-ip",
                client,
                limit=config.checks_per_ip_per_hour,
                window=HOUR,
                now=now,
                message="too many sign-in attempts from this address; try again later",
            )
            row = await conn.fetchrow(
                "SELECT code_hash, sent_at, expires_at, attempts FROM signin_codes WHERE phone = $1 FOR UPDATE",
                phone,
            )
            # This address's tries at this code, this one counted (None: it has none left).
            tried_here = (
                await self._try_from(conn, client, phone, row["sent_at"], row["code_hash"], now)
                if row is not None and row["expires_at"] > now
                else 0
            )
            if row is None or row["expires_at"] <= now:
                refused = WrongCode("the code is wrong or has expired; ask for a new one", field="code")
            elif tried_here is None:
                refused = WrongCode(
                    "no tries at this code are left from this address: ask for a new code", field="code", tries_left=0
                )
            elif not self._matches(bytes(row["code_hash"]), phone, code):
                attempts = row["attempts"] + 1  # from every address
                left = min(config.max_attempts - tried_here, config.max_attempts_per_code - attempts)
                if attempts >= config.max_attempts_per_code:
                    await conn.execute("DELETE FROM signin_codes WHERE phone = $1", phone)
                else:
                    await conn.execute("UPDATE signin_codes SET attempts = $2 WHERE phone = $1", phone, attempts)
                if left <= 0:
                    refused = WrongCode(
                        "wrong code, and no tries are left: ask for a new code", field="code", tries_left=0
                    )
                else:
                    refused = WrongCode(
                        f"wrong code; {left} {'try' if left == 1 else 'tries'} left", field="code", tries_left=left
                    )
            else:
                customer_id = await conn.fetchval(  # the code is used up, and whose phone is it?
                    "DELETE FROM signin_codes WHERE phone = $1 RETURNING (SELECT id FROM customers WHERE phone = $1)",
                    phone,
                )
                await self.limiter.clear(conn, "otp-phone", phone)  # the owner is in: their next code waits no more
                created = False
                if customer_id is None:
                    registration = await self.customers.register(
                        conn, phone=phone, origin=Origin(source=Source.APP), language=locale
                    )
                    customer_id, created = registration.customer.id, registration.created
                pair = await self.tokens.start(conn, SubjectKind.CUSTOMER, customer_id)
                return SignedIn(
                    access_token=pair.access_token,
                    refresh_token=pair.refresh_token,
                    token_type=pair.token_type,
                    expires_in=pair.expires_in,
                    card_created=created,
                )
        raise refused  # after the commit: the wrong try is counted

    async def _try_from(
        self, conn: Connection, client: str, phone: str, sent_at: datetime, code_hash: bytes, now: datetime
    ) -> int | None:
        """Count a try from ``client`` at the code sent at ``sent_at``: how many this address has made at it
        with this one, or None when it has used up its tries (nothing is counted, and the code must not be
        checked). The code's row lock, held by the caller, serialises the tries at it."""
        config = self.config
        this_code = f"{phone}\n{client}\n{sent_at.isoformat()}\n{bytes(code_hash).hex()}"  # a new code, new tries
        try:
            return await self.limiter.hit(
                conn,
                "otp-tries",
                this_code,
                limit=config.max_attempts,
                window=timedelta(seconds=config.ttl_seconds),
                now=now,
                message="",
                locked=True,
            )
        except RateLimited:
            return None
