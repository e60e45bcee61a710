"""Promotions as managed data: revisions, the life cycle with four-eyes approval, groups, personal offers
and the audit log (``specs/promotions.md``, "Life cycle, approval, audit").

Every change is a new revision. A promotion prices carts with its *live* (approved) revision; an edit
of a running promotion waits as a *draft* revision, submitted and approved by someone else, while the
live one keeps running. Whatever changes what prices carts moves the catalog version and sends a
``NOTIFY`` in the change's own transaction, so every API process reloads its catalog the moment the
change commits, and never before (``engine.promotions.reload``).

Stored states are ``draft``, ``pending_approval``, ``active``, ``paused``, ``ended`` and ``archived``; an
``active`` promotion is *shown* as ``scheduled`` before its ``when.starts_at`` and ``ended`` after its
``when.ends_at``: a schedule boundary needs no writer, the engine checks time on every cart.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal
from uuid import UUID

import asyncpg
import msgspec

from engine.promotions.book import USE_TOTALS
from engine.promotions.model import DEFAULT_GROUP, Group, Mode, Promotion
from kartka.bounds import Instant, check_instant
from kartka.db import Connection
from kartka.errors import Conflict, Forbidden, InvalidInput, NotFound

#: The channel every API process listens on; the payload is the catalog's new version.
CHANNEL: Final = "kartka_promotions"
ID_PATTERN: Final = r"^[a-z0-9-]{1,64}$"
#: Ids that name a page or an action beside the promotions (``/v1/admin/promotions/preview``,
#: ``/console/promotions/new``): a promotion so named could never be opened.
RESERVED_IDS: Final = frozenset({"new", "preview", "backtest", "groups", "offers"})

PromotionId = str
Body = dict[str, Any]


class Status(enum.StrEnum):
    """What a promotion's life cycle shows (``scheduled`` is an ``active`` one before it starts)."""

    DRAFT = "draft"
    PENDING_APPROVAL = "pending_approval"
    SCHEDULED = "scheduled"
    ACTIVE = "active"
    PAUSED = "paused"
    ENDED = "ended"
    ARCHIVED = "archived"


class PromotionExists(Conflict):
    code = "promotion-exists"


class PromotionState(Conflict):
    """The call does not fit the promotion's state (approving one nobody submitted, pausing a draft)."""

    code = "promotion-state"


class ManagedRemotely(Conflict):
    """With ``KARTKA_ENGINE=http`` the remote engine owns promotions; ours would price nothing."""

    code = "promotions-managed-remotely"


class FourEyes(Forbidden):
    code = "four-eyes"


# -- what the admin API shows ------------------------------------------------------------------------


class Revision(msgspec.Struct, frozen=True):
    revision: int
    state: Literal["draft", "pending_approval", "approved", "rejected", "superseded"]
    promotion: Promotion
    author: str
    created_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None
    reason: str | None = None


class LimitUsage(msgspec.Struct, frozen=True):
    """How much of one limit is used: ``limit`` ``budget.discount`` with ``used`` 1200 of ``of`` 5000."""

    limit: str
    used: int
    of: int


class Usage(msgspec.Struct, frozen=True):
    orders: int = 0
    discount: int = 0
    points: int = 0
    limits: tuple[LimitUsage, ...] = ()


class PromotionView(msgspec.Struct, frozen=True):
    id: str
    status: Status
    revision: int
    """The newest revision (the draft's when there is one, else the live one)."""
    title: dict[str, str]
    live: Revision | None
    """The approved revision that prices carts (``None`` before the first approval)."""
    draft: Revision | None
    """An edit waiting for submission or approval."""
    usage: Usage
    created_at: datetime
    created_by: str
    updated_at: datetime


class PromotionSummary(msgspec.Struct, frozen=True):
    id: str
    status: Status
    revision: int
    title: dict[str, str]
    group: str
    starts_at: datetime | None
    ends_at: datetime | None
    has_draft: bool
    updated_at: datetime


