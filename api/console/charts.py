"""Line charts for the console, drawn on the server: the geometry of an inline SVG (the template
``console/dashboard/chart.html`` writes the elements), no script and no chart library.

A chart is a few series over the same periods (days, weeks or months), a value per period or none (a
gap: nothing to divide by). The y axis starts at zero and ends at a round number (shares at 100 %), with
four or five gridlines; the x axis names the first, the last and a few periods between. The same numbers
come back formatted, for the table under the chart (a chart is not the only way to read them).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

#: The drawing's own units (the SVG scales to its box, keeping its proportions).
WIDTH: Final = 640
HEIGHT: Final = 260
LEFT: Final = 96
RIGHT: Final = 30
TOP: Final = 14
BOTTOM: Final = 36
#: Colours of the series, in order: dark enough on white for WCAG's 3:1 for graphics.
COLOURS: Final = ("#2f6d3a", "#1b4f9c", "#a1261c", "#6b4c9a")
#: Periods are marked with a dot up to this many (beyond, dots would only blur the line).
MAX_DOTS: Final = 62
_X_LABELS: Final = 6

Format = Callable[[float], str]


@dataclass(frozen=True, slots=True)
class Series:
    label: str
    values: Sequence[float | None]


@dataclass(frozen=True, slots=True)
class Tick:
    at: float
    """Position along the axis, in drawing units."""
    label: str


@dataclass(frozen=True, slots=True)
class Line:
    label: str
    colour: str
    paths: list[str]
    """SVG path data, one per unbroken run of values (a missing value breaks the line)."""
    dots: list[tuple[float, float]]
    dash: str
    """A dash pattern, so series differ by more than their colour."""


@dataclass(frozen=True, slots=True)
class Chart:
    id: str
    title: str
    periods: list[str]
    lines: list[Line]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    table: list[tuple[str, list[str]]]
    """Per period: its label and each series' value, formatted ("—" where there is none)."""
    empty: bool
    """No series has a value: the page says so instead of drawing an empty frame."""
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = WIDTH - RIGHT
    top: int = TOP
    bottom: int = HEIGHT - BOTTOM


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten that is at least ``value`` (positive)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power * (1 + 1e-9):
            return float(step * power)
    return float(10 * power)  # pragma: no cover - the loop always ends at 10


def y_scale(values: Sequence[float], *, top: float | None = None) -> tuple[float, float, list[float]]:
    """(lowest, highest, gridlines) of an axis holding ``values``: from zero (or a round number below the
    smallest negative value) to a round number, or to ``top`` when it is fixed (shares: 1)."""
    high = top if top is not None else nice_ceiling(max([0.0, *values]))
    low = 0.0 if not values or min(values) >= 0 else -nice_ceiling(-min(values))
    if high == 0 and low == 0:
        high = 1.0
    span = high - low
    step = nice_ceiling(span / 4)
    if span / step < 3:
        step = nice_ceiling(span / 5)
    first = math.ceil(low / step) * step
    count = round((high - first) / step)
    ticks = [first + i * step for i in range(count + 1)]
    return low, max(high, ticks[-1]), ticks


def _fmt(value: float) -> str:
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def line_chart(
    chart_id: str,
    title: str,
    periods: Sequence[str],
    series: Sequence[Series],
    fmt: Format,
    *,
    top: float | None = None,
    tick_fmt: Format | None = None,
) -> Chart:
    """The geometry of a line chart of ``series`` over ``periods`` (labels, in order)."""
    n = len(periods)
    for s in series:
        if len(s.values) != n:
            raise ValueError(f"series {s.label!r} has {len(s.values)} values for {n} periods")
    known = [v for s in series for v in s.values if v is not None]
    low, high, ticks = y_scale(known, top=top)
    x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM, TOP

    def x(i: int) -> float:
        return (x0 + x1) / 2 if n <= 1 else x0 + (x1 - x0) * i / (n - 1)

    def y(value: float) -> float:
        return y0 - (y0 - y1) * (value - low) / (high - low)

    lines: list[Line] = []
    for index, s in enumerate(series):
        paths: list[str] = []
        run: list[str] = []
        dots: list[tuple[float, float]] = []
        for i, value in enumerate(s.values):
            if value is None:
                if run:
                    paths.append(" ".join(run))
                run = []
                continue
            px, py = round(x(i), 1), round(y(value), 1)
            run.append(f"{'M' if not run else 'L'}{_fmt(px)} {_fmt(py)}")
            if n <= MAX_DOTS:
                dots.append((px, py))
        if run:
            paths.append(" ".join(run))
        lines.append(
            Line(
                label=s.label,
                colour=COLOURS[index % len(COLOURS)],
                paths=paths,
                dots=dots,
                dash=("", "6 4", "2 3", "8 3 2 3")[index % 4],
            )
        )
    label_tick = tick_fmt or fmt
    y_ticks = [Tick(round(y(t), 1), label_tick(t)) for t in ticks]
    every = max(1, math.ceil(n / _X_LABELS))
    shown = sorted({*range(0, n, every), n - 1}) if n else []
    if len(shown) >= 2 and shown[-1] - shown[-2] < every / 2:
        shown.pop(-2)  # the last label would crowd the one before it
    x_ticks = [Tick(round(x(i), 1), periods[i]) for i in shown]
    table = [(periods[i], [("—" if s.values[i] is None else fmt(s.values[i] or 0)) for s in series]) for i in range(n)]
    return Chart(
        id=chart_id,
        title=title,
        periods=list(periods),
        lines=lines,
        y_ticks=y_ticks,
        x_ticks=x_ticks,
        table=table,
        empty=not known,
    )
