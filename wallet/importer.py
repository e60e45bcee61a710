"""Bulk import of customers from CSV or NDJSON, streamed: any size, constant memory.

Input is read chunk by chunk, split into records, validated one by one and written in batches of
set-based statements (one ``INSERT ... SELECT FROM unnest(...)`` per table per batch), each batch in
its own transaction. A bad row is reported by line number and never stops the good ones; a file-level
problem (unknown CSV columns) is refused before anything is written.
"""

from __future__ import annotations

import codecs
import csv
import enum
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Final

import asyncpg
import msgspec

from kartka.db import Pool
from kartka.errors import DomainError, InvalidInput
from wallet.cards import generate_card_number
from wallet.customers import Origin
from wallet.phones import normalize_phone
from wallet.profile import clean_email, clean_name

BATCH_SIZE: Final = 1_000
MAX_LINE_BYTES: Final = 64 * 1024
MAX_REPORTED_ERRORS: Final = 1_000
CSV_COLUMNS: Final = ("phone", "name", "email")


class Format(enum.StrEnum):
    CSV = "csv"
    NDJSON = "ndjson"


class ImportRow(msgspec.Struct, forbid_unknown_fields=True):
    phone: str
    name: str | None = None
    email: str | None = None


class ValidRow(msgspec.Struct, frozen=True):
    line: int
    phone: str
    name: str | None
    email: str | None


class RowError(msgspec.Struct, frozen=True):
    line: int
    error: str


class ImportReport(msgspec.Struct):
    created: int = 0
    existing: int = 0
    invalid: int = 0
    invalid_rows: list[RowError] = msgspec.field(default_factory=list)
    invalid_rows_truncated: bool = False

    def add_error(self, error: RowError) -> None:
        self.invalid += 1
        if len(self.invalid_rows) < MAX_REPORTED_ERRORS:
            self.invalid_rows.append(error)
        else:
            self.invalid_rows_truncated = True


# -- reading ------------------------------------------------------------------------------------


async def _lines(chunks: AsyncIterable[bytes]) -> AsyncIterator[tuple[int, str | RowError]]:
    """Physical lines (without the newline), numbered from 1, decoded as UTF-8 (a BOM is dropped).

    A line longer than ``MAX_LINE_BYTES`` becomes a :class:`RowError` and is skipped to its end, so a
    file without newlines cannot exhaust memory.
    """
    buffer = b""
    number = 0
    skipping = False
    first = True
    async for chunk in chunks:
        buffer += chunk
        while True:
            cut = buffer.find(b"\n")
            if cut < 0:
                if len(buffer) > MAX_LINE_BYTES:
                    if not skipping:
                        number += 1
                        yield number, RowError(number, f"line is longer than {MAX_LINE_BYTES} bytes")
                        skipping = True
                    buffer = b""
                break
            raw, buffer = buffer[:cut], buffer[cut + 1 :]
            if skipping:
                skipping = False
                continue
            number += 1
            if first:
                raw = raw.removeprefix(codecs.BOM_UTF8)
                first = False
            if len(raw) > MAX_LINE_BYTES:
                yield number, RowError(number, f"line is longer than {MAX_LINE_BYTES} bytes")
                continue
            yield number, _decode(number, raw)
    if buffer and not skipping:
        number += 1
        yield number, _decode(number, buffer.removeprefix(codecs.BOM_UTF8) if first else buffer)


def _decode(number: int, raw: bytes) -> str | RowError:
    try:
        return raw.rstrip(b"\r").decode("utf-8")
    except UnicodeDecodeError:
        return RowError(number, "line is not valid UTF-8")


async def _csv_records(chunks: AsyncIterable[bytes]) -> AsyncIterator[tuple[int, ImportRow | RowError]]:
    """One record per line: none of the columns may hold a line break, so a stray quote costs one row
    instead of swallowing the rest of the file."""
    header: list[str] | None = None
    delimiter = ","
    async for number, line in _lines(chunks):
        if isinstance(line, RowError):
            yield number, line
            continue
        if not line.strip():
            continue
        if header is None:
            delimiter = ";" if line.count(";") > line.count(",") else ","
            header = [h.strip().lower() for h in next(csv.reader([line], delimiter=delimiter))]
            unknown = [h for h in header if h not in CSV_COLUMNS]
            if unknown or "phone" not in header or len(set(header)) != len(header):
                raise InvalidInput(
                    "the first CSV line must be a header naming the columns, with 'phone' and optionally "
                    f"'name' and 'email' (got {line[:200]!r})",
                    field="header",
                )
            continue
        if line.count('"') % 2:
            yield number, RowError(number, "unbalanced quotes")
            continue
        try:
            values = next(csv.reader([line], delimiter=delimiter, strict=True))
        except csv.Error as exc:
            yield number, RowError(number, f"not a CSV record: {exc}")
            continue
        if len(values) != len(header):
            yield (
                number,
                RowError(number, f"expected {len(header)} fields ({', '.join(header)}), got {len(values)}"),
            )
            continue
        fields = dict(zip(header, values, strict=True))
        yield (
            number,
            ImportRow(phone=fields["phone"], name=fields.get("name") or None, email=fields.get("email") or None),
        )


_row_decoder = msgspec.json.Decoder(ImportRow)


