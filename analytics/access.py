"""The reports as a staff member may read them: the same reports, refused outside the asker's reach.

A store manager sees the numbers of the stores assigned to them and of no other (``kartka.staff.Reach``);
an admin, a marketer and an admin key see every store's and the chain's. The admin API and the staff
console both read the reports through here, so the rule holds whichever way the numbers are asked for.
"""

from __future__ import annotations

from datetime import date

from analytics import reports
from analytics.reports import GroupBy, KpiReport, KpiService, PromotionReport
from kartka.db import Connection
from kartka.staff import Reach, assign_stores
from wallet.program import Program
from wallet.stores import list_stores


async def kpi_report(
    conn: Connection,
    kpis: KpiService,
    reach: Reach,
    *,
    first: date,
    end: date,
    store: str | None,
    group_by: GroupBy | None,
) -> KpiReport:
    """``GET /v1/admin/reports/kpis``: a store manager names one of their stores (the chain, or every store
    side by side, is refused: 403 ``store-forbidden``)."""
    reach.check(store)
    return await kpis.report(conn, first=first, end=end, store=store, group_by=group_by)


async def promotion_report(
    conn: Connection, program: Program, reach: Reach, *, first: date, end: date, store: str | None
) -> PromotionReport:
    """``GET /v1/admin/reports/promotions``, under the same rule."""
    reach.check(store)
    return await reports.promotions(conn, program, first=first, end=end, store=store)


async def assign_manager_stores(conn: Connection, username: str, stores: list[str]) -> list[str]:
    """Make ``stores`` the stores a store manager reads (replacing the earlier list); a store the
    wallet does not know is refused. The console's staff page and ``PUT /v1/admin/staff/{username}/stores``
    both come here."""
    known = [s.code for s in await list_stores(conn)]
    return await assign_stores(conn, username, stores, known=known)