class Change(msgspec.Struct, frozen=True):
    field: str
    old: Any = None
    new: Any = None


class HistoryEntry(msgspec.Struct, frozen=True):
    at: datetime
    by: str
    by_name: str | None
    """The staff member's username, when a staff member acted (``by`` is ``staff:<id>`` or ``api_key:<id>``)."""
    action: str
    revision: int | None
    old_status: str | None
    new_status: str | None
    changes: tuple[Change, ...]
    reason: str | None


class PromotionGroup(msgspec.Struct, frozen=True):
    """An arbitration group as the admin API shows it (its rules: :class:`engine.promotions.model.Group`)."""

    id: str
    mode: Mode
    priority: int
    max_discount_bp: int | None = None


DEFAULT: Final = PromotionGroup(id=DEFAULT_GROUP, mode="exclusive", priority=100)


class OfferInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    promotion: str
    valid_until: Instant

    def __post_init__(self) -> None:
        check_instant(self.valid_until, "valid_until")


class Offer(msgspec.Struct, frozen=True):
    customer_id: UUID
    promotion: str
    valid_until: datetime
    granted_by: str
    granted_at: datetime


class Usages:
    """Usage so far and what each of the live revision's limits has left.

    The totals come from the orders' promotion book (``engine.promotions.book``: which orders used a
    promotion and what it gave on each), refunds taken back.
    """

    async def totals(self, conn: Connection, promotion_id: str) -> tuple[int, int, int]:
        """(orders, discount, points) the promotion has given so far, refunds taken back."""
        row = await conn.fetchrow(f"SELECT {USE_TOTALS} FROM promotion_uses u WHERE u.promotion_id = $1", promotion_id)
        assert row is not None
        orders, discount, points = row
        return orders, discount, points

    async def of(self, conn: Connection, promotion_id: str, live: Promotion | None) -> Usage:
        orders, discount, points = await self.totals(conn, promotion_id)
        limits: list[LimitUsage] = []
        budget = live.limits.budget if live is not None else None
        if budget is not None:
            for name, used, of in (
                ("budget.count", orders, budget.count),
                ("budget.discount", discount, budget.discount),
                ("budget.points", points, budget.points),
            ):
                if of:
                    limits.append(LimitUsage(limit=name, used=used, of=of))
        return Usage(orders=orders, discount=discount, points=points, limits=tuple(limits))


# -- the service -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: ``staff:<id>`` or ``api_key:<id>`` (``api.auth``), and whether they may approve."""

    name: str


