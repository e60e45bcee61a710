"""Receipts without a card: what tills and the online shop sell to shoppers who show no card.

Kartka knows a purchase with a card from its order (``wallet.orders``); the share of purchases that are
identified needs the others too. A receipt is recorded once, idempotently by ``Idempotency-Key`` as an
order is (the same key and body replay the stored answer, the same key with another body or the same
``receipt_id`` under another key is 409), and may be refunded in parts, never beyond its total. Receipt
ids are the till's own numbering, unique within a channel and store; a receipt carrying the id of an order
of the same store and channel is that order's purchase and the KPIs count it once (``kpis_rollup``).
History is back-filled in bulk by :class:`ReceiptImporter`.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import AsyncIterable, AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Final, Literal

import asyncpg
import msgspec

from kartka.bounds import Instant, check_instant
from kartka.clock import Clock
from kartka.db import Connection, Pool
from kartka.errors import Conflict, Forbidden, InvalidInput, NotFound
from kartka.keys import CODE_PATTERN
from wallet.importer import BATCH_SIZE, Format, ImportReport, RowError, numbered_lines
from wallet.pricing import Category, Quantity, Sku, UnitPrice
from wallet.program import Program

Channel = Literal["pos", "online"]
#: How far ahead of our clock a till's clock may run before its receipt counts as "future".
CLOCK_SKEW: Final = timedelta(minutes=5)
#: Any receipt, however large: far beyond a real one, well within bigint.
Money = Annotated[int, msgspec.Meta(ge=0, le=10**12)]
ExternalId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:/-]+$")]
CSV_COLUMNS: Final = ("receipt_id", "store", "terminal", "purchased_at", "total")


class ReceiptConflict(Conflict):
    code = "receipt-conflict"


class IdempotencyConflict(Conflict):
    code = "idempotency-key-reused"


class ReceiptNotFound(NotFound):
    code = "receipt-not-found"


class RefundTooLarge(Conflict):
    code = "return-exceeds-sale"


class ReceiptLine(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    sku: Sku
    qty: Quantity
    unit_price: UnitPrice
    discount: Money = 0
    name: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    category: Category | None = None

    def __post_init__(self) -> None:
        if self.discount > self.qty * self.unit_price:
            raise ValueError("a line's discount may not exceed qty × unit_price")


class ReceiptInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    receipt_id: ExternalId
    total: Money
    """What the shopper paid (minor units), after discounts."""
    purchased_at: Instant | None = None
    """When the purchase happened (RFC 3339 with offset); an offline till sends it later. Default: now."""
    lines: Annotated[tuple[ReceiptLine, ...], msgspec.Meta(max_length=500)] | None = None
    """The items, when the till sends them: their totals after discounts must add up to ``total``."""

    def __post_init__(self) -> None:
        check_instant(self.purchased_at, "purchased_at")
        if self.lines is not None:
            paid = sum(line.qty * line.unit_price - line.discount for line in self.lines)
            if paid != self.total:
                raise ValueError(f"the lines add up to {paid}, not to total {self.total}")


class ReceiptRefundInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    refund_id: ExternalId
    amount: Annotated[int, msgspec.Meta(ge=1, le=10**12)]
    """Money given back (minor units); all refunds of a receipt together never exceed its total."""


class Receipt(msgspec.Struct, frozen=True):
    receipt_id: str
    channel: Channel
    store: str | None
    terminal: str | None
    total: int
    refunded_amount: int
    purchased_at: datetime


class ReceiptRefund(msgspec.Struct, frozen=True):
    refund_id: str
    receipt_id: str
    amount: int
    refunded_amount: int
    """All refunds of the receipt so far, this one included."""


class Stored(msgspec.Struct, frozen=True):
    """A recorded answer, as stored; ``replayed`` tells a retry from the first call."""

    body: bytes
    replayed: bool


class Scope(msgspec.Struct, frozen=True):
    """Who records: the channel (tills or the online shop), the key's store and terminal."""

    channel: Channel
    store: str | None
    terminal: str | None
    api_key_id: str | None


_encoder = msgspec.json.Encoder()


def _request_hash(kind: str, body: msgspec.Struct) -> bytes:
    return hashlib.sha256(kind.encode() + b"\0" + _encoder.encode(body)).digest()


_SEEN = """
SELECT id, api_key_id, idempotency_key, request_hash, response::text AS response FROM {table}
 WHERE (channel = $1 AND coalesce(store, '') = $2 AND {column} = $3) OR (api_key_id = $4 AND idempotency_key = $5)
 LIMIT 1
"""


