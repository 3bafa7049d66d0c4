"""The authenticated caller, as every layer below the auth middleware sees it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

TokenKind = Literal["personal", "engram", "external", "session"]


@dataclass(frozen=True, slots=True)
class Principal:
    email: str
    scopes: frozenset[str]
    kind: TokenKind
    # The client the caller acts through: an OAuth client id, "pat:<token id>", or an issuer's azp.
    client_id: str
    client_name: str
    token_id: str | None = None
    claims: dict[str, object] = field(default_factory=dict, compare=False, repr=False)

    def has(self, scope: str) -> bool:
        return scope in self.scopes
