"""The resource server in front of /mcp, row by row of the table in mcp-and-oauth.md (rows 5–15).

Raw HTTP against the live server, plus the SDK client stepping up through the 403 challenge.
"""

from __future__ import annotations

import base64
import hmac
import json
import re
import time
import uuid
from collections.abc import AsyncGenerator, Generator
from typing import Any

import httpx
import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from mcp.client.client import ConnectMode
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.mcp.transport import Origins
from app.settings import Settings
from tests.conftest import LiveServer, make_token
from tests.mcp.conftest import ALL, READ, WRITE, Minter, bearer, connect, uniq

LEGACY = "2025-11-25"
MODERN = "2026-07-28"
MODES: list[ConnectMode] = ["legacy", "auto"]
META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "raw-test", "version": "0"},
}


def legacy(method: str, params: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": 7, "method": method}
    if method == "initialize":
        params = {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "raw-test", "version": "0"}}
    if params is not None:
        body["params"] = params
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    if method != "initialize":
        headers["MCP-Protocol-Version"] = LEGACY
    return body, headers


def modern(method: str, params: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    body = {"jsonrpc": "2.0", "id": 8, "method": method, "params": {**(params or {}), "_meta": META}}
    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": MODERN,
        "Mcp-Method": method,
    }
    if method == "tools/call":
        headers["Mcp-Name"] = str((params or {})["name"])
    return body, headers


def challenge(response: httpx.Response) -> dict[str, str]:
    header = response.headers["www-authenticate"]
    assert header.startswith("Bearer ")
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


@pytest.fixture
async def raw(mcp_url: str) -> AsyncGenerator[httpx.AsyncClient, None]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


@pytest.fixture
async def alice(sessions: async_sessionmaker[AsyncSession]) -> str:
    return await make_token(sessions, uniq("alice"), name="alice laptop")


async def post(
    raw: httpx.AsyncClient,
    url: str,
    message: tuple[dict[str, Any], dict[str, str]],
    token: str | None = None,
    **headers: str,
) -> httpx.Response:
    body, base = message
    extra = {k.replace("_", "-"): v for k, v in headers.items()}
    return await raw.post(url, json=body, headers={**base, **(bearer(token) if token else {}), **extra})


# --- row 5: missing or garbage token → 401 with a complete challenge --------------------------------


@pytest.mark.parametrize("message", [legacy("initialize"), modern("server/discover"), legacy("tools/list")])
async def test_no_token_is_a_401_that_says_where_to_sign_in(
    raw: httpx.AsyncClient, mcp_url: str, live_server: LiveServer, message: tuple[dict[str, Any], dict[str, str]]
) -> None:
    response = await post(raw, mcp_url, message)
    assert response.status_code == 401
    params = challenge(response)
    assert params == {
        "resource_metadata": f"{live_server.url}/.well-known/oauth-protected-resource/mcp",
        "scope": "memories:read memories:write",
    }
    assert response.json()["error"]["message"].startswith("Authentication required")
    metadata = await raw.get(params["resource_metadata"])
    assert metadata.json()["resource"] == mcp_url


@pytest.mark.parametrize("authorization", ["Bearer garbage", "Bearer egm_not_a_real_token", "Bearer a.b.c"])
async def test_an_invalid_token_says_invalid_token(raw: httpx.AsyncClient, mcp_url: str, authorization: str) -> None:
    response = await post(raw, mcp_url, legacy("initialize"), Authorization=authorization)
    assert response.status_code == 401
    params = challenge(response)
    assert params["error"] == "invalid_token"
    assert params["scope"] == "memories:read memories:write"
    assert params["resource_metadata"].endswith("/.well-known/oauth-protected-resource/mcp")


async def test_other_schemes_are_not_a_token(raw: httpx.AsyncClient, mcp_url: str, alice: str) -> None:
    for authorization in [f"Basic {alice}", alice, "Bearer"]:
        response = await post(raw, mcp_url, legacy("initialize"), Authorization=authorization)
        assert response.status_code == 401
        assert "error" not in challenge(response)


# --- row 6: forged tokens ----------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"


