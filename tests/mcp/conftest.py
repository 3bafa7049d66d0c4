"""The MCP endpoint under test: `live_server` (granian over real HTTP), tokens, and SDK clients."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2
import pytest
from mcp import Client
from mcp.client.client import ConnectMode
from mcp.client.streamable_http import streamable_http_client
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.kek import load_kek
from app.auth.keys import KeyStore
from app.settings import Settings
from tests.conftest import LiveServer

READ, WRITE, DELETE = "memories:read", "memories:write", "memories:delete"
ALL = [READ, WRITE, DELETE]


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}@example.com"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
def mcp_url(live_server: LiveServer) -> str:
    return live_server.url + "/mcp"


@pytest.fixture(scope="session")
async def keys(settings: Settings, sessions: async_sessionmaker[AsyncSession], live_server: LiveServer) -> KeyStore:
    """Engram's own signing keys (the same database and key-encryption key as the live server)."""
    store = KeyStore(sessions, load_kek(settings), settings.signing_algorithm, 3600)
    await store.ensure_active_key()
    return store


class Minter:
    """Signs access tokens the way Engram's authorization server will (issue 3): aud = the resource."""

    def __init__(self, keys: KeyStore, server_url: str) -> None:
        self.keys = keys
        self.server_url = server_url

    async def __call__(
        self,
        email: str,
        scopes: list[str],
        *,
        aud: str = "/mcp",
        client_id: str = "test-client",
        client_name: str = "Test client",
        **claims: object,
    ) -> str:
        now = int(time.time())
        return await self.keys.sign(
            {
                "iss": self.server_url,
                "aud": self.server_url + aud if aud.startswith("/") else aud,
                "email": email,
                "scope": " ".join(scopes),
                "client_id": client_id,
                "client_name": client_name,
                "iat": now,
                "exp": now + 600,
                "jti": uuid.uuid4().hex,
                **claims,
            }
        )


@pytest.fixture(scope="session")
def mint(keys: KeyStore, live_server: LiveServer) -> Minter:
    return Minter(keys, live_server.url)


@asynccontextmanager
async def connect(
    url: str, token: str | None, mode: ConnectMode, auth: httpx2.Auth | None = None
) -> AsyncIterator[Client]:
    """The MCP Python SDK's client over Streamable HTTP, authenticated with a bearer header."""
    headers = bearer(token) if token else {}
    async with (
        httpx2.AsyncClient(headers=headers, auth=auth, timeout=60) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,
    ):
        yield client
