"""Campaigns: one marketing text to a segment of shoppers, enqueued set-based and throttled.

``create`` validates and stores the campaign; the worker enqueues it (:func:`enqueue_chunk`) with one
``INSERT ... SELECT`` per chunk of customers in id order, advancing a cursor in the same transaction,
so a worker that dies mid-campaign resumes where it stopped and nobody is messaged twice (each row's
idempotency key is ``campaign:<id>:<customer>``). Recipients are those in the segment who consented to
marketing and have a phone; each gets the campaign's first channel in their own order of preference.
Throttling spaces ``due_at`` by ``60 / rate_per_minute`` seconds; quiet hours are applied at sending.

A campaign names a saved segment (``segment: {"id": ...}``, evaluated by :mod:`analytics.segments` over
its facts as the chunk is enqueued) or filters inline as before. With ``control_share_bp`` a
deterministic share of the recipients — those whose md5 of ``<campaign>:<customer>`` falls in the first
``control_share_bp`` of 10,000 — is held out: recorded in ``campaign_holdouts``, not messaged, so
:func:`report` can set their purchases against those of the people who got the message.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Final, Literal

import msgspec

from analytics import segments
from analytics.lifecycle import COUNTED
from kartka.bounds import Instant, MoneyBound, check_instant
from kartka.db import Connection, Pool
from kartka.errors import InvalidInput, NotFound
from notifications.outbox import wake
from notifications.templates import LOCALES, sms_segments
from wallet.models import Source
from wallet.program import Program

CHUNK: Final = 100_000
MAX_SMS_PARTS: Final = 4
#: Whether ``{customer}`` is in campaign ``{campaign}``'s control group of ``{share}`` basis points: the
#: first 32 bits of an md5, modulo 10,000 — the same customer, the same answer, on every chunk and run.
HELD_OUT: Final = (
    "(('x' || substr(md5({campaign}::bigint::text || ':' || {customer}::text), 1, 8))::bit(32)::bigint % 10000"
    " < {share}::integer)"
)
REPORT_DAYS: Final = 14


class CampaignSegment(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Whom a campaign reaches: a saved segment (``id``), or conditions of its own. Named apart from
    :class:`analytics.segments.Segment`, the saved segment itself, so each has its own name in the API."""

    id: segments.SegmentId | None = None
    """A saved segment (``PUT /v1/admin/segments/{id}``); then no other field but ``exclude`` may be given."""
    exclude: Annotated[tuple[segments.SegmentId, ...], msgspec.Meta(max_length=20)] | None = None
    """Saved segments whose customers are left out (with ``id`` only)."""
    tiers: tuple[str, ...] | None = None
    spend_min: MoneyBound | None = None
    """Spend in the tier window, minor units, inclusive."""
    spend_max: MoneyBound | None = None
    last_purchase_before: Instant | None = None
    last_purchase_after: Instant | None = None
    sources: tuple[Source, ...] | None = None
    """Registration sources (pos, qr_poster, app, website, online_order, crm_import, manual)."""
    marketing_consent: Literal[True] = True
    """Campaigns reach only shoppers who opted in to marketing; the field exists to say so explicitly."""

    def __post_init__(self) -> None:
        check_instant(self.last_purchase_before, "last_purchase_before")
        check_instant(self.last_purchase_after, "last_purchase_after")


class CampaignInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    texts: dict[str, Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]]
    """The text per language (``ru`` required, ``en`` optional); ``{name}`` is the shopper's name."""
    channels: tuple[Literal["viber", "sms"], ...] = ("viber", "sms")
    segment: CampaignSegment = CampaignSegment()
    rate_per_minute: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] | None = None
    start_at: Instant | None = None
    control_share_bp: Annotated[int, msgspec.Meta(ge=0, le=5_000)] = 0
    """Hold out this share (basis points, at most half) of the recipients as a control group: they are
    not messaged, and the campaign report compares their purchases with the others'."""

    def __post_init__(self) -> None:
        check_instant(self.start_at, "start_at")


class Counts(msgspec.Struct, frozen=True):
    queued: int
    sent: int
    delivered: int
    failed: int
    cancelled: int


class Campaign(msgspec.Struct, frozen=True):
    id: int
    name: str
    status: str  # enqueuing | sending | done
    channels: list[str]
    segment: dict[str, Any]
    rate_per_minute: int | None
    start_at: datetime
    recipients: int
    counts: Counts
    created_at: datetime
    control_share_bp: int = 0
    held_out: int = 0
    """Recipients held out as the control group (not messaged)."""