class ReceiptService:
    def __init__(self, *, program: Program, clock: Clock) -> None:
        self.program = program
        self.clock = clock

    async def record(self, conn: Connection, data: ReceiptInput, *, scope: Scope, idempotency_key: str) -> Stored:
        """Record a receipt without a card; a retry gets the stored answer."""
        now = self.clock.now()
        purchased_at = _purchase_time(data.purchased_at, now, self.program.offline_days)
        if scope.channel == "pos" and scope.store is None:  # pragma: no cover - till keys always have a store
            raise Forbidden("a till key without a store cannot record receipts")
        digest = _request_hash("receipt", data)
        replay = await self._seen(conn, "receipts", "receipt", scope, data.receipt_id, digest, idempotency_key)
        if replay is not None:
            return replay
        result = Receipt(
            receipt_id=data.receipt_id,
            channel=scope.channel,
            store=scope.store,
            terminal=scope.terminal,
            total=data.total,
            refunded_amount=0,
            purchased_at=purchased_at,
        )
        body = _encoder.encode(result)
        lines = data.lines or ()
        try:
            await conn.execute(
                """
                WITH r AS (
                    INSERT INTO receipts (receipt_id, channel, store, terminal, api_key_id, idempotency_key,
                                          request_hash, purchased_at, total, response)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::text::json)
                    RETURNING id
                )
                INSERT INTO receipt_lines (receipt_pk, line_no, sku, name, category, qty, unit_price, discount)
                SELECT r.id, l.n - 1, l.sku, l.name, l.category, l.qty, l.unit_price, l.discount
                  FROM r, unnest($11::text[], $12::text[], $13::text[], $14::int[], $15::bigint[], $16::bigint[])
                          WITH ORDINALITY AS l (sku, name, category, qty, unit_price, discount, n)
                """,
                data.receipt_id,
                scope.channel,
                scope.store,
                scope.terminal,
                scope.api_key_id,
                idempotency_key,
                digest,
                purchased_at,
                data.total,
                body.decode(),
                [line.sku for line in lines],
                [line.name for line in lines],
                [line.category for line in lines],
                [line.qty for line in lines],
                [line.unit_price for line in lines],
                [line.discount for line in lines],
            )
        except asyncpg.UniqueViolationError as exc:  # another request took this id or key a moment ago
            raise _racing_conflict(exc, "receipt", data.receipt_id) from exc
        return Stored(body=body, replayed=False)

    async def refund(
        self, conn: Connection, receipt_id: str, data: ReceiptRefundInput, *, scope: Scope, idempotency_key: str
    ) -> Stored:
        """Refund part of a receipt of the caller's own store and channel; never more than is left of it."""
        digest = _request_hash(f"refund:{receipt_id}", data)
        receipt = await conn.fetchrow(
            """
            SELECT id, total, refunded_amount FROM receipts
             WHERE channel = $1 AND coalesce(store, '') = $2 AND receipt_id = $3
               FOR UPDATE
            """,
            scope.channel,
            scope.store or "",
            receipt_id,
        )
        if receipt is None:
            where = "online" if scope.channel == "online" else f"at store {scope.store}"
            raise ReceiptNotFound(f"no receipt {receipt_id!r} {where}", field="receipt_id")
        replay = await self._seen(conn, "receipt_refunds", "refund", scope, data.refund_id, digest, idempotency_key)
        if replay is not None:
            return replay
        left = receipt["total"] - receipt["refunded_amount"]
        if data.amount > left:
            raise RefundTooLarge(
                f"cannot refund {data.amount} of receipt {receipt_id}: {left} of its {receipt['total']} is left",
                field="amount",
                refundable=left,
            )
        refunded = receipt["refunded_amount"] + data.amount
        result = ReceiptRefund(
            refund_id=data.refund_id, receipt_id=receipt_id, amount=data.amount, refunded_amount=refunded
        )
        body = _encoder.encode(result)
        try:
            await conn.execute(
                """
                WITH r AS (
                    INSERT INTO receipt_refunds (refund_id, receipt_pk, channel, store, api_key_id, idempotency_key,
                                                 request_hash, amount, response)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text::json)
                )
                UPDATE receipts SET refunded_amount = refunded_amount + $8 WHERE id = $2
                """,
                data.refund_id,
                receipt["id"],
                scope.channel,
                scope.store,
                scope.api_key_id,
                idempotency_key,
                digest,
                data.amount,
                body.decode(),
            )
        except asyncpg.UniqueViolationError as exc:
            raise _racing_conflict(exc, "refund", data.refund_id) from exc
        return Stored(body=body, replayed=False)

    async def _seen(
        self,
        conn: Connection,
        table: str,
        what: Literal["receipt", "refund"],
        scope: Scope,
        external_id: str,
        digest: bytes,
        key: str,
    ) -> Stored | None:
        """The stored answer to a retry; 409 for a reused key or id; ``None`` for a new request."""
        previous = await conn.fetchrow(
            _SEEN.format(table=table, column=f"{what}_id"),
            scope.channel,
            scope.store or "",
            external_id,
            scope.api_key_id,
            key,
        )
        if previous is None:
            return None
        same_key = previous["api_key_id"] == scope.api_key_id and previous["idempotency_key"] == key
        if same_key and bytes(previous["request_hash"]) == digest:
            return Stored(body=previous["response"].encode(), replayed=True)
        if same_key:
            raise IdempotencyConflict(
                f"this Idempotency-Key was used for another {what} request; send a new key for a new {what}",
                field="Idempotency-Key",
            )
        raise ReceiptConflict(
            f"{what} {external_id} is already recorded under another Idempotency-Key", field=f"{what}_id"
        )


