"""The Apple Wallet ``.pkpass`` of a loyalty card: a storeCard, signed with the Pass Type ID identity.

The package is a zip of ``pass.json``, the icon and logo at 1x/2x/3x, ``ru.lproj`` and ``en.lproj``
``pass.strings``, ``manifest.json`` (SHA-1 of every other file) and ``signature``: a detached PKCS#7
(CMS) signature of the manifest made with the pass certificate, carrying the WWDR intermediate and a
signing time. Everything but the signature is deterministic (fixed order, fixed timestamps), so two
builds of the same data differ only in ``signature`` and a pass is easy to compare and cache.

Numbers: points are integer hundredths and money integer minor units; they reach pass.json as
:class:`~decimal.Decimal` encoded by msgspec with ``decimal_format="number"`` (``12550`` hundredths ->
``125.5``), never through a float. By default the phone formats them in its own language
(``numberStyle`` / ``currencyCode``); iOS' decimal style drops trailing zeros (``125,5``).
``number_locale="ru"`` sends point amounts as text written the way our SMS and receipts write them
(``125,50``) instead, at the cost of one language for every reader.

Text: labels, change messages, the description and the note on how the program works are keys in
pass.json that each ``pass.strings`` translates; Wallet picks the file for the phone's language
(one of them when it has neither). The files are UTF-16 with a byte-order mark, the encoding Apple
documents for strings files.
"""

from __future__ import annotations

import codecs
import functools
import hashlib
import io
import re
import urllib.parse
import zipfile
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from kartka.texts import catalog, format_percent, format_points, text
from wallet.models import BalanceView, TierView
from wallet.passes.identity import PassIdentity

DEFAULT_ASSETS: Final = Path(__file__).with_name("assets")
IMAGES: Final = ("icon.png", "icon@2x.png", "icon@3x.png", "logo.png", "logo@2x.png", "logo@3x.png")
#: The languages of the pass.strings files: every language the text catalog has.
LOCALES: Final = catalog().languages
MAX_LOCATIONS: Final = 10
MIN_TOKEN_LENGTH: Final = 16
#: Every entry's timestamp: the earliest a zip can carry, so the bytes depend on the content alone.
ZIP_TIME: Final = (1980, 1, 1, 0, 0, 0)

Rgb = tuple[int, int, int]


class PassLocation(msgspec.Struct, frozen=True):
    """A place where the pass shows on the lock screen (a store). Coordinates are decimals, not floats."""

    latitude: Decimal
    longitude: Decimal
    relevant_text: str | None = None

    def __post_init__(self) -> None:
        coordinates: tuple[tuple[str, object, int], ...] = (
            ("latitude", self.latitude, 90),
            ("longitude", self.longitude, 180),
        )
        for name, value, limit in coordinates:
            if type(value) is not Decimal and type(value) is not int:
                raise ValueError(f"location {name} must be a Decimal (not {type(value).__name__})")
            if not Decimal(-limit) <= Decimal(value) <= Decimal(limit):
                raise ValueError(f"location {name} {value} is outside -{limit}..{limit}")