def _validate(data: CampaignInput, program: Program) -> None:
    unknown = set(data.texts) - set(LOCALES)
    if unknown:
        raise InvalidInput(f"texts: unknown language(s) {sorted(unknown)}; use {list(LOCALES)}", field="texts")
    if program.language not in data.texts:
        raise InvalidInput(f"texts must include the program's language {program.language!r}", field="texts")
    if len(set(data.channels)) != len(data.channels) or not data.channels:
        raise InvalidInput("channels: list viber and/or sms, each once", field="channels")
    for lang, text in data.texts.items():
        parts = sms_segments(text).parts
        if parts > MAX_SMS_PARTS:
            raise InvalidInput(
                f"texts.{lang} is {parts} SMS parts long; keep it to {MAX_SMS_PARTS} (the opt-out link is added)",
                field=f"texts.{lang}",
            )
    seg = data.segment
    if seg.id is not None and msgspec.structs.replace(seg, id=None, exclude=None) != CampaignSegment():
        raise InvalidInput("segment: give either a saved segment's id or an inline filter", field="segment.id")
    if seg.exclude and seg.id is None:
        raise InvalidInput("segment.exclude: exclusions go with a saved segment's id", field="segment.exclude")
    if seg.id is not None and seg.id in (seg.exclude or ()):
        raise InvalidInput("segment.exclude: the segment excludes itself", field="segment.exclude")
    if seg.spend_min is not None and seg.spend_max is not None and seg.spend_min > seg.spend_max:
        raise InvalidInput("segment.spend_min must not exceed segment.spend_max", field="segment.spend_min")
    if seg.tiers is not None:
        codes = {t.code for t in program.tiers}
        wrong = [t for t in seg.tiers if t not in codes]
        if wrong:
            raise InvalidInput(f"segment.tiers: unknown tier(s) {wrong}; known: {sorted(codes)}", field="segment.tiers")


async def create(
    conn: Connection, data: CampaignInput, *, program: Program, now: datetime, created_by: str | None
) -> int:
    _validate(data, program)
    saved = data.segment.id
    if saved is not None and await conn.fetchval("SELECT 1 FROM segments WHERE id = $1", saved) is None:
        raise InvalidInput(f"segment.id: no segment {data.segment.id!r}", field="segment.id")
    wanted = set(data.segment.exclude or ())
    found = {r["id"] for r in await conn.fetch("SELECT id FROM segments WHERE id = ANY($1)", list(wanted))}
    if wanted - found:
        raise InvalidInput(f"segment.exclude: no segment(s) {sorted(wanted - found)}", field="segment.exclude")
    start = max(data.start_at or now, now)
    campaign_id: int = await conn.fetchval(
        """
        INSERT INTO campaigns (name, texts, channels, segment, rate_per_minute, start_at, created_by, created_at,
                               segment_id, control_share_bp)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id
        """,
        data.name,
        data.texts,
        list(data.channels),
        msgspec.to_builtins(data.segment),
        data.rate_per_minute,
        start,
        created_by,
        now,
        data.segment.id,
        data.control_share_bp,
    )
    await wake(conn)  # a worker picks it up and enqueues it
    return campaign_id


