"""Geometry of the dashboard's 30-day chart: bars for memories added, a line for searches.

The plot is an SVG stretched to its box (so it fits 360 px and a desktop alike); the axis labels
are HTML around it, so text never scales with the drawing. No script runs in the browser.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from app.memories.schemas import DailyCount

SLOT = 10  # viewBox units per day
HEIGHT = 100


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass(frozen=True)
class Label:
    index: int
    text: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    line: str
    top: int
    x_labels: list[Label]
    days: list[DailyCount]
    total_added: int
    total_searched: int


def nice_top(value: int) -> int:
    """The chart's top: twice the smallest of 1, 2, 5 × 10^k reaching half of `value`, so the middle
    gridline is a whole number too."""
    half = max(1, -(-value // 2))
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= half:
                return 2 * step * factor
        step *= 10


def _short(day: str) -> str:
    parsed = date.fromisoformat(day)
    return f"{parsed.strftime('%b')} {parsed.day}"


def build(days: list[DailyCount]) -> Chart:
    top = nice_top(max([d.added for d in days] + [d.accessed for d in days] + [0]))

    def y_of(value: int) -> float:
        return round(HEIGHT - HEIGHT * value / top, 2)

    bars = [
        Bar(
            x=i * SLOT + 2,
            y=y_of(d.added),
            width=SLOT - 4,
            height=round(HEIGHT * d.added / top, 2),
            title=f"{d.day}: {d.added} added",
        )
        for i, d in enumerate(days)
    ]
    line = " ".join(f"{i * SLOT + SLOT / 2},{y_of(d.accessed)}" for i, d in enumerate(days))
    last = len(days) - 1
    x_labels = [
        Label(index=i, text=_short(d.day)) for i, d in enumerate(days) if (i % 7 == 0 and i <= last - 5) or i == last
    ]
    return Chart(
        width=len(days) * SLOT,
        height=HEIGHT,
        bars=bars,
        line=line,
        top=top,
        x_labels=x_labels,
        days=days,
        total_added=sum(d.added for d in days),
        total_searched=sum(d.accessed for d in days),
    )
