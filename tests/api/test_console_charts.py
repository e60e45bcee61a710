"""The dashboard's chart geometry (api/console/charts.py), without a browser: axes, gaps, the table."""

from __future__ import annotations

import pytest

from api.console.charts import BOTTOM, HEIGHT, LEFT, RIGHT, TOP, WIDTH, Series, line_chart, nice_ceiling, y_scale


def percent(value: float) -> str:
    return f"{value * 100:g}%"


def test_round_ceilings() -> None:
    assert [nice_ceiling(v) for v in (0, 0.3, 1, 1.2, 2.2, 3, 7, 8000, 1234)] == [1, 0.5, 1, 2, 2.5, 5, 10, 10000, 2000]


def test_an_axis_starts_at_zero_and_ends_on_a_round_gridline() -> None:
    assert y_scale([1200, 350]) == (0.0, 2000.0, [0, 500, 1000, 1500, 2000])
    assert y_scale([0.7], top=1.0) == (0.0, 1.0, [0, 0.25, 0.5, 0.75, 1.0])
    low, high, ticks = y_scale([-30, 80])
    assert (low, high) == (-50.0, 100.0)
    assert 0 in ticks
    assert y_scale([]) == (0.0, 1.0, [0, 0.25, 0.5, 0.75, 1.0])


def test_a_missing_value_breaks_the_line_and_the_table_says_so() -> None:
    chart = line_chart(
        "shares",
        "Share",
        ["01.02", "02.02", "03.02", "04.02"],
        [Series("receipts", [0.5, None, 1.0, 0.25]), Series("revenue", [None, None, None, None])],
        percent,
        top=1.0,
    )
    receipts, revenue = chart.lines
    bottom, top = HEIGHT - BOTTOM, TOP
    # Four periods across the plot: x at the left edge, a third, two thirds and the right edge.
    assert (LEFT, WIDTH - RIGHT, top, bottom) == (96, 610, 14, 224)
    assert receipts.paths == ["M96 119", "M438.7 14 L610 171.5"]
    assert len(receipts.dots) == 3
    assert revenue.paths == []
    assert revenue.dots == []
    assert receipts.colour != revenue.colour
    assert receipts.dash != revenue.dash
    assert [t.label for t in chart.y_ticks] == ["0%", "25%", "50%", "75%", "100%"]
    assert chart.y_ticks[0].at == bottom
    assert chart.y_ticks[-1].at == top
    assert chart.table == [
        ("01.02", ["50%", "—"]),
        ("02.02", ["—", "—"]),
        ("03.02", ["100%", "—"]),
        ("04.02", ["25%", "—"]),
    ]
    assert not chart.empty


def test_one_period_sits_in_the_middle_and_no_values_make_an_empty_chart() -> None:
    one = line_chart("one", "One", ["01.02"], [Series("a", [3.0])], str)
    assert one.lines[0].dots == [(353.0, 98.0)]  # the middle; 3 on an axis up to 5
    assert [t.label for t in one.x_ticks] == ["01.02"]
    empty = line_chart("none", "None", ["01.02", "02.02"], [Series("a", [None, None])], str)
    assert empty.empty


def test_long_series_label_a_few_periods_and_drop_the_dots() -> None:
    days = [f"{d:02d}" for d in range(90)]
    chart = line_chart("long", "Long", days, [Series("a", [float(d) for d in range(90)])], str)
    labels = [t.label for t in chart.x_ticks]
    assert labels[0] == "00"
    assert labels[-1] == "89"
    assert 4 <= len(labels) <= 8
    assert chart.lines[0].dots == []
    assert len(chart.lines[0].paths) == 1


def test_series_must_match_the_periods() -> None:
    with pytest.raises(ValueError, match="has 1 values for 2 periods"):
        line_chart("bad", "Bad", ["a", "b"], [Series("x", [1.0])], str)
