"""The MCP server: instructions, the memory tools, and a tool list scoped to the caller's token."""

from __future__ import annotations

from typing import Any

from mcp.server.caching import CacheableMethod, CacheHint
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import Tool

from app.mcp import tools
from app.mcp.context import current_call

INSTRUCTIONS = """\
Engram is the user's long-term memory, shared by every assistant and app they connect. Use it so \
the user never has to repeat themselves.
- Before answering anything that may depend on the user (their preferences, people, projects, \
plans, past decisions), call search_memory with a short query about the topic.
- When the user tells you something durable about themselves, or asks you to remember something, \
call add_memories with one self-contained sentence per fact that will make sense on its own months \
later ("Prefers dark roast coffee", not "likes it").
- Never store secrets (passwords, API keys, tokens, card or account numbers) or passing chit-chat.
- When a fact changes, search for it and call update_memory on that memory instead of adding a \
duplicate; call delete_memories when the user asks you to forget something.
- Tell the user when you store, change or delete a memory."""

# Results depend on the token (tools/list hides what its scopes do not allow), so a cached answer
# may be reused only within the same authorization context: `private`, never `public`.
_PRIVATE = CacheHint(ttl_ms=300_000, scope="private")
CACHE_HINTS: dict[CacheableMethod, CacheHint] = {
    "server/discover": _PRIVATE,
    "tools/list": _PRIVATE,
    "prompts/list": _PRIVATE,
    "resources/list": _PRIVATE,
    "resources/templates/list": _PRIVATE,
}


class EngramMCP(MCPServer[Any]):
    async def list_tools(self) -> list[Tool]:
        """The tools this token can use (see `tools.visible`); the same answer for the same token, always."""
        call = current_call.get()
        if call is None:
            return []
        return [tool for tool in await super().list_tools() if tools.visible(tool.name, call.principal)]


def create_server(version: str) -> EngramMCP:
    """A new server per app instance: its session manager can run only once."""
    server = EngramMCP(
        "engram",
        title="Engram memory",
        instructions=INSTRUCTIONS,
        version=version,
        cache_hints=CACHE_HINTS,
    )
    tools.register(server)
    server.streamable_http_app(
        stateless_http=True,
        json_response=True,
        max_request_body_size=2 * 1024 * 1024,
        # Host and Origin are checked by our wrapper (app/mcp/transport.py) from ENGRAM_PUBLIC_URL;
        # the SDK's own check would refuse a proxied Host it cannot know about.
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    return server
