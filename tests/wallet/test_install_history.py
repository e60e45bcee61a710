"""Apple pass installs are kept, not deleted: an unregistration or an APNs 410 marks the registration
removed, only live registrations get updates, and the install figures count what happened when."""

from __future__ import annotations

from datetime import timedelta

from kartka.clock import FakeClock
from kartka.db import Connection
from tests.helpers import NOTIFIER
from wallet.customers import CustomerService, Origin
from wallet.models import Source
from wallet.passes import service as passes
from wallet.passes.installs import install_figures
from wallet.program import DEFAULT_PROGRAM

PHONE_A, PHONE_B = "aaaa" * 16, "bbbb" * 16


async def test_removals_are_history_and_only_live_registrations_are_listed(conn: Connection, clock: FakeClock) -> None:
    customers = CustomerService(region="BY", card_prefix="2", program=DEFAULT_PROGRAM, events=NOTIFIER, clock=clock)
    shopper = await customers.register(conn, phone="+375291234567", origin=Origin(source=Source.POS))
    start = clock.now()
    serial = (await passes.ensure_pass(conn, shopper.card.number, start)).serial_number

    assert await passes.register_device(conn, "phone-a", serial, PHONE_A, clock.now()) is True
    assert await passes.register_device(conn, "phone-b", serial, PHONE_B, clock.now()) is True
    assert await passes.register_device(conn, "phone-a", serial, PHONE_A, clock.now()) is False  # already
    clock.advance(timedelta(hours=1))
    middle = clock.now()
    await passes.unregister_device(conn, "phone-a", serial, clock.now())  # the shopper removed it
    await passes.forget_push_tokens(conn, [PHONE_B], clock.now())  # APNs: 410
    assert (await passes.updated_serials(conn, "phone-a", None, clock.now()))[0] == []
    assert (await passes.updated_serials(conn, "phone-b", None, clock.now()))[0] == []
    touched = await passes.touch(conn, [shopper.customer.id], clock.now())
    assert [t.push_tokens for t in touched] == [[]]  # nobody left to push to
    clock.advance(timedelta(hours=1))
    assert await passes.register_device(conn, "phone-a", serial, PHONE_A, clock.now()) is True  # added again
    assert (await passes.updated_serials(conn, "phone-a", None, clock.now()))[0] == [serial]

    rows = await conn.fetch(
        "SELECT device_library_id, removed_by FROM pass_registrations ORDER BY id",
    )
    assert [(r["device_library_id"], r["removed_by"]) for r in rows] == [
        ("phone-a", "device"),
        ("phone-b", "apns"),
        ("phone-a", None),
    ]
    first = await install_figures(conn, start, middle)
    assert (first.apple_installs, first.apple_removals, first.cards_with_pass, first.active_cards) == (2, 0, 1, 1)
    end = clock.now() + timedelta(seconds=1)
    whole = await install_figures(conn, start, end)
    assert (whole.apple_installs, whole.apple_removals, whole.cards_with_pass) == (3, 2, 1)
    gap = await install_figures(conn, middle, middle + timedelta(minutes=30))
    assert (gap.apple_installs, gap.apple_removals, gap.cards_with_pass) == (0, 2, 0)