class PromotionAdmin:
    """The admin side of promotions: every call is one transaction on ``conn`` (the caller's)."""

    def __init__(self, *, remote: bool, approval: bool, usages: Usages | None = None) -> None:
        self.remote = remote
        self.approval = approval
        self.usages = usages or Usages()

    def _local(self) -> None:
        if self.remote:
            raise ManagedRemotely(
                "promotions are managed in the remote core engine (KARTKA_ENGINE=http); change them there"
            )

    # -- writing ------------------------------------------------------------------------------------

    async def create(self, conn: Connection, promotion: Promotion, *, actor: str, now: datetime) -> PromotionView:
        self._local()
        body: Body = msgspec.to_builtins(promotion)
        promotion_id = body.get("id") or _generated_id(body)
        if promotion_id in RESERVED_IDS:
            raise InvalidInput(f"{promotion_id!r} is a reserved word, not a promotion id", field="id")
        body = {**body, "id": promotion_id}
        await _check_group(conn, body)
        try:
            await conn.execute(
                """
                INSERT INTO promotions (id, status, draft_revision, created_at, created_by, updated_at)
                VALUES ($1, 'draft', 1, $2, $3, $2)
                """,
                promotion_id,
                now,
                actor,
            )
        except asyncpg.UniqueViolationError as exc:
            raise PromotionExists(f"a promotion {promotion_id!r} exists already", field="id") from exc
        await _insert_revision(conn, promotion_id, 1, body, actor, now)
        await _audit(conn, promotion_id, actor, now, "created", revision=1, new_status="draft", changes=diff({}, body))
        return await self.get(conn, promotion_id, now)

    async def import_live(self, conn: Connection, promotion: Promotion, *, actor: str, now: datetime) -> PromotionView:
        """A promotion that ran before it was stored (the program file's): created and live at once, the
        audit saying it was imported."""
        view = await self.create(conn, promotion, actor=actor, now=now)
        row = await _lock(conn, view.id)
        return await self._approve(conn, row, 1, actor=actor, now=now, action="imported")

    async def update(
        self, conn: Connection, promotion_id: str, promotion: Promotion, *, actor: str, now: datetime
    ) -> PromotionView:
        """A new draft revision; a running promotion keeps its live revision until this one is approved."""
        self._local()
        body: Body = msgspec.to_builtins(promotion)
        if body.get("id") not in (None, promotion_id):
            raise InvalidInput(f"the body names promotion {body['id']!r}, the path {promotion_id!r}", field="id")
        body = {**body, "id": promotion_id}
        row = await _lock(conn, promotion_id)
        if row["status"] in ("archived", "ended"):  # an ended promotion stays ended: a new one takes its place
            raise PromotionState(f"promotion {promotion_id!r} is {row['status']}", status=row["status"])
        await _check_group(conn, body)
        latest = await conn.fetchrow(
            "SELECT revision, body FROM promotion_revisions WHERE promotion_id = $1 ORDER BY revision DESC LIMIT 1",
            promotion_id,
        )
        assert latest is not None, "a promotion has at least one revision"
        previous = await _body(conn, promotion_id, row["draft_revision"] or row["live_revision"])
        revision = latest["revision"] + 1
        await conn.execute(
            """
            UPDATE promotion_revisions SET state = 'superseded'
             WHERE promotion_id = $1 AND state IN ('draft', 'pending_approval', 'rejected')
            """,
            promotion_id,
        )
        await _insert_revision(conn, promotion_id, revision, body, actor, now)
        status = "draft" if row["status"] == "pending_approval" else row["status"]
        await conn.execute(
            "UPDATE promotions SET draft_revision = $2, status = $3, updated_at = $4 WHERE id = $1",
            promotion_id,
            revision,
            status,
            now,
        )
        await _audit(
            conn,
            promotion_id,
            actor,
            now,
            "edited",
            revision=revision,
            old_status=row["status"],
            new_status=status,
            changes=diff(previous, body),
        )
        return await self.get(conn, promotion_id, now)

    async def submit(self, conn: Connection, promotion_id: str, *, actor: str, now: datetime) -> PromotionView:
        """Ask for approval of the draft revision; without ``promotion_approval`` it goes live at once."""
        self._local()
        row = await _lock(conn, promotion_id)
        if row["status"] in ("archived", "ended"):
            raise PromotionState(f"promotion {promotion_id!r} is {row['status']}", status=row["status"])
        draft = await _draft(conn, promotion_id, row)
        if draft["state"] not in ("draft", "rejected"):
            raise PromotionState(f"revision {draft['revision']} is {draft['state']} already", status=row["status"])
        if not self.approval:
            return await self._approve(conn, row, draft["revision"], actor=actor, now=now, action="submitted")
        status = "pending_approval" if row["status"] == "draft" else row["status"]
        await conn.execute(
            """
            UPDATE promotion_revisions SET state = 'pending_approval', decided_by = NULL, decided_at = NULL,
                   reason = NULL
             WHERE promotion_id = $1 AND revision = $2
            """,
            promotion_id,
            draft["revision"],
        )
        await conn.execute(
            "UPDATE promotions SET status = $2, updated_at = $3 WHERE id = $1", promotion_id, status, now
        )
        await _audit(
            conn,
            promotion_id,
            actor,
            now,
            "submitted",
            revision=draft["revision"],
            old_status=row["status"],
            new_status=status,
        )
        return await self.get(conn, promotion_id, now)

    async def approve(self, conn: Connection, promotion_id: str, *, actor: str, now: datetime) -> PromotionView:
        self._local()
        row = await _lock(conn, promotion_id)
        draft = await self._decidable(conn, promotion_id, row, actor, "approve")
        return await self._approve(conn, row, draft["revision"], actor=actor, now=now, action="approved")

    async def reject(
        self, conn: Connection, promotion_id: str, reason: str, *, actor: str, now: datetime
    ) -> PromotionView:
        self._local()
        row = await _lock(conn, promotion_id)
        draft = await self._decidable(conn, promotion_id, row, actor, "reject")
        status = "draft" if row["status"] == "pending_approval" else row["status"]
        await conn.execute(
            """
            UPDATE promotion_revisions SET state = 'rejected', decided_by = $3, decided_at = $4, reason = $5
             WHERE promotion_id = $1 AND revision = $2
            """,
            promotion_id,
            draft["revision"],
            actor,
            now,
            reason,
        )
        await conn.execute(
            "UPDATE promotions SET status = $2, updated_at = $3 WHERE id = $1", promotion_id, status, now
        )
        await _audit(
            conn,
            promotion_id,
            actor,
            now,
            "rejected",
            revision=draft["revision"],
            old_status=row["status"],
            new_status=status,
            reason=reason,
        )
        return await self.get(conn, promotion_id, now)

    async def _decidable(
        self, conn: Connection, promotion_id: str, row: asyncpg.Record, actor: str, verb: str
    ) -> asyncpg.Record:
        draft = await _draft(conn, promotion_id, row)
        if draft["state"] != "pending_approval":
            raise PromotionState(
                f"revision {draft['revision']} of {promotion_id!r} is {draft['state']}, not pending approval",
                status=row["status"],
            )
        if draft["author"] == actor:
            raise FourEyes(f"the author of revision {draft['revision']} may not {verb} it: another admin must")
        if not actor.startswith("staff:"):
            # A key is no person: whoever holds two admin keys would be both pairs of eyes.
            raise FourEyes(f"only a staff member signed in as an admin may {verb} a promotion, not an API key")
        return draft

    async def _approve(
        self, conn: Connection, row: asyncpg.Record, revision: int, *, actor: str, now: datetime, action: str
    ) -> PromotionView:
        promotion_id = row["id"]
        status = row["status"] if row["status"] == "paused" else "active"
        await conn.execute(
            """
            UPDATE promotion_revisions SET state = 'approved', decided_by = $3, decided_at = $4, reason = NULL
             WHERE promotion_id = $1 AND revision = $2
            """,
            promotion_id,
            revision,
            actor,
            now,
        )
        await conn.execute(
            """
            UPDATE promotions SET live_revision = $2, draft_revision = NULL, status = $3, updated_at = $4
             WHERE id = $1
            """,
            promotion_id,
            revision,
            status,
            now,
        )
        previous = await _body(conn, promotion_id, row["live_revision"])
        await _audit(
            conn,
            promotion_id,
            actor,
            now,
            action,
            revision=revision,
            old_status=row["status"],
            new_status=status,
            changes=diff(previous, await _body(conn, promotion_id, revision)) if previous else (),
        )
        await catalog_changed(conn)
        return await self.get(conn, promotion_id, now)

    async def pause(self, conn: Connection, promotion_id: str, *, actor: str, now: datetime) -> PromotionView:
        return await self._move(conn, promotion_id, "paused", ("active",), actor=actor, now=now)

    async def resume(self, conn: Connection, promotion_id: str, *, actor: str, now: datetime) -> PromotionView:
        return await self._move(conn, promotion_id, "resumed", ("paused",), actor=actor, now=now)

    async def end(self, conn: Connection, promotion_id: str, *, actor: str, now: datetime) -> PromotionView:
        return await self._move(conn, promotion_id, "ended", ("active", "paused"), actor=actor, now=now)

    async def archive(self, conn: Connection, promotion_id: str, *, actor: str, now: datetime) -> PromotionView:
        """Hide a promotion nobody will run again (a draft given up, or one that has ended)."""
        return await self._move(
            conn, promotion_id, "archived", ("draft", "pending_approval", "ended"), actor=actor, now=now
        )

    async def _move(
        self, conn: Connection, promotion_id: str, action: str, allowed: Iterable[str], *, actor: str, now: datetime
    ) -> PromotionView:
        self._local()
        row = await _lock(conn, promotion_id)
        target = {"paused": "paused", "resumed": "active", "ended": "ended", "archived": "archived"}[action]
        shown = await _shown(conn, row, now)
        allowed = set(allowed)
        fits = row["status"] in allowed
        if action == "paused" and shown is not Status.ACTIVE and shown is not Status.SCHEDULED:
            fits = False
        if action == "archived" and shown is Status.ENDED:
            fits = True  # one whose ends_at has passed
        if not fits:
            raise PromotionState(f"a promotion that is {shown} cannot be {action}", status=str(shown))
        await conn.execute(
            "UPDATE promotions SET status = $2, updated_at = $3 WHERE id = $1", promotion_id, target, now
        )
        if action == "archived":
            await conn.execute(
                """
                UPDATE promotion_revisions SET state = 'superseded'
                 WHERE promotion_id = $1 AND state IN ('draft', 'pending_approval', 'rejected')
                """,
                promotion_id,
            )
            await conn.execute("UPDATE promotions SET draft_revision = NULL WHERE id = $1", promotion_id)
        await _audit(
            conn,
            promotion_id,
            actor,
            now,
            action,
            revision=row["live_revision"],
            old_status=str(shown),
            new_status=target,
        )
        if row["live_revision"] is not None:
            await catalog_changed(conn)
        return await self.get(conn, promotion_id, now)

    # -- reading ------------------------------------------------------------------------------------

    async def get(self, conn: Connection, promotion_id: str, now: datetime) -> PromotionView:
        self._local()
        row = await conn.fetchrow(
            "SELECT id, status, live_revision, draft_revision, created_at, created_by, updated_at "
            "FROM promotions WHERE id = $1",
            promotion_id,
        )
        if row is None:
            raise NotFound(f"no promotion {promotion_id!r}", field="id")
        revisions = {
            r["revision"]: r
            for r in await conn.fetch(
                """
                SELECT revision, state, body, author, created_at, decided_by, decided_at, reason
                  FROM promotion_revisions WHERE promotion_id = $1 AND revision = ANY($2::integer[])
                """,
                promotion_id,
                [r for r in (row["live_revision"], row["draft_revision"]) if r is not None],
            )
        }
        live = _revision(revisions[row["live_revision"]]) if row["live_revision"] is not None else None
        draft = _revision(revisions[row["draft_revision"]]) if row["draft_revision"] is not None else None
        newest = draft or live
        assert newest is not None, "a promotion has a live or a draft revision"
        return PromotionView(
            id=row["id"],
            status=await _shown(conn, row, now),
            revision=newest.revision,
            title=dict(newest.promotion.title),
            live=live,
            draft=draft,
            usage=await self.usages.of(conn, promotion_id, live.promotion if live else None),
            created_at=row["created_at"],
            created_by=row["created_by"],
            updated_at=row["updated_at"],
        )

    async def find(
        self, conn: Connection, *, status: Status | None, q: str | None, limit: int, now: datetime
    ) -> list[PromotionSummary]:
        self._local()
        rows = await conn.fetch(
            f"""
            SELECT p.id, p.updated_at, p.draft_revision IS NOT NULL AS has_draft, r.revision, r.body,
                   r.starts_at, r.ends_at, {_SHOWN} AS shown
              FROM promotions p
              JOIN promotion_revisions r
                ON r.promotion_id = p.id AND r.revision = coalesce(p.draft_revision, p.live_revision)
              LEFT JOIN promotion_revisions l ON l.promotion_id = p.id AND l.revision = p.live_revision
             WHERE ($1::text IS NULL AND p.status <> 'archived' OR {_SHOWN} = $1)
               AND ($2::text IS NULL OR p.id ILIKE $2 OR r.body->>'title' ILIKE $2)
             ORDER BY p.updated_at DESC, p.id
             LIMIT $3
            """,
            str(status) if status else None,
            f"%{_like_escape(q)}%" if q else None,
            limit,
            now,
        )
        return [
            PromotionSummary(
                id=row["id"],
                status=Status(row["shown"]),
                revision=row["revision"],
                title=row["body"].get("title") or {},
                group=row["body"].get("group") or DEFAULT_GROUP,
                starts_at=row["starts_at"],
                ends_at=row["ends_at"],
                has_draft=row["has_draft"],
                updated_at=row["updated_at"],
            )
            for row in rows
        ]

    async def history(self, conn: Connection, promotion_id: str) -> list[HistoryEntry]:
        self._local()
        if not await conn.fetchval("SELECT EXISTS (SELECT FROM promotions WHERE id = $1)", promotion_id):
            raise NotFound(f"no promotion {promotion_id!r}", field="id")
        rows = await conn.fetch(
            """
            SELECT a.at, a.actor, s.username, a.action, a.revision, a.old_status, a.new_status, a.changes, a.reason
              FROM promotion_audit a
              LEFT JOIN staff s ON a.actor = 'staff:' || s.id::text
             WHERE a.promotion_id = $1
             ORDER BY a.id
            """,
            promotion_id,
        )
        return [
            HistoryEntry(
                at=row["at"],
                by=row["actor"],
                by_name=row["username"],
                action=row["action"],
                revision=row["revision"],
                old_status=row["old_status"],
                new_status=row["new_status"],
                changes=tuple(msgspec.convert(row["changes"], tuple[Change, ...])),
                reason=row["reason"],
            )
            for row in rows
        ]

    # -- groups and offers --------------------------------------------------------------------------

    async def put_group(
        self, conn: Connection, group_id: str, data: Group, *, actor: str, now: datetime
    ) -> PromotionGroup:
        self._local()
        old = await conn.fetchrow(
            "SELECT mode, priority, max_discount_bp FROM promotion_groups WHERE id = $1 FOR UPDATE", group_id
        )
        await conn.execute(
            """
            INSERT INTO promotion_groups (id, mode, priority, max_discount_bp, updated_at) VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (id) DO UPDATE SET mode = EXCLUDED.mode, priority = EXCLUDED.priority,
                   max_discount_bp = EXCLUDED.max_discount_bp, updated_at = EXCLUDED.updated_at
            """,
            group_id,
            data.mode,
            data.priority,
            data.max_discount_bp,
            now,
        )
        before: Body = dict(old) if old else (msgspec.to_builtins(DEFAULT) if group_id == DEFAULT_GROUP else {})
        before.pop("id", None)
        after = {"mode": data.mode, "priority": data.priority, "max_discount_bp": data.max_discount_bp}
        await conn.execute(
            "INSERT INTO promotion_audit (group_id, at, actor, action, changes) VALUES ($1, $2, $3, $4, $5)",
            group_id,
            now,
            actor,
            "group-created" if not before else "group-changed",
            msgspec.to_builtins(diff(before, after)),
        )
        await catalog_changed(conn)
        return PromotionGroup(id=group_id, mode=data.mode, priority=data.priority, max_discount_bp=data.max_discount_bp)

    async def groups(self, conn: Connection) -> list[PromotionGroup]:
        self._local()
        return await load_groups(conn)

    async def grant_offer(
        self, conn: Connection, customer_id: UUID, data: OfferInput, *, actor: str, now: datetime
    ) -> Offer:
        """A personal offer: the customer may use promotion ``data.promotion`` until ``valid_until``."""
        self._local()
        if not await conn.fetchval("SELECT EXISTS (SELECT FROM customers WHERE id = $1)", customer_id):
            raise NotFound("no such customer", field="customer_id")
        if not await conn.fetchval("SELECT EXISTS (SELECT FROM promotions WHERE id = $1)", data.promotion):
            raise InvalidInput(f"no promotion {data.promotion!r}", field="promotion")
        if data.valid_until <= now:
            raise InvalidInput("valid_until has passed", field="valid_until")
        await conn.execute(
            """
            INSERT INTO promotion_offers (customer_id, promotion_id, valid_until, granted_by, granted_at)
            VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (customer_id, promotion_id) DO UPDATE SET valid_until = EXCLUDED.valid_until,
                   granted_by = EXCLUDED.granted_by, granted_at = EXCLUDED.granted_at
            """,
            customer_id,
            data.promotion,
            data.valid_until,
            actor,
            now,
        )
        await _audit(conn, data.promotion, actor, now, "offer-granted", reason=f"customer {customer_id}")
        return Offer(
            customer_id=customer_id,
            promotion=data.promotion,
            valid_until=data.valid_until,
            granted_by=actor,
            granted_at=now,
        )

    async def offers(self, conn: Connection, customer_id: UUID, now: datetime) -> list[Offer]:
        self._local()
        rows = await conn.fetch(
            """
            SELECT customer_id, promotion_id AS promotion, valid_until, granted_by, granted_at
              FROM promotion_offers WHERE customer_id = $1 AND valid_until > $2 ORDER BY valid_until
            """,
            customer_id,
            now,
        )
        return [msgspec.convert(dict(row), Offer) for row in rows]


