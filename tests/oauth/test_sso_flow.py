"""Signing in through the organisation's OpenID Connect provider, end to end over HTTP.

Engram runs under granian, pointed at the Authentik-shaped oidc-provider (tests/idp) with the three
settings an operator sets; the MCP SDK's OAuthClientProvider runs the whole flow: PRM → AS metadata
→ DCR → authorize → the upstream login → Engram's callback → consent → code → token. Refusals are
checked in the browser (status, page, cookies), in Engram's log and in the audit trail.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import json
import secrets
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.bootstrap import EmbeddedUrls
from app.oauth.upstream import MISCONFIGURED, NOT_IN_GROUP, UNREACHABLE
from tests.conftest import LiveServer, start_server, stop_server
from tests.idp.peer import Idp, start_idp
from tests.oauth.person import SDK_REDIRECT, Person, sdk_client

ALICE, BOB = "alice@example.com", "bob@example.com"
ACCESS_TOKEN_TTL = 2  # seconds: short enough for a test to outlive an access token


@dataclass
class Engrams:
    sso: LiveServer  # the Authentik-shaped provider, an email allow-list and an allowed group
    hs256: LiveServer  # a provider that signs its ID tokens with HS256
    down: LiveServer  # an issuer on a loopback port nobody listens on


@pytest.fixture(scope="module")
def hs256_idp(tmp_path_factory: pytest.TempPathFactory, idp_redirect_uris: list[str]) -> Iterator[Idp]:
    peer = start_idp(
        tmp_path_factory.mktemp("hs256-idp"),
        redirect_uris=idp_redirect_uris,
        loopback_any_port=True,
        extra_env={"IDP_ID_TOKEN_ALG": "HS256"},
    )
    try:
        yield peer
    finally:
        peer.stop()


@pytest.fixture(scope="module")
def engrams(
    idp: Idp, hs256_idp: Idp, db_urls: EmbeddedUrls, data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engrams]:
    """Three Engram servers (one after the other: on a small machine, loading three models at once is slower)."""
    logs = tmp_path_factory.mktemp("sso-servers")
    common = {"ENGRAM_DATABASE_URL": db_urls.runtime, "ENGRAM_DATA_DIR": str(data_dir)}
    # Bound but not listening: connections are refused, and no other server can take the port.
    closed_port = socket.socket()
    closed_port.bind(("127.0.0.1", 0))
    closed = f"http://127.0.0.1:{closed_port.getsockname()[1]}/application/o/engram/"
    environments = {
        "sso": {
            **idp.engram_env(),
            "ENGRAM_ALLOWED_EMAILS": f"{ALICE},{BOB}",
            "ENGRAM_OIDC_ALLOWED_GROUPS": "engram-users",
            "ENGRAM_ACCESS_TOKEN_TTL_SECONDS": str(ACCESS_TOKEN_TTL),
        },
        "hs256": hs256_idp.engram_env(),
        "down": {
            "ENGRAM_OIDC_ISSUER": closed,
            "ENGRAM_OIDC_CLIENT_ID": "engram",
            "ENGRAM_OIDC_CLIENT_SECRET": "not-used-because-nobody-answers",
        },
    }
    servers: dict[str, LiveServer] = {}
    try:
        for name, env in environments.items():
            servers[name] = start_server({**common, **env}, logs / f"{name}.log")
        yield Engrams(**servers)
    finally:
        for server in servers.values():
            stop_server(server)
        closed_port.close()


@pytest.fixture
async def people() -> AsyncIterator[list[Person]]:
    crowd: list[Person] = []
    yield crowd
    for person in crowd:
        await person.aclose()


def _person(people: list[Person], server: LiveServer, email: str, upstream: Idp) -> Person:
    person = Person(server.url, email, upstream=upstream.base_url)
    people.append(person)
    return person


async def _authorization_request(server: LiveServer) -> str:
    """A registered client's authorization URL, as an MCP client would open it."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        registered = await http.post(
            "/oauth/register",
            json={"client_name": "SSO test", "redirect_uris": [SDK_REDIRECT], "token_endpoint_auth_method": "none"},
        )
    assert registered.status_code == 201, registered.text
    challenge = base64.urlsafe_b64encode(hashlib.sha256(secrets.token_bytes(32)).digest()).rstrip(b"=").decode()
    query = urlencode(
        {
            "response_type": "code",
            "client_id": registered.json()["client_id"],
            "redirect_uri": SDK_REDIRECT,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": "s-" + secrets.token_hex(4),
            "resource": server.url + "/api/v1",
        }
    )
    return f"{server.url}/oauth/authorize?{query}"


