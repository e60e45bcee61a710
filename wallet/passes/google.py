"""Google Wallet: the loyalty class and object of a card, and the "Add to Google Wallet" link.

Google keeps the pass: a ``loyaltyClass`` (the program's look, one per deployment) and one
``loyaltyObject`` per card (number, holder, balance, tier), both JSON resources of the Google Wallet
REST API (https://developers.google.com/wallet/reference/rest/v1/loyaltyclass and ``/loyaltyobject``).
The shopper adds a card by opening ``https://pay.google.com/gp/v/save/<jwt>``: an RS256 JWT signed with
the issuer's service-account key (``aud`` "google", ``typ`` "savetowallet", ``origins`` allowed to show
the button) naming the object and its class. Both are inserted through the REST API first
(:class:`WalletObjects`), so the link carries only their ids and stays under 2,000 characters, which
messengers and mail clients keep whole (with the class and object inside it was over 4,000); later
changes reach the phone as a PATCH of the object (``notifications.providers.google_wallet``).

Everything else here is pure: JSON in the documented shape, built from read models, so the inserted
object and the PATCH body always say the same thing. Points are integer hundredths and reach Google as
text formatted for people (``"125,50"``); no float is ever produced.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jwt
import msgspec

from kartka.errors import Unavailable
from kartka.texts import catalog, format_date, format_points, text
from wallet.models import BalanceView, TierView

SAVE_URL: Final = "https://pay.google.com/gp/v/save/"
#: What messengers, mail clients and QR codes keep of a link without cutting it.
MAX_SAVE_URL: Final = 2_000
SCOPE: Final = "https://www.googleapis.com/auth/wallet_object.issuer"
#: The languages a pass carries: every language the text catalog has.
LANGUAGES: Final = catalog().languages
#: Top-level object fields :func:`loyalty_object` leaves out when they have no value. A PATCH only
#: changes the fields it names, so the provider sends these as ``null`` (delete) when absent: a name or
#: a link that went away must go away on the phone too.
CLEARABLE_FIELDS: Final = ("accountName", "linksModuleData")

Language = Literal["ru", "en"]

_ID_PART = re.compile(r"^[A-Za-z0-9_.-]+$")  # what Google allows after "<issuerId>."
_HEX_COLOR = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")


class GoogleWalletUnavailable(Unavailable):
    """Google Wallet's API did not take the class or the object: no save link can be given right now."""

    code = "google-wallet-unavailable"


class WalletObjects(Protocol):
    """Google Wallet's REST API as the save link needs it (``notifications.providers.google_wallet``)."""

    async def put(self, loyalty_class: dict[str, Any] | None, loyalty_object: dict[str, Any]) -> None:
        """Make the class (unless None) and then the object exist on Google as given: insert each, and
        update it when Google already has it (409). Raises :class:`GoogleWalletUnavailable`."""
        ...


class GoogleWalletConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The issuer's Google Wallet settings: one class per deployment, shared by every card."""

    issuer_id: str  # the number Google's Pay & Wallet Console shows for the issuer account
    program_name: str
    issuer_name: str
    logo_url: str  # https URL of the program logo; Google fetches and caches it
    origins: tuple[str, ...]  # web origins allowed to render the save button ("https://kartka.example")
    hex_background_color: str  # "#rrggbb" or "#rgb"
    class_suffix: str = "loyalty"
    locale: Language = "ru"  # the class's default language; the other one is a translation
    timezone: str = "Europe/Minsk"  # the program's: dates on the pass are the shopper's calendar days

    def __post_init__(self) -> None:
        if not self.issuer_id.isdigit():
            raise ValueError(f"issuer_id must be the issuer's number, not {self.issuer_id!r}")
        if not _ID_PART.match(self.class_suffix):
            raise ValueError("class_suffix may only hold letters, digits, '.', '_' and '-'")
        if not self.logo_url.startswith("https://"):
            raise ValueError("logo_url must be an https URL: Google fetches the image itself")
        if not _HEX_COLOR.match(self.hex_background_color):
            raise ValueError(f"hex_background_color must look like #rrggbb, not {self.hex_background_color!r}")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {self.timezone!r}") from exc