async def test_forged_tokens_are_refused(
    raw: httpx.AsyncClient, mcp_url: str, live_server: LiveServer, mint: Minter
) -> None:
    email = uniq("forger")
    good = await mint(email, ALL)
    assert (await post(raw, mcp_url, legacy("initialize"), good)).status_code == 200
    header = jwt.get_unverified_header(good)
    claims = jwt.decode(good, options={"verify_signature": False})
    now = int(time.time())
    head, payload, signature = good.split(".")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    jwks = (await raw.get(live_server.url + "/.well-known/jwks.json")).json()["keys"]
    public_pem = jwt.PyJWK(next(k for k in jwks if k["kid"] == header["kid"])).key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    hs_header = {"alg": "HS256", "typ": "at+jwt", "kid": header["kid"]}
    hs_input = _unsigned(hs_header, claims)
    other_key = ec.generate_private_key(ec.SECP256R1())
    forged = {
        "tampered signature": f"{head}.{payload}.{flipped}",
        "tampered claims": f"{head}.{_b64(json.dumps({**claims, 'email': uniq('victim')}).encode())}.{signature}",
        "alg none": _unsigned({"alg": "none", "typ": "at+jwt", "kid": header["kid"]}, claims) + ".",
        "HS256 keyed with the public key": f"{hs_input}.{_b64(hmac.digest(public_pem, hs_input.encode(), 'sha256'))}",
        "another key, same kid": jwt.encode(claims, other_key, algorithm="ES256", headers=hs_header | {"alg": "ES256"}),
        "expired": await mint(email, ALL, exp=now - 3600, iat=now - 7200),
        "not yet valid": await mint(email, ALL, nbf=now + 3600),
        "issuer with a trailing slash": await mint(email, ALL, iss=live_server.url + "/"),
        "unknown issuer": await mint(email, ALL, iss="https://evil.example.com"),
        "no expiry": await mint.keys.sign({k: v for k, v in claims.items() if k != "exp"}),
    }
    for name, token in forged.items():
        response = await post(raw, mcp_url, legacy("initialize"), token)
        assert response.status_code == 401, name
        assert challenge(response)["error"] == "invalid_token", name


# --- row 7: audience binding -------------------------------------------------------------------------


async def test_a_token_for_another_resource_is_refused(raw: httpx.AsyncClient, mcp_url: str, mint: Minter) -> None:
    email = uniq("audience")
    for aud in ["/api/v1", "https://other.example.com/mcp", mcp_url + "/"]:
        response = await post(raw, mcp_url, legacy("initialize"), await mint(email, ALL, aud=aud))
        assert response.status_code == 401, aud
        assert challenge(response)["error"] == "invalid_token"
    assert (await post(raw, mcp_url, legacy("initialize"), await mint(email, ALL))).status_code == 200


# --- row 8: tokens in the query string ---------------------------------------------------------------


async def test_a_token_in_the_query_string_is_ignored(raw: httpx.AsyncClient, mcp_url: str, alice: str) -> None:
    body, headers = legacy("initialize")
    response = await raw.post(mcp_url, params={"access_token": alice}, json=body, headers=headers)
    assert response.status_code == 401
    assert "error" not in challenge(response)


# --- row 9: scope per tool, and stepping up -----------------------------------------------------------


async def test_a_tool_beyond_the_tokens_scope_is_a_403_naming_every_scope_needed(
    raw: httpx.AsyncClient, mcp_url: str, live_server: LiveServer, mint: Minter
) -> None:
    email = uniq("narrow")
    read_only = await mint(email, [READ])
    cases = [
        (legacy, "add_memories", {"text": "x"}, "memories:read memories:write"),
        (modern, "update_memory", {"id": str(uuid.uuid4()), "text": "x"}, "memories:read memories:write"),
        (
            legacy,
            "delete_memories",
            {"memory_ids": [str(uuid.uuid4())]},
            "memories:read memories:write memories:delete",
        ),
        (modern, "delete_all_memories", {}, "memories:read memories:write memories:delete"),
    ]
    for era, tool, arguments, scope in cases:
        message = era("tools/call", {"name": tool, "arguments": arguments})
        response = await post(raw, mcp_url, message, read_only)
        assert response.status_code == 403, tool
        params = challenge(response)
        assert params["error"] == "insufficient_scope"
        assert params["scope"] == scope
        assert params["resource_metadata"] == f"{live_server.url}/.well-known/oauth-protected-resource/mcp"
        error = response.json()
        assert error["id"] == message[0]["id"]
        assert "the token has memories:read" in error["error"]["message"]
    # What the token does allow goes through.
    search = legacy("tools/call", {"name": "search_memory", "arguments": {"query": "anything"}})
    assert (await post(raw, mcp_url, search, read_only)).status_code == 200