async def load_groups(conn: Connection) -> list[PromotionGroup]:
    rows = await conn.fetch("SELECT id, mode, priority, max_discount_bp FROM promotion_groups")
    groups = {row["id"]: msgspec.convert(dict(row), PromotionGroup) for row in rows}
    groups.setdefault(DEFAULT_GROUP, DEFAULT)
    return sorted(groups.values(), key=lambda g: (g.priority, g.id))


async def catalog_changed(conn: Connection) -> int:
    """Move the catalog version and tell every API process, both at this transaction's commit."""
    version: int = await conn.fetchval(
        """
        INSERT INTO promotion_catalog (version) VALUES (nextval('promotion_catalog_versions'))
        ON CONFLICT (singleton) DO UPDATE SET version = EXCLUDED.version
        RETURNING version
        """
    )
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, str(version))
    return version


# -- the audit's readable diff -----------------------------------------------------------------------


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"when": {"ends_at": x}}`` → ``{"when.ends_at": x}``; lists stay whole values."""
    if isinstance(value, Mapping) and (value or not prefix):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: _plain(value)}


def _plain(value: Any) -> Any:
    """A struct's tuples as the lists its stored JSON holds, so an unchanged list is no change."""
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    return value


def diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[Change, ...]:
    """Every field that differs between two promotion objects, old → new, in a stable order."""
    before, after = flatten(old), flatten(new)
    return tuple(
        Change(field=key, old=before.get(key), new=after.get(key))
        for key in sorted(before.keys() | after.keys())
        if before.get(key) != after.get(key)
    )


