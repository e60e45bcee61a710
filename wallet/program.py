"""The loyalty program's configuration: one documented place, validated on load.

Defaults are the #Veskabonus rules from the seeds (tiers Standart / Gold / Platinum at 0 / 500.00 /
1500.00 spent in 365 days earning 5 / 10 / 15 %, points available after 24 hours and expiring after six
calendar months, at most 70 % of a cart paid with points). Promotions are not program rules: they are
managed data (``engine.promotions``; ``kartka promotions import`` moves old ``[[promotions]]``). A TOML file named by
``KARTKA_PROGRAM_FILE`` overrides any of them; ``kartka program show`` prints the program in force and
``kartka program check FILE`` validates a file. See ``docs/program.md``.

Money is integer minor units; rates are basis points (500 = 5.00 %).
"""

from __future__ import annotations

import tomllib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from wallet.money import add_months

Code = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
Title = Annotated[str, msgspec.Meta(min_length=1, max_length=120)]
Bp = Annotated[int, msgspec.Meta(ge=0, le=10_000)]
Minor = Annotated[int, msgspec.Meta(ge=0)]
AwareTime = Annotated[datetime, msgspec.Meta(tz=True)]


_QUIET_HOURS = r"^([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9]$"


class ProgramError(ValueError):
    """The program configuration cannot be used."""


class Tier(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    code: Code
    name: Title
    threshold: Minor
    """Money spent in the tier window (minor units) from which the tier applies."""
    rate_bp: Bp
    """Accrual rate in basis points of the money paid on eligible lines."""


#: The standard RFM segment map, as a grid of recency (rows, 5 = most recent) against the mean of the
#: frequency and monetary scores (columns, rounded half up, 1..5). Each of the 125 codes R F M lands in
#: the cell of its R and round((F + M) / 2); :data:`DEFAULT_RFM_SEGMENTS` spells the codes out.
RFM_GRID: Final = {
    #    FM = 1            2                      3                      4            5
    5: ("new", "potential_loyalists", "potential_loyalists", "champions", "champions"),
    4: ("promising", "potential_loyalists", "potential_loyalists", "loyal", "champions"),
    3: ("about_to_sleep", "about_to_sleep", "need_attention", "loyal", "loyal"),
    2: ("hibernating", "hibernating", "at_risk", "at_risk", "cannot_lose"),
    1: ("lost", "lost", "at_risk", "at_risk", "cannot_lose"),
}

RfmCode = Annotated[str, msgspec.Meta(pattern=r"^[1-5]{3}$")]


def _grid_codes() -> dict[str, tuple[str, ...]]:
    segments: dict[str, list[str]] = {}
    for r in range(5, 0, -1):
        for f in range(5, 0, -1):
            for m in range(5, 0, -1):
                fm = (f + m + 1) // 2  # half up: (4 + 5) / 2 = 4.5 -> 5
                segments.setdefault(RFM_GRID[r][fm - 1], []).append(f"{r}{f}{m}")
    return {name: tuple(codes) for name, codes in segments.items()}


DEFAULT_RFM_SEGMENTS: Final = _grid_codes()


class Rfm(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """RFM scoring: R, F, M are quintiles (1-5) of the customers who bought in the window."""

    window_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] = 365
    segments: dict[Code, tuple[RfmCode, ...]] = msgspec.field(default_factory=lambda: dict(DEFAULT_RFM_SEGMENTS))
    """Segment name -> the RFM codes (``"545"``: R 5, F 4, M 5) it holds; every one of the 125 codes once."""

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        for name, codes in self.segments.items():
            for code in codes:
                if code in seen:
                    raise ValueError(f"rfm: code {code} is in both {seen[code]} and {name}")
                seen[code] = name
        missing = sorted({f"{r}{f}{m}" for r in "12345" for f in "12345" for m in "12345"} - set(seen))
        if missing:
            more = "..." if len(missing) > 10 else ""
            raise ValueError(f"rfm: codes {', '.join(missing[:10])}{more} have no segment")

    def segment_of(self, code: str) -> str:
        return next(name for name, codes in self.segments.items() if code in codes)


class Lifecycle(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Lifecycle stages. T50 / T90 (days) are the gaps between purchases that 50 % / 90 % of the
    program's observed gaps do not exceed, estimated daily; set them here to override the estimate."""

    new_days: Annotated[int, msgspec.Meta(ge=1, le=365)] = 30
    t50_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] | None = None
    t90_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] | None = None
    gap_window_days: Annotated[int, msgspec.Meta(ge=30, le=3650)] = 730
    """Gaps between purchases made in this many days feed the estimate."""
    min_gaps: Annotated[int, msgspec.Meta(ge=1)] = 100
    """With fewer gaps observed, the fallbacks below are used instead of an estimate."""
    fallback_t50_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] = 30
    fallback_t90_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] = 90

    def __post_init__(self) -> None:
        if self.t50_days is not None and self.t90_days is not None and self.t50_days > self.t90_days:
            raise ValueError("lifecycle: t50_days must not exceed t90_days")
        if self.fallback_t50_days > self.fallback_t90_days:
            raise ValueError("lifecycle: fallback_t50_days must not exceed fallback_t90_days")


