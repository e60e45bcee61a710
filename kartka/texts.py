"""The one text layer: every text a shopper reads, in every language, and how numbers and dates read.

Texts live in catalogs, one TOML file per language in ``kartka/locales/`` (``ru.toml``, ``en.toml``;
a third language is a third file). TOML rather than gettext ``.po``: a plural is a table keyed by the
CLDR category names themselves (``one``/``few``/``many``/``other``), so a fractional amount gets CLDR's
``other`` form ("13,25 балла"), which gettext's index-based ``Plural-Forms`` for Russian does not have;
the files need no compile step and are read by the standard library. Babel supplies what is CLDR's:
the plural rules per language, the digits, separators and month names.

Placeholders are ``{name}``; only named parameters are substituted (:meth:`str.format_map` over plain
values), and a catalog's texts are ours, never a shopper's. A key missing in one language falls back to
the catalog's default language, so a half-translated file still renders.

Points and money are minor units (``1250`` = 12.50). One formatter writes both: whole amounts without a
fraction (``12``), others with two decimals (``12,50`` / ``12.50``), grouped as the language groups
thousands (``1 234,50`` with a no-break space / ``1,234.50``).
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from babel import Locale
from babel.dates import format_date as babel_date
from babel.dates import format_datetime as babel_datetime
from babel.numbers import format_decimal, get_decimal_symbol, get_group_symbol, get_minus_sign_symbol

#: Where the catalogs that ship with the package live.
LOCALES_DIR: Final = Path(__file__).parent / "locales"
DEFAULT_LANGUAGE: Final = "ru"
_CATEGORIES: Final = frozenset({"zero", "one", "two", "few", "many", "other"})


class CatalogError(ValueError):
    """A catalog file that cannot be used, or a key no catalog has."""


def minor_decimal(minor: int) -> Decimal:
    """``1250`` -> ``Decimal('12.50')``; ``1200`` -> ``Decimal('12')``: the number as it is written, so
    its visible fraction digits (CLDR's ``v``) choose the plural form."""
    return Decimal(minor // 100) if minor % 100 == 0 else Decimal(minor).scaleb(-2)


class Catalog:
    """Texts by language and dotted key (``sms.otp.text``), with plural forms and number and date formats."""

    def __init__(self, languages: Mapping[str, Mapping[str, Any]], default: str = DEFAULT_LANGUAGE) -> None:
        if default not in languages:
            raise CatalogError(f"the default language {default!r} has no catalog")
        self._texts = {language: _flatten(texts) for language, texts in languages.items()}
        self.default = default
        self.languages: tuple[str, ...] = (default, *sorted(set(languages) - {default}))
        self._locales = {language: Locale.parse(language) for language in languages}
        self._symbols = {language: _number_symbols(locale) for language, locale in self._locales.items()}

    @classmethod
    def load(cls, *directories: Path, default: str = DEFAULT_LANGUAGE) -> Catalog:
        """Every ``<language>.toml`` in ``directories``; a later directory's file replaces an earlier one's."""
        files: dict[str, Path] = {}
        for directory in directories:
            for path in sorted(directory.glob("*.toml")):
                files[path.stem] = path
        languages: dict[str, dict[str, Any]] = {}
        for language, path in files.items():
            try:
                languages[language] = tomllib.loads(path.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise CatalogError(f"{path}: {exc}") from exc
        return cls(languages, default)

    def resolve(self, locale: str | None) -> str:
        """``"ru"``, ``"en-GB"``, ``"EN_us"`` -> a language the catalog has; anything else -> the default."""
        if locale in self._texts:  # already one of ours: every text a receipt or a message writes
            return locale
        return self.supported(locale) or self.default

    def supported(self, locale: str | None) -> str | None:
        """The catalog's language for ``locale`` (``"en-GB"`` -> ``"en"``), or None when it has none."""
        if locale:
            language = locale.replace("_", "-").split("-", 1)[0].strip().lower()
            if language in self._texts:
                return language
        return None

    def _entry(self, language: str, key: str) -> Any:
        for lang in (self.resolve(language), self.default):
            entry = self._texts[lang].get(key)
            if entry is not None:
                return entry
        raise CatalogError(f"no text {key!r} in the catalog")

    def text(self, language: str, key: str, /, *, count: int | Decimal | None = None, **params: Any) -> str:
        """The text ``key`` in ``language``, its placeholders filled. A plural entry (a table of CLDR
        categories) takes the form ``count`` calls for in that language."""
        entry = self._entry(language, key)
        if isinstance(entry, dict):
            if count is None:
                raise CatalogError(f"{key!r} is a plural: it needs a count")
            category = self._locales[self.resolve(language)].plural_form(abs(Decimal(count)))
            entry = entry.get(category, entry.get("other"))
            if entry is None:
                raise CatalogError(f"{key!r} has neither a {category!r} nor an 'other' form")
        if not isinstance(entry, str):
            raise CatalogError(f"{key!r} is not a text")
        return entry.format_map(params) if params else entry

    def texts(self, language: str, prefix: str) -> dict[str, str]:
        """Every plain text under ``prefix.`` (without the prefix), the default language's keys included."""
        start = prefix + "."
        keys = {k for lang in (self.default, self.resolve(language)) for k in self._texts[lang] if k.startswith(start)}
        return {key[len(start) :]: self.text(language, key) for key in sorted(keys)}

    def number(self, minor: int, language: str) -> str:
        """``1250`` -> ``12,50`` / ``12.50``; ``1200`` -> ``12``; ``123450`` -> ``1 234,50`` / ``1,234.50``."""
        language = self.resolve(language)
        symbols = self._symbols[language]
        if symbols is None:
            value = minor_decimal(minor)
            pattern = "#,##0" if minor % 100 == 0 else "#,##0.00"
            return format_decimal(value, format=pattern, locale=self._locales[language])
        return _number(minor, *symbols)

    def points(self, minor: int, language: str) -> str:
        """``1250`` -> ``12,50 балла`` / ``12.50 points``; ``2100`` -> ``21 балл``."""
        return self.text(language, "points", count=minor_decimal(minor), n=self.number(minor, language))

    def percent(self, bp: int, language: str) -> str:
        """Basis points as a percentage without trailing zeros: ``500`` -> ``5``, ``750`` -> ``7,5`` / ``7.5``."""
        return format_decimal(Decimal(bp).scaleb(-2), format="0.##", locale=self._locales[self.resolve(language)])

    def date(self, day: date, language: str) -> str:
        """``03.03.2026`` (ru) / ``3 Mar 2026`` (en): the pattern is the catalog's ``format.date``."""
        lang = self.resolve(language)
        return babel_date(day, self.text(lang, "format.date"), locale=self._locales[lang])

    def datetime(self, moment: datetime, language: str) -> str:
        """``03.03.2026 14:05`` / ``3 Mar 2026 14:05`` in ``moment``'s own time zone (``format.datetime``)."""
        lang = self.resolve(language)
        return babel_datetime(
            moment, self.text(lang, "format.datetime"), tzinfo=moment.tzinfo, locale=self._locales[lang]
        )


def _number(minor: int, decimal: str, group: str, minus: str) -> str:
    """What :meth:`Catalog.number` writes, in integer arithmetic: every receipt and message writes
    several numbers, and Babel's general formatter costs tens of microseconds each."""
    whole, cents = divmod(-minor if minor < 0 else minor, 100)
    digits = f"{whole:,}".replace(",", group) if whole >= 1000 else str(whole)
    sign = minus if minor < 0 else ""
    return f"{sign}{digits}" if cents == 0 else f"{sign}{digits}{decimal}{cents:02d}"


_SAMPLES: Final = (0, 5, 100, 1250, 99_999, 123_400, 123_456_789, 100_000_000_000, -1, -123_456)


def _number_symbols(locale: Locale) -> tuple[str, str, str] | None:
    """The language's decimal sign, thousands separator and minus sign, when grouping every three digits
    with them writes exactly what Babel writes (else ``None``: Babel formats, as for a language that does
    not group four-digit numbers)."""
    symbols = (get_decimal_symbol(locale), get_group_symbol(locale), get_minus_sign_symbol(locale))
    for minor in _SAMPLES:
        pattern = "#,##0" if minor % 100 == 0 else "#,##0.00"
        if _number(minor, *symbols) != format_decimal(minor_decimal(minor), format=pattern, locale=locale):
            return None
    return symbols


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested tables -> dotted keys; a table whose keys are all CLDR plural categories stays a plural."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        name = prefix + key
        if isinstance(value, dict) and not (value and set(value) <= _CATEGORIES):
            flat |= _flatten(value, name + ".")
        else:
            flat[name] = value
    return flat


@functools.cache
def catalog() -> Catalog:
    """The catalogs that ship with the package."""
    return Catalog.load(LOCALES_DIR)


def text(language: str, key: str, /, *, count: int | Decimal | None = None, **params: Any) -> str:
    return catalog().text(language, key, count=count, **params)


def format_points(minor: int, language: str) -> str:
    """The one number format, for points and money alike (see the module's docstring)."""
    return catalog().number(minor, language)


def points(minor: int, language: str) -> str:
    return catalog().points(minor, language)


def format_percent(bp: int, language: str) -> str:
    return catalog().percent(bp, language)


def format_date(day: date, language: str) -> str:
    return catalog().date(day, language)


def format_datetime(moment: datetime, language: str) -> str:
    return catalog().datetime(moment, language)
