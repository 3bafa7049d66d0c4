"""Reading what a person typed into the UI's forms, and the text filters of its templates."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from markupsafe import Markup

from app.ui.forms import FormError, parse_date, parse_metadata, parse_tags
from app.ui.templating import ago, ticks, when


def test_tags() -> None:
    assert parse_tags(" coffee, Habits ,, ") == ["coffee", "Habits"]
    assert parse_tags("") == []
    with pytest.raises(FormError, match="At most 32 tags"):
        parse_tags(",".join(f"t{i}" for i in range(33)))
    with pytest.raises(FormError, match="at most 64 characters"):
        parse_tags("x" * 65)


def test_metadata() -> None:
    assert parse_metadata("  ") == {}
    assert parse_metadata('{"a": [1, 2]}') == {"a": [1, 2]}
    with pytest.raises(FormError, match="not valid JSON"):
        parse_metadata("{nope")
    with pytest.raises(FormError, match="must be a JSON object"):
        parse_metadata('"text"')


def test_dates() -> None:
    assert parse_date("2026-01-31", "From") == date(2026, 1, 31)
    assert parse_date("", "From") is None
    with pytest.raises(FormError, match="From must be a date"):
        parse_date("31/01/2026", "From")


def test_backticks_become_code_and_everything_else_is_escaped() -> None:
    rendered = ticks("Run `claude <x>` then <b>go</b>")
    assert isinstance(rendered, Markup)
    assert str(rendered) == "Run <code>claude &lt;x&gt;</code> then &lt;b&gt;go&lt;/b&gt;"
    assert str(ticks("one ` unmatched <i>")) == "one ` unmatched &lt;i&gt;"


def test_times() -> None:
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    assert ago(now - timedelta(seconds=30), now) == "just now"
    assert ago(now - timedelta(minutes=1), now) == "1 minute ago"
    assert ago(now - timedelta(days=3, hours=2), now) == "3 days ago"
    assert ago(None) == "never"
    assert when(now) == "2026-11-27 12:00 UTC"
