"""``kartka promotions import FILE``: the ``[[promotions]]`` of a program TOML file become stored
promotions, after which the program file need not carry them.

Entries in the program file's old kinds (``kind = "bundle_percent"`` / ``"n_for_m"``) are converted to
the promotion object; entries already written as promotion objects (with a ``benefit``) are taken as
they are. The file's promotions were running, so each comes in live (approved by the import, which the
audit records as ``imported`` by the operator); one whose id is stored already is left as it is, so
running the import twice changes nothing.
"""

from __future__ import annotations

import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from engine.promotions.model import (
    Bundle,
    InvalidPromotion,
    NForM,
    Promotion,
    Selector,
    When,
    Where,
    parse_promotion,
)
from engine.promotions.store import PromotionAdmin
from kartka.db import Connection
from wallet import program as legacy


class ImportResult(msgspec.Struct, frozen=True):
    id: str
    outcome: str
    """``imported`` (live now) or ``exists`` (left as it is)."""


def from_legacy(old: legacy.Promotion) -> Promotion:
    """A promotion of the program file's old kinds as a promotion object with the same effect."""
    when = When(starts_at=old.starts_at, ends_at=old.ends_at)
    where = Where(stores=old.stores)
    title = {"ru": old.title_ru, "en": old.title_en}
    if isinstance(old, legacy.BundlePercent):
        benefit: Bundle | NForM = Bundle(
            trigger=Selector(categories=(old.trigger_category,)),
            target=Selector(categories=(old.target_category,)),
            percent_bp=old.percent_bp,
        )
    else:
        benefit = NForM(lines=Selector(categories=(old.category,)), n=old.n, m=old.m)
    return Promotion(id=old.id, title=title, benefit=benefit, when=when, where=where)


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
                old: legacy.Promotion = msgspec.convert(entry, legacy.Promotion)
            except msgspec.ValidationError as exc:
                raise InvalidPromotion(f"{where}: {exc}", field=f"promotions.{index}") from exc
            found.append(from_legacy(old))
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
