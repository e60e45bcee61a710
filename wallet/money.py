"""Integer arithmetic for money and points: minor units in, minor units out, no floats anywhere.

Points are hundredths of a point and 1 point = 1 currency unit, so a point amount and a money amount
in minor units are the same integer scale.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Sequence
from datetime import datetime

BP = 10_000  # basis points in a whole


def share_floor(amount: int, bp: int) -> int:
    """``amount * bp / 10000`` rounded down: never grant more than the rule says."""
    return amount * bp // BP


def share_round(amount: int, bp: int) -> int:
    """``amount * bp / 10000`` rounded half up: for discounts shown to shoppers."""
    return (amount * bp + BP // 2) // BP


def allocate(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` in proportion to ``weights`` so the parts add up exactly (largest remainder).

    Used to spread points spent and points earned over cart lines, so that returning part of a
    purchase later takes back exactly that part's share.
    """
    if total < 0 or (weights and min(weights) < 0):
        raise ValueError("allocate needs a non-negative total and weights")
    if len(weights) == 1 and weights[0]:  # the usual cases, worked out directly (pricing calls this a lot)
        return [total]
    if len(weights) == 2:
        first, second = weights
        weight_sum = first + second
        if weight_sum:
            parts = [total * first // weight_sum, total * second // weight_sum]
            if parts[0] + parts[1] < total:  # one short at most: the larger remainder, of equal ones the first
                parts[0 if total * first % weight_sum >= total * second % weight_sum else 1] += 1
            return parts
    weight_sum = sum(weights)
    if weight_sum == 0:
        if total:
            raise ValueError("cannot allocate a positive total over zero weights")
        return [0] * len(weights)
    parts = [total * w // weight_sum for w in weights]
    short = total - sum(parts)
    if short:  # the largest remainders get one more each; of equal ones the first (a stable sort keeps order)
        behind = [-(total * w % weight_sum) for w in weights]
        for i in sorted(range(len(weights)), key=behind.__getitem__)[:short]:
            parts[i] += 1
    return parts


def prorate(total: int, done: int, of: int) -> int:
    """The share of ``total`` that ``done`` out of ``of`` units carry, rounded down; used cumulatively
    (share after minus share before) so that returning everything in parts adds up to ``total``."""
    if of <= 0 or not 0 <= done <= of:
        raise ValueError("prorate needs 0 <= done <= of and of > 0")
    return total * done // of


def add_months(moment: datetime, months: int) -> datetime:
    """The same wall-clock time ``months`` calendar months later, clamped to the month's last day
    (31 August + 6 months = 28 or 29 February)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


_POINTS_TEXT = re.compile(r"^(?P<whole>[0-9]{1,11})(?:[.,](?P<frac>[0-9]{1,2}))?$")


def parse_points(text: str) -> int:
    """Points as people type them (``12,50``, ``12.5``, ``1 000``) in hundredths; ValueError otherwise.

    A comma or a point is the decimal separator (Russian and English habits); spaces, including the
    no-break space a copied figure carries, group thousands. More than two decimals is refused rather
    than rounded: a grant is what the person meant, to the hundredth.
    """
    compact = re.sub(r"[\s\u00a0\u202f]", "", text)
    match = _POINTS_TEXT.match(compact)
    if match is None:
        raise ValueError(f"{text!r} is not a number of points (such as 12,50)")
    frac = (match["frac"] or "").ljust(2, "0")
    return int(match["whole"]) * 100 + int(frac)
