"""Settings: one typed object, read from the environment once.

Every field maps to one environment variable (the ``ENV`` table below); the README documents each of
them and a test keeps the two in step. Secrets are wrapped in :class:`Secret` so that neither ``repr``
nor a log line can print them by accident.
"""

from __future__ import annotations

import enum
import os
import re
import urllib.parse
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Final

import msgspec

from kartka.logs import LogFormat
from kartka.netaddr import parse_networks


class Environment(enum.StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class Secret:
    """A string that prints as asterisks; call :meth:`reveal` at the single place that needs it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


#: OWASP's least argon2id cost (19 MiB, 2 passes); the cheap settings the tests use are refused in production.
OWASP_ARGON2_MEMORY_KIB: Final = 19_456
OWASP_ARGON2_ROUNDS: Final = 2

DEV_SECRET_KEY: Final = "dev-only-kartka-secret-key-do-not-use-in-production"  # noqa: S105 - refused in production

#: Settings field -> environment variable.
ENV: Final[dict[str, str]] = {
    "environment": "KARTKA_ENV",
    "database_url": "DATABASE_URL",
    "data_dir": "KARTKA_DATA_DIR",
    "host": "KARTKA_HOST",
    "port": "KARTKA_PORT",
    "web_workers": "KARTKA_WEB_WORKERS",
    "public_url": "KARTKA_PUBLIC_URL",
    "secret_key": "KARTKA_SECRET_KEY",
    "default_region": "KARTKA_DEFAULT_REGION",
    "card_prefix": "KARTKA_CARD_PREFIX",
    "db_pool_min": "KARTKA_DB_POOL_MIN",
    "db_pool_max": "KARTKA_DB_POOL_MAX",
    "db_statement_timeout_ms": "KARTKA_DB_STATEMENT_TIMEOUT_MS",
    "max_body_bytes": "KARTKA_MAX_BODY_BYTES",
    "key_cache_seconds": "KARTKA_KEY_CACHE_SECONDS",
    "migrate_on_start": "KARTKA_MIGRATE_ON_START",
    "log_level": "KARTKA_LOG_LEVEL",
    "log_format": "KARTKA_LOG_FORMAT",
    "program_file": "KARTKA_PROGRAM_FILE",
    "engine": "KARTKA_ENGINE",
    "engine_url": "KARTKA_ENGINE_URL",
    "engine_token": "KARTKA_ENGINE_TOKEN",
    "engine_timeout_ms": "KARTKA_ENGINE_TIMEOUT_MS",
    "engine_retries": "KARTKA_ENGINE_RETRIES",
    "jobs_interval_seconds": "KARTKA_JOBS_INTERVAL_SECONDS",
    "run_worker": "KARTKA_RUN_WORKER",
    # sign-in: shoppers by phone, staff by password
    "otp_length": "KARTKA_OTP_LENGTH",
    "otp_ttl_seconds": "KARTKA_OTP_TTL_SECONDS",
    "otp_max_attempts": "KARTKA_OTP_MAX_ATTEMPTS",
    "otp_max_attempts_per_code": "KARTKA_OTP_MAX_ATTEMPTS_PER_CODE",
    "otp_resend_seconds": "KARTKA_OTP_RESEND_SECONDS",
    "otp_per_ip_per_hour": "KARTKA_OTP_PER_IP_PER_HOUR",
    "signin_per_ip_per_hour": "KARTKA_SIGNIN_PER_IP_PER_HOUR",
    # abuse: client addresses, per-address limits, SMS budgets, sign-in delays
    "trusted_proxies": "KARTKA_TRUSTED_PROXIES",
    "join_per_ip_per_hour": "KARTKA_JOIN_PER_IP_PER_HOUR",
    "sms_budget_per_hour": "KARTKA_SMS_BUDGET_PER_HOUR",
    "sms_budget_per_country_per_hour": "KARTKA_SMS_BUDGET_PER_COUNTRY_PER_HOUR",
    "sms_budget_countries": "KARTKA_SMS_BUDGET_COUNTRIES",
    "otp_resend_max_seconds": "KARTKA_OTP_RESEND_MAX_SECONDS",
    "staff_login_failures": "KARTKA_STAFF_LOGIN_FAILURES",
    "staff_login_per_account_per_hour": "KARTKA_STAFF_LOGIN_PER_ACCOUNT_PER_HOUR",
    # staff password hashing (argon2id): the tests lower the cost, production keeps OWASP's
    "argon2_memory_kib": "KARTKA_ARGON2_MEMORY_KIB",
    "argon2_rounds": "KARTKA_ARGON2_ROUNDS",
    "access_token_seconds": "KARTKA_ACCESS_TOKEN_SECONDS",
    "refresh_token_days": "KARTKA_REFRESH_TOKEN_DAYS",
    "qr_token_seconds": "KARTKA_QR_TOKEN_SECONDS",
    "console_idle_minutes": "KARTKA_CONSOLE_IDLE_MINUTES",
    # notifications: the outbox worker
    "outbox_batch": "KARTKA_OUTBOX_BATCH",
    "outbox_loops": "KARTKA_OUTBOX_LOOPS",
    "outbox_max_attempts": "KARTKA_OUTBOX_MAX_ATTEMPTS",
    "outbox_lease_seconds": "KARTKA_OUTBOX_LEASE_SECONDS",
    "outbox_poll_seconds": "KARTKA_OUTBOX_POLL_SECONDS",
    "outbox_backoff_seconds": "KARTKA_OUTBOX_BACKOFF_SECONDS",
    "outbox_backoff_max_seconds": "KARTKA_OUTBOX_BACKOFF_MAX_SECONDS",
    "viber_fallback_seconds": "KARTKA_VIBER_FALLBACK_SECONDS",
    "sms_rate_per_second": "KARTKA_SMS_RATE_PER_SECOND",
    "sms_concurrency": "KARTKA_SMS_CONCURRENCY",
    "viber_rate_per_second": "KARTKA_VIBER_RATE_PER_SECOND",
    "viber_concurrency": "KARTKA_VIBER_CONCURRENCY",
    "push_rate_per_second": "KARTKA_PUSH_RATE_PER_SECOND",
    "push_concurrency": "KARTKA_PUSH_CONCURRENCY",
    # notifications: providers
    "sms_provider": "KARTKA_SMS_PROVIDER",
    "viber_provider": "KARTKA_VIBER_PROVIDER",
    "infobip_base_url": "KARTKA_INFOBIP_BASE_URL",
    "infobip_api_key": "KARTKA_INFOBIP_API_KEY",
    "infobip_sms_from": "KARTKA_INFOBIP_SMS_FROM",
    "infobip_viber_from": "KARTKA_INFOBIP_VIBER_FROM",
    "infobip_webhook_secret": "KARTKA_INFOBIP_WEBHOOK_SECRET",
    "twilio_base_url": "KARTKA_TWILIO_BASE_URL",
    "twilio_account_sid": "KARTKA_TWILIO_ACCOUNT_SID",
    "twilio_auth_token": "KARTKA_TWILIO_AUTH_TOKEN",
    "twilio_from": "KARTKA_TWILIO_FROM",
    "apns_url": "KARTKA_APNS_URL",
    "apns_key_file": "KARTKA_APNS_KEY_FILE",
    "apns_key_id": "KARTKA_APNS_KEY_ID",
    "apns_team_id": "KARTKA_APNS_TEAM_ID",
    "apns_topic": "KARTKA_APNS_TOPIC",
    "apns_ca_file": "KARTKA_APNS_CA_FILE",
    "fcm_url": "KARTKA_FCM_URL",
    "fcm_service_account_file": "KARTKA_FCM_SERVICE_ACCOUNT_FILE",
    "provider_timeout_seconds": "KARTKA_PROVIDER_TIMEOUT_SECONDS",
    # wallet passes: Apple Wallet and Google Wallet
    "certs_dir": "KARTKA_CERTS_DIR",
    "pass_type_id": "KARTKA_PASS_TYPE_ID",
    "pass_team_id": "KARTKA_PASS_TEAM_ID",
    "pass_cert_file": "KARTKA_PASS_CERT_FILE",
    "pass_key_file": "KARTKA_PASS_KEY_FILE",
    "pass_key_password": "KARTKA_PASS_KEY_PASSWORD",
    "pass_wwdr_file": "KARTKA_PASS_WWDR_FILE",
    "pass_organization": "KARTKA_PASS_ORGANIZATION",
    "pass_barcode": "KARTKA_PASS_BARCODE",
    "passkit_apns_url": "KARTKA_PASSKIT_APNS_URL",
    "google_issuer_id": "KARTKA_GOOGLE_ISSUER_ID",
    "google_service_account_file": "KARTKA_GOOGLE_SERVICE_ACCOUNT_FILE",
    "google_wallet_url": "KARTKA_GOOGLE_WALLET_URL",
    "google_class_suffix": "KARTKA_GOOGLE_CLASS_SUFFIX",
    "google_logo_url": "KARTKA_GOOGLE_LOGO_URL",
    # the save link: how long the shopper waits for Google to take the class and object
    "google_save_timeout_seconds": "KARTKA_GOOGLE_SAVE_TIMEOUT_SECONDS",
    # save / delete callbacks: where Google's root signing keys are published (tests serve their own)
    "google_root_keys_url": "KARTKA_GOOGLE_ROOT_KEYS_URL",
    # when PostgreSQL restarts or freezes: bounded waits, a supervised worker, a heartbeat /ready reads
    "db_connect_timeout_seconds": "KARTKA_DB_CONNECT_TIMEOUT_SECONDS",
    "db_acquire_timeout_seconds": "KARTKA_DB_ACQUIRE_TIMEOUT_SECONDS",
    "db_command_timeout_seconds": "KARTKA_DB_COMMAND_TIMEOUT_SECONDS",
    "key_cache_unlistened_seconds": "KARTKA_KEY_CACHE_UNLISTENED_SECONDS",
    "worker_heartbeat_seconds": "KARTKA_WORKER_HEARTBEAT_SECONDS",
    "worker_stale_seconds": "KARTKA_WORKER_STALE_SECONDS",
    "worker_stuck_seconds": "KARTKA_WORKER_STUCK_SECONDS",
    "worker_health_file": "KARTKA_WORKER_HEALTH_FILE",
}


class EngineKind(enum.StrEnum):
    EMBEDDED = "embedded"
    HTTP = "http"


class SmsProvider(enum.StrEnum):
    DEV = "dev"  # stored in the database, readable at GET /dev/inbox (refused in production)
    INFOBIP = "infobip"
    TWILIO = "twilio"


class ViberProvider(enum.StrEnum):
    NONE = "none"  # no Viber: messages go by SMS
    DEV = "dev"
    INFOBIP = "infobip"


class PassBarcode(enum.StrEnum):
    QR = "qr"
    CODE128 = "code128"


class SettingsError(ValueError):
    """The environment does not describe a service that may start."""


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename=ENV):
    environment: Environment = Environment.DEVELOPMENT
    database_url: Secret | None = None
    data_dir: Path = Path(".kartka")
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 8000
    web_workers: Annotated[int, msgspec.Meta(ge=1, le=256)] = 1
    public_url: str = "http://127.0.0.1:8000"
    secret_key: Secret = Secret(DEV_SECRET_KEY)
    default_region: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{2}$")] = "BY"
    card_prefix: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,4}$")] = "2"
    db_pool_min: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 1
    db_pool_max: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 20
    db_statement_timeout_ms: Annotated[int, msgspec.Meta(ge=0)] = 15_000
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 1_048_576
    key_cache_seconds: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    migrate_on_start: bool = True
    log_level: Annotated[str, msgspec.Meta(pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")] = "INFO"
    log_format: LogFormat = LogFormat.TEXT  # json: one JSON object per line, for a log collector
    program_file: Path | None = None
    engine: EngineKind = EngineKind.EMBEDDED
    engine_url: str | None = None
    engine_token: Secret | None = None
    engine_timeout_ms: Annotated[int, msgspec.Meta(ge=10, le=60_000)] = 800
    engine_retries: Annotated[int, msgspec.Meta(ge=0, le=5)] = 1
    jobs_interval_seconds: Annotated[float, msgspec.Meta(gt=0)] = 300.0
    run_worker: bool = True
    otp_length: Annotated[int, msgspec.Meta(ge=4, le=10)] = 6
    otp_ttl_seconds: Annotated[int, msgspec.Meta(ge=30, le=3600)] = 300
    otp_max_attempts: Annotated[int, msgspec.Meta(ge=1, le=20)] = 5  # wrong tries at a code from one address
    otp_max_attempts_per_code: Annotated[int, msgspec.Meta(ge=1, le=100)] = 20  # ...and from all of them
    otp_resend_seconds: Annotated[int, msgspec.Meta(ge=0, le=3600)] = 60
    # Per client address: generous, since a store's Wi-Fi or a carrier's NAT puts many shoppers behind one.
    otp_per_ip_per_hour: Annotated[int, msgspec.Meta(ge=1)] = 60
    signin_per_ip_per_hour: Annotated[int, msgspec.Meta(ge=1)] = 200
    # Abuse. Proxies whose X-Forwarded-For is believed (addresses or CIDRs, comma-separated): nobody's by
    # default, so a client cannot pick the address its limits are counted by.
    trusted_proxies: str = ""
    join_per_ip_per_hour: Annotated[int, msgspec.Meta(ge=1)] = 60  # QR-poster joins; as many as codes
    # Texts (SMS, Viber) a stranger can make us send (join page, sign-in codes) per hour: in all, to any
    # one country other than the home one (KARTKA_DEFAULT_REGION, bounded by the total alone), and to the
    # countries listed as "RU=200,LT=50".
    sms_budget_per_hour: Annotated[int, msgspec.Meta(ge=1)] = 1000
    sms_budget_per_country_per_hour: Annotated[int, msgspec.Meta(ge=0)] = 20
    sms_budget_countries: str = ""
    otp_resend_max_seconds: Annotated[int, msgspec.Meta(ge=0, le=86_400)] = 900  # the resend delay doubles to this
    staff_login_failures: Annotated[int, msgspec.Meta(ge=1, le=100)] = 5  # per account and address, then delays
    # Attempts per account from addresses it has not signed in from (a spread-out guesser), per hour.
    staff_login_per_account_per_hour: Annotated[int, msgspec.Meta(ge=1)] = 50
    # argon2id cost of staff passwords: 64 MiB and 3 passes (libpass's defaults, as OWASP recommends).
    # The lower bound only satisfies argon2 (8 KiB per lane, 4 lanes); production refuses less than OWASP's.
    argon2_memory_kib: Annotated[int, msgspec.Meta(ge=32, le=4_194_304)] = 65_536
    argon2_rounds: Annotated[int, msgspec.Meta(ge=1, le=100)] = 3
    access_token_seconds: Annotated[int, msgspec.Meta(ge=60, le=86_400)] = 900
    refresh_token_days: Annotated[int, msgspec.Meta(ge=1, le=365)] = 30
    qr_token_seconds: Annotated[int, msgspec.Meta(ge=10, le=3600)] = 60
    # The staff console signs a person out after this long without a request (a tablet left at the till).
    console_idle_minutes: Annotated[int, msgspec.Meta(ge=1, le=1440)] = 30
    outbox_batch: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 500
    outbox_loops: Annotated[int, msgspec.Meta(ge=1, le=64)] = 4
    outbox_max_attempts: Annotated[int, msgspec.Meta(ge=1, le=100)] = 8
    outbox_lease_seconds: Annotated[float, msgspec.Meta(ge=1)] = 60.0
    outbox_poll_seconds: Annotated[float, msgspec.Meta(gt=0)] = 2.0
    outbox_backoff_seconds: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    outbox_backoff_max_seconds: Annotated[float, msgspec.Meta(gt=0)] = 3600.0
    viber_fallback_seconds: Annotated[int, msgspec.Meta(ge=30, le=86_400)] = 600
    sms_rate_per_second: Annotated[float, msgspec.Meta(gt=0)] = 10_000.0
    sms_concurrency: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 16
    viber_rate_per_second: Annotated[float, msgspec.Meta(gt=0)] = 10_000.0
    viber_concurrency: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 16
    push_rate_per_second: Annotated[float, msgspec.Meta(gt=0)] = 10_000.0
    push_concurrency: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 32
    sms_provider: SmsProvider = SmsProvider.DEV
    viber_provider: ViberProvider = ViberProvider.DEV
    infobip_base_url: str = "https://api.infobip.com"
    infobip_api_key: Secret | None = None
    infobip_sms_from: str = "Kartka"
    infobip_viber_from: str = "Kartka"
    infobip_webhook_secret: Secret | None = None
    twilio_base_url: str = "https://api.twilio.com"
    twilio_account_sid: str | None = None
    twilio_auth_token: Secret | None = None
    twilio_from: str | None = None
    apns_url: str = "https://api.push.apple.com"
    apns_key_file: Path | None = None
    apns_key_id: str | None = None
    apns_team_id: str | None = None
    apns_topic: str | None = None
    apns_ca_file: Path | None = None
    fcm_url: str = "https://fcm.googleapis.com"
    fcm_service_account_file: Path | None = None
    provider_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=120)] = 10.0
    certs_dir: Path = Path(".kartka/certs")
    # (the noqa: S105 below: "pass" here is a Wallet pass, and these are identifiers, not passwords)
    pass_type_id: Annotated[str, msgspec.Meta(pattern=r"^pass\.[A-Za-z0-9.-]{1,120}$")] = "pass.by.kartka.loyalty"  # noqa: S105
    pass_team_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Z0-9]{10}$")] = "KARTKADEV0"  # noqa: S105
    pass_cert_file: Path | None = None
    pass_key_file: Path | None = None
    pass_key_password: Secret | None = None
    pass_wwdr_file: Path | None = None
    pass_organization: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] = "Kartka"  # noqa: S105
    pass_barcode: PassBarcode = PassBarcode.QR
    passkit_apns_url: str = "https://api.push.apple.com"
    google_issuer_id: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,30}$")] | None = None
    google_service_account_file: Path | None = None
    google_wallet_url: str = "https://walletobjects.googleapis.com"
    google_class_suffix: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._-]{1,60}$")] = "loyalty"
    google_logo_url: str | None = None
    # The save link's inserts, all of them; past it the shopper gets a 503 with Retry-After.
    google_save_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=30)] = 3.0
    # The root keys that sign Google Wallet's save / delete callbacks (wallet.passes.callbacks).
    google_root_keys_url: str = "https://pay.google.com/gp/m/issuer/keys"
    # A frozen or restarting database costs a request seconds, never minutes (see README "Configuration").
    db_connect_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=300)] = 5.0
    db_acquire_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=300)] = 5.0
    db_command_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 5.0
    key_cache_unlistened_seconds: Annotated[float, msgspec.Meta(ge=0)] = 1.0
    worker_heartbeat_seconds: Annotated[float, msgspec.Meta(gt=0, le=600)] = 5.0
    worker_stale_seconds: Annotated[float, msgspec.Meta(ge=0)] = 60.0
    # A step of the timed jobs or a batch of the daily recompute this long is a hung worker (the
    # analytics' statements alone may run 30 min, boot.jobs.ANALYTICS_STATEMENT_MS).
    worker_stuck_seconds: Annotated[float, msgspec.Meta(ge=0)] = 3600.0
    worker_health_file: Path | None = None

    def __post_init__(self) -> None:
        problems: list[str] = []
        if self.db_pool_min > self.db_pool_max:
            problems.append("KARTKA_DB_POOL_MIN must not exceed KARTKA_DB_POOL_MAX")
        if 0 < self.worker_stale_seconds <= self.worker_heartbeat_seconds:
            problems.append("KARTKA_WORKER_STALE_SECONDS must exceed KARTKA_WORKER_HEARTBEAT_SECONDS (or be 0)")
        parsed = urllib.parse.urlsplit(self.public_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            problems.append("KARTKA_PUBLIC_URL must be an absolute http(s) URL, e.g. https://loyalty.example.com")
        if self.database_url is not None and not re.match(r"^postgres(ql)?://", self.database_url.reveal()):
            problems.append("DATABASE_URL must be a postgresql:// URL")
        if self.engine is EngineKind.HTTP and not self.engine_url:
            problems.append("KARTKA_ENGINE=http needs KARTKA_ENGINE_URL, the remote core engine's base URL")
        problems += self._abuse_problems()
        problems += self._provider_problems()
        if self.environment is Environment.PRODUCTION:
            if self.sms_provider is SmsProvider.DEV or self.viber_provider is ViberProvider.DEV:
                problems.append(
                    "production needs real message providers: set KARTKA_SMS_PROVIDER and KARTKA_VIBER_PROVIDER "
                    "(the dev provider only stores messages)"
                )
            secret = self.secret_key.reveal()
            if secret == DEV_SECRET_KEY or len(secret) < 32:
                problems.append(
                    "production needs its own KARTKA_SECRET_KEY of at least 32 characters "
                    "(the development default is refused)"
                )
            if self.database_url is None:
                problems.append("production needs DATABASE_URL; the embedded PostgreSQL is for development only")
            if parsed.scheme != "https":
                problems.append("production needs an https KARTKA_PUBLIC_URL (wallet passes require TLS)")
            if self.argon2_memory_kib < OWASP_ARGON2_MEMORY_KIB or self.argon2_rounds < OWASP_ARGON2_ROUNDS:
                problems.append(
                    f"production hashes staff passwords at OWASP's minimum cost or more: KARTKA_ARGON2_MEMORY_KIB "
                    f">= {OWASP_ARGON2_MEMORY_KIB} and KARTKA_ARGON2_ROUNDS >= {OWASP_ARGON2_ROUNDS}"
                )
        if problems:
            raise SettingsError("; ".join(problems))

    def _abuse_problems(self) -> list[str]:
        problems: list[str] = []
        try:
            parse_networks(self.trusted_proxies)
        except ValueError as exc:
            problems.append(f"KARTKA_TRUSTED_PROXIES must list addresses or CIDRs, comma-separated: {exc}")
        try:
            self.sms_country_budgets  # noqa: B018 - parsed to be checked
        except ValueError as exc:
            problems.append(f"KARTKA_SMS_BUDGET_COUNTRIES {exc}")
        if self.otp_resend_max_seconds < self.otp_resend_seconds:
            problems.append("KARTKA_OTP_RESEND_MAX_SECONDS must be at least KARTKA_OTP_RESEND_SECONDS")
        return problems

    @property
    def sms_country_budgets(self) -> dict[str, int]:
        """``KARTKA_SMS_BUDGET_COUNTRIES`` as a mapping; ValueError names what is wrong."""
        budgets: dict[str, int] = {}
        for part in self.sms_budget_countries.split(","):
            if not part.strip():
                continue
            country, _, number = part.partition("=")
            country = country.strip().upper()
            if not re.fullmatch(r"[A-Z]{2}", country) or not number.strip().isdigit():
                raise ValueError(f"must read like 'RU=200,LT=50' (a country code, '=', texts per hour), not {part!r}")
            budgets[country] = int(number)
        return budgets

    def _provider_problems(self) -> list[str]:
        problems: list[str] = []
        if self.sms_provider is SmsProvider.INFOBIP or self.viber_provider is ViberProvider.INFOBIP:
            if self.infobip_api_key is None:
                problems.append("the infobip provider needs KARTKA_INFOBIP_API_KEY")
            if self.infobip_webhook_secret is None:
                problems.append("the infobip provider needs KARTKA_INFOBIP_WEBHOOK_SECRET for its delivery reports")
        if self.sms_provider is SmsProvider.TWILIO and not (
            self.twilio_account_sid and self.twilio_auth_token and self.twilio_from
        ):
            problems.append(
                "KARTKA_SMS_PROVIDER=twilio needs KARTKA_TWILIO_ACCOUNT_SID, KARTKA_TWILIO_AUTH_TOKEN "
                "and KARTKA_TWILIO_FROM"
            )
        apple = (self.pass_cert_file, self.pass_key_file, self.pass_wwdr_file)
        if any(v is not None for v in apple) and not all(v is not None for v in apple):
            problems.append(
                "Apple Wallet needs all of KARTKA_PASS_CERT_FILE, KARTKA_PASS_KEY_FILE and KARTKA_PASS_WWDR_FILE"
            )
        if (self.google_issuer_id is None) != (self.google_service_account_file is None):
            problems.append("Google Wallet needs both KARTKA_GOOGLE_ISSUER_ID and KARTKA_GOOGLE_SERVICE_ACCOUNT_FILE")
        if self.google_logo_url is not None and not self.google_logo_url.startswith("https://"):
            problems.append("KARTKA_GOOGLE_LOGO_URL must be an https URL (Google fetches the image)")
        apns = (self.apns_key_file, self.apns_key_id, self.apns_team_id, self.apns_topic)
        if any(v is not None for v in apns) and not all(v is not None for v in apns):
            problems.append(
                "app push to iOS needs all of KARTKA_APNS_KEY_FILE, KARTKA_APNS_KEY_ID, KARTKA_APNS_TEAM_ID "
                "and KARTKA_APNS_TOPIC"
            )
        return problems

    @property
    def public_base(self) -> str:
        return self.public_url.rstrip("/")

    def with_database_url(self, url: str) -> Settings:
        return msgspec.structs.replace(self, database_url=Secret(url))

    def describe(self) -> dict[str, str]:
        """Settings for a log line: secrets masked, the database URL without its password."""
        out: dict[str, str] = {}
        for field in msgspec.structs.fields(self):
            value = getattr(self, field.name)
            if field.name == "database_url":
                out[field.encode_name] = redact_url(value.reveal()) if value else "(embedded)"
            elif isinstance(value, Secret):
                out[field.encode_name] = repr(value)
            else:
                out[field.encode_name] = str(value)
        return out


def redact_url(url: str) -> str:
    """Return a connection URL with its password replaced, safe for logs."""
    parts = urllib.parse.urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _dec_hook(type_: type, obj: Any) -> Any:
    if isinstance(obj, type_):
        return obj
    if type_ is Secret and isinstance(obj, str):
        return Secret(obj)
    if type_ is Path and isinstance(obj, str):
        return Path(obj)
    raise NotImplementedError(f"cannot read {type_!r} from the environment")


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build settings from an environment mapping (``os.environ`` by default) plus explicit overrides.

    Overrides use field names and already-typed values; they exist for tests and the CLI's flags.
    """
    source = os.environ if environ is None else environ
    raw: dict[str, Any] = {env: source[env] for env in ENV.values() if source.get(env, "") != ""}
    if "KARTKA_LOG_LEVEL" in raw:
        raw["KARTKA_LOG_LEVEL"] = raw["KARTKA_LOG_LEVEL"].upper()
    for name, value in overrides.items():
        if name not in ENV:
            raise TypeError(f"unknown setting {name!r}")
        raw[ENV[name]] = value
    try:
        return msgspec.convert(raw, Settings, strict=False, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        raise SettingsError(f"invalid configuration: {exc}".replace("`$.", "`")) from exc


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    return load_settings()