class ApplePassData(msgspec.Struct, frozen=True, kw_only=True):
    """Everything one card's pass shows, filled from the database in one go.

    ``balance`` and ``tier`` are the read models the API returns; the program's terms (``pending_hours``
    and the rest) only feed the note on the back and default to the program defaults.
    """

    serial_number: str
    authentication_token: str
    """Sent back by the phone as ``Authorization: ApplePass <token>``; at least 16 characters, never changes."""
    web_service_url: str
    card_number: str
    balance: BalanceView
    tier: TierView
    holder_name: str | None = None
    barcode: Literal["qr", "code128"] = "qr"
    locations: tuple[PassLocation, ...] = ()
    voided: bool = False
    card_page_url: str | None = None
    organization_name: str = "Kartka"
    description: str | None = None
    """Read by VoiceOver and shown in notifications; ``None``: "Карта лояльности …" / "… loyalty card"."""
    logo_text: str | None = None
    """Text beside the logo; the default logo already says "Kartka"."""
    background_color: Rgb = (16, 94, 70)
    foreground_color: Rgb = (255, 255, 255)
    label_color: Rgb = (168, 224, 196)
    timezone: str = "Europe/Minsk"
    """The program's time zone: dates on the pass read as they do in our messages, wherever the phone is."""
    currency: str = "BYN"
    pending_hours: int = 24
    expiry_months: int = 6
    redeem_cap_bp: int = 7_000
    tier_window_days: int = 365
    number_locale: Literal["ru", "en"] | None = None
    """``None``: point amounts are numbers the phone formats; ``"ru"``/``"en"``: text as in our SMS."""

    def __post_init__(self) -> None:
        problems = self._identity_problems() + self._content_problems()
        if problems:
            raise ValueError("; ".join(problems))

    def _identity_problems(self) -> list[str]:
        problems: list[str] = []
        if not re.fullmatch(r"[\x21-\x7e]{1,128}", self.serial_number) or "/" in self.serial_number:
            problems.append("serial_number must be 1-128 printable ASCII characters without '/' or spaces")
        if len(self.authentication_token) < MIN_TOKEN_LENGTH:
            problems.append(f"authentication_token must be at least {MIN_TOKEN_LENGTH} characters (Apple's minimum)")
        elif not re.fullmatch(r"[\x21-\x7e]+", self.authentication_token):
            problems.append("authentication_token must be printable ASCII without spaces (it travels in a header)")
        for name in ("web_service_url", "card_page_url"):
            url = getattr(self, name)
            if url is not None and not _is_http_url(url):
                problems.append(f"{name} must be an absolute http(s) URL, not {url!r}")
        if not self.card_number:
            problems.append("card_number must not be empty")
        elif not _latin1(self.card_number):
            problems.append("card_number must be ISO-8859-1 text (the barcode's message encoding)")
        return problems

    def _content_problems(self) -> list[str]:
        problems: list[str] = []
        if self.barcode not in ("qr", "code128"):
            problems.append(f"barcode must be 'qr' or 'code128', not {self.barcode!r}")
        if len(self.locations) > MAX_LOCATIONS:
            problems.append(f"a pass takes at most {MAX_LOCATIONS} locations, not {len(self.locations)}")
        for name in ("background_color", "foreground_color", "label_color"):
            colour: tuple[object, ...] = getattr(self, name)
            if len(colour) != 3 or not all(type(c) is int and 0 <= c <= 255 for c in colour):
                problems.append(f"{name} must be three integers 0-255, not {colour!r}")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(f"unknown timezone {self.timezone!r}")
        if not re.fullmatch(r"[A-Z]{3}", self.currency):
            problems.append(f"currency must be an ISO 4217 code such as BYN, not {self.currency!r}")
        if self.number_locale not in (None, "ru", "en"):
            problems.append(f"number_locale must be None, 'ru' or 'en', not {self.number_locale!r}")
        if not self.organization_name.strip():
            problems.append("organization_name must not be empty")
        return problems


def build_pkpass(data: ApplePassData, identity: PassIdentity, *, assets: Path = DEFAULT_ASSETS) -> bytes:
    """The signed ``.pkpass`` (serve it as ``application/vnd.apple.pkpass``)."""
    if identity.not_valid_after <= datetime.now(UTC):
        raise ValueError(f"the Pass Type ID certificate expired on {identity.not_valid_after.isoformat()}")
    files: list[tuple[str, bytes]] = [("pass.json", pass_json(data, identity))]
    files += _images(assets)
    strings = pass_strings(data)
    files += [(f"{locale}.lproj/pass.strings", strings[locale]) for locale in LOCALES]
    # SHA-1 is what the manifest format specifies; the signature over the manifest is SHA-256.
    manifest = msgspec.json.encode(
        {name: hashlib.sha1(content, usedforsecurity=False).hexdigest() for name, content in files}
    )
    files += [("manifest.json", manifest), ("signature", sign_manifest(manifest, identity))]
    return _zip(files)