def _purchase_time(asked: datetime | None, now: datetime, offline_days: int) -> datetime:
    purchased_at = (asked or now).astimezone(UTC)
    if purchased_at > now + CLOCK_SKEW:
        raise InvalidInput("purchased_at may not be in the future", field="purchased_at")
    if purchased_at < now - timedelta(days=offline_days):
        raise InvalidInput(
            f"purchased_at is more than {offline_days} days ago (offline_days); "
            "back-fill older receipts with POST /v1/integrations/receipts/import",
            field="purchased_at",
        )
    return min(purchased_at, now)


def _racing_conflict(exc: asyncpg.UniqueViolationError, what: str, external_id: str) -> Conflict:
    """Two requests raced past the replay check; the database let one in. Say which rule the other broke."""
    if (exc.constraint_name or "").endswith("_key"):
        return IdempotencyConflict(
            f"this Idempotency-Key is being used for another {what} request; send a new key for a new {what}",
            field="Idempotency-Key",
        )
    return ReceiptConflict(
        f"{what} {external_id} is already recorded under another Idempotency-Key", field=f"{what}_id"
    )


# -- bulk back-fill ---------------------------------------------------------------------------------


class ImportedReceipt(msgspec.Struct, frozen=True):
    line: int
    receipt_id: str
    store: str | None
    terminal: str | None
    purchased_at: datetime
    total: int


class _Row(msgspec.Struct, forbid_unknown_fields=True):
    receipt_id: str
    purchased_at: str
    total: int | str
    store: str | None = None
    terminal: str | None = None


_row_decoder = msgspec.json.Decoder(_Row)
_id_check = msgspec.json.Decoder(ExternalId)


def _valid(number: int, row: _Row, *, channel: Channel, key_store: str | None, now: datetime) -> ImportedReceipt:
    """One row checked, or ``InvalidInput`` naming what is wrong with it."""
    try:
        receipt_id = _id_check.decode(_encoder.encode(row.receipt_id))
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"receipt_id: {exc}".replace(" at `$`", ""), field="receipt_id") from exc
    store = row.store or None
    terminal = row.terminal or None
    for name, value in (("store", store), ("terminal", terminal)):
        if value is not None and not _code(value):
            raise InvalidInput(f"{name}: letters, digits, '_', '.', '-' only, at most 64", field=name)
    if key_store is not None:
        if store not in (None, key_store):
            raise InvalidInput(f"store: this key imports for store {key_store} only", field="store")
        store = key_store
    if channel == "pos" and store is None:
        raise InvalidInput("store: a till's receipt names its store", field="store")
    try:
        total = int(row.total)
    except ValueError:
        raise InvalidInput("total: a whole number of minor units", field="total") from None
    if not 0 <= total <= 10**12:
        raise InvalidInput("total: between 0 and 10^12 minor units", field="total")
    try:
        purchased_at = datetime.fromisoformat(row.purchased_at)
    except ValueError:
        raise InvalidInput("purchased_at: RFC 3339 with an offset", field="purchased_at") from None
    if purchased_at.tzinfo is None:
        raise InvalidInput("purchased_at: RFC 3339 with an offset", field="purchased_at")
    try:
        check_instant(purchased_at, "purchased_at")
    except ValueError as exc:
        raise InvalidInput(str(exc), field="purchased_at") from None
    if purchased_at > now + CLOCK_SKEW:
        raise InvalidInput("purchased_at may not be in the future", field="purchased_at")
    return ImportedReceipt(number, receipt_id, store, terminal, purchased_at.astimezone(UTC), total)


