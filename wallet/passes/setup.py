"""Which wallets this deployment offers, and the key material each signs with, from the settings.

Apple Wallet needs a Pass Type ID certificate, its key and Apple's WWDR intermediate
(``KARTKA_PASS_CERT_FILE`` / ``_KEY_FILE`` / ``_WWDR_FILE``); the certificate decides the pass type and
team identifiers. Google Wallet needs an issuer id and a service-account key. Outside production, what
is not configured is made by :func:`wallet.passes.devcerts.generate_dev_certs` in ``KARTKA_CERTS_DIR``, so
the passes, buttons and pushes all work on a laptop (no phone will accept a development pass: its
root is ours, not Apple's). Production never uses development material: it refuses to start with it,
and a wallet that is not configured is simply not offered.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from typing import Final

from kartka.settings import Environment, PassBarcode, Settings
from wallet.passes.devcerts import DevCerts, generate_dev_certs
from wallet.passes.google import GoogleWalletConfig
from wallet.passes.identity import PassIdentity, is_development_service_account, load_pass_identity
from wallet.program import Program

#: A made-up issuer number for development save links (Google knows no such issuer).
DEV_GOOGLE_ISSUER: Final = "3388000000099999999"
PASSKIT_PATH: Final = "/passkit"
#: Where the pass images are served from (Google Wallet fetches the logo there).
ASSETS_PATH: Final = "/assets"
#: The pass colours, shared by both wallets.
BACKGROUND: Final = (16, 94, 70)


class WalletSetupError(ValueError):
    """The wallet settings cannot be used (a file is unreadable, or development material in production)."""


@dataclass(frozen=True, slots=True)
class AppleSetup:
    identity: PassIdentity
    barcode: PassBarcode
    organization: str
    web_service_url: str


@dataclass(frozen=True, slots=True)
class GoogleSetup:
    config: GoogleWalletConfig
    service_account: dict[str, str]
    api_url: str


@dataclass(frozen=True, slots=True)
class WalletSetup:
    apple: AppleSetup | None
    google: GoogleSetup | None
    development: DevCerts | None
    """The generated material, when some was used (development and tests)."""


def load_wallet_setup(settings: Settings, program: Program) -> WalletSetup:
    production = settings.environment is Environment.PRODUCTION
    needs_dev = settings.pass_cert_file is None or settings.google_issuer_id is None
    dev = None
    if needs_dev and not production:
        try:
            dev = generate_dev_certs(
                settings.certs_dir,
                pass_type_id=settings.pass_type_id,
                team_id=settings.pass_team_id,
                organization=settings.pass_organization,
            )
        except (OSError, ValueError) as exc:
            raise WalletSetupError(f"cannot make development certificates in {settings.certs_dir}: {exc}") from exc
    return WalletSetup(apple=_apple(settings, dev), google=_google(settings, program, dev), development=dev)


def _apple(settings: Settings, dev: DevCerts | None) -> AppleSetup | None:
    try:
        if settings.pass_cert_file is not None:
            assert settings.pass_key_file is not None, "checked by the settings"
            assert settings.pass_wwdr_file is not None, "checked by the settings"
            password = settings.pass_key_password.reveal() if settings.pass_key_password else None
            identity = load_pass_identity(
                settings.pass_cert_file, settings.pass_key_file, settings.pass_wwdr_file, key_password=password
            )
        elif dev is not None:
            identity = load_pass_identity(dev.cert_file, dev.key_file, dev.wwdr_file)
        else:
            return None
    except ValueError as exc:
        raise WalletSetupError(str(exc)) from exc
    if identity.is_development and settings.environment is Environment.PRODUCTION:
        raise WalletSetupError(
            "KARTKA_PASS_CERT_FILE is a development certificate (`kartka dev-certs`); production needs the Pass "
            "Type ID certificate Apple issued"
        )
    return AppleSetup(
        identity=identity,
        barcode=settings.pass_barcode,
        organization=settings.pass_organization,
        web_service_url=settings.public_base + PASSKIT_PATH,
    )


def _google(settings: Settings, program: Program, dev: DevCerts | None) -> GoogleSetup | None:
    if settings.google_service_account_file is not None:
        path, issuer = settings.google_service_account_file, settings.google_issuer_id or ""
    elif dev is not None:
        path, issuer = dev.google_service_account_file, DEV_GOOGLE_ISSUER
    else:
        return None
    try:
        account = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise WalletSetupError(f"cannot read the Google service account {path}: {exc}") from exc
    if not isinstance(account, dict) or not all(isinstance(v, str) for v in account.values()):
        raise WalletSetupError(f"{path} is not a Google service-account key file")
    if settings.environment is Environment.PRODUCTION and is_development_service_account(account):
        raise WalletSetupError(
            "KARTKA_GOOGLE_SERVICE_ACCOUNT_FILE is the development key (`kartka dev-certs`); production needs a "
            "service account of the Google Wallet issuer"
        )
    origin = urllib.parse.urlsplit(settings.public_base)
    # Google fetches the logo itself; in development (http, localhost) it cannot anyway.
    logo = settings.google_logo_url or f"https://{origin.netloc}{ASSETS_PATH}/logo@3x.png"
    try:
        config = GoogleWalletConfig(
            issuer_id=issuer,
            program_name=settings.pass_organization,
            issuer_name=settings.pass_organization,
            logo_url=logo,
            origins=(f"{origin.scheme}://{origin.netloc}",),
            hex_background_color="#{:02x}{:02x}{:02x}".format(*BACKGROUND),
            class_suffix=settings.google_class_suffix,
            locale=program.language,
            timezone=program.timezone,
        )
    except ValueError as exc:
        raise WalletSetupError(f"Google Wallet settings: {exc}") from exc
    return GoogleSetup(config=config, service_account=account, api_url=settings.google_wallet_url)
