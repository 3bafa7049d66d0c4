"""The test identity provider itself: the Authentik shape and the spec-style server other tests rely on."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
import pytest

from tests.idp.peer import Idp, login_at_idp, start_idp

CALLBACK = "http://127.0.0.1:8765/oauth/callback"
MCP = "http://127.0.0.1:8765/mcp"


@pytest.fixture(scope="module")
def authentik(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Idp]:
    peer = start_idp(tmp_path_factory.mktemp("authentik"), redirect_uris=[CALLBACK])
    try:
        yield peer
    finally:
        peer.stop()


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Idp]:
    peer = start_idp(tmp_path_factory.mktemp("spec"), mode="spec", extra_env={"IDP_RESOURCES": MCP})
    try:
        yield peer
    finally:
        peer.stop()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as http:
        yield http


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def _query(location: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}


def _claims(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


async def test_authentik_shape(authentik: Idp, client: httpx.AsyncClient) -> None:
    assert authentik.issuer == f"{authentik.base_url}/application/o/engram/"
    assert (await client.get(f"{authentik.base_url}/application/o/.well-known/openid-configuration")).status_code == 404
    metadata = (await client.get(authentik.discovery_url)).json()
    assert metadata["issuer"] == authentik.issuer
    assert metadata["authorization_endpoint"] == f"{authentik.base_url}/application/o/authorize/"
    assert metadata["token_endpoint"] == f"{authentik.base_url}/application/o/token/"
    jwks = (await client.get(metadata["jwks_uri"])).json()
    assert [key["kty"] for key in jwks["keys"]] == ["RSA"]
    assert jwks["keys"][0]["kid"] != "keystore-CHANGE-ME"

    verifier, challenge = _pkce()
    authorize = (
        metadata["authorization_endpoint"]
        + "?"
        + urlencode(
            {
                "response_type": "code",
                "client_id": authentik.client_id,
                "redirect_uri": CALLBACK,
                "scope": "openid email profile",
                "state": "s",
                "nonce": "n",
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
    )
    code = _query(await login_at_idp(client, authorize, "alice"))["code"]
    tokens = (
        await client.post(
            metadata["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": CALLBACK,
                "code_verifier": verifier,
            },
            auth=(authentik.client_id, authentik.client_secret),
        )
    ).json()
    access = _claims(tokens["access_token"])
    assert jwt.get_unverified_header(tokens["access_token"])["typ"] == "at+jwt"
    assert access["aud"] == access["azp"] == authentik.client_id
    assert access["email"] == "alice@example.com"
    assert access["groups"] == ["engram-users", "admins"]
    assert "scope" not in access  # like Authentik's
    id_token = _claims(tokens["id_token"])
    assert id_token["sub"] == access["sub"] != "alice"
    userinfo = await client.get(
        metadata["userinfo_endpoint"], headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert userinfo.json()["email"] == "alice@example.com"
    refreshed = await client.post(
        metadata["token_endpoint"],
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=(authentik.client_id, authentik.client_secret),
    )
    assert _claims(refreshed.json()["access_token"])["email"] == "alice@example.com"


async def test_spec_server_registers_clients_and_binds_tokens_to_the_resource(
    spec: Idp, client: httpx.AsyncClient
) -> None:
    metadata = (await client.get(f"{spec.base_url}/.well-known/oauth-authorization-server")).json()
    assert metadata["issuer"] == spec.issuer == spec.base_url
    registered = await client.post(
        metadata["registration_endpoint"],
        json={
            "redirect_uris": ["http://127.0.0.1/callback"],
            "application_type": "native",
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "scope": "memories:read memories:write",
        },
    )
    assert registered.status_code == 201, registered.text
    client_id = registered.json()["client_id"]
    redirect_uri = "http://127.0.0.1:40123/callback"  # loopback: any port
    verifier, challenge = _pkce()
    request = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": "memories:read memories:write",
        "state": "s",
        "resource": MCP,
    }

    def authorize(**extra: str) -> str:
        return metadata["authorization_endpoint"] + "?" + urlencode({**request, **extra})

    without_pkce = _query(await login_at_idp(client, authorize(), "bob"))
    assert without_pkce["error"] == "invalid_request"
    foreign = _query(
        await login_at_idp(
            client,
            authorize(code_challenge=challenge, code_challenge_method="S256", resource="https://elsewhere.example/mcp"),
            "bob",
        )
    )
    assert foreign["error"] == "invalid_target"

    callback = _query(
        await login_at_idp(client, authorize(code_challenge=challenge, code_challenge_method="S256"), "bob")
    )
    tokens = (
        await client.post(
            metadata["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": callback["code"],
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
                "client_id": client_id,
                "resource": MCP,
            },
        )
    ).json()
    access = _claims(tokens["access_token"])
    assert access["aud"] == MCP
    assert access["email"] == "bob@example.com"
    assert access["scope"] == "memories:read memories:write"
    assert access["iss"] == spec.issuer
    assert "refresh_token" in tokens
