"""The dashboard chart's geometry: whole-number gridlines, bars and line inside the plot."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from app.memories.schemas import DailyCount
from app.ui.chart import HEIGHT, SLOT, build, nice_top


@pytest.mark.parametrize(("value", "top"), [(0, 2), (1, 2), (3, 4), (4, 4), (5, 10), (10, 10), (11, 20), (99, 100)])
def test_the_top_is_even_and_round(value: int, top: int) -> None:
    assert nice_top(value) == top


def test_thirty_days_of_bars_and_a_line() -> None:
    start = date(2026, 10, 29)
    days = [
        DailyCount(day=(start + timedelta(days=i)).isoformat(), added=i % 4, accessed=(i * 3) % 7) for i in range(30)
    ]
    chart = build(days)
    assert chart.top == nice_top(6) == 10
    assert chart.width == 30 * SLOT
    assert len(chart.bars) == 30
    for bar in chart.bars:
        assert 0 <= bar.y <= HEIGHT
        assert bar.y + bar.height == pytest.approx(HEIGHT)
    assert chart.bars[3].title == "2026-11-01: 3 added"
    points = [tuple(map(float, p.split(","))) for p in chart.line.split()]
    assert len(points) == 30
    assert all(0 <= y <= HEIGHT for _, y in points)
    assert [label.index for label in chart.x_labels] == [0, 7, 14, 21, 29]
    assert chart.x_labels[0].text == "Oct 29"
    assert (chart.total_added, chart.total_searched) == (
        sum(i % 4 for i in range(30)),
        sum((i * 3) % 7 for i in range(30)),
    )
