"""Realistic requests and answers of the till's endpoints, for the OpenAPI document.

Taken from a real run of the embedded engine with the default program (a Standart shopper with 18.25
points, a cart with an item on sale, 5 points redeemed, then the coffee returned), so they agree with
each other and with the schemas; ``tests/api/test_openapi.py`` validates them against the document.
They are added to the document by :mod:`api.openapi` (Litestar's own examples would drop the ``null``
members the schemas require), keyed by operation: ``{operationId: {"request" or status: example}}``.
"""

from __future__ import annotations

from typing import Any, Final


def _example(summary: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"summary": summary, "value": value}


IDENTIFY_REQUEST: Final = _example(
    "A scanned card",
    {"code": "2422507791805"},
)

IDENTIFIED: Final = _example(
    "A Standart shopper with points to spend",
    {
        "customer": {"id": "5b0f3c1e-7a2d-4e8b-9c61-2f4d8a7e3b90", "phone": "+375291234567", "name": "Анна"},
        "card": {"number": "2422507791805", "status": "active"},
        "tier": {
            "code": "standart",
            "name": "Standart",
            "rate": 500,
            "spend_365d": 36500,
            "next": {"code": "gold", "name": "Gold", "threshold": 50000},
            "to_next": 13500,
        },
        "balance": {
            "available": 1825,
            "pending": 0,
            "next_available_at": None,
            "expiring_soon": {"points": 0, "at": None},
        },
    },
)

CALCULATE_REQUEST: Final = _example(
    "Milk, coffee and bananas on sale; the shopper wants to pay 5 points",
    {
        "card": "2422507791805",
        "lines": [
            {"sku": "4810268031321", "qty": 2, "unit_price": 249, "name": "Молоко 3,2% 1 л", "category": "dairy"},
            {"sku": "4607065597467", "qty": 1, "unit_price": 1249, "name": "Кофе молотый 250 г", "category": "coffee"},
            {
                "sku": "2000000012345",
                "qty": 1,
                "unit_price": 399,
                "name": "Бананы 1 кг",
                "category": "fruit",
                "on_sale": True,
            },
        ],
        "redeem_points": 500,
    },
)

QUOTE: Final = _example(
    "5 points may pay the milk and coffee (not the bananas on sale); 0.62 points to earn",
    {
        "subtotal": 2146,
        "discount": 0,
        "max_redeem_points": 1222,
        "redeem_points": 500,
        "accrue_points": 62,
        "to_pay": 1646,
        "lines": [
            {
                "sku": "4810268031321",
                "name": "Молоко 3,2% 1 л",
                "category": "dairy",
                "qty": 2,
                "unit_price": 249,
                "total": 498,
                "discount": 0,
                "redeem_points": 143,
                "to_pay": 355,
                "accrue_points": 18,
                "on_sale": False,
                "promotion": None,
            },
            {
                "sku": "4607065597467",
                "name": "Кофе молотый 250 г",
                "category": "coffee",
                "qty": 1,
                "unit_price": 1249,
                "total": 1249,
                "discount": 0,
                "redeem_points": 357,
                "to_pay": 892,
                "accrue_points": 44,
                "on_sale": False,
                "promotion": None,
            },
            {
                "sku": "2000000012345",
                "name": "Бананы 1 кг",
                "category": "fruit",
                "qty": 1,
                "unit_price": 399,
                "total": 399,
                "discount": 0,
                "redeem_points": 0,
                "to_pay": 399,
                "accrue_points": 0,
                "on_sale": True,
                "promotion": None,
            },
        ],
        "messages": [],
        "receipt_lines": [
            "Можно оплатить баллами: до 12,22",
            "Будет списано баллов: 5,00",
            "Будет начислено баллов: 0,62",
        ],
        "engine": {"name": "embedded", "degraded": False},
    },
)

COMMIT_REQUEST: Final = _example(
    "The same cart, committed",
    {
        "order_id": "S1-T1-000042",
        "card": "2422507791805",
        "lines": [
            {"sku": "4810268031321", "qty": 2, "unit_price": 249, "name": "Молоко 3,2% 1 л", "category": "dairy"},
            {"sku": "4607065597467", "qty": 1, "unit_price": 1249, "name": "Кофе молотый 250 г", "category": "coffee"},
            {
                "sku": "2000000012345",
                "qty": 1,
                "unit_price": 399,
                "name": "Бананы 1 кг",
                "category": "fruit",
                "on_sale": True,
            },
        ],
        "redeem_points": 500,
        "purchased_at": "2026-03-04T12:00:00+03:00",
    },
)

ORDER: Final = _example(
    "Committed: 5 points spent, 0.62 earned (pending for 24 hours)",
    {
        "order_id": "S1-T1-000042",
        "customer_id": "5b0f3c1e-7a2d-4e8b-9c61-2f4d8a7e3b90",
        "card": "2422507791805",
        "subtotal": 2146,
        "discount": 0,
        "to_pay": 1646,
        "accrued_points": 62,
        "redeemed_points": 500,
        "available_at": "2026-03-05T09:00:00Z",
        "expires_at": "2026-09-04T09:00:00Z",
        "purchased_at": "2026-03-04T09:00:00Z",
        "balance": {
            "available": 1325,
            "pending": 62,
            "next_available_at": "2026-03-05T09:00:00Z",
            "expiring_soon": {"points": 0, "at": None},
        },
        "tier": {
            "code": "standart",
            "name": "Standart",
            "rate": 500,
            "spend_365d": 38146,
            "next": {"code": "gold", "name": "Gold", "threshold": 50000},
            "to_next": 11854,
        },
        "tier_upgraded": False,
        "receipt_lines": [
            "Списано баллов: 5,00",
            "Начислено баллов: 0,62 (доступны с 05.03.2026 12:00)",
            "Баланс: 13,25 баллов",
            "Ожидают начисления: 0,62",
            "Уровень: Standart, 5% баллами",
        ],
        "engine": {"name": "embedded", "degraded": False},
    },
)

REFUND_REQUEST: Final = _example(
    "The coffee comes back",
    {"refund_id": "S1-T1-R-000007", "lines": [{"sku": "4607065597467", "qty": 1}]},
)

REFUNDED: Final = _example(
    "The coffee's share: 0.44 points taken back, 3.57 returned",
    {
        "refund_id": "S1-T1-R-000007",
        "order_id": "S1-T1-000042",
        "amount": 892,
        "points_taken_back": 44,
        "points_returned": 357,
        "balance": {
            "available": 1682,
            "pending": 18,
            "next_available_at": "2026-03-05T09:00:00Z",
            "expiring_soon": {"points": 0, "at": None},
        },
        "receipt_lines": [
            "Возврат: списано начисленных баллов 0,44",
            "Возвращено баллов: 3,57",
            "Баланс: 16,82 баллов",
        ],
    },
)


#: What :mod:`api.openapi` adds to the document. The till's operations and the online shop's share them.
BY_OPERATION: Final = {
    f"{audience}{operation}": examples
    for audience in ("pos", "integrations")
    for operation, examples in {
        "CalculateOrder": {"request": CALCULATE_REQUEST, "200": QUOTE},
        "CommitOrder": {"request": COMMIT_REQUEST, "201": ORDER},
        "RefundOrder": {"request": REFUND_REQUEST, "201": REFUNDED},
    }.items()
} | {"posIdentify": {"request": IDENTIFY_REQUEST, "200": IDENTIFIED}}