async def _ndjson_records(chunks: AsyncIterable[bytes]) -> AsyncIterator[tuple[int, ImportRow | RowError]]:
    async for number, line in _lines(chunks):
        if isinstance(line, RowError):
            yield number, line
        elif line.strip():
            try:
                yield number, _row_decoder.decode(line)
            except msgspec.DecodeError as exc:
                yield number, RowError(number, str(exc).replace("`$.", "`"))


async def parse(chunks: AsyncIterable[bytes], fmt: Format, region: str) -> AsyncIterator[ValidRow | RowError]:
    """Validated rows (phone in E.164, name and e-mail cleaned) or errors, in file order."""
    records = _csv_records(chunks) if fmt is Format.CSV else _ndjson_records(chunks)
    async for number, record in records:
        if isinstance(record, RowError):
            yield record
            continue
        try:
            yield ValidRow(
                line=number,
                phone=normalize_phone(record.phone, region),
                name=clean_name(record.name),
                email=clean_email(record.email),
            )
        except DomainError as exc:
            yield RowError(number, f"{exc.field}: {exc.message}" if exc.field else exc.message)


# -- writing ------------------------------------------------------------------------------------

_INSERT_CUSTOMERS = """
INSERT INTO customers (phone, name, email, source)
SELECT phone, name, email, $4 FROM unnest($1::text[], $2::text[], $3::text[]) AS i (phone, name, email)
ON CONFLICT (phone) DO NOTHING
RETURNING id, phone
"""

_FILL_BLANKS = """
UPDATE customers c
   SET name = coalesce(c.name, i.name), email = coalesce(c.email, i.email), updated_at = now()
  FROM unnest($1::text[], $2::text[], $3::text[]) AS i (phone, name, email)
 WHERE c.phone = i.phone
   AND ((c.name IS NULL AND i.name IS NOT NULL) OR (c.email IS NULL AND i.email IS NOT NULL))
"""

_INSERT_CARDS = """
INSERT INTO cards (number, customer_id)
SELECT * FROM unnest($1::text[], $2::uuid[])
ON CONFLICT (number) DO NOTHING
RETURNING number
"""

_RECORD = """
INSERT INTO registrations (customer_id, card_number, source, outcome, store, terminal, api_key_id)
SELECT cu.id,
       (SELECT number FROM cards WHERE customer_id = cu.id
         ORDER BY status = 'active' DESC, issued_at DESC LIMIT 1),
       $3, i.outcome, $4, $5, $6
  FROM unnest($1::text[], $2::text[]) AS i (phone, outcome)
  JOIN customers cu ON cu.phone = i.phone
"""


class Importer:
    def __init__(self, pool: Pool, *, region: str, card_prefix: str) -> None:
        self.pool = pool
        self.region = region
        self.card_prefix = card_prefix

    async def run(
        self,
        chunks: AsyncIterable[bytes],
        fmt: Format,
        origin: Origin,
        *,
        on_batch: Callable[[ImportReport], None] | None = None,
    ) -> ImportReport:
        report = ImportReport()
        batch: list[ValidRow] = []
        async for item in parse(chunks, fmt, self.region):
            if isinstance(item, RowError):
                report.add_error(item)
                continue
            batch.append(item)
            if len(batch) >= BATCH_SIZE:
                await self._write(batch, origin, report)
                batch = []
                if on_batch:
                    on_batch(report)
        if batch:
            await self._write(batch, origin, report)
        if on_batch:
            on_batch(report)
        return report

    async def _write(self, rows: list[ValidRow], origin: Origin, report: ImportReport) -> None:
        try:
            created, existing = await self._write_batch(rows, origin)
        except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError):
            # A row the checks above let through but the database refuses: find it, keep the others.
            created = existing = 0
            for row in rows:
                try:
                    one_created, one_existing = await self._write_batch([row], origin)
                except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as exc:
                    report.add_error(RowError(row.line, f"cannot be stored: {exc}"))
                    continue
                created += one_created
                existing += one_existing
        report.created += created
        report.existing += existing

    async def _write_batch(self, rows: list[ValidRow], origin: Origin) -> tuple[int, int]:
        """Write a batch in one transaction; returns (created, existing)."""
        # First occurrence of a phone in the batch wins; sorting gives concurrent imports one lock order.
        unique: dict[str, ValidRow] = {}
        repeats = 0
        for row in rows:
            if row.phone in unique:
                repeats += 1
            else:
                unique[row.phone] = row
        ordered = sorted(unique.values(), key=lambda r: r.phone)
        phones = [r.phone for r in ordered]
        names = [r.name for r in ordered]
        emails = [r.email for r in ordered]
        async with self.pool.acquire() as conn, conn.transaction():
            inserted = await conn.fetch(_INSERT_CUSTOMERS, phones, names, emails, origin.source.value)
            created = {r["phone"]: r["id"] for r in inserted}
            await conn.execute(_FILL_BLANKS, phones, names, emails)
            waiting = list(created.values())
            while waiting:
                numbers = [generate_card_number(self.card_prefix) for _ in waiting]
                taken = {r["number"] for r in await conn.fetch(_INSERT_CARDS, numbers, waiting)}
                waiting = [cid for cid, num in zip(waiting, numbers, strict=True) if num not in taken]
            outcomes = ["created" if p in created else "existing" for p in phones]
            await conn.execute(
                _RECORD,
                phones,
                outcomes,
                origin.source.value,
                origin.store,
                origin.terminal,
                origin.api_key_id,
            )
        return len(created), len(ordered) - len(created) + repeats


#: The same streaming, bounded line reader for the other bulk imports (analytics' receipt back-fill).
numbered_lines = _lines
