"""Reading what a person typed: tags, metadata JSON, dates and ids, with messages they can act on."""

from __future__ import annotations

import json
import uuid
from datetime import date
from typing import Any

TAG_MAX = 64
TAGS_MAX = 32


class FormError(ValueError):
    """Input a person can fix; the message says how."""


def parse_tags(raw: str) -> list[str]:
    tags = [t.strip() for t in raw.split(",") if t.strip()]
    if len(tags) > TAGS_MAX:
        raise FormError(f"At most {TAGS_MAX} tags; this has {len(tags)}.")
    long = [t for t in tags if len(t) > TAG_MAX]
    if long:
        raise FormError(f"A tag may be at most {TAG_MAX} characters: {long[0][:20]}… is longer.")
    return tags


def parse_metadata(raw: str) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise FormError(f"Metadata is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}).") from None
    if not isinstance(value, dict):
        raise FormError('Metadata must be a JSON object, such as {"source": "notes"}.')
    return value


def format_metadata(metadata: dict[str, Any]) -> str:
    return json.dumps(metadata, indent=2, ensure_ascii=False) if metadata else ""


def parse_date(raw: str, label: str) -> date | None:
    if not raw.strip():
        return None
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        raise FormError(f"{label} must be a date like 2026-01-31.") from None


def parse_uuid(raw: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw.strip())
    except ValueError:
        raise FormError(f"That is not a valid {what} id.") from None


def parse_choice(raw: str, choices: tuple[str, ...], default: str) -> str:
    return raw if raw in choices else default