class GooglePassData(msgspec.Struct, frozen=True, kw_only=True):
    """What one card's pass shows, read at the moment the JSON is built."""

    card_number: str
    object_key: str | None = None
    """What names the object after the issuer: the pass's serial (the card number when None)."""
    balance: BalanceView
    tier: TierView
    active: bool  # False for a blocked, closed or replaced card: Google files it under expired passes
    holder_name: str | None = None
    card_page_url: str | None = None
    language: Language = "ru"


def class_id(config: GoogleWalletConfig) -> str:
    return f"{config.issuer_id}.{config.class_suffix}"


def object_id(config: GoogleWalletConfig, key: str) -> str:
    """``<issuerId>.<pass serial>`` (the card number for a card's first pass): stable for the pass's
    life, so every update finds the saved pass; a link rotation starts a new object."""
    if not _ID_PART.match(key):
        raise ValueError(f"this cannot name a Google Wallet object: {key!r}")
    return f"{config.issuer_id}.{key}"


def loyalty_class(config: GoogleWalletConfig) -> dict[str, Any]:
    """The ``loyaltyClass`` resource: the program's name, logo, colour and field labels."""
    texts = _all_texts()
    program = {language: text(language, "pass.google.logo", program=config.program_name) for language in LANGUAGES}
    return {
        "id": class_id(config),
        "issuerName": config.issuer_name,
        "programName": config.program_name,
        "programLogo": {
            "sourceUri": {"uri": config.logo_url},
            "contentDescription": _localized(program, config.locale),
        },
        "hexBackgroundColor": config.hex_background_color,
        "reviewStatus": "UNDER_REVIEW",  # "ready for use": Google approves it; a draft class takes no objects
        "accountIdLabel": texts["card"][config.locale],
        "localizedAccountIdLabel": _localized(texts["card"], config.locale),
        "accountNameLabel": texts["holder"][config.locale],
        "localizedAccountNameLabel": _localized(texts["holder"], config.locale),
        # The QR identifies the shopper at the till: one Google account, on all of its devices.
        "multipleDevicesAndHoldersAllowedStatus": "ONE_USER_ALL_DEVICES",
    }


def loyalty_object(config: GoogleWalletConfig, data: GooglePassData) -> dict[str, Any]:
    """The ``loyaltyObject`` resource of one card, in the shopper's language with a translation.

    The balance is always the ``string`` form of ``LoyaltyPointsBalance``: a PATCH merges nested
    objects, so switching between ``int`` and ``string`` would leave both set on Google's side.
    """
    default = data.language
    texts = _all_texts()
    zone = ZoneInfo(config.timezone)
    # The same modules in each language (which ones apply does not depend on the language).
    written = {language: _module_texts(data, zone, language) for language in LANGUAGES}
    modules = [
        _text_module(
            module_id,
            {language: written[language][index][1] for language in LANGUAGES},
            {language: written[language][index][2] for language in LANGUAGES},
            default,
        )
        for index, (module_id, _, _) in enumerate(written[default])
    ]
    balance = data.balance
    document: dict[str, Any] = {
        "id": object_id(config, data.object_key or data.card_number),
        "classId": class_id(config),
        "state": "ACTIVE" if data.active else "INACTIVE",
        "accountId": data.card_number,
        "loyaltyPoints": {
            "label": texts["points"][default],
            "localizedLabel": _localized(texts["points"], default),
            "balance": {"string": format_points(balance.available, default)},
        },
        "secondaryLoyaltyPoints": {
            "label": texts["tier"][default],
            "localizedLabel": _localized(texts["tier"], default),
            "balance": {"string": data.tier.name},
        },
        "barcode": {"type": "QR_CODE", "value": data.card_number, "alternateText": data.card_number},
        "textModulesData": modules,  # an empty list clears modules that no longer apply
    }
    if data.holder_name:
        document["accountName"] = data.holder_name
    if data.card_page_url:
        description = texts["card_page"]
        document["linksModuleData"] = {
            "uris": [
                {
                    "id": "card-page",
                    "uri": data.card_page_url,
                    "description": description[default],
                    "localizedDescription": _localized(description, default),
                }
            ]
        }
    return document