class Program(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    tiers: tuple[Tier, ...] = (
        Tier(code="standart", name="Standart", threshold=0, rate_bp=500),
        Tier(code="gold", name="Gold", threshold=50_000, rate_bp=1_000),
        Tier(code="platinum", name="Platinum", threshold=150_000, rate_bp=1_500),
    )
    tier_window_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] = 365
    redeem_cap_bp: Bp = 7_000
    """At most this share of the eligible cart total (after discounts) may be paid with points."""
    pending_hours: Annotated[int, msgspec.Meta(ge=0, le=24 * 365)] = 24
    expiry_months: Annotated[int, msgspec.Meta(ge=1, le=120)] = 6
    expiring_soon_days: Annotated[int, msgspec.Meta(ge=1, le=365)] = 7
    offline_days: Annotated[int, msgspec.Meta(ge=1, le=365)] = 30
    """How old a purchase an offline till may still send (``purchased_at``)."""
    refund_policy: Literal["debt", "forgive"] = "debt"
    """What a refund does when the points it takes back were already spent: ``debt`` leaves a
    negative balance that later accruals repay; ``forgive`` takes back only what is still there."""
    tier_nudge_within: Minor = 5_000
    """Tell the shopper how much more to spend for the next tier when it is at most this far (0: never)."""
    grant_max_points: Annotated[int, msgspec.Meta(ge=1)] = 10_000_000
    birthday_bonus_points: Minor = 0
    """Points given on the shopper's birthday (the one they set in the app), once a year (0: none)."""
    birthday_bonus_days: Annotated[int, msgspec.Meta(ge=1, le=365)] = 30
    """How long a birthday bonus stays usable."""
    birthday_notice_days: Annotated[int, msgspec.Meta(ge=0, le=366)] = 30
    """A birthday set or changed fewer days before it brings no bonus that year (setting today's date
    in the app to collect one at once)."""
    language: Literal["ru", "en"] = "ru"
    currency: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")] = "BYN"
    timezone: str = "Europe/Minsk"
    notify_channels: tuple[Literal["app", "viber", "sms"], ...] = ("app", "viber", "sms")
    """Default order of channels for a shopper who has not chosen one (the first one available wins)."""
    quiet_hours: Annotated[str, msgspec.Meta(pattern=_QUIET_HOURS)] = "21:00-09:00"
    """Local time span in which no marketing message goes out (the shopper's store's time zone)."""
    expiry_reminder_days: Annotated[int, msgspec.Meta(ge=0, le=90)] = 14
    """Remind the shopper this many days before points expire (0: never)."""
    promotion_approval: bool = True
    """Four eyes on promotions: a submitted revision goes live only when an admin other than its author
    approves it. ``false`` makes submitting enough (a small shop with one marketer)."""
    rfm: Rfm = msgspec.field(default_factory=Rfm)
    """``[rfm]``: the scoring window and the map of the 125 RFM codes to named segments."""
    lifecycle: Lifecycle = msgspec.field(default_factory=Lifecycle)
    """``[lifecycle]``: when a customer is new, and the churn thresholds' override."""

    def __post_init__(self) -> None:
        if not self.tiers or self.tiers[0].threshold != 0:
            raise ValueError("the first tier must start at a threshold of 0")
        thresholds = [t.threshold for t in self.tiers]
        if thresholds != sorted(set(thresholds)):
            raise ValueError("tier thresholds must be strictly increasing")
        if len({t.code for t in self.tiers}) != len(self.tiers):
            raise ValueError("tier codes must be unique")
        if self.pending_hours >= self.expiry_months * 28 * 24:
            raise ValueError("pending_hours must be shorter than expiry_months: points would expire before use")
        if self.offline_days * 24 * 60 * 60 > self.expiry_months * 28 * 24 * 60 * 60:
            raise ValueError("offline_days must be shorter than expiry_months")
        if not self.notify_channels or len(set(self.notify_channels)) != len(self.notify_channels):
            raise ValueError("notify_channels must list each channel at most once, and at least one")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {self.timezone!r}") from exc

    # -- tiers ----------------------------------------------------------------------------------

    @property
    def base_tier(self) -> Tier:
        return self.tiers[0]

    def tier(self, code: str) -> Tier:
        for tier in self.tiers:
            if tier.code == code:
                return tier
        return self.base_tier  # a tier removed from the configuration falls back to the base

    def tier_for_spend(self, spend: int) -> Tier:
        current = self.tiers[0]
        for tier in self.tiers:
            if spend >= tier.threshold:
                current = tier
        return current

    def next_tier(self, tier: Tier) -> Tier | None:
        index = self.tiers.index(tier) if tier in self.tiers else 0
        return self.tiers[index + 1] if index + 1 < len(self.tiers) else None

    def rank(self, code: str) -> int:
        return next((i for i, t in enumerate(self.tiers) if t.code == code), 0)

    # -- time -----------------------------------------------------------------------------------

    @property
    def quiet_minutes(self) -> tuple[int, int]:
        """The default quiet hours as (start, end) minutes after local midnight."""
        start, end = self.quiet_hours.split("-")
        return _minutes(start), _minutes(end)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def available_at(self, purchased_at: datetime) -> datetime:
        return purchased_at + timedelta(hours=self.pending_hours)

    def expires_at(self, purchased_at: datetime) -> datetime:
        """Calendar months in the program's time zone: a purchase on 31 August at 21:00 in Minsk
        expires on the last day of February at 21:00 Minsk time."""
        local = purchased_at.astimezone(self.zone)
        return add_months(local, self.expiry_months).astimezone(purchased_at.tzinfo)

    def tier_window_start(self, now: datetime) -> datetime:
        return now - timedelta(days=self.tier_window_days)

    def expiring_soon_until(self, now: datetime) -> datetime:
        return now + timedelta(days=self.expiring_soon_days)


DEFAULT_PROGRAM = Program()


def load_program(path: Path | None) -> Program:
    """The default program, overridden by the TOML file at ``path`` when one is given."""
    if path is None:
        return DEFAULT_PROGRAM
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProgramError(f"cannot read the program file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ProgramError(f"the program file {path} is not valid TOML: {exc}") from exc
    if "promotions" in data:
        raise ProgramError(
            f"the program file {path} carries [[promotions]]: promotions are managed data now; "
            f"load them with `kartka promotions import {path}` and remove them from the file"
        )
    try:
        return msgspec.convert(data, Program)
    except msgspec.ValidationError as exc:
        raise ProgramError(f"the program file {path} is invalid: {exc}".replace("`$.", "`")) from exc


def encode_program(program: Program) -> str:
    """The program as TOML-like JSON for ``kartka program show`` (JSON: it round-trips through msgspec)."""
    return msgspec.json.format(msgspec.json.encode(program)).decode()


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)