def sign_manifest(manifest: bytes, identity: PassIdentity) -> bytes:
    """DER CMS SignedData over ``manifest`` with no content inside (detached), signed attributes
    content type, signing time and message digest, and the signer and WWDR certificates."""
    return (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(manifest)
        .add_signer(identity.certificate, identity.private_key, hashes.SHA256())
        .add_certificate(identity.wwdr)
        .sign(
            serialization.Encoding.DER,
            [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary, pkcs7.PKCS7Options.NoCapabilities],
        )
    )


# -- pass.json ------------------------------------------------------------------------------------------

_ENCODER: Final = msgspec.json.Encoder(decimal_format="number")


class _Field(msgspec.Struct, frozen=True, omit_defaults=True, rename="camel"):
    key: str
    label: str
    value: str | Decimal
    change_message: str | None = None
    date_style: str | None = None
    time_style: str | None = None
    ignores_time_zone: bool | None = None
    number_style: str | None = None
    currency_code: str | None = None
    data_detector_types: tuple[str, ...] | None = None


class _StoreCard(msgspec.Struct, frozen=True, rename="camel"):
    primary_fields: tuple[_Field, ...]
    secondary_fields: tuple[_Field, ...]
    auxiliary_fields: tuple[_Field, ...]
    back_fields: tuple[_Field, ...]


class _Barcode(msgspec.Struct, frozen=True, rename="camel"):
    format: str
    message: str
    message_encoding: str
    alt_text: str


class _Location(msgspec.Struct, frozen=True, omit_defaults=True, rename="camel"):
    latitude: Decimal
    longitude: Decimal
    relevant_text: str | None = None


class _Pass(msgspec.Struct, frozen=True, omit_defaults=True, rename="camel"):
    format_version: int
    pass_type_identifier: str
    team_identifier: str
    serial_number: str
    authentication_token: str
    web_service_url: str = msgspec.field(name="webServiceURL")
    organization_name: str
    description: str
    foreground_color: str
    background_color: str
    label_color: str
    sharing_prohibited: bool
    barcodes: tuple[_Barcode, ...]
    barcode: _Barcode  # iOS 8 and older read only this one, and it knows no Code128: always the QR
    store_card: _StoreCard
    logo_text: str | None = None
    locations: tuple[_Location, ...] = ()
    voided: bool = False


#: Change-message keys carry ``%@`` themselves: a reader that checks the raw value for the placeholder
#: (Apple requires it in every change message) finds it before any translation.
CHANGE_BALANCE: Final = "change.balance: %@"
CHANGE_TIER: Final = "change.tier: %@"
_BARCODE_FORMATS: Final = {"qr": "PKBarcodeFormatQR", "code128": "PKBarcodeFormatCode128"}
_NO_DETECTORS: Final[tuple[str, ...]] = ()  # a 13-digit card number must not turn into a phone link


