"""The embedded engine and the integer arithmetic under it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from engine.embedded import EmbeddedEngine
from engine.promotions.evaluate import Active, Catalog
from engine.promotions.legacy import DEFAULT_PROMOTIONS
from engine.promotions.live import CatalogHolder
from engine.promotions.model import parse_promotion
from engine.promotions.shapes import Used
from kartka.texts import format_points
from wallet.money import add_months, allocate, prorate, share_floor
from wallet.pricing import CartLine, NextTierInfo, Pricing, PricingRequest, TierInfo
from wallet.program import DEFAULT_PROGRAM, Program

AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
STANDART = TierInfo(code="standart", name="Standart", rate_bp=500)
GOLD = TierInfo(code="gold", name="Gold", rate_bp=1_000)


def price(
    *lines: CartLine,
    available: int = 0,
    requested: int = 0,
    tier: TierInfo = STANDART,
    spend: int = 0,
    program: Program = DEFAULT_PROGRAM,
    degraded: bool = False,
    language: str = "ru",
    catalog: Catalog | None = None,
) -> Pricing:
    request = PricingRequest(
        lines=lines,
        tier=tier,
        next_tier=NextTierInfo(code="gold", name="Gold", threshold=50_000) if tier is STANDART else None,
        spend_365d=spend,
        available_points=available,
        requested_points=requested,
        at=AT,
        language=language,
        currency="BYN",
    )
    holder = CatalogHolder(catalog) if catalog is not None else None
    return EmbeddedEngine(program, catalog=holder, degraded=degraded).price(request)


def line(sku: str, qty: int, unit_price: int, category: str | None = None, *, on_sale: bool = False) -> CartLine:
    return CartLine(sku=sku, qty=qty, unit_price=unit_price, category=category, on_sale=on_sale)


def test_accrual_is_the_tier_rate_of_money_paid_on_eligible_lines() -> None:
    result = price(line("milk", 2, 250), line("bread", 1, 199), tier=GOLD)
    assert result.accrue_points == share_floor(699, 1_000) == 69
    assert result.redeem_points == 0


def test_items_on_sale_earn_nothing_and_cannot_be_paid_with_points() -> None:
    result = price(
        line("milk", 1, 1_000), line("sale-tv", 1, 9_000, on_sale=True), available=100_000, requested=100_000
    )
    assert result.max_redeem_points == 700  # 70% of the eligible 10.00 only
    assert result.redeem_points == 700
    assert result.accrue_points == share_floor(1_000 - 700, 500)


def test_redeem_is_capped_by_70_percent_and_by_what_is_available() -> None:
    cart = line("cheese", 1, 10_000)
    assert price(cart, available=100_000, requested=100_000).max_redeem_points == 7_000
    assert price(cart, available=2_500, requested=100_000).max_redeem_points == 2_500
    assert price(cart, available=2_500, requested=1_000).redeem_points == 1_000
    assert price(cart, available=-500, requested=1_000).max_redeem_points == 0


def test_no_accrual_on_the_part_paid_with_points() -> None:
    paid_in_full = price(line("cheese", 1, 10_000))
    half_points = price(line("cheese", 1, 10_000), available=5_000, requested=5_000)
    assert paid_in_full.accrue_points == 500
    assert half_points.accrue_points == 250


def test_pastry_with_coffee_discounts_one_pastry_per_coffee() -> None:
    result = price(
        line("latte", 2, 500, "coffee"),
        line("croissant", 2, 300, "pastry"),
        line("eclair", 1, 400, "pastry"),
    )
    # Two coffees discount the two dearest pastries (the eclair by 1.20, one croissant by 0.90); each
    # discount is shared by its coffee and pastry in proportion to price, so a return gives back a share.
    assert sum(p.discount for p in result.lines) == 120 + 90
    assert [p.discount for p in result.lines] == [67 + 56, 34, 53]
    assert [p.promotion for p in result.lines] == ["pastry-with-coffee"] * 3
    assert [m.code for m in result.messages] == ["promotion:pastry-with-coffee"]  # one pastry still without coffee


def test_one_plus_one_is_three_makes_the_cheapest_of_each_three_free() -> None:
    result = price(line("a", 2, 300, "promo-3for2"), line("b", 1, 100, "promo-3for2"), line("c", 3, 200, "promo-3for2"))
    # Units by price: 300 300 200 | 200 200 100 -> free: one 200, then the 100, each shared by its group.
    assert sum(p.discount for p in result.lines) == 300
    assert [p.discount for p in result.lines] == [75 + 75, 20, 50 + 40 + 40]
    assert result.messages == ()
    one_short = price(line("a", 5, 300, "promo-3for2"))
    assert one_short.lines[0].discount == 300
    assert [m.code for m in one_short.messages] == ["promotion:three-for-two"]
    assert "бесплатным" in one_short.messages[0].text


def test_promotions_never_stack_and_skip_items_on_sale() -> None:
    again = parse_promotion(
        {
            "id": "again",
            "title": {"en": "x"},
            "benefit": {
                "type": "bundle",
                "trigger": {"categories": ["coffee"]},
                "target": {"categories": ["pastry"]},
                "percent_bp": 5_000,
            },
        }
    )
    double = Catalog(Active(p, 1, i) for i, p in enumerate((*DEFAULT_PROMOTIONS, again)))
    result = price(line("latte", 1, 500, "coffee"), line("croissant", 1, 300, "pastry"), catalog=double)
    assert sum(p.discount for p in result.lines) == 90  # the first promotion took both; the second cannot
    on_sale = price(line("latte", 1, 500, "coffee"), line("croissant", 1, 300, "pastry", on_sale=True))
    assert sum(p.discount for p in on_sale.lines) == 0
    sale_coffee = price(line("latte", 1, 500, "coffee", on_sale=True), line("croissant", 1, 300, "pastry"))
    assert sum(p.discount for p in sale_coffee.lines) == 0  # a coffee on sale is already discounted


def test_tier_nudge_when_the_next_tier_is_close() -> None:
    near = price(line("cheese", 1, 1_000), spend=48_750)
    assert [m.code for m in near.messages] == ["tier-nudge:gold"]
    assert "2,50 BYN" in near.messages[0].text
    english = price(line("cheese", 1, 1_000), spend=48_750, language="en")
    assert english.messages[0].text == "Add 2.50 BYN more to reach Gold from your next purchase"
    assert price(line("cheese", 1, 1_000), spend=10_000).messages == ()


def test_degraded_mode_is_base_rate_without_promotions() -> None:
    result = price(line("latte", 1, 500, "coffee"), line("croissant", 1, 300, "pastry"), tier=GOLD, degraded=True)
    assert [p.discount for p in result.lines] == [0, 0]
    assert result.accrue_points == share_floor(800, 500)
    assert result.engine.degraded is True


@given(st.integers(0, 10**9), st.lists(st.integers(0, 10**7), min_size=1, max_size=30))
def test_allocate_adds_up_exactly_and_stays_proportional(total: int, weights: list[int]) -> None:
    if sum(weights) == 0:
        total = 0
    parts = allocate(total, weights)
    assert sum(parts) == total
    weight_sum = sum(weights) or 1
    for part, weight in zip(parts, weights, strict=True):
        assert abs(part * weight_sum - total * weight) < weight_sum  # within one unit of the exact share


@given(st.integers(0, 10**9), st.integers(1, 1000), st.data())
def test_prorated_parts_add_up_to_the_whole(total: int, qty: int, data: st.DataObject) -> None:
    steps = data.draw(st.lists(st.integers(1, qty), max_size=20))
    done, taken = 0, 0
    for asked in steps:
        step = min(asked, qty - done)
        taken += prorate(total, done + step, qty) - prorate(total, done, qty)
        done += step
    taken += prorate(total, qty, qty) - prorate(total, done, qty)
    assert taken == total


def test_calendar_months_clamp_and_follow_the_program_time_zone() -> None:
    assert add_months(datetime(2026, 8, 31, 12, tzinfo=UTC), 6) == datetime(2027, 2, 28, 12, tzinfo=UTC)
    assert add_months(datetime(2027, 8, 31, 12, tzinfo=UTC), 6) == datetime(2028, 2, 29, 12, tzinfo=UTC)
    # 22:30 UTC on 31 August is already 1 September in Minsk: six months later is 1 March there.
    late = datetime(2026, 8, 31, 22, 30, tzinfo=UTC)
    assert DEFAULT_PROGRAM.expires_at(late) == datetime(2027, 2, 28, 22, 30, tzinfo=UTC)
    assert DEFAULT_PROGRAM.expires_at(late).astimezone(DEFAULT_PROGRAM.zone).day == 1


def test_amounts_are_formatted_for_people() -> None:
    assert format_points(1250, "ru") == "12,50"
    assert format_points(123456789, "ru") == "1\u00a0234\u00a0567,89"
    assert format_points(1250, "en") == "12.50"
    assert format_points(-5, "en") == "-0.05"


def test_answers_name_every_promotion_on_each_line_and_book_quick_points_apart() -> None:
    quick = parse_promotion(
        {"id": "quick", "title": {"en": "q"}, "benefit": {"type": "points_fixed", "points": 500, "expires_in_days": 7}}
    )
    plain = parse_promotion(
        {
            "id": "plain",
            "group": "p",
            "title": {"en": "p"},
            "benefit": {"type": "points_percent", "lines": {}, "rate_bp": 100},
        }
    )
    catalog = Catalog(Active(p, 3, i) for i, p in enumerate((*DEFAULT_PROMOTIONS, quick, plain)))
    result = price(line("latte", 1, 500, "coffee"), line("croissant", 1, 300, "pastry"), catalog=catalog)
    assert [[(a.id, a.revision) for a in p.promotions] for p in result.lines] == [
        [("pastry-with-coffee", 3), ("quick", 3), ("plain", 3)],
        [("pastry-with-coffee", 3), ("quick", 3), ("plain", 3)],
    ]
    assert [a.discount for a in result.lines[0].promotions] == [56, 0, 0]
    assert sum(p.promotions[1].points for p in result.lines) == 500
    # the tier's 5 % of 7.10 paid, plus 1 % of it from "plain"; "quick" points expire on their own
    assert result.accrue_points == 35 + 7
    assert [(b.promotion, b.points, b.expires_in_days) for b in result.bonus_points] == [("quick", 500, 7)]


def test_pricing_asks_for_the_customer_only_what_the_cart_meets() -> None:
    """What the promotion book reads of a customer before pricing (``Catalog.state_needed``): the
    candidates with limits to count, and whether an offer decides one; then the price with what it read."""

    def promotion(pid: str, **rest: object) -> Active:
        data = {
            "id": pid,
            "title": {"en": pid},
            "group": pid,
            "benefit": {"type": "amount_off", "lines": {"skus": [pid]}, "amount": 100},
            **rest,
        }
        return Active(parse_promotion(data), 1, 0)

    holder = CatalogHolder(
        Catalog(
            [promotion("mine", audience={"personal": True}), promotion("once", limits={"per_customer": {"count": 1}})]
        )
    )
    engine = EmbeddedEngine(DEFAULT_PROGRAM, catalog=holder)
    request = PricingRequest(
        lines=(line("mine", 1, 1000), line("once", 1, 1000)),
        tier=STANDART,
        next_tier=None,
        spend_365d=0,
        available_points=0,
        requested_points=0,
        at=AT,
        language="en",
        currency="BYN",
        customer_id="c1",
    )
    counted, personal = holder.current.state_needed(request.lines)
    assert ([a.id for a in counted], personal) == (["once"], True)
    result = engine.price(request, offers=frozenset({"mine"}), used={"once": Used(customer=1)})
    assert [p.discount for p in result.lines] == [100, 0]
    assert holder.current.state_needed((line("milk", 1, 100),)) == ([], False)  # nothing to ask
    holder.swap(Catalog())  # live reload puts another catalog in force, whole
    assert [p.discount for p in asyncio.run(engine.calculate(request)).lines] == [0, 0]


def test_points_are_spread_only_over_lines_they_may_pay_for() -> None:
    """A no_redeem line takes none of the points a cart spends: the till's lines (and a later refund of
    either line) see the 700 points on the line they paid for, not half on the restricted one."""
    from kartka.clock import FakeClock  # noqa: PLC0415
    from wallet.orders import OrderService  # noqa: PLC0415

    tobacco = parse_promotion(
        {"id": "tobacco", "title": {"en": "t"}, "benefit": {"type": "no_redeem", "lines": {"categories": ["tobacco"]}}}
    )
    lines = (line("cigars", 1, 1_000, "tobacco"), line("bread", 1, 1_000, "bakery"))
    request = PricingRequest(
        lines=lines,
        tier=STANDART,
        next_tier=None,
        spend_365d=0,
        available_points=5_000,
        requested_points=700,
        at=AT,
        language="en",
        currency="BYN",
    )
    engine = EmbeddedEngine(DEFAULT_PROGRAM, catalog=CatalogHolder(Catalog([Active(tobacco, 1, 0)])))
    pricing = engine.price(request)
    assert pricing.redeem_points == 700  # 70 % of the bread alone
    assert [p.redeemable for p in pricing.lines] == [False, True]
    orders = OrderService(program=DEFAULT_PROGRAM, engine=engine, customers=None, clock=FakeClock(AT))  # type: ignore[arg-type]
    quote = asyncio.run(orders.quote(request, pricing))
    assert [q.redeem_points for q in quote.lines] == [0, 700]
    assert [q.to_pay for q in quote.lines] == [1_000, 300]