# -- helpers ---------------------------------------------------------------------------------------

#: The shown status in SQL (``p`` the promotion, ``l`` its live revision, ``$4`` now); see the module.
_SHOWN: Final = """
    CASE WHEN p.status = 'active' AND l.starts_at > $4 THEN 'scheduled'
         WHEN p.status = 'active' AND l.ends_at <= $4 THEN 'ended'
         ELSE p.status END
"""


async def _shown(conn: Connection, row: asyncpg.Record, now: datetime) -> Status:
    if row["status"] != "active":
        return Status(row["status"])
    times = await conn.fetchrow(
        "SELECT starts_at, ends_at FROM promotion_revisions WHERE promotion_id = $1 AND revision = $2",
        row["id"],
        row["live_revision"],
    )
    assert times is not None
    if times["starts_at"] is not None and now < times["starts_at"]:
        return Status.SCHEDULED
    if times["ends_at"] is not None and now >= times["ends_at"]:
        return Status.ENDED
    return Status.ACTIVE


async def _lock(conn: Connection, promotion_id: str) -> asyncpg.Record:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT id, status, live_revision, draft_revision FROM promotions WHERE id = $1 FOR UPDATE", promotion_id
    )
    if row is None:
        raise NotFound(f"no promotion {promotion_id!r}", field="id")
    return row


