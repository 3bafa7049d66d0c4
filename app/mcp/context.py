"""Who is calling: set by the transport wrapper for one HTTP request, read by the tools."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from app.auth.principal import Principal
from app.services import Services


@dataclass(frozen=True, slots=True)
class McpCall:
    principal: Principal
    services: Services
    request_id: str | None


# The SDK runs a request's handlers in tasks started from the request's own task, so they inherit
# this value; nothing outside one HTTP request ever sees it.
current_call: ContextVar[McpCall | None] = ContextVar("engram_mcp_call", default=None)
