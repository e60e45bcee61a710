"""``kartka promotions import FILE``: the ``[[promotions]]`` of a program TOML file become stored
promotions, after which the program file need not carry them.

Entries in the program file's old kinds (``kind = "bundle_percent"`` / ``"n_for_m"``) are converted to
the promotion object (``engine.promotions.legacy``); entries already written as promotion objects (with
a ``benefit``) are taken as they are. The file's promotions were running, so each comes in live
(approved by the import, which the audit records as ``imported`` by the operator); one whose id is
stored already is left as it is, so running the import twice changes nothing.
"""

from __future__ import annotations

import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from engine.promotions.legacy import read_legacy
from engine.promotions.model import InvalidPromotion, Promotion, parse_promotion
from engine.promotions.store import PromotionAdmin
from kartka.db import Connection


class ImportResult(msgspec.Struct, frozen=True):
    id: str
    outcome: str
    """``imported`` (live now) or ``exists`` (left as it is)."""


def read_file(path: Path) -> list[Promotion]:
    """The ``[[promotions]]`` of a program file, as promotion objects (an error names the entry)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidPromotion(f"cannot read {path}: {exc.strerror}", field="file") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InvalidPromotion(f"{path} is not valid TOML: {exc}", field="file") from exc
    entries: Any = data.get("promotions", [])
    if not isinstance(entries, list):
        raise InvalidPromotion(f"{path}: promotions must be an array of tables ([[promotions]])", field="promotions")
    found: list[Promotion] = []
    for index, entry in enumerate(entries):
        where = f"{path}: promotions[{index}]"
        if not isinstance(entry, dict):
            raise InvalidPromotion(f"{where} is not a table", field=f"promotions.{index}")
        if "kind" in entry:
            try:
                found.extend(read_legacy({"promotions": [entry]}))
            except (msgspec.ValidationError, ValueError) as exc:
                message = str(exc).replace("`$.promotions[0]", "`$")
                raise InvalidPromotion(f"{where}: {message}", field=f"promotions.{index}") from exc
        else:
            try:
                found.append(parse_promotion(entry))
            except InvalidPromotion as exc:
                raise InvalidPromotion(f"{where}: {exc.message}", field=f"promotions.{index}.{exc.field}") from exc
    missing = [i for i, p in enumerate(found) if not p.id]
    if missing:
        raise InvalidPromotion(f"{path}: promotions[{missing[0]}] has no id", field=f"promotions.{missing[0]}.id")
    return found


async def import_promotions(
    conn: Connection, promotions: list[Promotion], *, actor: str, now: datetime
) -> list[ImportResult]:
    """Store each promotion live, in one transaction (all or nothing)."""
    admin = PromotionAdmin(remote=False, approval=False)
    results: list[ImportResult] = []
    async with conn.transaction():
        for promotion in promotions:
            assert promotion.id is not None
            if await conn.fetchval("SELECT EXISTS (SELECT FROM promotions WHERE id = $1)", promotion.id):
                results.append(ImportResult(id=promotion.id, outcome="exists"))
                continue
            await admin.import_live(conn, promotion, actor=actor, now=now)
            results.append(ImportResult(id=promotion.id, outcome="imported"))
    return results
