"""The whole OAuth flow into /mcp with the MCP SDK's OAuthClientProvider: discovery from the 401,
registration, sign-in and consent, then a step-up to the delete scope through the 403 challenge."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.client import ConnectMode
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.oauth.login import add_local_account
from app.oauth.passwords import hash_password
from tests.conftest import LiveServer
from tests.mcp.conftest import uniq
from tests.oauth.person import Person

PASSWORD = "correct horse battery staple"
REDIRECT = "http://127.0.0.1:53682/callback"


@dataclass
class Storage:
    tokens: OAuthToken | None = None
    client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


@dataclass
class OAuthClient:
    """The SDK's OAuth client for /mcp whose browser is `person`; `authorizations` lists where it sent it."""

    mcp_url: str
    person: Person
    client_name: str
    storage: Storage = field(default_factory=Storage)
    authorizations: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        result: dict[str, str] = {}

        async def redirect_handler(url: str) -> None:
            self.authorizations.append(url)
            result.clear()
            result.update(await self.person.authorize(url))

        async def callback_handler() -> AuthorizationCodeResult:
            return AuthorizationCodeResult(code=result["code"], state=result.get("state"), iss=result.get("iss"))

        provider = OAuthClientProvider(
            server_url=self.mcp_url,
            client_metadata=OAuthClientMetadata(
                client_name=self.client_name,
                redirect_uris=[REDIRECT],  # type: ignore[list-item]
                grant_types=["authorization_code", "refresh_token"],
            ),
            storage=self.storage,
            redirect_handler=redirect_handler,
            callback_handler=callback_handler,
        )
        self.http = httpx2.AsyncClient(auth=provider, timeout=30)


def requested_scope(authorize_url: str) -> str:
    return parse_qs(urlsplit(authorize_url).query)["scope"][0]


@pytest.fixture
async def person(live_server: LiveServer, sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[Person]:
    email = uniq("oauth")
    await add_local_account(sessions, email, await hash_password(PASSWORD))
    someone = Person(live_server.url, email, PASSWORD)
    yield someone
    await someone.aclose()


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_sign_in_then_step_up_to_delete(mode: ConnectMode, mcp_url: str, person: Person) -> None:
    client = OAuthClient(mcp_url, person, "Claude Code")
    try:
        async with Client(streamable_http_client(mcp_url, http_client=client.http), mode=mode) as mcp:
            # Signed in with what the metadata recommends: read and write, not delete.
            assert [requested_scope(url) for url in client.authorizations] == ["memories:read memories:write"]
            added = await mcp.call_tool("add_memories", {"text": "Signed in through OAuth"})
            assert added.structured_content is not None
            assert added.structured_content["memory"]["app"] == "Claude Code"
            # Every tool is listed: the client can step up for the ones its token does not cover yet.
            assert "delete_memories" in {t.name for t in (await mcp.list_tools()).tools}

            memory_id = added.structured_content["memory"]["id"]
            deleted = await mcp.call_tool("delete_memories", {"memory_ids": [memory_id]})
            assert deleted.structured_content == {"deleted": 1, "not_found": []}
            # One more trip to the authorization server, for exactly what the 403 challenge named.
            assert [requested_scope(url) for url in client.authorizations] == [
                "memories:read memories:write",
                "memories:read memories:write memories:delete",
            ]
            assert client.storage.tokens is not None
            assert set((client.storage.tokens.scope or "").split()) >= {"memories:delete"}
            listed = await mcp.call_tool("list_memories", {})
            assert listed.structured_content == {"memories": [], "next_cursor": None}
    finally:
        await client.http.aclose()
