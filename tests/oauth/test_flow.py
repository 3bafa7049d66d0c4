"""Engram's authorization server end to end over HTTP, signing in with local accounts.

The MCP SDK's OAuthClientProvider runs the whole flow (PRM → metadata → DCR → PKCE → consent →
token); raw HTTP requests prove each refusal the specification asks for.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import httpx
import httpx2
import pytest
from mcp.client.auth import OAuthClientProvider
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientMetadata
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.oauth.login import add_local_account
from app.oauth.passwords import hash_password
from tests.conftest import LiveServer
from tests.oauth.person import MemoryStorage, Person

PASSWORD = "correct horse battery staple"
REDIRECT = "http://127.0.0.1:53682/callback"


async def _account(sessions: async_sessionmaker[AsyncSession], prefix: str) -> str:
    email = f"{prefix}-{uuid.uuid4().hex[:6]}@example.com"
    await add_local_account(sessions, email, await hash_password(PASSWORD))
    return email


@pytest.fixture
async def person_factory(live_server: LiveServer) -> AsyncIterator[list[Person]]:
    people: list[Person] = []
    yield people
    for person in people:
        await person.aclose()


def _sdk_client(server: LiveServer, person: Person) -> httpx2.AsyncClient:
    result: dict[str, str] = {}

    async def redirect_handler(url: str) -> None:
        result.update(await person.authorize(url))

    async def callback_handler() -> AuthorizationCodeResult:
        return AuthorizationCodeResult(code=result["code"], state=result.get("state"), iss=result.get("iss"))

    provider = OAuthClientProvider(
        server_url=server.url + "/api/v1",
        client_metadata=OAuthClientMetadata(
            client_name="SDK test client", redirect_uris=[REDIRECT], grant_types=["authorization_code", "refresh_token"]
        ),
        storage=MemoryStorage(),
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
    )
    return httpx2.AsyncClient(auth=provider, timeout=30)


async def test_sdk_client_signs_in_and_each_user_sees_only_their_memories(
    live_server: LiveServer, sessions: async_sessionmaker[AsyncSession], person_factory: list[Person]
) -> None:
    alice, bob = await _account(sessions, "alice"), await _account(sessions, "bob")
    clients = {}
    for email in (alice, bob):
        person = Person(live_server.url, email, PASSWORD)
        person_factory.append(person)
        clients[email] = _sdk_client(live_server, person)
    try:
        me = await clients[alice].get(live_server.url + "/api/v1/me")
        assert me.status_code == 200, me.text
        assert me.json()["email"] == alice
        assert me.json()["app_name"] == "SDK test client"
        added = await clients[alice].post(
            live_server.url + "/api/v1/memories", json={"text": "Alice signed in through OAuth"}
        )
        assert added.status_code == 201, added.text
        bob_view = await clients[bob].get(live_server.url + "/api/v1/memories")
        assert bob_view.status_code == 200
        assert bob_view.json()["items"] == []
        alice_view = await clients[alice].get(live_server.url + "/api/v1/memories")
        assert [m["content"] for m in alice_view.json()["items"]] == ["Alice signed in through OAuth"]
    finally:
        for client in clients.values():
            await client.aclose()


# --- raw protocol ------------------------------------------------------------------------------------
def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


async def _register(api: httpx.AsyncClient, **extra: object) -> dict:  # type: ignore[type-arg]
    response = await api.post(
        "/oauth/register",
        json={"client_name": "raw test", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", **extra},
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def _authorize_url(client_id: str, challenge: str, **extra: str) -> str:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": "st-" + secrets.token_hex(4),
        "scope": "memories:read memories:write",
        **extra,
    }
    return "/oauth/authorize?" + urlencode(params)


async def _code(server: LiveServer, person: Person, client_id: str, challenge: str, **extra: str) -> dict[str, str]:
    return await person.authorize(_authorize_url(client_id, challenge, **extra))


async def _exchange(api: httpx.AsyncClient, client_id: str, code: str, verifier: str) -> httpx.Response:
    return await api.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": verifier,
            "client_id": client_id,
            "redirect_uri": REDIRECT,
        },
    )


async def _refresh(api: httpx.AsyncClient, client_id: str, refresh: str) -> httpx.Response:
    return await api.post(
        "/oauth/token", data={"grant_type": "refresh_token", "refresh_token": refresh, "client_id": client_id}
    )


async def test_authorization_code_flow_with_rotation_and_reuse_detection(
    api: httpx.AsyncClient,
    live_server: LiveServer,
    sessions: async_sessionmaker[AsyncSession],
    person_factory: list[Person],
    admin_engine: AsyncEngine,
) -> None:
    email = await _account(sessions, "carol")
    person = Person(live_server.url, email, PASSWORD)
    person_factory.append(person)
    client = await _register(api)
    verifier, challenge = _pkce()
    redirect = await _code(live_server, person, client["client_id"], challenge)
    assert redirect["iss"] == live_server.url
    assert redirect["state"].startswith("st-")
    tokens = await _exchange(api, client["client_id"], redirect["code"], verifier)
    assert tokens.status_code == 200, tokens.text
    assert tokens.headers["cache-control"] == "no-store"
    body = tokens.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "memories:read memories:write"
    # The token is bound to the MCP endpoint by default, and /api/v1 refuses it (no passthrough).
    assert (await api.get("/api/v1/me", headers={"Authorization": f"Bearer {body['access_token']}"})).status_code == 401

    # Rotation: the new refresh token works once; replaying the old one revokes the whole family.
    rotated = await _refresh(api, client["client_id"], body["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    replay = await _refresh(api, client["client_id"], body["refresh_token"])
    assert replay.json()["error"] == "invalid_grant"
    assert (await _refresh(api, client["client_id"], rotated.json()["refresh_token"])).json()[
        "error"
    ] == "invalid_grant"

    # Reusing the code fails and revokes what it issued.
    verifier2, challenge2 = _pkce()
    second = await _code(live_server, person, client["client_id"], challenge2, resource=live_server.url + "/api/v1")
    assert "code" in second, second
    first_use = await _exchange(api, client["client_id"], second["code"], verifier2)
    assert first_use.status_code == 200
    assert (
        await api.get("/api/v1/me", headers={"Authorization": f"Bearer {first_use.json()['access_token']}"})
    ).json()["email"] == email
    again = await _exchange(api, client["client_id"], second["code"], verifier2)
    assert again.json()["error"] == "invalid_grant"
    assert (await _refresh(api, client["client_id"], first_use.json()["refresh_token"])).json()[
        "error"
    ] == "invalid_grant"
    # ...including the access token it issued, before that token expires (RFC 6749 §4.1.2).
    refused = await api.get("/api/v1/me", headers={"Authorization": f"Bearer {first_use.json()['access_token']}"})
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    assert "revoked" in refused.json()["detail"]

    async with admin_engine.connect() as conn:
        events = set(
            (await conn.scalars(text("SELECT operation FROM audit_log WHERE subject_email = :e"), {"e": email})).all()
        )
    assert {
        "LOGIN",
        "OAUTH_AUTHORIZED",
        "OAUTH_TOKEN_ISSUED",
        "OAUTH_REFRESHED",
        "OAUTH_REFRESH_REUSED",
        "OAUTH_CODE_REUSED",
    } <= events


async def test_consent_is_remembered_until_asked_again(
    api: httpx.AsyncClient,
    live_server: LiveServer,
    sessions: async_sessionmaker[AsyncSession],
    person_factory: list[Person],
) -> None:
    email = await _account(sessions, "dan")
    person = Person(live_server.url, email, PASSWORD)
    person_factory.append(person)
    client = await _register(api)
    _, challenge = _pkce()
    assert "code" in await _code(live_server, person, client["client_id"], challenge)
    person.seen.clear()
    assert "code" in await _code(live_server, person, client["client_id"], challenge)
    assert not any("/login" in url for url in person.seen), "the browser session should be reused"
    page = await person.client.get(
        _authorize_url(client["client_id"], challenge, prompt="consent"), follow_redirects=True
    )
    assert 'action="/oauth/consent"' in page.text


async def test_refusals(
    api: httpx.AsyncClient,
    live_server: LiveServer,
    sessions: async_sessionmaker[AsyncSession],
    person_factory: list[Person],
    admin_engine: AsyncEngine,
) -> None:
    email = await _account(sessions, "erin")
    person = Person(live_server.url, email, PASSWORD)
    person_factory.append(person)
    client = await _register(api)
    verifier, challenge = _pkce()

    wrong_verifier = await _code(live_server, person, client["client_id"], challenge)
    refused = await _exchange(api, client["client_id"], wrong_verifier["code"], verifier[::-1])
    assert refused.json()["error"] == "invalid_grant"
    assert "PKCE" in refused.json()["error_description"]

    # Unregistered redirect URI and unknown client: an error page, never a redirect.
    for url in (
        _authorize_url(client["client_id"], challenge, redirect_uri="http://127.0.0.1:9/elsewhere"),
        _authorize_url("no-such-client", challenge),
        _authorize_url(client["client_id"], challenge, redirect_uri="https://evil.example.com/cb"),
    ):
        response = await person.client.get(url)
        assert response.status_code == 400, url
        assert "location" not in response.headers

    foreign = await _code(live_server, person, client["client_id"], challenge, resource="https://other.example.com/mcp")
    assert foreign["error"] == "invalid_target"
    no_pkce = await person.authorize(_authorize_url(client["client_id"], challenge, code_challenge_method="plain"))
    assert no_pkce["error"] == "invalid_request"

    person.decision = "deny"
    denied = await _code(live_server, person, client["client_id"], challenge, prompt="consent")
    assert denied["error"] == "access_denied"
    person.decision = "allow"

    # A consent form without its CSRF token is refused.
    start = await person.client.get(_authorize_url(client["client_id"], challenge, prompt="consent"))
    page = await person.client.get(start.headers["location"])
    pending = page.text.split('name="request" value="', 1)[1].split('"', 1)[0]
    forged = await person.client.post("/oauth/consent", data={"request": pending, "decision": "allow"})
    assert forged.status_code == 403

    # An expired code.
    late = await _code(live_server, person, client["client_id"], challenge)
    async with admin_engine.begin() as conn:
        await conn.execute(
            text("UPDATE oauth_codes SET expires_at = now() - interval '1 second' WHERE owner_email = :e"), {"e": email}
        )
    expired = await _exchange(api, client["client_id"], late["code"], verifier)
    assert expired.json()["error"] == "invalid_grant"
    assert "expired" in expired.json()["error_description"]

    # Another client cannot redeem this client's code.
    other = await _register(api)
    stolen = await _code(live_server, person, client["client_id"], challenge)
    assert (await _exchange(api, other["client_id"], stolen["code"], verifier)).json()["error"] == "invalid_grant"
    assert (await api.post("/oauth/token", data={"grant_type": "password"})).status_code in (400, 401)


async def test_confidential_clients_and_revocation(
    api: httpx.AsyncClient,
    live_server: LiveServer,
    sessions: async_sessionmaker[AsyncSession],
    person_factory: list[Person],
) -> None:
    email = await _account(sessions, "fay")
    person = Person(live_server.url, email, PASSWORD)
    person_factory.append(person)
    client = await _register(api, token_endpoint_auth_method="client_secret_basic")
    secret = client["client_secret"]
    verifier, challenge = _pkce()
    code = (await _code(live_server, person, client["client_id"], challenge, resource=live_server.url + "/api/v1"))[
        "code"
    ]
    form = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier, "redirect_uri": REDIRECT}
    wrong = await api.post("/oauth/token", data=form, auth=(client["client_id"], "wrong"))
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"
    tokens = await api.post("/oauth/token", data=form, auth=(client["client_id"], secret))
    assert tokens.status_code == 200, tokens.text
    refresh = tokens.json()["refresh_token"]
    bearer = {"Authorization": f"Bearer {tokens.json()['access_token']}"}
    assert (await api.get("/api/v1/me", headers=bearer)).status_code == 200
    revoked = await api.post("/oauth/revoke", data={"token": refresh}, auth=(client["client_id"], secret))
    assert revoked.status_code == 200
    # Revoking the refresh token ends the sign-in: its access token stops working at once.
    assert (await api.get("/api/v1/me", headers=bearer)).status_code == 401
    again = await api.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh},
        auth=(client["client_id"], secret),
    )
    assert again.json()["error"] == "invalid_grant"
    # Unknown tokens are "revoked" too (RFC 7009), without telling anything.
    assert (
        await api.post("/oauth/revoke", data={"token": "nonsense"}, auth=(client["client_id"], secret))
    ).status_code == 200


async def test_local_sign_in_is_throttled(
    live_server: LiveServer, sessions: async_sessionmaker[AsyncSession], person_factory: list[Person]
) -> None:
    email = await _account(sessions, "gus")
    person = Person(live_server.url, email, "not the password")
    person_factory.append(person)
    page = await person.client.get("/login")
    csrf = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    fields = {"csrf_token": csrf, "next": "/", "email": email}
    for _ in range(5):
        response = await person.client.post("/login", data={**fields, "password": "wrong"})
        assert response.status_code == 401
        assert "do not match" in response.text
    locked = await person.client.post("/login", data={**fields, "password": PASSWORD})
    assert locked.status_code == 401
    assert "locked" in locked.text


async def test_authorization_server_metadata(api: httpx.AsyncClient, live_server: LiveServer) -> None:
    prm = (await api.get("/.well-known/oauth-protected-resource/mcp")).json()
    metadata = (await api.get("/.well-known/oauth-authorization-server")).json()
    assert metadata["issuer"] == prm["authorization_servers"][0]
    assert metadata == (await api.get("/.well-known/openid-configuration")).json()
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["authorization_response_iss_parameter_supported"] is True
    assert metadata["client_id_metadata_document_supported"] is True
    for endpoint in (
        "authorization_endpoint",
        "token_endpoint",
        "registration_endpoint",
        "revocation_endpoint",
        "jwks_uri",
    ):
        assert metadata[endpoint].startswith(live_server.url + "/")
