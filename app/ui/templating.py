"""Jinja filters the UI templates use (registered on the app's template engine)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from litestar.plugins.jinja import JinjaTemplateEngine
from markupsafe import Markup, escape


def when(value: datetime | None) -> str:
    """An absolute time, in UTC (the server cannot know the reader's zone)."""
    if value is None:
        return "never"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def iso(value: datetime | None) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds") if value else ""


def ago(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return "never"
    seconds = int(((now or datetime.now(UTC)) - value).total_seconds())
    if seconds < 0:
        return when(value)
    for size, unit in ((86400 * 365, "year"), (86400 * 30, "month"), (86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'' if n == 1 else 's'} ago"
    return "just now"


def ticks(value: str) -> Markup:
    """Text with `backtick` spans shown as code (everything escaped)."""
    parts = value.split("`")
    if len(parts) % 2 == 0:  # an unmatched backtick: show the text as it is
        return escape(value)
    return Markup("").join(escape(p) if i % 2 == 0 else Markup("<code>%s</code>") % p for i, p in enumerate(parts))


def configure(engine: Any) -> None:
    assert isinstance(engine, JinjaTemplateEngine)
    engine.engine.filters.update(when=when, iso=iso, ago=ago, ticks=ticks)