def _code(value: str) -> bool:
    return re.fullmatch(CODE_PATTERN, value) is not None


async def _records(chunks: AsyncIterable[bytes], fmt: Format) -> AsyncIterator[tuple[int, _Row | RowError]]:
    header: list[str] | None = None
    delimiter = ","
    async for number, line in numbered_lines(chunks):
        if isinstance(line, RowError):
            yield number, line
            continue
        if not line.strip():
            continue
        if fmt is Format.NDJSON:
            try:
                yield number, _row_decoder.decode(line)
            except msgspec.DecodeError as exc:
                yield number, RowError(number, str(exc).replace("`$.", "`"))
            continue
        if header is None:
            delimiter = ";" if line.count(";") > line.count(",") else ","
            header = [h.strip().lower() for h in next(csv.reader([line], delimiter=delimiter))]
            required = {"receipt_id", "purchased_at", "total"}
            if set(header) - set(CSV_COLUMNS) or required - set(header) or len(set(header)) != len(header):
                raise InvalidInput(
                    "the first CSV line must be a header naming the columns receipt_id, purchased_at and total, "
                    f"and optionally store and terminal (got {line[:200]!r})",
                    field="header",
                )
            continue
        try:
            values = next(csv.reader([line], delimiter=delimiter, strict=True))
        except csv.Error as exc:
            yield number, RowError(number, f"not a CSV record: {exc}")
            continue
        if len(values) != len(header):
            yield number, RowError(number, f"expected {len(header)} fields ({', '.join(header)}), got {len(values)}")
            continue
        fields = dict(zip(header, values, strict=True))
        yield (
            number,
            _Row(
                receipt_id=fields["receipt_id"].strip(),
                purchased_at=fields["purchased_at"].strip(),
                total=fields["total"].strip(),
                store=(fields.get("store") or "").strip() or None,
                terminal=(fields.get("terminal") or "").strip() or None,
            ),
        )


_INSERT_IMPORTED = """
INSERT INTO receipts (receipt_id, channel, store, terminal, api_key_id, purchased_at, total, imported)
SELECT i.receipt_id, $1, i.store, i.terminal, $2, i.purchased_at, i.total, true
  FROM unnest($3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::bigint[])
       AS i (receipt_id, store, terminal, purchased_at, total)
ON CONFLICT (channel, coalesce(store, ''), receipt_id) DO NOTHING
"""


class ReceiptImporter:
    """Back-fill from the till system: CSV or NDJSON, streamed, written in batches of set-based inserts.

    A receipt already recorded (the same id in the same store and channel) is counted as existing and
    left as it is, so an import can be sent again after a failure. A bad row is reported by line number
    and never stops the good ones.
    """

    def __init__(self, pool: Pool, clock: Clock) -> None:
        self.pool = pool
        self.clock = clock

    async def run(
        self, chunks: AsyncIterable[bytes], fmt: Format, *, channel: Channel, store: str | None, api_key_id: str | None
    ) -> ImportReport:
        report = ImportReport()
        batch: dict[tuple[str | None, str], ImportedReceipt] = {}
        now = self.clock.now()
        async for number, record in _records(chunks, fmt):
            if isinstance(record, RowError):
                report.add_error(record)
                continue
            try:
                row = _valid(number, record, channel=channel, key_store=store, now=now)
            except InvalidInput as exc:
                report.add_error(RowError(number, exc.message))
                continue
            if (row.store, row.receipt_id) in batch:
                report.existing += 1  # the same receipt twice in a file: the first one stands
                continue
            batch[row.store, row.receipt_id] = row
            if len(batch) >= BATCH_SIZE:
                await self._write(list(batch.values()), channel, api_key_id, report)
                batch = {}
        if batch:
            await self._write(list(batch.values()), channel, api_key_id, report)
        return report

    async def _write(
        self, rows: list[ImportedReceipt], channel: Channel, api_key_id: str | None, report: ImportReport
    ) -> None:
        rows.sort(key=lambda r: (r.store or "", r.receipt_id))  # one lock order for concurrent imports
        async with self.pool.acquire() as conn, conn.transaction():
            status = await conn.execute(
                _INSERT_IMPORTED,
                channel,
                api_key_id,
                [r.receipt_id for r in rows],
                [r.store for r in rows],
                [r.terminal for r in rows],
                [r.purchased_at for r in rows],
                [r.total for r in rows],
            )
        created = int(status.split()[-1])
        report.created += created
        report.existing += len(rows) - created