async def _draft(conn: Connection, promotion_id: str, row: asyncpg.Record) -> asyncpg.Record:
    if row["draft_revision"] is None:
        raise PromotionState(f"promotion {promotion_id!r} has no draft revision", status=row["status"])
    draft: asyncpg.Record | None = await conn.fetchrow(
        "SELECT revision, state, author FROM promotion_revisions WHERE promotion_id = $1 AND revision = $2",
        promotion_id,
        row["draft_revision"],
    )
    assert draft is not None
    return draft


async def _body(conn: Connection, promotion_id: str, revision: int | None) -> Body:
    if revision is None:
        return {}
    body: Body | None = await conn.fetchval(
        "SELECT body FROM promotion_revisions WHERE promotion_id = $1 AND revision = $2", promotion_id, revision
    )
    return body or {}


async def _insert_revision(
    conn: Connection, promotion_id: str, revision: int, body: Body, author: str, now: datetime
) -> None:
    when = body.get("when") or {}
    await conn.execute(
        """
        INSERT INTO promotion_revisions (promotion_id, revision, body, starts_at, ends_at, author, created_at, state)
        VALUES ($1, $2, $3, $4, $5, $6, $7, 'draft')
        """,
        promotion_id,
        revision,
        body,
        _time(when.get("starts_at")),
        _time(when.get("ends_at")),
        author,
        now,
    )