def _segment_sql(segment: CampaignSegment, program: Program, now: datetime, args: list[Any]) -> tuple[str, str]:
    """Extra joins and WHERE conditions for a segment; values are appended to ``args`` as parameters."""

    def param(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    joins, where = [], []
    if segment.tiers is not None:
        joins.append("LEFT JOIN accounts a ON a.customer_id = cu.id")
        where.append(f"coalesce(a.tier_code, {param(program.base_tier.code)}) = ANY({param(list(segment.tiers))})")
    needs_orders = any(
        v is not None
        for v in (segment.spend_min, segment.spend_max, segment.last_purchase_before, segment.last_purchase_after)
    )
    if needs_orders:
        joins.append(
            "LEFT JOIN LATERAL (SELECT coalesce(sum(o.paid - o.refunded_amount) FILTER (WHERE o.purchased_at > "
            f"{param(program.tier_window_start(now))}), 0) AS spend, "
            "max(o.purchased_at) AS last FROM orders o WHERE o.customer_id = cu.id) st ON true"
        )
        if segment.spend_min is not None:
            where.append(f"st.spend >= {param(segment.spend_min)}")
        if segment.spend_max is not None:
            where.append(f"st.spend <= {param(segment.spend_max)}")
        if segment.last_purchase_before is not None:
            where.append(f"st.last < {param(segment.last_purchase_before)}")
        if segment.last_purchase_after is not None:
            where.append(f"st.last > {param(segment.last_purchase_after)}")
    if segment.sources is not None:
        where.append(f"cu.source = ANY({param([s.value for s in segment.sources])})")
    return " ".join(joins), "".join(f" AND {w}" for w in where)


def _channel_sql(channels: list[str], viber: bool) -> str:
    """The first campaign channel in the shopper's own order of preference (NULL: none they accept)."""
    ranks = [
        (ch, "NULL::int" if ch == "viber" and not viber else f"array_position(t.prefs, '{ch}')")
        for ch in channels
        if ch in ("viber", "sms")
    ]
    if len(ranks) == 1:
        ch, rank = ranks[0]
        return f"CASE WHEN {rank} IS NOT NULL THEN '{ch}' END"
    (a, ra), (b, rb) = ranks
    return (
        f"CASE WHEN {ra} IS NOT NULL AND ({rb} IS NULL OR {ra} < {rb}) THEN '{a}' WHEN {rb} IS NOT NULL THEN '{b}' END"
    )


async def enqueue_chunk(pool: Pool, program: Program, *, viber: bool, now: datetime, chunk: int = CHUNK) -> bool:
    """Enqueue the next chunk of one campaign that is still enqueuing; False when there is none."""
    async with pool.acquire() as conn, conn.transaction():
        campaign = await conn.fetchrow(
            """
            SELECT id, channels, segment, segment_id, control_share_bp, rate_per_minute, start_at, cursor_id, recipients
              FROM campaigns
             WHERE status = 'enqueuing' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED
            """
        )
        if campaign is None:
            return False
        segment = msgspec.convert(campaign["segment"], CampaignSegment)
        start, end = program.quiet_minutes
        spacing = 60.0 / campaign["rate_per_minute"] if campaign["rate_per_minute"] else 0.0
        args: list[Any] = [
            campaign["id"],  # $1
            campaign["cursor_id"],  # $2
            chunk,  # $3
            program.language,  # $4
            list(program.notify_channels),  # $5
            start,  # $6
            end,  # $7
            program.timezone,  # $8
            campaign["start_at"],  # $9
            campaign["recipients"],  # $10
            spacing,  # $11
            now,  # $12
            campaign["control_share_bp"],  # $13
        ]
        if campaign["segment_id"] is not None:
            joins = "JOIN customer_facts f ON f.customer_id = cu.id"
            try:
                where = " AND " + await segments.condition_for(
                    conn, campaign["segment_id"], now=now, program=program, args=args
                )
                for other in segment.exclude or ():
                    left_out = await segments.condition_for(conn, other, now=now, program=program, args=args)
                    where += f" AND NOT coalesce(({left_out}), false)"
            except NotFound:  # deleted since the campaign was made: nobody is in it (nor, safely, if an exclusion)
                where = " AND false"
        else:
            joins, where = _segment_sql(segment, program, now, args)
        channel = _channel_sql(campaign["channels"], viber)
        row = await conn.fetchrow(
            f"""
            WITH target AS (
                SELECT cu.id, cu.phone, cu.name, coalesce(cu.language, $4) AS locale,
                       coalesce(p.channels, $5::text[]) AS prefs, coalesce(p.quiet_start, $6) AS qs,
                       coalesce(p.quiet_end, $7) AS qe, coalesce(s.timezone, $8) AS tz
                  FROM customers cu
                  JOIN notification_preferences p ON p.customer_id = cu.id AND p.marketing
                  LEFT JOIN stores s ON s.code = cu.home_store
                  {joins}
                 WHERE cu.phone IS NOT NULL AND cu.merged_into IS NULL
                   AND ($2::uuid IS NULL OR cu.id > $2) {where}
                 ORDER BY cu.id
                 LIMIT $3
            ), routed AS (
                SELECT t.*, {channel} AS channel, row_number() OVER (ORDER BY t.id) AS rn,
                       {HELD_OUT.format(campaign="$1", customer="t.id", share="$13")} AS held
                  FROM target t
            ), held AS (
                INSERT INTO campaign_holdouts (campaign_id, customer_id)
                SELECT $1::bigint, id FROM routed WHERE channel IS NOT NULL AND held
                ON CONFLICT DO NOTHING
                RETURNING 1
            ), added AS (
                INSERT INTO outbox (idempotency_key, customer_id, campaign_id, channel, recipient, category, template,
                                    locale, params, due_at, quiet_tz, quiet_start, quiet_end, created_at)
                SELECT 'campaign:' || $1::bigint || ':' || id, id, $1::bigint, channel, phone, 'marketing',
                       'campaign', locale,
                       CASE WHEN name IS NULL THEN '{{}}'::jsonb ELSE jsonb_build_object('name', name) END,
                       $9::timestamptz + make_interval(secs => ($10 + rn - 1) * $11::float8), tz, qs, qe, $12
                  FROM routed WHERE channel IS NOT NULL AND NOT held
                ON CONFLICT (idempotency_key) DO NOTHING
                RETURNING 1
            )
            SELECT (SELECT max(id::text)::uuid FROM target) AS last, (SELECT count(*) FROM target) AS seen,
                   (SELECT count(*) FROM added) AS added, (SELECT count(*) FROM held) AS held
            """,
            *args,
        )
        assert row is not None
        done = row["seen"] < chunk
        await conn.execute(
            """
            UPDATE campaigns SET cursor_id = coalesce($2, cursor_id), recipients = recipients + $3,
                   status = CASE WHEN $4 THEN 'enqueued' ELSE status END,
                   enqueued_at = CASE WHEN $4 THEN $5 ELSE enqueued_at END, held_out = held_out + $6
             WHERE id = $1
            """,
            campaign["id"],
            row["last"],
            row["added"],
            done,
            now,
            row["held"],
        )
        if row["added"]:
            await wake(conn)
        return True


async def get(conn: Connection, campaign_id: int, now: datetime) -> Campaign:
    row = await conn.fetchrow("SELECT * FROM campaigns WHERE id = $1", campaign_id)
    if row is None:
        raise NotFound(f"no campaign with id {campaign_id}", field="id")
    stats = {
        r["status"]: r["n"]
        for r in await conn.fetch(
            "SELECT status, count(*) AS n FROM outbox WHERE campaign_id = $1 GROUP BY status", campaign_id
        )
    }
    return _campaign(row, stats, now)


async def list_recent(conn: Connection, now: datetime, *, limit: int = 20, before: int | None = None) -> list[Campaign]:
    """The newest campaigns first (older than the campaign ``before``, for the next page), each with its
    status and counts (as :func:`get` has them)."""
    rows = await conn.fetch(
        "SELECT * FROM campaigns WHERE $2::bigint IS NULL OR id < $2 ORDER BY id DESC LIMIT $1", limit, before
    )
    stats: dict[int, dict[str, int]] = {}
    for r in await conn.fetch(
        "SELECT campaign_id, status, count(*) AS n FROM outbox WHERE campaign_id = ANY($1::bigint[])"
        " GROUP BY campaign_id, status",
        [row["id"] for row in rows],
    ):
        stats.setdefault(r["campaign_id"], {})[r["status"]] = r["n"]
    return [_campaign(row, stats.get(row["id"], {}), now) for row in rows]


def _campaign(row: Any, stats: dict[str, int], now: datetime) -> Campaign:
    counts = Counts(
        queued=stats.get("queued", 0) + stats.get("sending", 0),
        sent=stats.get("sent", 0),
        delivered=stats.get("delivered", 0),
        failed=stats.get("failed", 0) + stats.get("dead", 0),
        cancelled=stats.get("cancelled", 0),
    )
    if row["status"] == "enqueuing":
        status = "enqueuing"
    elif counts.queued:
        status = "scheduled" if row["start_at"] > now and not stats.get("sending") else "sending"
    else:
        status = "done"
    return Campaign(
        id=row["id"],
        name=row["name"],
        status=status,
        channels=list(row["channels"]),
        segment=row["segment"],
        rate_per_minute=row["rate_per_minute"],
        start_at=row["start_at"],
        recipients=row["recipients"],
        counts=counts,
        created_at=row["created_at"],
        control_share_bp=row["control_share_bp"],
        held_out=row["held_out"],
    )


class GroupResult(msgspec.Struct, frozen=True):
    customers: int
    buyers: int
    """Customers with at least one purchase (not refunded in full) in the window."""
    orders: int
    revenue: int
    """Net of refunds, minor units."""
    conversion: float
    """buyers / customers (0 for an empty group)."""
    revenue_per_customer: int


class CampaignReport(msgspec.Struct, frozen=True):
    id: int
    name: str
    start_at: datetime
    days: int
    window_end: datetime
    """Purchases from ``start_at`` up to here count."""
    complete: bool
    """The window has closed (the figures no longer move)."""
    control_share_bp: int
    sent: int
    """Messages a provider accepted (delivered ones included)."""
    delivered: int
    failed: int
    recipients: GroupResult
    control: GroupResult | None
    """The held-out group; absent when the campaign asked for none."""
    conversion_uplift: float | None
    """Recipients' conversion minus the control group's (percentage points as a fraction)."""
    revenue_per_customer_uplift: int | None


_GROUPS: Final = f"""
    WITH grouped AS (
        SELECT DISTINCT customer_id, 'recipients' AS grp FROM outbox WHERE campaign_id = $1 AND customer_id IS NOT NULL
        UNION ALL
        SELECT customer_id, 'control' FROM campaign_holdouts WHERE campaign_id = $1
    )
    SELECT g.grp, count(DISTINCT g.customer_id) AS customers, count(DISTINCT o.customer_id) AS buyers,
           count(o.id) AS orders, coalesce(sum(o.paid - o.refunded_amount), 0)::bigint AS revenue
      FROM grouped g
      LEFT JOIN orders o ON o.customer_id = g.customer_id AND o.purchased_at >= $2 AND o.purchased_at < $3
                        AND {COUNTED}
     GROUP BY g.grp
"""


def _group(row: Any | None) -> GroupResult:
    if row is None:
        return GroupResult(customers=0, buyers=0, orders=0, revenue=0, conversion=0.0, revenue_per_customer=0)
    customers = row["customers"]
    return GroupResult(
        customers=customers,
        buyers=row["buyers"],
        orders=row["orders"],
        revenue=row["revenue"],
        conversion=row["buyers"] / customers if customers else 0.0,
        revenue_per_customer=(row["revenue"] + customers // 2) // customers if customers else 0,
    )


async def report(conn: Connection, campaign_id: int, *, days: int, now: datetime) -> CampaignReport:
    """Messages sent, delivered, failed, and purchases within ``days`` of the start by the recipients
    against the held-out control group (each group's customers, buyers, orders, net revenue)."""
    campaign = await get(conn, campaign_id, now)
    end = campaign.start_at + timedelta(days=days)
    groups = {row["grp"]: row for row in await conn.fetch(_GROUPS, campaign_id, campaign.start_at, end)}
    treated = _group(groups.get("recipients"))
    control = _group(groups.get("control")) if campaign.control_share_bp else None
    return CampaignReport(
        id=campaign.id,
        name=campaign.name,
        start_at=campaign.start_at,
        days=days,
        window_end=end,
        complete=now >= end,
        control_share_bp=campaign.control_share_bp,
        sent=campaign.counts.sent + campaign.counts.delivered,
        delivered=campaign.counts.delivered,
        failed=campaign.counts.failed,
        recipients=treated,
        control=control,
        conversion_uplift=treated.conversion - control.conversion if control and control.customers else None,
        revenue_per_customer_uplift=(
            treated.revenue_per_customer - control.revenue_per_customer if control and control.customers else None
        ),
    )


async def delete_segment(conn: Connection, segment_id: str) -> None:
    """Delete a saved segment, unless a campaign not yet enqueued aims at it or leaves it out: its
    recipients would change under it (409 ``segment-in-use``, as for a segment another one names)."""
    async with conn.transaction():
        waiting = await conn.fetchval(
            """
            SELECT array_agg(id ORDER BY id) FROM campaigns
             WHERE status = 'enqueuing' AND (segment_id = $1 OR segment->'exclude' ? $1)
            """,
            segment_id,
        )
        if waiting:
            raise segments.SegmentInUse(
                f"segment {segment_id!r} is the audience of campaign(s) {list(waiting)} still to be sent", field="id"
            )
        await segments.delete(conn, segment_id)