class StepUp(httpx2.Auth):
    """What an OAuth client does on 403 insufficient_scope: get a token with the challenged scope, retry.

    Engram's authorization server (issue 3) will issue that token; until then the test mints it with
    Engram's keys, exactly as the server would, from nothing but the scope the challenge named.
    """

    def __init__(self, mint: Minter, email: str, scopes: list[str]) -> None:
        self.mint, self.email = mint, email
        self.token: str | None = None
        self.scopes = scopes
        self.challenges: list[str] = []

    async def async_auth_flow(self, request: httpx2.Request) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        if self.token is None:
            self.token = await self.mint(self.email, self.scopes)
        request.headers["Authorization"] = f"Bearer {self.token}"
        response = yield request
        header = response.headers.get("www-authenticate", "")
        if response.status_code == 403 and 'error="insufficient_scope"' in header:
            self.challenges.append(header)
            self.scopes = re.findall(r'scope="([^"]*)"', header)[0].split()
            self.token = await self.mint(self.email, self.scopes)
            request.headers["Authorization"] = f"Bearer {self.token}"
            yield request

    def sync_auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        raise NotImplementedError


@pytest.mark.parametrize("mode", MODES)
async def test_the_sdk_client_steps_up_from_read_write_to_delete(mode: ConnectMode, mcp_url: str, mint: Minter) -> None:
    email = uniq("stepup")
    auth = StepUp(mint, email, [READ, WRITE])
    async with connect(mcp_url, None, mode, auth=auth) as client:
        added = await client.call_tool("add_memories", {"text": "Learning the cello"})
        memory_id = added.structured_content["memory"]["id"]
        assert auth.challenges == []
        deleted = await client.call_tool("delete_memories", {"memory_ids": [memory_id]})
        assert deleted.structured_content == {"deleted": 1, "not_found": []}
        assert len(auth.challenges) == 1
        assert auth.scopes == ALL
        assert (await client.call_tool("list_memories", {})).structured_content["memories"] == []


# --- row 10: tools/list by token, never by connection: see tests/mcp/test_tools.py ------------------


# --- row 11: Origin ----------------------------------------------------------------------------------


async def test_origin(raw: httpx.AsyncClient, mcp_url: str, live_server: LiveServer, alice: str) -> None:
    message = modern("server/discover")
    for origin in ["https://evil.example.com", "null", "http://127.0.0.1.evil.example.com"]:
        response = await post(raw, mcp_url, message, alice, Origin=origin)
        assert response.status_code == 403, origin
        assert response.json()["error"]["message"] == "Requests from this Origin are not allowed."
    # Refused before the token is even looked at.
    assert (await post(raw, mcp_url, message, Origin="https://evil.example.com")).status_code == 403
    for allowed in [None, live_server.url, "http://localhost:6274"]:
        extra = {"Origin": allowed} if allowed else {}
        response = await post(raw, mcp_url, message, alice, **extra)
        assert response.status_code == 200, allowed


# --- row 12: Host ------------------------------------------------------------------------------------


async def test_host_allow_list(raw: httpx.AsyncClient, mcp_url: str, alice: str) -> None:
    message = legacy("initialize")
    for host in ["evil.example.com", "127.0.0.1.nip.io:8765", "localhost.evil.example.com"]:
        response = await post(raw, mcp_url, message, alice, Host=host)
        assert response.status_code == 421, host
    # The server listens on loopback only, so any loopback name reaches it legitimately.
    assert (await post(raw, mcp_url, message, alice, Host="localhost:1234")).status_code == 200


def test_allowed_hosts_and_origins_come_from_the_public_url(settings: Settings) -> None:
    everywhere = "0.0.0.0"  # noqa: S104 (a setting under test, nothing binds here)
    public = Origins.from_settings(settings.replace(public_url="https://Engram.Example.com", host=everywhere))
    assert public.host_allowed("engram.example.com")
    assert public.host_allowed("engram.example.com:443")
    assert not public.host_allowed("localhost:8765")
    assert not public.host_allowed("engram.example.com:8443")
    assert public.origin_allowed("https://engram.example.com")
    assert public.origin_allowed("https://engram.example.com:443")
    assert not public.origin_allowed("http://engram.example.com")
    assert not public.origin_allowed("http://localhost:6274")
    proxied = Origins.from_settings(settings.replace(public_url="http://mem.lan:8080/engram", host=everywhere))
    assert proxied.host_allowed("mem.lan:8080")
    assert not proxied.host_allowed("mem.lan")
    assert proxied.origin_allowed("http://mem.lan:8080")
    # Published on loopback (compose binds 0.0.0.0 inside its container): localhost works as well.
    published = Origins.from_settings(settings.replace(public_url="http://127.0.0.1:8765", host=everywhere))
    assert published.host_allowed("localhost:8765")
    assert published.origin_allowed("http://localhost:8765")
    local = Origins.from_settings(settings.replace(public_url="http://127.0.0.1:8765", host="127.0.0.1"))
    assert local.host_allowed("127.0.0.1:8765")
    assert local.host_allowed("[::1]:9")
    assert local.host_allowed("localhost")
    assert local.origin_allowed("http://localhost:6274")
    assert local.origin_allowed("https://[::1]")
    assert not local.host_allowed("evil.example.com:8765")
    assert not local.origin_allowed("null")
    assert not local.origin_allowed("file://localhost")
    assert not local.origin_allowed("http://localhostx")