def pass_json(data: ApplePassData, identity: PassIdentity) -> bytes:
    """pass.json: identifiers from the certificate, labels as keys into pass.strings."""
    zone = ZoneInfo(data.timezone)
    balance, tier = data.balance, data.tier

    secondary = (_Field(key="tier", label="label.tier", value=tier.name, change_message=CHANGE_TIER),)
    auxiliary: list[_Field] = []
    if tier.next is not None and tier.to_next is not None:
        auxiliary.append(
            _Field(key="progress", label="label.progress", value=_fixed(tier.to_next, 2), currency_code=data.currency)
        )
    auxiliary.append(
        _Field(key="rate", label="label.rate", value=_fixed(tier.rate, 4), number_style="PKNumberStylePercent")
    )

    back: list[_Field] = [
        _Field(key="card_number", label="label.card_number", value=data.card_number, data_detector_types=_NO_DETECTORS)
    ]
    if data.holder_name:
        back.append(
            _Field(key="holder", label="label.holder", value=data.holder_name, data_detector_types=_NO_DETECTORS)
        )
    if balance.pending:
        back.append(_points_field("pending", "label.pending", balance.pending, data, detectors=_NO_DETECTORS))
        if balance.next_available_at is not None:
            back.append(_date_field("pending_at", "label.pending_at", balance.next_available_at, zone, with_time=True))
    expiring = balance.expiring_soon
    if expiring.points:
        back.append(_points_field("expiring", "label.expiring", expiring.points, data, detectors=_NO_DETECTORS))
        if expiring.at is not None:
            back.append(_date_field("expiring_at", "label.expiring_at", expiring.at, zone, with_time=False))
    back.append(_Field(key="how", label="label.how", value="note.how", data_detector_types=_NO_DETECTORS))
    if data.card_page_url:
        back.append(
            _Field(
                key="card_page",
                label="label.card_page",
                value=data.card_page_url,
                data_detector_types=("PKDataDetectorTypeLink",),
            )
        )

    primary = _points_field("balance", "label.balance", balance.available, data, change_message=CHANGE_BALANCE)
    store_card = _StoreCard(
        primary_fields=(primary,),
        secondary_fields=secondary,
        auxiliary_fields=tuple(auxiliary),
        back_fields=tuple(back),
    )
    qr = _Barcode(
        format=_BARCODE_FORMATS["qr"],
        message=data.card_number,
        message_encoding="iso-8859-1",
        alt_text=data.card_number,
    )
    chosen = msgspec.structs.replace(qr, format=_BARCODE_FORMATS[data.barcode])
    document = _Pass(
        format_version=1,
        pass_type_identifier=identity.pass_type_id,
        team_identifier=identity.team_id,
        serial_number=data.serial_number,
        authentication_token=data.authentication_token,
        web_service_url=data.web_service_url,
        organization_name=data.organization_name,
        description=data.description if data.description is not None else "pass.description",
        logo_text=data.logo_text,
        foreground_color=_rgb(data.foreground_color),
        background_color=_rgb(data.background_color),
        label_color=_rgb(data.label_color),
        sharing_prohibited=True,
        barcodes=(chosen,),
        barcode=qr,
        locations=tuple(
            _Location(latitude=Decimal(p.latitude), longitude=Decimal(p.longitude), relevant_text=p.relevant_text)
            for p in data.locations
        ),
        voided=data.voided,
        store_card=store_card,
    )
    return _ENCODER.encode(document)


def _points_field(
    key: str,
    label: str,
    minor: int,
    data: ApplePassData,
    *,
    change_message: str | None = None,
    detectors: tuple[str, ...] | None = None,
) -> _Field:
    """Points as a number the phone formats (``numberStyle``), or as our text when ``number_locale`` is set."""
    if data.number_locale is not None:
        text = format_points(minor, data.number_locale)
        return _Field(key=key, label=label, value=text, change_message=change_message, data_detector_types=detectors)
    return _Field(
        key=key,
        label=label,
        value=_fixed(minor, 2),
        change_message=change_message,
        number_style="PKNumberStyleDecimal",
        data_detector_types=detectors,
    )


def _date_field(key: str, label: str, moment: datetime, zone: ZoneInfo, *, with_time: bool) -> _Field:
    if moment.tzinfo is None:
        raise ValueError(f"{key}: {moment!r} has no time zone")
    return _Field(
        key=key,
        label=label,
        value=moment.astimezone(zone).isoformat(timespec="seconds"),
        date_style="PKDateStyleMedium",
        time_style="PKDateStyleShort" if with_time else "PKDateStyleNone",
        ignores_time_zone=True,  # show the program's local time, as our messages do
        data_detector_types=_NO_DETECTORS,
    )


def _fixed(value: int, places: int) -> Decimal:
    """``value / 10**places`` exactly, without trailing zeros or exponents: 12550, 2 -> 125.5; 1200, 2 -> 12."""
    sign = "-" if value < 0 else ""
    whole, fraction = divmod(abs(value), 10**places)
    if not fraction:
        return Decimal(f"{sign}{whole}")
    return Decimal(f"{sign}{whole}.{f'{fraction:0{places}d}'.rstrip('0')}")


def _rgb(colour: Rgb) -> str:
    return f"rgb({colour[0]}, {colour[1]}, {colour[2]})"