def save_url(
    config: GoogleWalletConfig, service_account: Mapping[str, str], object_key: str, *, now: int | None = None
) -> str:
    """The "Add to Google Wallet" link for one pass (``object_key``: its serial): a JWT naming its object
    and class, which must exist on Google already (:class:`WalletObjects`). The header names the signing
    key (``kid``) so Google can pick it among the account's keys."""
    issued_at = int(time.time()) if now is None else now
    claims = {
        "iss": service_account["client_email"],
        "aud": "google",
        "typ": "savetowallet",
        "iat": issued_at,
        "origins": list(config.origins),
        "payload": {"loyaltyObjects": [{"id": object_id(config, object_key), "classId": class_id(config)}]},
    }
    key_id = service_account.get("private_key_id")
    token = jwt.encode(
        claims, service_account["private_key"], algorithm="RS256", headers={"kid": key_id} if key_id else None
    )
    return SAVE_URL + token


def digest(document: Mapping[str, Any]) -> str:
    """SHA-256 of a resource's JSON, key order aside: tells whether the class Google has is this one."""
    canonical = json.dumps(document, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


# -- text ----------------------------------------------------------------------------------------------


def _module_texts(data: GooglePassData, zone: ZoneInfo, language: str) -> list[tuple[str, str, str]]:
    """(module id, header, body) of the text modules that apply to this card, in one language."""
    texts = catalog().texts(language, "pass.google")
    modules: list[tuple[str, str, str]] = []
    balance = data.balance
    if balance.pending > 0:
        body = format_points(balance.pending, language)
        if balance.next_available_at is not None:
            body = texts["pending_at"].format(points=body, date=_format_day(balance.next_available_at, zone, language))
        modules.append(("pending", texts["pending"], body))
    soon = balance.expiring_soon
    if soon.points > 0:
        body = format_points(soon.points, language)
        if soon.at is not None:
            body = texts["expiring_at"].format(points=body, date=_format_day(soon.at, zone, language))
        modules.append(("expiring", texts["expiring"], body))
    tier = data.tier
    if tier.next is not None and tier.to_next is not None and tier.to_next > 0:
        header = texts["next_tier"].format(tier=tier.next.name)
        modules.append(
            ("next-tier", header, texts["next_tier_body"].format(amount=format_points(tier.to_next, language)))
        )
    return modules


def _format_day(moment: datetime, zone: ZoneInfo, language: str) -> str:
    """``03.03.2026`` / ``3 Mar 2026``, the calendar day in the program's timezone."""
    return format_date(moment.astimezone(zone).date(), language)


def _all_texts() -> dict[str, dict[str, str]]:
    """key -> language -> text, the shape :func:`_localized` takes."""
    by_language = {language: catalog().texts(language, "pass.google") for language in LANGUAGES}
    return {key: {language: by_language[language][key] for language in LANGUAGES} for key in by_language[LANGUAGES[0]]}


def _localized(values: Mapping[str, str], default: str) -> dict[str, Any]:
    """A ``LocalizedString``: the default language's text plus translations Google picks by device locale."""
    localized: dict[str, Any] = {"defaultValue": {"language": default, "value": values[default]}}
    translated = [{"language": language, "value": text} for language, text in values.items() if language != default]
    if translated:
        localized["translatedValues"] = translated
    return localized


def _text_module(module_id: str, header: Mapping[str, str], body: Mapping[str, str], default: str) -> dict[str, Any]:
    return {
        "id": module_id,
        "header": header[default],
        "body": body[default],
        "localizedHeader": _localized(header, default),
        "localizedBody": _localized(body, default),
    }
