"""The Google Wallet class, object and save link, as JSON and a JWT Google would accept.

Field names and shapes follow Google's reference (loyaltyclass, loyaltyobject, the save JWT); the
fake Google in ``tests/fakes/google_wallet.py`` checks the same link end to end.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import msgspec
import pytest

from tests.fakes.tls import ServiceAccount, make_service_account
from wallet.models import BalanceView, Expiring, NextTier, TierView
from wallet.passes.google import (
    MAX_SAVE_URL,
    SAVE_URL,
    GooglePassData,
    GoogleWalletConfig,
    class_id,
    loyalty_class,
    loyalty_object,
    object_id,
    save_url,
)

CONFIG = GoogleWalletConfig(
    issuer_id="3388000000012345678",
    program_name="Веска бонус",
    issuer_name="Веска",
    logo_url="https://kartka.example/static/logo.png",
    origins=("https://kartka.example", "https://shop.example"),
    hex_background_color="#0b6e4f",
)
GOLD = TierView(
    code="gold",
    name="Gold",
    rate=1000,
    spend_365d=60_000,
    next=NextTier(code="platinum", name="Platinum", threshold=150_000),
    to_next=90_000,
)
PLATINUM = TierView(code="platinum", name="Platinum", rate=1500, spend_365d=200_000, next=None, to_next=None)


def balance(
    available: int = 12_550,
    *,
    pending: int = 0,
    next_available_at: datetime | None = None,
    expiring: int = 0,
    expiring_at: datetime | None = None,
) -> BalanceView:
    return BalanceView(
        available=available,
        pending=pending,
        next_available_at=next_available_at,
        expiring_soon=Expiring(points=expiring, at=expiring_at),
    )


def card(**changes: Any) -> GooglePassData:
    base = GooglePassData(
        card_number="2000000000015",
        holder_name="Анна Козлова",
        balance=balance(),
        tier=GOLD,
        active=True,
        card_page_url="https://kartka.example/c/2000000000015",
        language="ru",
    )
    return msgspec.structs.replace(base, **changes)


def numbers(document: Any) -> list[object]:
    """Every number anywhere in a JSON document."""
    if isinstance(document, dict):
        return [n for value in document.values() for n in numbers(value)]
    if isinstance(document, list):
        return [n for value in document for n in numbers(value)]
    return [document] if isinstance(document, int | float) and not isinstance(document, bool) else []


@pytest.fixture(scope="module")
def account(tmp_path_factory: pytest.TempPathFactory) -> ServiceAccount:
    return make_service_account(tmp_path_factory.mktemp("gwallet"), token_uri="http://127.0.0.1:9/token")


def test_ids_follow_issuer_dot_suffix() -> None:
    assert class_id(CONFIG) == "3388000000012345678.loyalty"
    assert object_id(CONFIG, "2000000000015") == "3388000000012345678.2000000000015"
    with pytest.raises(ValueError, match="cannot name"):
        object_id(CONFIG, "2000 0000/15")


def test_the_class_has_the_required_fields_and_localized_labels() -> None:
    document = loyalty_class(CONFIG)

    assert document["id"] == class_id(CONFIG)
    assert document["issuerName"] == "Веска"
    assert document["programName"] == "Веска бонус"
    assert document["reviewStatus"] == "UNDER_REVIEW"
    assert document["hexBackgroundColor"] == "#0b6e4f"
    assert document["programLogo"]["sourceUri"] == {"uri": "https://kartka.example/static/logo.png"}
    assert document["programLogo"]["contentDescription"]["defaultValue"] == {
        "language": "ru",
        "value": "Логотип Веска бонус",
    }
    assert document["accountIdLabel"] == "Номер карты"
    assert document["localizedAccountIdLabel"] == {
        "defaultValue": {"language": "ru", "value": "Номер карты"},
        "translatedValues": [{"language": "en", "value": "Card number"}],
    }
    assert document["multipleDevicesAndHoldersAllowedStatus"] == "ONE_USER_ALL_DEVICES"
    assert numbers(document) == []


def test_the_object_carries_the_card_balance_and_tier() -> None:
    document = loyalty_object(CONFIG, card())

    assert document["id"] == "3388000000012345678.2000000000015"
    assert document["classId"] == "3388000000012345678.loyalty"
    assert document["state"] == "ACTIVE"
    assert document["accountId"] == "2000000000015"
    assert document["accountName"] == "Анна Козлова"
    assert document["barcode"] == {"type": "QR_CODE", "value": "2000000000015", "alternateText": "2000000000015"}
    assert document["loyaltyPoints"] == {
        "label": "Баллы",
        "localizedLabel": {
            "defaultValue": {"language": "ru", "value": "Баллы"},
            "translatedValues": [{"language": "en", "value": "Points"}],
        },
        "balance": {"string": "125,50"},
    }
    assert document["secondaryLoyaltyPoints"]["label"] == "Уровень"
    assert document["secondaryLoyaltyPoints"]["balance"] == {"string": "Gold"}
    assert document["linksModuleData"]["uris"] == [
        {
            "id": "card-page",
            "uri": "https://kartka.example/c/2000000000015",
            "description": "Карта, баланс и история",
            "localizedDescription": {
                "defaultValue": {"language": "ru", "value": "Карта, баланс и история"},
                "translatedValues": [{"language": "en", "value": "Card, balance and history"}],
            },
        }
    ]
    assert [module["id"] for module in document["textModulesData"]] == ["next-tier"]
    assert numbers(document) == []  # never a float, and no int either: every value is text


@pytest.mark.parametrize(
    ("available", "language", "shown"),
    [
        (12_550, "ru", "125,50"),
        (12_550, "en", "125.50"),
        (12_500, "ru", "125"),
        (0, "ru", "0"),
        (123_450, "ru", "1\u00a0234,50"),
        (123_450, "en", "1,234.50"),
        (-1_000, "ru", "-10"),
    ],
)
def test_the_balance_is_text_formatted_for_people(available: int, language: str, shown: str) -> None:
    document = loyalty_object(CONFIG, card(balance=balance(available), language=language))

    assert document["loyaltyPoints"]["balance"] == {"string": shown}


def test_pending_and_expiring_points_are_text_modules_in_the_programs_calendar() -> None:
    late_evening_utc = datetime(2026, 3, 2, 22, 30, tzinfo=UTC)  # already 3 March in Minsk (UTC+3)
    data = card(
        balance=balance(
            10_000,
            pending=2_550,
            next_available_at=late_evening_utc,
            expiring=1_200,
            expiring_at=datetime(2026, 9, 1, 12, 0, tzinfo=UTC),
        ),
        tier=PLATINUM,
    )

    modules = {module["id"]: module for module in loyalty_object(CONFIG, data)["textModulesData"]}

    assert set(modules) == {"pending", "expiring"}  # no next tier above Platinum
    assert modules["pending"]["header"] == "Ожидают начисления"
    assert modules["pending"]["body"] == "25,50, доступны с 03.03.2026"
    assert modules["pending"]["localizedBody"]["translatedValues"] == [
        {"language": "en", "value": "25.50, available from 3 Mar 2026"}
    ]
    assert modules["expiring"]["body"] == "12, сгорят 01.09.2026"
    assert modules["expiring"]["localizedHeader"] == {
        "defaultValue": {"language": "ru", "value": "Скоро сгорят"},
        "translatedValues": [{"language": "en", "value": "Expiring soon"}],
    }


def test_an_english_shopper_gets_english_first() -> None:
    document = loyalty_object(CONFIG, card(language="en"))

    assert document["loyaltyPoints"]["label"] == "Points"
    assert document["loyaltyPoints"]["localizedLabel"]["translatedValues"] == [{"language": "ru", "value": "Баллы"}]
    [progress] = document["textModulesData"]
    assert (progress["header"], progress["body"]) == (
        "To Platinum",
        "Spend 900 more",
    )  # one number format (was "900.00")


def test_a_blocked_card_without_name_or_page() -> None:
    document = loyalty_object(CONFIG, card(active=False, holder_name=None, card_page_url=None, tier=PLATINUM))

    assert document["state"] == "INACTIVE"
    assert "accountName" not in document
    assert "linksModuleData" not in document
    assert document["textModulesData"] == []  # an empty list, so a PATCH clears modules that went away


def test_the_save_link_is_a_short_jwt_naming_the_object_signed_with_the_service_account(
    account: ServiceAccount,
) -> None:
    url = save_url(CONFIG, account.info, card().card_number, now=1_772_442_000)

    assert url.startswith("https://pay.google.com/gp/v/save/")
    assert len(url) <= MAX_SAVE_URL  # what messengers and mail clients keep whole
    token = url.removeprefix(SAVE_URL)
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "typ": "JWT", "kid": "test-key-1"}
    claims = jwt.decode(
        token, account.public_pem, algorithms=["RS256"], audience="google", options={"verify_iat": False}
    )
    assert claims == {
        "iss": "push@kartka-test.iam.gserviceaccount.com",
        "aud": "google",
        "typ": "savetowallet",
        "iat": 1_772_442_000,
        "origins": ["https://kartka.example", "https://shop.example"],
        "payload": {"loyaltyObjects": [{"id": object_id(CONFIG, card().card_number), "classId": class_id(CONFIG)}]},
    }


def test_a_stranger_key_does_not_verify(account: ServiceAccount, tmp_path: Path) -> None:
    stranger = make_service_account(tmp_path, token_uri="http://127.0.0.1:9/token")
    token = save_url(CONFIG, stranger.info, card().card_number).removeprefix(SAVE_URL)

    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, account.public_pem, algorithms=["RS256"], audience="google")


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"issuer_id": "kartka"}, "issuer_id"),
        ({"class_suffix": "loyalty card"}, "class_suffix"),
        ({"logo_url": "http://kartka.example/logo.png"}, "https"),
        ({"hex_background_color": "green"}, "hex_background_color"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
    ],
)
def test_a_bad_config_is_refused(change: dict[str, str], error: str) -> None:
    fields = msgspec.structs.asdict(CONFIG) | change
    with pytest.raises(ValueError, match=error):
        GoogleWalletConfig(**fields)
