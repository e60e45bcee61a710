"""The two promotion kinds a program file used to carry (``[[promotions]]``: ``bundle_percent`` and
``n_for_m``), read as they were written and expressed as stored promotions of the new model.

``kartka promotions import FILE`` uses :func:`read_legacy`; the program file itself now keeps only
program rules (``wallet.program`` refuses ``[[promotions]]`` and points here).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from engine.promotions.evaluate import Active, Catalog
from engine.promotions.model import Bundle, NForM, Promotion, Selector, When, Where
from wallet.program import AwareTime, Code, Program, Title


class _Legacy(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="kind"):
    id: Code
    title_ru: Title
    title_en: Title
    stores: tuple[Code, ...] = ()
    starts_at: AwareTime | None = None
    ends_at: AwareTime | None = None


class LegacyBundlePercent(_Legacy, frozen=True, tag="bundle_percent"):
    trigger_category: Code = "coffee"
    target_category: Code = "pastry"
    percent_bp: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 3_000


class LegacyNForM(_Legacy, frozen=True, tag="n_for_m"):
    category: Code = "promo-3for2"
    n: Annotated[int, msgspec.Meta(ge=2, le=100)] = 3
    m: Annotated[int, msgspec.Meta(ge=1, le=99)] = 2


Legacy = LegacyBundlePercent | LegacyNForM


class _File(msgspec.Struct, frozen=True):
    promotions: tuple[Legacy, ...] = ()


def convert(old: Legacy) -> Promotion:
    """The same promotion in the new model: same id, titles, stores and dates; the default group
    (exclusive), so, as before, an item takes at most one promotion and items on sale none."""
    benefit: Bundle | NForM
    if isinstance(old, LegacyBundlePercent):
        benefit = Bundle(
            trigger=Selector(categories=(old.trigger_category,)),
            target=Selector(categories=(old.target_category,)),
            percent_bp=old.percent_bp,
        )
    else:
        benefit = NForM(lines=Selector(categories=(old.category,)), n=old.n, m=old.m)
    return Promotion(
        id=_id(old.id),
        title={"ru": old.title_ru, "en": old.title_en},
        benefit=benefit,
        where=Where(stores=old.stores),
        when=When(starts_at=old.starts_at, ends_at=old.ends_at),
    )


def read_legacy(data: dict[str, Any]) -> list[Promotion]:
    """The ``[[promotions]]`` of a decoded program file (TOML), converted; raises
    ``msgspec.ValidationError`` naming the entry at fault, ``ValueError`` for a bad one."""
    entries = msgspec.convert({"promotions": data.get("promotions", [])}, _File).promotions
    for entry in entries:
        if isinstance(entry, LegacyNForM) and entry.m >= entry.n:
            raise ValueError(f"promotion {entry.id}: m must be less than n")
        if isinstance(entry, LegacyBundlePercent) and entry.trigger_category == entry.target_category:
            raise ValueError(f"promotion {entry.id}: trigger_category and target_category must differ")
    return [convert(entry) for entry in entries]


def _id(code: str) -> str:
    """Old codes allowed ``_`` and ``.``; promotion ids are ``[a-z0-9-]``."""
    return code.replace("_", "-").replace(".", "-")


DEFAULT_PROMOTIONS: tuple[Promotion, ...] = (
    convert(
        LegacyBundlePercent(
            id="pastry-with-coffee", title_ru="−30% на выпечку к кофе", title_en="-30% on pastry with coffee"
        )
    ),
    convert(LegacyNForM(id="three-for-two", title_ru="1+1=3", title_en="Buy 2, get the 3rd free")),
)
"""The two promotions every program used to start with (the seeds' "−30% pastry with coffee" and
"1+1=3"), for a fresh database and for tests."""


def default_catalog(program: Program) -> Catalog:
    """:data:`DEFAULT_PROMOTIONS` as revision 1, in the program's time zone."""
    return Catalog((Active(p, 1, seq) for seq, p in enumerate(DEFAULT_PROMOTIONS)), zone=program.zone)
