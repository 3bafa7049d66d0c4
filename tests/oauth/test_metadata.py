"""Protected Resource Metadata (RFC 9728) for /mcp and /api/v1."""

from __future__ import annotations

import httpx

from tests.conftest import LiveServer


async def test_prm_documents(api: httpx.AsyncClient, live_server: LiveServer) -> None:
    root = (await api.get("/.well-known/oauth-protected-resource")).json()
    mcp = (await api.get("/.well-known/oauth-protected-resource/mcp")).json()
    assert root == mcp
    assert mcp["resource"] == live_server.url + "/mcp"
    assert mcp["authorization_servers"] == [live_server.url]
    assert mcp["bearer_methods_supported"] == ["header"]
    assert "offline_access" not in mcp["scopes_supported"]
    assert all("*" not in scope for scope in mcp["scopes_supported"])
    api_doc = (await api.get("/.well-known/oauth-protected-resource/api/v1")).json()
    assert api_doc["resource"] == live_server.url + "/api/v1"
    challenge = (await api.get("/api/v1/me")).headers["www-authenticate"]
    assert f'resource_metadata="{live_server.url}/.well-known/oauth-protected-resource/api/v1"' in challenge
