"""What the app builds once at start-up and hands to controllers through dependencies."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass

from litestar import Request
from litestar.datastructures import State

from kartka.clock import Clock
from kartka.db import Connection, Pool
from kartka.keys import KeyVerifier, Principal
from kartka.settings import Settings
from wallet.customers import CustomerService
from wallet.importer import Importer
from wallet.orders import OrderService
from wallet.pricing.port import Engine
from wallet.program import Program


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


def services_of(state: State) -> Services:
    services: Services = state.services
    return services


async def provide_services(state: State) -> Services:
    return services_of(state)


async def provide_customers(state: State) -> CustomerService:
    return services_of(state).customers


async def provide_orders(state: State) -> OrderService:
    return services_of(state).orders


async def provide_clock(state: State) -> Clock:
    return services_of(state).clock


async def provide_tx(state: State) -> AsyncGenerator[Connection, None]:
    """A connection inside a transaction: committed when the handler returns, rolled back if it raises
    (Litestar throws the handler's exception into this generator), always before the response is sent."""
    async with services_of(state).pool.acquire() as conn, conn.transaction():
        yield conn


async def provide_conn(state: State) -> AsyncGenerator[Connection, None]:
    """A plain connection for read-only handlers whose single statement needs no explicit transaction."""
    async with services_of(state).pool.acquire() as conn:
        yield conn


async def provide_principal(request: Request[object, object, State]) -> Principal:
    principal: Principal = request.state.principal
    return principal