def _latin1(text: str) -> bool:
    try:
        text.encode("iso-8859-1")
    except UnicodeEncodeError:
        return False
    return True


def _is_http_url(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


# -- pass.strings ---------------------------------------------------------------------------------------


class _Terms(msgspec.Struct, frozen=True):
    """What the strings depend on: a handful of combinations per program, so they are made once each."""

    organization_name: str
    next_tier: str | None
    currency: str
    pending_hours: int
    expiry_months: int
    redeem_cap_bp: int
    tier_window_days: int


def pass_strings(data: ApplePassData) -> dict[str, bytes]:
    """``pass.strings`` per locale: every key pass.json uses, in UTF-16 (little-endian, with a BOM)."""
    terms = _Terms(
        organization_name=data.organization_name,
        next_tier=data.tier.next.name if data.tier.next is not None else None,
        currency=data.currency,
        pending_hours=data.pending_hours,
        expiry_months=data.expiry_months,
        redeem_cap_bp=data.redeem_cap_bp,
        tier_window_days=data.tier_window_days,
    )
    return {locale: _strings_for(terms, locale) for locale in LOCALES}


@functools.lru_cache(maxsize=256)
def _strings_for(terms: _Terms, locale: str) -> bytes:
    return _strings_file(_texts(terms, locale))


def _texts(data: _Terms, locale: str) -> dict[str, str]:
    cap = format_percent(data.redeem_cap_bp, locale)

    def unit(key: str, n: int) -> str:
        return text(locale, f"units.{key}", count=n, n=n)

    strings = catalog().texts(locale, "pass.apple")
    texts = {key: value for key, value in strings.items() if key not in _FILLED and not key.startswith("change.")}
    texts[CHANGE_BALANCE] = strings["change.balance"]
    texts[CHANGE_TIER] = strings["change.tier"]
    texts["pass.description"] = text(locale, "pass.apple.pass.description", org=data.organization_name)
    texts["note.how"] = text(
        locale,
        "pass.apple.note.how",
        hours=unit("hours", data.pending_hours),
        months=unit("months", data.expiry_months),
        days=unit("days", data.tier_window_days),
        cap=cap,
        currency=data.currency,
    )
    if data.next_tier is not None:
        texts["label.progress"] = text(locale, "pass.apple.label.progress", tier=data.next_tier)
    return texts


#: Catalog texts with placeholders, filled in above (``label.progress`` only when there is a next tier).
_FILLED: Final = frozenset({"pass.description", "note.how", "label.progress"})


#: The strings-file escapes: backslash, quote and line breaks by name, other control characters as ``\Unnnn``.
_ESCAPES: Final = str.maketrans(
    {chr(c): f"\\U{c:04X}" for c in (*range(0x20), 0x7F)}
    | {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
)


def _escape(text: str) -> str:
    return text.translate(_ESCAPES)


def _strings_file(texts: dict[str, str]) -> bytes:
    body = "".join(f'"{_escape(key)}" = "{_escape(value)}";\n' for key, value in texts.items())
    return codecs.BOM_UTF16_LE + body.encode("utf-16-le")


# -- the package ----------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _images(directory: Path) -> tuple[tuple[str, bytes], ...]:
    """The pass images, read once per process (they ship with the code)."""
    found: list[tuple[str, bytes]] = []
    for name in IMAGES:
        path = directory / name
        try:
            content = path.read_bytes()
        except OSError as exc:
            raise ValueError(f"{path}: cannot read the pass image: {exc.strerror or exc}") from None
        if not content.startswith(b"\x89PNG\r\n\x1a\n"):
            raise ValueError(f"{path}: not a PNG image")
        found.append((name, content))
    return tuple(found)


def _zip(files: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files:
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.create_system = 3  # Unix, wherever this runs
            info.external_attr = 0o644 << 16
            # PNGs are compressed already; deflating them again costs time and saves nothing.
            info.compress_type = zipfile.ZIP_STORED if name.endswith(".png") else zipfile.ZIP_DEFLATED
            archive.writestr(info, content)
    return buffer.getvalue()