# --- row 13: protocol versions -----------------------------------------------------------------------


async def test_an_unsupported_protocol_version_is_a_400(raw: httpx.AsyncClient, mcp_url: str, alice: str) -> None:
    for version in ["1999-01-01", "2030-01-01"]:
        for body, headers in [legacy("tools/list"), legacy("ping"), modern("tools/list")]:
            response = await post(raw, mcp_url, (body, {**headers, "MCP-Protocol-Version": version}), alice)
            assert response.status_code == 400, (version, body["method"])


# --- row 14: both eras, stateless --------------------------------------------------------------------


async def test_both_eras_are_served_without_sessions(raw: httpx.AsyncClient, mcp_url: str, alice: str) -> None:
    initialized = await post(raw, mcp_url, legacy("initialize"), alice)
    assert initialized.status_code == 200
    assert "mcp-session-id" not in initialized.headers
    assert initialized.json()["result"]["protocolVersion"] == LEGACY
    assert initialized.json()["result"]["serverInfo"]["name"] == "engram"
    # No session to carry: any request stands on its own.
    listed = await post(raw, mcp_url, legacy("tools/list"), alice)
    assert listed.status_code == 200
    assert len(listed.json()["result"]["tools"]) == 7
    discovered = await post(raw, mcp_url, modern("server/discover"), alice)
    assert discovered.status_code == 200
    result = discovered.json()["result"]
    assert MODERN in result["supportedVersions"]
    assert "search_memory" in result["instructions"]
    assert "mcp-session-id" not in discovered.headers
    # Nothing to stream or terminate.
    for method in ["GET", "DELETE"]:
        response = await raw.request(method, mcp_url, headers={**bearer(alice), "Accept": "text/event-stream"})
        assert response.status_code == 405
        assert response.headers["allow"] == "POST"


async def test_list_results_carry_private_cache_hints(raw: httpx.AsyncClient, mcp_url: str, alice: str) -> None:
    for method in ["tools/list", "server/discover", "prompts/list", "resources/list", "resources/templates/list"]:
        response = await post(raw, mcp_url, modern(method), alice)
        result = response.json()["result"]
        assert result["cacheScope"] == "private", method
        assert isinstance(result["ttlMs"], int)
        assert result["ttlMs"] > 0


async def test_a_mismatched_routing_header_is_refused(raw: httpx.AsyncClient, mcp_url: str, alice: str) -> None:
    body, headers = modern("tools/call", {"name": "search_memory", "arguments": {"query": "x"}})
    response = await post(raw, mcp_url, (body, {**headers, "Mcp-Name": "delete_all_memories"}), alice)
    assert response.status_code == 400


# --- row 15: session ids never authenticate ----------------------------------------------------------


async def test_a_session_id_never_stands_in_for_a_token(
    raw: httpx.AsyncClient, mcp_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    alice = await make_token(sessions, uniq("alice"))
    bob = await make_token(sessions, uniq("bob"))
    added = legacy("tools/call", {"name": "add_memories", "arguments": {"text": "Alice's secret recipe"}})
    assert (await post(raw, mcp_url, added, alice)).status_code == 200
    session_id = uuid.uuid4().hex
    # The id alone: refused.
    alone = await post(raw, mcp_url, legacy("tools/list"), Mcp_Session_Id=session_id)
    assert alone.status_code == 401
    # With another user's token: that user, never the one who "had" the session; the id is not echoed.
    listed = legacy("tools/call", {"name": "list_memories", "arguments": {}})
    as_bob = await post(raw, mcp_url, listed, bob, Mcp_Session_Id=session_id)
    assert as_bob.status_code == 200
    assert as_bob.json()["result"]["structuredContent"]["memories"] == []
    assert "mcp-session-id" not in as_bob.headers
