"""/mcp in the Litestar app: the mounted handler and the lifespan that runs the SDK's session manager."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from litestar import Litestar, asgi
from litestar.handlers import ASGIRouteHandler
from starlette.types import Receive, Scope, Send

from app.mcp.server import EngramMCP, create_server
from app.mcp.transport import McpTransport
from app.settings import Settings


@dataclass
class McpEndpoint:
    server: EngramMCP
    handler: ASGIRouteHandler

    @asynccontextmanager
    async def lifespan(self, app: Litestar) -> AsyncIterator[None]:
        # A mounted app's own lifespan never runs; without this: "Task group is not initialized".
        async with self.server.session_manager.run():
            yield


def create_endpoint(settings: Settings, version: str) -> McpEndpoint:
    server = create_server(version)
    transport = McpTransport(settings, server.session_manager)

    # Typed with the SDK's (Starlette's) ASGI aliases: the scope goes to the SDK untouched.
    @asgi("/mcp", is_mount=True, copy_scope=True, include_in_schema=False)
    async def mcp_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        await transport(scope, receive, send)

    return McpEndpoint(server, mcp_endpoint)
