"""Settings come from the environment once, are validated, and never print their secrets."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from kartka.settings import DEV_SECRET_KEY, ENV, Environment, SettingsError, load_settings

GOOD_SECRET = "s" * 40


def test_defaults_are_a_working_development_setup() -> None:
    settings = load_settings({})
    assert settings.environment is Environment.DEVELOPMENT
    assert settings.database_url is None
    assert settings.default_region == "BY"
    assert settings.port == 8000


def test_values_are_read_and_typed() -> None:
    settings = load_settings({"KARTKA_PORT": "9000", "KARTKA_DB_POOL_MAX": "5", "KARTKA_MIGRATE_ON_START": "false"})
    assert settings.port == 9000
    assert settings.db_pool_max == 5
    assert settings.migrate_on_start is False


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"KARTKA_PORT": "eighty"}, "KARTKA_PORT"),
        ({"KARTKA_PORT": "70000"}, "KARTKA_PORT"),
        ({"KARTKA_ENV": "prod"}, "KARTKA_ENV"),
        ({"KARTKA_DEFAULT_REGION": "belarus"}, "KARTKA_DEFAULT_REGION"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({"KARTKA_DB_POOL_MIN": "10", "KARTKA_DB_POOL_MAX": "2"}, "KARTKA_DB_POOL_MIN"),
        ({"KARTKA_PUBLIC_URL": "loyalty.example.com"}, "KARTKA_PUBLIC_URL"),
    ],
)
def test_bad_values_are_refused_with_the_variable_named(env: dict[str, str], words: str) -> None:
    with pytest.raises(SettingsError, match=words):
        load_settings(env)


def test_production_refuses_development_secrets() -> None:
    base = {
        "KARTKA_ENV": "production",
        "DATABASE_URL": "postgresql://db/k",
        "KARTKA_PUBLIC_URL": "https://k.example",
    }
    with pytest.raises(SettingsError, match="KARTKA_SECRET_KEY"):
        load_settings(base)
    with pytest.raises(SettingsError, match="KARTKA_SECRET_KEY"):
        load_settings(base | {"KARTKA_SECRET_KEY": DEV_SECRET_KEY})
    with pytest.raises(SettingsError, match="KARTKA_SECRET_KEY"):
        load_settings(base | {"KARTKA_SECRET_KEY": "short"})
    with pytest.raises(SettingsError, match="DATABASE_URL"):
        load_settings({k: v for k, v in base.items() if k != "DATABASE_URL"} | {"KARTKA_SECRET_KEY": GOOD_SECRET})
    with pytest.raises(SettingsError, match="real message providers"):
        load_settings(base | {"KARTKA_SECRET_KEY": GOOD_SECRET})
    providers = {
        "KARTKA_SMS_PROVIDER": "infobip",
        "KARTKA_VIBER_PROVIDER": "infobip",
        "KARTKA_INFOBIP_API_KEY": "key",
        "KARTKA_INFOBIP_WEBHOOK_SECRET": "hook-secret",
    }
    settings = load_settings(base | providers | {"KARTKA_SECRET_KEY": GOOD_SECRET})
    assert settings.environment is Environment.PRODUCTION


def test_staff_passwords_cost_owasps_argon2_unless_lowered_outside_production() -> None:
    default = load_settings({})
    assert (default.argon2_memory_kib, default.argon2_rounds) == (65_536, 3)  # 64 MiB, 3 passes
    cheap = {"KARTKA_ARGON2_MEMORY_KIB": "32", "KARTKA_ARGON2_ROUNDS": "1"}
    assert load_settings(cheap | {"KARTKA_ENV": "test"}).argon2_memory_kib == 32
    with pytest.raises(SettingsError, match="KARTKA_ARGON2_MEMORY_KIB"):
        load_settings({"KARTKA_ARGON2_MEMORY_KIB": "16"})  # below what argon2 takes with 4 lanes
    production = {
        "KARTKA_ENV": "production",
        "DATABASE_URL": "postgresql://db/k",
        "KARTKA_PUBLIC_URL": "https://k.example",
        "KARTKA_SECRET_KEY": GOOD_SECRET,
        "KARTKA_SMS_PROVIDER": "twilio",
        "KARTKA_VIBER_PROVIDER": "none",
        "KARTKA_TWILIO_ACCOUNT_SID": "AC1",
        "KARTKA_TWILIO_AUTH_TOKEN": "token",
        "KARTKA_TWILIO_FROM": "+15005550006",
    }
    assert load_settings(production).argon2_rounds == 3
    assert load_settings(production | {"KARTKA_ARGON2_MEMORY_KIB": "19456", "KARTKA_ARGON2_ROUNDS": "2"})
    for lowered in ({"KARTKA_ARGON2_MEMORY_KIB": "19455"}, {"KARTKA_ARGON2_ROUNDS": "1"}, cheap):
        with pytest.raises(SettingsError, match="OWASP"):
            load_settings(production | lowered)


def test_providers_need_their_credentials() -> None:
    with pytest.raises(SettingsError, match="KARTKA_INFOBIP_API_KEY"):
        load_settings({"KARTKA_SMS_PROVIDER": "infobip"})
    with pytest.raises(SettingsError, match="KARTKA_TWILIO_ACCOUNT_SID"):
        load_settings({"KARTKA_SMS_PROVIDER": "twilio"})
    with pytest.raises(SettingsError, match="KARTKA_APNS_TEAM_ID"):
        load_settings({"KARTKA_APNS_KEY_FILE": "keys/apns.p8"})
    assert load_settings({"KARTKA_VIBER_PROVIDER": "none"}).viber_provider.value == "none"


def test_secrets_never_show_in_repr_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(
        {"KARTKA_SECRET_KEY": GOOD_SECRET, "DATABASE_URL": "postgresql://kartka:hunter2@db.internal/kartka"}
    )
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("settings %s %r %s", settings, settings, settings.describe())
    for text in (repr(settings), str(settings), str(settings.describe()), caplog.text):
        assert GOOD_SECRET not in text
        assert "hunter2" not in text
    assert settings.describe()["DATABASE_URL"] == "postgresql://kartka:***@db.internal/kartka"
    assert settings.secret_key.reveal() == GOOD_SECRET


def test_readme_documents_every_variable() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [name for name in ENV.values() if f"`{name}`" not in readme]
    assert not missing, f"document these in the README's configuration table: {missing}"
