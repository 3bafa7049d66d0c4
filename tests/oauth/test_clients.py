"""OAuth clients: the redirect-URI policy, redirect matching, and dynamic registration over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import pytest
from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig, SQLAlchemyPlugin
from litestar import Litestar
from litestar.datastructures import State
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from app.db.bootstrap import EmbeddedUrls
from app.db.session import async_database_url, bound_session, session_factory
from app.oauth.clients import (
    ClientRecord,
    RedirectPolicy,
    RegistrationError,
    get_client,
    redirect_uri_matches,
    register_dynamic,
    verify_client_secret,
)
from app.oauth.registration import register_client
from app.problems import EXCEPTION_HANDLERS
from app.settings import Settings

POLICY = RedirectPolicy(Settings())

# What the clients people use register (mcp-and-oauth.md): every one must be accepted by default.
REAL_CLIENTS: dict[str, list[str]] = {
    "claude-code": ["http://localhost/callback"],
    "claude-code-ephemeral-port": ["http://localhost:54321/callback"],
    "claude-ai": ["https://claude.ai/api/mcp/auth_callback"],
    "claude-com": ["https://claude.com/api/mcp/auth_callback"],
    "cursor": [
        "cursor://anysphere.cursor-mcp/oauth/callback",
        "https://www.cursor.com/agents/mcp/oauth/callback",
        "http://localhost:8787/callback",
    ],
    "vscode": [
        "https://vscode.dev/redirect",
        "https://insiders.vscode.dev/redirect",
        "http://127.0.0.1/",
        "http://127.0.0.1:33418/",
    ],
    "vscode-private-scheme": ["vscode://vscode.github-authentication/did-authenticate"],
    "codex-cli": ["http://127.0.0.1:39127/callback/4f1c2a"],
    "mcp-remote-low": ["http://localhost:3335/oauth/callback"],
    "mcp-remote-high": ["http://localhost:49150/oauth/callback"],
    "mcp-inspector": ["http://localhost:6274/oauth/callback", "http://localhost:6274/oauth/callback/debug"],
    "ipv6-loopback": ["http://[::1]:8080/callback"],
    "reverse-dns-scheme": ["com.example.app:/oauth2redirect"],
}

# The registration requests the clients send (bodies as reported), for the HTTP tests.
REAL_REGISTRATIONS: dict[str, dict[str, Any]] = {
    "cursor": {
        "client_name": "Cursor",
        "redirect_uris": REAL_CLIENTS["cursor"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    },
    "vscode": {
        "client_name": "Visual Studio Code",
        "client_uri": "https://code.visualstudio.com",
        "grant_types": ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"],
        "response_types": ["code"],
        "redirect_uris": REAL_CLIENTS["vscode"],
        "token_endpoint_auth_method": "none",
        "application_type": "native",
    },
    "claude-ai": {
        "client_name": "Claude",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "client_secret_post",
        "scope": "claudeai",
        "redirect_uris": ["https://claude.ai/api/mcp/auth_callback", "https://claude.com/api/mcp/auth_callback"],
    },
    "claude-code": {
        "client_name": "Claude Code (engram)",
        "redirect_uris": ["http://localhost:54321/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    },
    "mcp-remote": {
        "redirect_uris": ["http://localhost:3335/oauth/callback"],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "client_name": "MCP CLI Proxy",
        "client_uri": "https://github.com/modelcontextprotocol/mcp-cli",
        "software_id": "2e6dc280-f3c3-4e01-99a7-8181dbd1d23d",
        "software_version": "0.15.1",
        "scope": "memories:read memories:write offline_access",
    },
    "mcp-inspector": {
        "redirect_uris": REAL_CLIENTS["mcp-inspector"],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "client_name": "MCP Inspector",
        "client_uri": "https://github.com/modelcontextprotocol/inspector",
        "logo_uri": None,
        "tos_uri": "",
    },
    "codex-cli": {
        "client_name": "Codex",
        "redirect_uris": REAL_CLIENTS["codex-cli"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    },
    "mcp-python-sdk": {
        "redirect_uris": ["http://localhost:3030/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "client_name": "Engram test client",
        "application_type": "native",
    },
}


# --- redirect policy ------------------------------------------------------------------------------


@pytest.mark.parametrize("uris", REAL_CLIENTS.values(), ids=REAL_CLIENTS.keys())
def test_real_clients_redirect_uris_are_accepted(uris: list[str]) -> None:
    application_type = POLICY.validate(uris, None)
    assert application_type in ("native", "web")
    assert POLICY.validate(uris, "native") == "native"


@pytest.mark.parametrize(
    ("uris", "expected"),
    [
        (REAL_CLIENTS["cursor"], "native"),  # a private-use scheme makes it an installed app
        (REAL_CLIENTS["mcp-remote-low"], "native"),  # loopback only
        (REAL_CLIENTS["claude-ai"], "web"),
        (REAL_CLIENTS["vscode"], "web"),  # https + loopback: a web client may use loopback http
    ],
)
def test_application_type_inferred_from_redirect_uris(uris: list[str], expected: str) -> None:
    assert RedirectPolicy.classify(uris) == expected


@pytest.mark.parametrize(
    ("uri", "application_type"),
    [
        ("http://example.com/callback", "web"),
        ("http://example.com/callback", "native"),
        ("http://127.0.0.1.evil.example/callback", "native"),
        ("http://localhost.evil.example/callback", "native"),
        ("http://10.0.0.5:8080/callback", "native"),
        ("https://client.example/callback#frag", "web"),
        ("https://client.example/callback#", "web"),
        ("http://localhost:8080/callback#x", "native"),
        ("javascript:alert(1)", "native"),
        ("JavaScript:alert(1)//", "native"),
        ("data:text/html,<script>alert(1)</script>", "native"),
        ("file:///etc/passwd", "native"),
        ("vbscript:msgbox", "native"),
        ("https://*.client.example/callback", "web"),
        ("https://client.example/*", "web"),
        ("http://localhost:*/callback", "native"),
        ("https://user:pass@client.example/callback", "web"),
        ("http://evil.example@localhost/callback", "native"),
        ("cursor://anysphere.cursor-mcp/oauth/callback", "web"),  # private-use scheme for a web client
        ("/callback", "web"),
        ("callback", "native"),
        ("", "native"),
        ("https:///callback", "web"),
        ("https://client.example/call back", "web"),
        ("https://client.example/callback\\@evil", "web"),
        ("https://clïent.example/callback", "web"),
        ("http://localhost:99999/callback", "native"),
        ("x:/callback", "native"),
        ("myapp:", "native"),
        ("https://" + "a" * 2000 + ".example/", "web"),
    ],
)
def test_redirect_uris_refused(uri: str, application_type: Any) -> None:
    assert not POLICY.is_acceptable(uri, application_type)
    with pytest.raises(RegistrationError) as refused:
        POLICY.validate([uri], application_type)
    assert refused.value.error == "invalid_redirect_uri"


def test_one_bad_uri_refuses_the_whole_set() -> None:
    with pytest.raises(RegistrationError, match="fragment"):
        POLICY.validate([*REAL_CLIENTS["cursor"], "https://www.cursor.com/cb#x"], None)


def test_native_clients_may_use_claimed_https() -> None:
    assert POLICY.is_acceptable("https://app.example/oauth/callback", "native")  # RFC 8252 §7.2


def test_operator_patterns_must_match_in_full() -> None:
    policy = RedirectPolicy(
        Settings(registration_redirect_patterns=[r"https://claude\.ai/api", r"http://localhost/.*"])
    )
    assert policy.is_acceptable("http://localhost/callback", "native")
    assert not policy.is_acceptable("https://claude.ai/api/mcp/auth_callback", "web")  # prefix only: no match
    assert not policy.is_acceptable("http://127.0.0.1/callback", "native")
    with pytest.raises(RegistrationError, match="operator"):
        policy.validate(REAL_CLIENTS["claude-code"] + ["http://127.0.0.1/callback"], None)
    # Patterns narrow the defaults, they never widen them.
    assert not RedirectPolicy(Settings(registration_redirect_patterns=[".*"])).is_acceptable(
        "javascript:alert(1)", "native"
    )


# --- redirect matching ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("registered", "presented", "expected"),
    [
        (["http://localhost/callback"], "http://localhost/callback", True),
        (["http://localhost/callback"], "http://localhost:54321/callback", True),  # RFC 8252 §7.3
        (["http://127.0.0.1:33418/"], "http://127.0.0.1:40000/", True),
        (["http://[::1]/cb"], "http://[::1]:8080/cb", True),
        (["http://localhost:8787/callback"], "http://localhost:9000/callback", True),
        (["http://localhost/callback?x=1"], "http://localhost:1234/callback?x=1", True),
        (["http://localhost/callback"], "http://localhost:54321/callback/", False),
        (["http://localhost/callback"], "http://localhost:54321/Callback", False),
        (["http://localhost/callback"], "http://localhost:54321/callback?x=1", False),
        (["http://localhost/callback"], "http://127.0.0.1:54321/callback", False),
        (["http://127.0.0.1/callback"], "http://localhost:54321/callback", False),
        (["http://localhost/callback"], "https://localhost:54321/callback", False),
        (["http://localhost/callback"], "http://localhost:54321/callback#x", False),
        (["http://localhost/callback"], "http://evil.example@localhost:1/callback", False),
        (["http://localhost/callback"], "http://localhost:1@evil.example/callback", False),
        (["http://localhost/callback"], "http://localhost:abc/callback", False),
        (["http://localhost/callback"], "http://localhost:1\\@evil.example/callback", False),
        (["https://claude.ai/api/mcp/auth_callback"], "https://claude.ai/api/mcp/auth_callback", True),
        (["https://claude.ai/api/mcp/auth_callback"], "https://claude.ai:8443/api/mcp/auth_callback", False),
        (["https://claude.ai/api/mcp/auth_callback"], "https://claude.ai/api/mcp/auth_callback/", False),
        (["https://claude.ai/api/mcp/auth_callback"], "https://CLAUDE.ai/api/mcp/auth_callback", False),
        (["cursor://anysphere.cursor-mcp/oauth/callback"], "cursor://anysphere.cursor-mcp/oauth/callback", True),
        (["cursor://anysphere.cursor-mcp/oauth/callback"], "cursor://anysphere.cursor-mcp/oauth/callback2", False),
        ([], "http://localhost/callback", False),
    ],
)
def test_redirect_uri_matching(registered: list[str], presented: str, expected: bool) -> None:
    assert redirect_uri_matches(registered, presented) is expected


# --- registration over HTTP ------------------------------------------------------------------------


@pytest.fixture
def registration_client(db_urls: EmbeddedUrls, settings: Settings) -> Callable[..., Any]:
    """An app with the registration route and the same database plugin configuration as app/asgi.py.

    The test client runs the app on its own event loop, so its engine keeps no pooled connections.
    """

    @asynccontextmanager
    async def client(**changes: Any) -> AsyncIterator[AsyncTestClient[Litestar]]:
        engine = create_async_engine(async_database_url(db_urls.runtime), poolclass=NullPool)
        db_config = SQLAlchemyAsyncConfig(
            engine_instance=engine,
            session_maker=session_factory(engine),
            before_send_handler="autocommit_include_redirects",
            set_default_exception_handler=False,
        )
        app = Litestar(
            route_handlers=[register_client],
            plugins=[SQLAlchemyPlugin(config=db_config)],
            exception_handlers=EXCEPTION_HANDLERS,
            state=State({"services": SimpleNamespace(settings=settings.replace(**changes))}),
        )
        async with AsyncTestClient(app=app) as test_client:
            yield test_client

    return client


async def _audit_rows(admin_engine: AsyncEngine, client_id: str) -> list[Any]:
    async with admin_engine.connect() as conn:
        result = await conn.execute(
            text("SELECT operation, subject_email, row_id, after FROM audit_log WHERE row_id = :id"), {"id": client_id}
        )
        return list(result.all())


async def _stored(sessions: async_sessionmaker[AsyncSession], settings: Settings, client_id: str) -> ClientRecord:
    async with bound_session(sessions, None) as session:
        record = await get_client(session, client_id, settings=settings)
    assert record is not None
    return record


@pytest.mark.parametrize("name", REAL_REGISTRATIONS.keys())
async def test_real_client_registrations_succeed(
    name: str,
    registration_client: Callable[..., Any],
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    admin_engine: AsyncEngine,
) -> None:
    request = REAL_REGISTRATIONS[name]
    async with registration_client() as client:
        response = await client.post("/oauth/register", json=request)
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["redirect_uris"] == request["redirect_uris"]
    assert body["grant_types"] == [g for g in request["grant_types"] if "device_code" not in g]
    assert body["response_types"] == ["code"]
    assert isinstance(body["client_id_issued_at"], int)

    record = await _stored(sessions, settings, body["client_id"])
    assert record.kind == "dynamic"
    assert record.redirect_uris == tuple(request["redirect_uris"])
    assert record.metadata == request
    if request.get("token_endpoint_auth_method", "client_secret_basic") == "none":
        assert "client_secret" not in body
        assert record.is_public
        assert record.client_secret_hash is None
    else:
        assert body["client_secret_expires_at"] == 0
        assert len(body["client_secret"]) >= 43
        assert not record.is_public
        assert verify_client_secret(record, body["client_secret"])
        assert not verify_client_secret(record, body["client_secret"] + "x")
        assert not verify_client_secret(record, None)

    rows = await _audit_rows(admin_engine, body["client_id"])
    assert [(r.operation, r.subject_email) for r in rows] == [("OAUTH_CLIENT_REGISTERED", None)]
    assert rows[0].after["redirect_uris"] == request["redirect_uris"]
    assert set(rows[0].after) == {"client_name", "redirect_uris", "application_type", "token_endpoint_auth_method"}
    if "client_secret" in body:
        assert body["client_secret"] not in str(rows[0].after)


async def test_registration_defaults(registration_client: Callable[..., Any]) -> None:
    async with registration_client() as client:
        response = await client.post("/oauth/register", json={"redirect_uris": ["http://127.0.0.1/cb"]})
    body = response.json()
    assert response.status_code == 201, body
    # RFC 7591 §2: no token_endpoint_auth_method means client_secret_basic, so a secret is issued.
    assert body["token_endpoint_auth_method"] == "client_secret_basic"
    assert body["client_secret"]
    assert body["grant_types"] == ["authorization_code"]
    assert body["client_name"] == "Unnamed client"
    assert body["application_type"] == "native"


@pytest.mark.parametrize(
    ("request_body", "error", "fragment"),
    [
        ({}, "invalid_redirect_uri", "redirect_uris"),
        ({"redirect_uris": []}, "invalid_redirect_uri", "redirect_uris"),
        ({"redirect_uris": "http://localhost/cb"}, "invalid_redirect_uri", "list"),
        ({"redirect_uris": ["http://example.com/cb"]}, "invalid_redirect_uri", "loopback"),
        ({"redirect_uris": ["https://a.example/cb#x"]}, "invalid_redirect_uri", "fragment"),
        ({"redirect_uris": ["javascript:alert(1)"]}, "invalid_redirect_uri", "scheme"),
        (
            {"redirect_uris": ["http://localhost/cb"] * 2 + [f"http://localhost/{i}" for i in range(20)]},
            "invalid_redirect_uri",
            "At most",
        ),
        (
            {"redirect_uris": ["cursor://a.b/cb"], "application_type": "web"},
            "invalid_redirect_uri",
            "native",
        ),
        (
            {"redirect_uris": ["http://localhost/cb"], "grant_types": ["client_credentials"]},
            "invalid_client_metadata",
            "authorization_code",
        ),
        (
            {"redirect_uris": ["http://localhost/cb"], "grant_types": "authorization_code"},
            "invalid_client_metadata",
            "list",
        ),
        ({"redirect_uris": ["http://localhost/cb"], "response_types": ["token"]}, "invalid_client_metadata", "code"),
        (
            {"redirect_uris": ["http://localhost/cb"], "token_endpoint_auth_method": "private_key_jwt"},
            "invalid_client_metadata",
            "private_key_jwt",
        ),
        (
            {"redirect_uris": ["http://localhost/cb"], "application_type": "desktop"},
            "invalid_client_metadata",
            "native",
        ),
        ({"redirect_uris": ["http://localhost/cb"], "client_name": "x" * 201}, "invalid_client_metadata", "200"),
        (
            {"redirect_uris": ["http://localhost/cb"], "client_name": "Good\u202eevil"},
            "invalid_client_metadata",
            "control",
        ),
        ({"redirect_uris": ["http://localhost/cb"], "client_name": 7}, "invalid_client_metadata", "string"),
        (
            {"redirect_uris": ["http://localhost/cb"], "logo_uri": "javascript:alert(1)"},
            "invalid_client_metadata",
            "https",
        ),
        (
            {"redirect_uris": ["http://localhost/cb"], "client_uri": "http://client.example"},
            "invalid_client_metadata",
            "https",
        ),
        ({"redirect_uris": ["http://localhost/cb"], "scope": "a\\b"}, "invalid_client_metadata", "scope"),
        ({"redirect_uris": ["http://localhost/cb"], "software_id": "x" * 201}, "invalid_client_metadata", "200"),
        ({"redirect_uris": ["http://localhost/cb"], "contacts": ["x" * 17000]}, "invalid_client_metadata", "KiB"),
        ([{"redirect_uris": ["http://localhost/cb"]}], "invalid_client_metadata", "object"),
    ],
)
async def test_bad_metadata_gets_rfc7591_errors(
    request_body: Any, error: str, fragment: str, registration_client: Callable[..., Any]
) -> None:
    async with registration_client() as client:
        response = await client.post("/oauth/register", json=request_body)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == error
    assert fragment in body["error_description"]


async def test_body_that_is_not_json(registration_client: Callable[..., Any]) -> None:
    async with registration_client() as client:
        response = await client.post(
            "/oauth/register", content=b"redirect_uris=x", headers={"content-type": "application/json"}
        )
        too_big = await client.post("/oauth/register", content=b" " * (17 * 1024))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_client_metadata"
    assert too_big.status_code == 400
    assert too_big.json()["error"] == "invalid_client_metadata"


async def test_a_refused_registration_stores_nothing(
    registration_client: Callable[..., Any], admin_engine: AsyncEngine
) -> None:
    async with admin_engine.connect() as conn:
        before = (await conn.execute(text("SELECT count(*) FROM oauth_clients"))).scalar_one()
    async with registration_client() as client:
        response = await client.post("/oauth/register", json={"redirect_uris": ["http://example.com/cb"]})
    assert response.status_code == 400
    async with admin_engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM oauth_clients"))).scalar_one() == before


async def test_operator_patterns_apply_to_registration(registration_client: Callable[..., Any]) -> None:
    async with registration_client(registration_redirect_patterns=[r"http://localhost(:\d+)?/callback"]) as client:
        allowed = await client.post("/oauth/register", json=REAL_REGISTRATIONS["claude-code"])
        refused = await client.post("/oauth/register", json=REAL_REGISTRATIONS["cursor"])
    assert allowed.status_code == 201
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_redirect_uri"


async def test_registration_access_token(registration_client: Callable[..., Any]) -> None:
    request = REAL_REGISTRATIONS["mcp-remote"]
    async with registration_client(registration_access_token="let-me-register") as client:
        missing = await client.post("/oauth/register", json=request)
        wrong = await client.post("/oauth/register", json=request, headers={"Authorization": "Bearer nope"})
        basic = await client.post("/oauth/register", json=request, headers={"Authorization": "Basic let-me-register"})
        right = await client.post("/oauth/register", json=request, headers={"Authorization": "Bearer let-me-register"})
    for refused in (missing, wrong, basic):
        assert refused.status_code == 401
        assert refused.json()["error"] == "invalid_token"
        assert refused.headers["www-authenticate"].startswith("Bearer")
    assert right.status_code == 201, right.text


async def test_get_client_for_unknown_ids(sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    async with bound_session(sessions, None) as session:
        assert await get_client(session, "no-such-client", settings=settings) is None
        assert await get_client(session, "", settings=settings) is None
        assert await get_client(session, "http://client.example/metadata.json", settings=settings) is None


async def test_register_dynamic_directly(sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    async with bound_session(sessions, None) as session:
        record, secret = await register_dynamic(
            session,
            {"redirect_uris": ["http://localhost/cb"], "token_endpoint_auth_method": "client_secret_basic"},
            RedirectPolicy(settings),
        )
    assert secret is not None
    assert "client_secret_hash" not in repr(record)
    stored = await _stored(sessions, settings, record.client_id)
    assert stored == record
    assert verify_client_secret(stored, secret)
