"""Which wallets a deployment offers: development material made where needed, refused in production."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kartka.settings import Environment, Secret, SettingsError, load_settings
from wallet.passes.devcerts import generate_dev_certs
from wallet.passes.setup import DEV_GOOGLE_ISSUER, WalletSetupError, load_wallet_setup
from wallet.program import DEFAULT_PROGRAM

PRODUCTION: dict[str, Any] = {
    "environment": Environment.PRODUCTION,
    "database_url": Secret("postgresql://db/kartka"),
    "secret_key": Secret("x" * 40),
    "public_url": "https://loyalty.example.by",
    "sms_provider": "infobip",
    "viber_provider": "none",
    "infobip_api_key": Secret("key"),
    "infobip_webhook_secret": Secret("hook"),
}


def test_development_makes_both_wallets_from_generated_material(tmp_path: Path) -> None:
    settings = load_settings({}, certs_dir=tmp_path / "certs", public_url="http://127.0.0.1:8000")
    setup = load_wallet_setup(settings, DEFAULT_PROGRAM)
    assert setup.development is not None
    assert setup.apple is not None
    assert setup.apple.identity.is_development
    assert setup.apple.identity.pass_type_id == settings.pass_type_id
    assert setup.apple.web_service_url == "http://127.0.0.1:8000/passkit"
    assert setup.google is not None
    assert setup.google.config.issuer_id == DEV_GOOGLE_ISSUER
    assert setup.google.config.origins == ("http://127.0.0.1:8000",)
    again = load_wallet_setup(settings, DEFAULT_PROGRAM)  # kept, not made again
    assert again.apple is not None
    assert again.apple.identity.certificate == setup.apple.identity.certificate


def test_production_without_wallet_settings_offers_none(tmp_path: Path) -> None:
    settings = load_settings({}, certs_dir=tmp_path / "certs", **PRODUCTION)
    setup = load_wallet_setup(settings, DEFAULT_PROGRAM)
    assert (setup.apple, setup.google, setup.development) == (None, None, None)
    assert not (tmp_path / "certs").exists()  # nothing was generated


def test_production_refuses_development_certificates(tmp_path: Path) -> None:
    dev = generate_dev_certs(tmp_path, pass_type_id="pass.by.kartka.loyalty", team_id="KARTKADEV0", organization="K")
    apple = load_settings(
        {},
        pass_cert_file=dev.cert_file,
        pass_key_file=dev.key_file,
        pass_wwdr_file=dev.wwdr_file,
        **PRODUCTION,
    )
    with pytest.raises(WalletSetupError, match="development certificate"):
        load_wallet_setup(apple, DEFAULT_PROGRAM)
    google = load_settings(
        {},
        google_issuer_id="3388000000012345678",
        google_service_account_file=dev.google_service_account_file,
        **PRODUCTION,
    )
    with pytest.raises(WalletSetupError, match="development key"):
        load_wallet_setup(google, DEFAULT_PROGRAM)


def test_configured_certificates_are_checked_at_start(tmp_path: Path) -> None:
    dev = generate_dev_certs(tmp_path, pass_type_id="pass.by.kartka.loyalty", team_id="KARTKADEV0", organization="K")
    mismatched = load_settings(
        {},
        certs_dir=tmp_path / "unused",
        pass_cert_file=dev.cert_file,
        pass_key_file=dev.apns_key_file,  # not the certificate's key
        pass_wwdr_file=dev.wwdr_file,
    )
    with pytest.raises(WalletSetupError):
        load_wallet_setup(mismatched, DEFAULT_PROGRAM)
    missing = load_settings(
        {},
        certs_dir=tmp_path / "unused",
        pass_cert_file=tmp_path / "nope.pem",
        pass_key_file=dev.key_file,
        pass_wwdr_file=dev.wwdr_file,
    )
    with pytest.raises(WalletSetupError, match=r"nope\.pem"):
        load_wallet_setup(missing, DEFAULT_PROGRAM)


def test_half_configured_wallets_are_refused_by_the_settings() -> None:
    with pytest.raises(SettingsError, match="KARTKA_PASS_KEY_FILE"):
        load_settings({"KARTKA_PASS_CERT_FILE": "/etc/kartka/pass.pem"})
    with pytest.raises(SettingsError, match="KARTKA_GOOGLE_SERVICE_ACCOUNT_FILE"):
        load_settings({"KARTKA_GOOGLE_ISSUER_ID": "3388000000012345678"})
    with pytest.raises(SettingsError, match="KARTKA_PASS_BARCODE"):
        load_settings({"KARTKA_PASS_BARCODE": "aztec"})