async def _audit(admin_engine: AsyncEngine, since: datetime, operation: str) -> list[Any]:
    async with admin_engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT subject_email, row_id, after FROM audit_log WHERE operation = :op AND at >= :since ORDER BY id"
            ),
            {"op": operation, "since": since},
        )
        return list(rows.all())


async def _browser_sessions(admin_engine: AsyncEngine, email: str) -> int:
    async with admin_engine.connect() as conn:
        count = await conn.scalar(text("SELECT count(*) FROM browser_sessions WHERE owner_email = :e"), {"e": email})
    return int(count or 0)


async def _log_event(server: LiveServer, event: str) -> dict[str, Any]:
    """The last JSON log line of `server` for `event` (waiting a moment for it to be written)."""
    deadline = time.monotonic() + 10
    while True:
        found = None
        for line in server.log().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("event") == event:
                found = entry
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"no {event!r} in the log:\n{server.log()[-3000:]}")
        await asyncio.sleep(0.1)


async def _assert_signed_out(person: Person, response: httpx.Response) -> None:
    """The refusal set no session cookie, and the browser is not signed in afterwards."""
    assert "engram_session" not in response.headers.get("set-cookie", "")
    assert "engram_session" not in person.client.cookies
    home = await person.client.get("/")
    assert home.status_code == 303
    assert home.headers["location"].startswith("/login")


