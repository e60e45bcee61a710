"""The till flow: price a cart, commit a purchase, refund part of it.

Pricing is the core engine's (``engine``, behind the port ``wallet.pricing``); this package keeps the
books. It spreads the points a cart spends and earns over its lines (``service``: so a later refund
takes back exactly a returned part's share), writes the order, its ledger entries and lots in the
caller's transaction with the customer's account locked (``commit``), takes back a returned part's
share (``refund``), and makes both idempotent (``idempotency``): the same ``Idempotency-Key`` with the
same body returns the stored answer and changes nothing. ``structs`` holds what goes in and out.
"""

from wallet.orders.notices import Renotified, engine_acknowledged, unheard
from wallet.orders.service import OrderService
from wallet.orders.structs import (
    CLOCK_SKEW,
    CalculateInput,
    Channel,
    CommitInput,
    IdempotencyConflict,
    OrderConflict,
    OrderNotFound,
    OrderResult,
    OrderScope,
    Quote,
    QuoteLine,
    RefundInput,
    RefundResult,
    ReturnLine,
    ReturnShare,
    ReturnTooLarge,
    Stored,
)

__all__ = [
    "CLOCK_SKEW",
    "CalculateInput",
    "Channel",
    "CommitInput",
    "IdempotencyConflict",
    "OrderConflict",
    "OrderNotFound",
    "OrderResult",
    "OrderScope",
    "OrderService",
    "Quote",
    "QuoteLine",
    "RefundInput",
    "RefundResult",
    "Renotified",
    "ReturnLine",
    "ReturnShare",
    "ReturnTooLarge",
    "Stored",
    "engine_acknowledged",
    "unheard",
]
