"""RFM: recency, frequency and monetary value scored 1-5 by quintiles, mapped to named segments.

The population is the live customers with a purchase in the program's RFM window (365 days by
default), as the facts table has them: ``last_purchase_at``, ``orders_365d`` (a fully refunded order is
no purchase) and ``spend_365d`` (refunds netted). Each score is ``ntile(5)`` over the population in
ascending order — the most recent, most frequent, biggest spenders get 5 — with the customer id as the
tie-break, so equal values may straddle a quintile boundary but the split is the same on every run.
The code ``R F M`` (e.g. ``"545"``) names a segment through the program's ``[rfm]`` map.
"""

from __future__ import annotations

from datetime import datetime

from kartka.db import Connection
from wallet.program import Program

_SCORE = """
    WITH population AS (
        SELECT customer_id,
               ntile(5) OVER (ORDER BY last_purchase_at, customer_id) AS r,
               ntile(5) OVER (ORDER BY orders_365d, customer_id) AS f,
               ntile(5) OVER (ORDER BY spend_365d, customer_id) AS m
          FROM customer_facts
         WHERE orders_365d > 0
    ), named AS (
        SELECT p.*, map.name
          FROM population p
          JOIN unnest($1::text[], $2::text[]) AS map (code, name) ON map.code = concat(p.r, p.f, p.m)
    )
    UPDATE customer_facts cf
       SET rfm_r = n.r, rfm_f = n.f, rfm_m = n.m, rfm_segment = n.name, scored_at = $3
      FROM named n
     WHERE cf.customer_id = n.customer_id
"""


async def score(conn: Connection, program: Program, now: datetime) -> int:
    """Score everyone in the window and clear the scores of those who left it; returns how many scored."""
    codes: list[str] = []
    names: list[str] = []
    for name, members in program.rfm.segments.items():
        codes += members
        names += [name] * len(members)
    result = await conn.execute(_SCORE, codes, names, now)
    await conn.execute(
        """
        UPDATE customer_facts SET rfm_r = NULL, rfm_f = NULL, rfm_m = NULL, rfm_segment = NULL, scored_at = $1
         WHERE orders_365d = 0 AND rfm_segment IS NOT NULL
        """,
        now,
    )
    return int(result.split()[-1])