def _assert_error_page(response: httpx.Response, status: int, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert message in html.unescape(response.text)
    assert "Traceback" not in response.text
    assert "UpstreamError" not in response.text


# --- signing in -----------------------------------------------------------------------------------


async def test_sdk_signs_in_through_the_provider_and_each_user_sees_only_their_memories(
    engrams: Engrams, idp: Idp, people: list[Person], admin_engine: AsyncEngine
) -> None:
    server = engrams.sso
    started = datetime.now(UTC)
    alice = _person(people, server, ALICE, idp)
    bob = _person(people, server, BOB, idp)
    clients = {ALICE: sdk_client(server.url + "/api/v1", alice), BOB: sdk_client(server.url + "/api/v1", bob)}
    try:
        for email, person in ((ALICE, alice), (BOB, bob)):
            me = await clients[email].http.get(server.url + "/api/v1/me")
            assert me.status_code == 200, me.text
            assert me.json()["email"] == email  # keyed on the email, not the provider's hashed `sub`
            assert me.json()["app_name"] == "SDK test client"
            # The SDK registered itself (DCR) and sent the browser to Engram, which sent it on to the
            # provider (no local accounts once an issuer is set) and took it back at its callback.
            client_info = clients[email].storage.client
            assert client_info is not None
            assert not client_info.client_id.startswith("https://")
            [authorization] = clients[email].authorizations
            assert authorization.startswith(server.url + "/oauth/authorize?")
            assert f"client_id={client_info.client_id}" in authorization
            assert any(url.startswith(server.url + "/login/sso?") for url in person.seen)
            assert any(url.startswith(server.url + "/oauth/callback?") for url in person.seen)

        notes = {ALICE: f"alice's note {uuid.uuid4()}", BOB: f"bob's note {uuid.uuid4()}"}
        for email, note in notes.items():
            added = await clients[email].http.post(server.url + "/api/v1/memories", json={"text": note})
            assert added.status_code == 201, added.text
        for email, other in ((ALICE, BOB), (BOB, ALICE)):
            listed = await clients[email].http.get(server.url + "/api/v1/memories", params={"limit": 200})
            assert listed.status_code == 200, listed.text
            contents = {item["content"] for item in listed.json()["items"]}
            assert notes[email] in contents
            assert notes[other] not in contents
    finally:
        for client in clients.values():
            await client.aclose()

    sso_logins = [
        row.subject_email for row in await _audit(admin_engine, started, "LOGIN") if row.after["method"] == "sso"
    ]
    assert ALICE in sso_logins
    assert BOB in sso_logins
    assert await _browser_sessions(admin_engine, ALICE) >= 1


async def test_the_sdk_client_refreshes_an_expired_access_token(
    engrams: Engrams, idp: Idp, people: list[Person], admin_engine: AsyncEngine
) -> None:
    server = engrams.sso
    client = sdk_client(server.url + "/api/v1", _person(people, server, ALICE, idp), client_name="Refreshing client")
    try:
        first = await client.http.get(server.url + "/api/v1/me")
        assert first.status_code == 200, first.text
        tokens, client_info = client.storage.tokens, client.storage.client
        assert tokens is not None
        assert client_info is not None
        assert tokens.expires_in == ACCESS_TOKEN_TTL
        assert tokens.refresh_token
        refreshed_since = datetime.now(UTC)

        await asyncio.sleep(ACCESS_TOKEN_TTL + 0.5)
        second = await client.http.get(server.url + "/api/v1/me")
        assert second.status_code == 200, second.text
        assert second.json()["email"] == ALICE
        renewed = client.storage.tokens
        assert renewed is not None
        assert renewed.access_token != tokens.access_token
        assert renewed.refresh_token not in (None, tokens.refresh_token)  # rotated
        assert len(client.authorizations) == 1  # no second trip through the browser
    finally:
        await client.aclose()

    refreshes = await _audit(admin_engine, refreshed_since, "OAUTH_REFRESHED")
    assert [row.subject_email for row in refreshes if row.row_id == client_info.client_id] == [ALICE]


async def test_local_accounts_are_off_once_an_issuer_is_set(engrams: Engrams) -> None:
    async with httpx.AsyncClient(base_url=engrams.sso.url, timeout=30) as browser:
        login = await browser.get("/login", params={"next": "/"})
        assert login.status_code == 303
        assert login.headers["location"].startswith("/login/sso?")
        password = await browser.post("/login", data={"email": ALICE, "password": "a guessed password"})
        assert password.status_code == 403
        assert "Local accounts are off" in password.text


# --- refusals ---------------------------------------------------------------------------------------


async def test_an_email_not_on_the_allow_list_is_refused(
    engrams: Engrams, idp: Idp, people: list[Person], admin_engine: AsyncEngine
) -> None:
    """`unverified` is in the allowed group, but unverified@example.com is not on ENGRAM_ALLOWED_EMAILS."""
    server = engrams.sso
    started = datetime.now(UTC)
    person = _person(people, server, "unverified@example.com", idp)
    response = await person.walk(await _authorization_request(server))
    assert isinstance(response, httpx.Response), response
    assert response.url.path == "/oauth/callback"
    _assert_error_page(response, 403, "unverified@example.com may not use this Engram server.")
    await _assert_signed_out(person, response)
    assert await _browser_sessions(admin_engine, "unverified@example.com") == 0
    failures = await _audit(admin_engine, started, "LOGIN_FAILED")
    assert any(row.subject_email == "unverified@example.com" and row.after["method"] == "sso" for row in failures)


async def test_a_user_outside_the_allowed_groups_is_refused(
    engrams: Engrams, idp: Idp, people: list[Person], admin_engine: AsyncEngine
) -> None:
    server = engrams.sso
    started = datetime.now(UTC)
    person = _person(people, server, "outsider@example.com", idp)
    response = await person.walk(await _authorization_request(server))
    assert isinstance(response, httpx.Response), response
    assert response.url.path == "/oauth/callback"
    _assert_error_page(response, 403, NOT_IN_GROUP)
    await _assert_signed_out(person, response)
    assert await _browser_sessions(admin_engine, "outsider@example.com") == 0
    problem = (await _log_event(server, "single sign-on failed"))["problem"]
    assert "outsider@example.com is not in an allowed group" in problem
    assert "ENGRAM_OIDC_ALLOWED_GROUPS" in problem
    failures = await _audit(admin_engine, started, "LOGIN_FAILED")
    assert any("outsider@example.com" in row.after.get("reason", "") for row in failures)


async def test_an_hs256_id_token_gives_an_error_page_and_tells_the_operator(
    engrams: Engrams, hs256_idp: Idp, people: list[Person]
) -> None:
    server = engrams.hs256
    person = _person(people, server, ALICE, hs256_idp)
    response = await person.walk(await _authorization_request(server))
    assert isinstance(response, httpx.Response), response
    assert response.url.path == "/oauth/callback"
    _assert_error_page(response, 502, MISCONFIGURED)
    assert "HS256" not in response.text  # what to fix is for the operator, in the log
    await _assert_signed_out(person, response)
    problem = (await _log_event(server, "single sign-on failed"))["problem"]
    assert "signed the ID token with HS256" in problem
    assert "select an RSA or EC signing key" in problem
    assert "Traceback" not in server.log()


async def test_an_unreachable_provider_gives_an_error_page_never_a_500(
    engrams: Engrams, idp: Idp, people: list[Person]
) -> None:
    server = engrams.down
    person = _person(people, server, ALICE, idp)
    response = await person.walk(await _authorization_request(server))
    assert isinstance(response, httpx.Response), response
    assert response.url.path == "/login/sso"
    _assert_error_page(response, 502, UNREACHABLE)
    await _assert_signed_out(person, response)
    problem = (await _log_event(server, "single sign-on unavailable"))["problem"]
    assert "/application/o/engram/.well-known/openid-configuration failed" in problem
    assert "check ENGRAM_OIDC_ISSUER" in problem
    assert "Traceback" not in server.log()