def _time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return msgspec.convert(value, datetime)


async def _check_group(conn: Connection, body: Body) -> None:
    group = body.get("group") or DEFAULT_GROUP
    if group != DEFAULT_GROUP and not await conn.fetchval(
        "SELECT EXISTS (SELECT FROM promotion_groups WHERE id = $1)", group
    ):
        raise InvalidInput(
            f"no promotion group {group!r}: create it with PUT /v1/admin/promotion-groups/{{id}}", field="group"
        )


async def _audit(
    conn: Connection,
    promotion_id: str,
    actor: str,
    now: datetime,
    action: str,
    *,
    revision: int | None = None,
    old_status: str | None = None,
    new_status: str | None = None,
    changes: Iterable[Change] = (),
    reason: str | None = None,
) -> None:
    await conn.execute(
        """
        INSERT INTO promotion_audit (promotion_id, at, actor, action, revision, old_status, new_status, changes, reason)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        """,
        promotion_id,
        now,
        actor,
        action,
        revision,
        old_status,
        new_status,
        msgspec.to_builtins(tuple(changes)),
        reason,
    )


def _revision(row: asyncpg.Record) -> Revision:
    return Revision(
        revision=row["revision"],
        state=row["state"],
        promotion=msgspec.convert(row["body"], Promotion),
        author=row["author"],
        created_at=row["created_at"],
        decided_by=row["decided_by"],
        decided_at=row["decided_at"],
        reason=row["reason"],
    )


def _generated_id(body: Body) -> str:
    """An id for a promotion the client did not name: a slug of its English (or any) title, made unique
    by a short random tail."""
    title = body.get("title") or {}
    text = title.get("en") or next(iter(title.values()), "") if isinstance(title, dict) else ""
    slug = "".join(c if c.isascii() and c.isalnum() else "-" for c in str(text).lower())
    slug = "-".join(part for part in slug.split("-") if part)[:48] or "promotion"
    return f"{slug}-{secrets.token_hex(3)}"


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
