"""Bearer JWTs at /api/v1 over real HTTP: a trusted (Authentik-shaped) issuer, Engram's own tokens,
the email allow-list, and an issuer that goes down."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.kek import load_kek
from app.auth.keys import KeyStore
from app.db.bootstrap import EmbeddedUrls
from app.settings import Settings, TrustedIssuer, json_dump_issuers
from tests.auth.issuer_server import CLIENT_ID, IssuerServer
from tests.conftest import LiveServer, start_server, stop_server


@pytest.fixture(scope="module")
def issuer() -> Iterator[IssuerServer]:
    server = IssuerServer(slug="engram-sso")
    server.add_key("RS256", "rsa-1")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def sso_server(
    db_urls: EmbeddedUrls, data_dir: Path, issuer: IssuerServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    issuers = [TrustedIssuer(issuer=issuer.issuer, audiences=[CLIENT_ID])]
    server = start_server(
        {
            "ENGRAM_DATABASE_URL": db_urls.runtime,
            "ENGRAM_DATA_DIR": str(data_dir),
            "ENGRAM_TRUSTED_ISSUERS": json_dump_issuers(issuers),
            "ENGRAM_ALLOWED_DOMAINS": "example.com",
            "ENGRAM_JWKS_MIN_REFETCH_SECONDS": "0",
        },
        tmp_path_factory.mktemp("sso") / "engram.log",
    )
    try:
        yield server
    finally:
        stop_server(server)


def _me(server: LiveServer, token: str) -> httpx.Response:
    return httpx.get(server.url + "/api/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_trusted_issuer_token_is_keyed_on_email_not_sub(sso_server: LiveServer, issuer: IssuerServer) -> None:
    response = _me(sso_server, issuer.token("rsa-1", email="Frank@Example.com", sub="opaque-hash"))
    assert response.status_code == 200, response.text
    me = response.json()
    assert me["email"] == "frank@example.com"
    # Authentik tokens carry no scope claim: the issuer's default scopes apply (not delete).
    assert me["scopes"] == ["memories:read", "memories:write"]
    assert me["client_id"] == CLIENT_ID


def test_trusted_issuer_refusals(sso_server: LiveServer, issuer: IssuerServer) -> None:
    outside = _me(sso_server, issuer.token("rsa-1", email="mallory@evil.example.net"))
    assert outside.status_code == 403
    assert "not on this server's list of allowed users or domains" in outside.json()["detail"]
    no_email = _me(sso_server, issuer.token("rsa-1", email=None))
    assert no_email.status_code == 403
    assert "no usable email claim" in no_email.json()["detail"]
    foreign = _me(sso_server, issuer.token("rsa-1", aud="some-other-client"))
    assert foreign.status_code == 401
    assert 'error="invalid_token"' in foreign.headers["www-authenticate"]
    expired = _me(sso_server, issuer.token("rsa-1", exp=int(time.time()) - 3600, iat=int(time.time()) - 7200))
    assert expired.status_code == 401


async def test_engram_tokens_are_bound_to_the_api_audience(
    sso_server: LiveServer, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    keys = KeyStore(sessions, load_kek(settings), "ES256", 3600)
    await keys.ensure_active_key()
    now = int(time.time())
    claims = {
        "iss": sso_server.url,
        "email": "grace@example.com",
        "scope": "memories:read",
        "iat": now,
        "exp": now + 300,
    }
    good = await keys.sign({**claims, "aud": sso_server.url + "/api/v1", "client_id": "cursor"})
    response = await asyncio.to_thread(_me, sso_server, good)
    assert response.status_code == 200, response.text
    assert response.json()["scopes"] == ["memories:read"]
    # A token minted for another resource (the MCP endpoint) is not accepted here: no passthrough.
    other = await keys.sign({**claims, "aud": sso_server.url + "/mcp"})
    assert (await asyncio.to_thread(_me, sso_server, other)).status_code == 401
    # Read-only: writing asks for the write scope.
    async with httpx.AsyncClient() as client:
        write = await client.post(
            sso_server.url + "/api/v1/memories", json={"text": "x"}, headers={"Authorization": f"Bearer {good}"}
        )
    assert write.status_code == 403
    assert 'scope="memories:write"' in write.headers["www-authenticate"]


def test_an_issuer_that_is_down_gives_503_not_500(sso_server: LiveServer, issuer: IssuerServer) -> None:
    issuer.add_key("ES256", "rotated-2")
    issuer.status = 502
    try:
        response = _me(sso_server, issuer.token("rotated-2"))
    finally:
        issuer.status = 200
    assert response.status_code == 503
    assert response.json()["type"] == "urn:engram:problem:issuer-unavailable"
    assert response.headers["retry-after"]
    # Once it is back, the rotated key is fetched and accepted.
    assert _me(sso_server, issuer.token("rotated-2")).status_code == 200


def test_jwks_is_published_and_follows_rotation(sso_server: LiveServer, db_urls: EmbeddedUrls, data_dir: Path) -> None:
    before = httpx.get(sso_server.url + "/.well-known/jwks.json").json()["keys"]
    assert before
    assert all("d" not in key for key in before), "private key material must never be published"
    rotated = subprocess.run(
        [sys.executable, "-m", "app", "keys", "rotate"],
        env={**os.environ, "ENGRAM_DATABASE_URL": db_urls.runtime, "ENGRAM_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert rotated.returncode == 0, rotated.stderr
    new_kid = rotated.stdout.split("New signing key ", 1)[1].split(";", 1)[0]
    after = {key["kid"] for key in httpx.get(sso_server.url + "/.well-known/jwks.json").json()["keys"]}
    # The new key is published, and so are the old ones until their tokens expire.
    assert new_kid in after
    assert {key["kid"] for key in before} <= after
