"""Scopes. A broader scope implies the narrower ones: delete ⊃ write ⊃ read."""

from __future__ import annotations

from collections.abc import Iterable

READ = "memories:read"
WRITE = "memories:write"
DELETE = "memories:delete"

ALL_SCOPES = (READ, WRITE, DELETE)
_IMPLIES = {DELETE: (DELETE, WRITE, READ), WRITE: (WRITE, READ), READ: (READ,)}


def expand(scopes: Iterable[str]) -> frozenset[str]:
    """The effective scopes: known scopes plus everything they imply; unknown ones are dropped."""
    effective: set[str] = set()
    for scope in scopes:
        effective.update(_IMPLIES.get(scope, ()))
    return frozenset(effective)


def parse(raw: str | Iterable[str] | None) -> frozenset[str]:
    """From a space-separated `scope` claim or a list."""
    if raw is None:
        return frozenset()
    items = raw.split() if isinstance(raw, str) else list(raw)
    return expand(items)
