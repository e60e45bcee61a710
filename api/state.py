"""What the app builds once at start-up, and the one dependency handlers take: a database connection.

Handlers reach the services through ``services_of(state)`` rather than one injected dependency each:
Litestar resolves independent dependencies of a handler concurrently, in a task group, and on the till's
hot paths that costs more than the work itself (measured with ``bench/run.py``). So a handler has at
most one dependency, its connection or transaction.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from litestar import Request
from litestar.datastructures import State

from analytics.receipts import ReceiptImporter, ReceiptService
from analytics.reports import KpiService
from kartka.clock import Clock
from kartka.db import Connection, Pool
from kartka.keys import KeyVerifier, Principal
from kartka.ratelimit import RateLimiter, TextBudget
from kartka.settings import Settings
from kartka.staff import StaffSignIn
from kartka.tokens import Tokens
from notifications.preferences import OptOutLinks
from notifications.triggers import Notifier
from wallet.customers import CustomerService
from wallet.importer import Importer
from wallet.join import JoinService
from wallet.orders import OrderService
from wallet.passes.service import Passes
from wallet.pricing import Engine
from wallet.program import Program
from wallet.qrtokens import QrTokens
from wallet.signin import SignInService


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    pool: Pool
    keys: KeyVerifier
    customers: CustomerService
    importer: Importer
    orders: OrderService
    program: Program
    clock: Clock
    engine: Engine
    notifier: Notifier
    opt_out: OptOutLinks
    tokens: Tokens
    signin: SignInService
    staff_signin: StaffSignIn
    qr_tokens: QrTokens
    passes: Passes
    limiter: RateLimiter
    texts: TextBudget
    join: JoinService
    receipts: ReceiptService
    receipt_importer: ReceiptImporter
    kpis: KpiService


def services_of(state: State) -> Services:
    services: Services = state.services
    return services


async def provide_tx(state: State) -> AsyncGenerator[Connection, None]:
    """A connection inside a transaction: committed when the handler returns, rolled back if it raises
    (Litestar throws the handler's exception into this generator), always before the response is sent."""
    async with services_of(state).pool.acquire() as conn, conn.transaction():
        yield conn


async def provide_conn(state: State) -> AsyncGenerator[Connection, None]:
    """A plain connection for read-only handlers whose single statement needs no explicit transaction."""
    async with services_of(state).pool.acquire() as conn:
        yield conn


PRINCIPAL = "kartka.principal"
SHOPPER = "kartka.shopper"
ACTOR = "kartka.actor"


def principal_of(request: Request[Any, Any, Any]) -> Principal:
    """Who is calling, as the bearer-key hook (``api.auth``) found it."""
    principal: Principal = request.scope["state"][PRINCIPAL]
    return principal
