"""The loyalty program's configuration: tiers with their spend thresholds and accrual rates.

Money is integer minor units (kopecks); rates are basis points (500 = 5.00%).
"""

from __future__ import annotations

from typing import Annotated

import msgspec


class Tier(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    code: Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    threshold: Annotated[int, msgspec.Meta(ge=0)]
    """Money spent in the window (minor units) from which the tier applies."""
    rate_bp: Annotated[int, msgspec.Meta(ge=0, le=10_000)]
    """Accrual rate in basis points of the money paid."""


class Program(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    tiers: tuple[Tier, ...]

    def __post_init__(self) -> None:
        if not self.tiers or self.tiers[0].threshold != 0:
            raise ValueError("the first tier must start at a threshold of 0")
        thresholds = [t.threshold for t in self.tiers]
        if thresholds != sorted(set(thresholds)):
            raise ValueError("tier thresholds must be strictly increasing")
        if len({t.code for t in self.tiers}) != len(self.tiers):
            raise ValueError("tier codes must be unique")

    @property
    def base_tier(self) -> Tier:
        return self.tiers[0]

    def tier_for_spend(self, spend: int) -> Tier:
        current = self.tiers[0]
        for tier in self.tiers:
            if spend >= tier.threshold:
                current = tier
        return current

    def next_tier(self, tier: Tier) -> Tier | None:
        index = self.tiers.index(tier)
        return self.tiers[index + 1] if index + 1 < len(self.tiers) else None


DEFAULT_PROGRAM = Program(
    tiers=(
        Tier(code="standart", name="Standart", threshold=0, rate_bp=500),
        Tier(code="gold", name="Gold", threshold=50_000, rate_bp=1_000),
        Tier(code="platinum", name="Platinum", threshold=150_000, rate_bp=1_500),
    )
)
