from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import time
import warnings
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.auth import scopes
from app.auth.jwt import IssuerUnavailable, JWTVerifier, TokenInvalid
from app.auth.keys import KeyStore
from app.settings import Settings, TrustedIssuer
from tests.auth.issuer_server import CLIENT_ID, IssuerServer, generate_key

HS256_MESSAGE = (
    "the issuer signed this token with HS256 (a shared secret); "
    "select an RSA or EC signing key in the identity provider"
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _handmade(header: dict[str, Any], claims: dict[str, Any], secret: bytes | None) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    if secret is None:
        return signing_input + "."
    return signing_input + "." + _b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())


async def _refused(verifier: JWTVerifier, token: str, audiences: list[str] | None = None) -> str:
    with pytest.raises(TokenInvalid) as caught:
        await verifier.verify(token, audiences=audiences or ["unused"])
    message = str(caught.value)
    assert not token or token not in message
    return message


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
async def test_valid_tokens_of_each_algorithm(verifier: JWTVerifier, issuer_server: IssuerServer, alg: str) -> None:
    kid = issuer_server.add_key(alg, f"key-{alg}")
    verified = await verifier.verify(issuer_server.token(kid, email="  Alice@Example.COM "), audiences=["ignored"])
    assert verified.issuer == issuer_server.issuer
    assert verified.subject == "hashed-subject-1"
    assert verified.email == "alice@example.com"
    # No scope claim (Authentik): the issuer's default scopes.
    assert verified.scopes == scopes.expand(["memories:write"])
    assert verified.client_id == CLIENT_ID
    assert verified.claims["azp"] == CLIENT_ID


async def test_scope_claim_and_client_id_from_the_audience(verifier: JWTVerifier, issuer_server: IssuerServer) -> None:
    kid = issuer_server.add_key("RS256", "k1")
    token = issuer_server.token(kid, scope="openid memories:read", azp=None, aud=["other", CLIENT_ID], email=None)
    verified = await verifier.verify(token, audiences=[])
    assert verified.scopes == frozenset({scopes.READ})
    assert verified.client_id == "other"
    assert verified.email is None


async def test_expiry_with_leeway(verifier: JWTVerifier, issuer_server: IssuerServer) -> None:
    kid = issuer_server.add_key("ES256", "k1")
    now = int(time.time())
    await verifier.verify(issuer_server.token(kid, exp=now - 10), audiences=[])  # within the leeway
    assert "expired" in await _refused(verifier, issuer_server.token(kid, exp=now - 120))
    assert "exp" in await _refused(verifier, issuer_server.token(kid, exp=None))


async def test_not_yet_valid(verifier: JWTVerifier, issuer_server: IssuerServer) -> None:
    kid = issuer_server.add_key("ES256", "k1")
    now = int(time.time())
    assert "not valid yet" in await _refused(verifier, issuer_server.token(kid, nbf=now + 600))
    assert "not valid yet" in await _refused(verifier, issuer_server.token(kid, iat=now + 600))


async def test_short_rsa_keys_are_refused(verifier: JWTVerifier, issuer_server: IssuerServer) -> None:
    issuer_server.add_key("RS256", "weak")
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the point of the test
    issuer_server.keys["weak"] = ("RS256", weak)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        token = issuer_server.token("weak")
    assert "1024 bits" in await _refused(verifier, token)


async def test_unknown_issuer(verifier: JWTVerifier, issuer_server: IssuerServer) -> None:
    kid = issuer_server.add_key("RS256", "k1")
    message = await _refused(verifier, issuer_server.token(kid, iss="https://evil.example/"))
    assert "not trusted" in message
    assert await _refused(verifier, issuer_server.token(kid, iss=None)) == "the token has no iss claim"
    assert issuer_server.hits[issuer_server.jwks_path] == 0


async def test_issuer_differing_by_a_trailing_slash(verifier: JWTVerifier, issuer_server: IssuerServer) -> None:
    kid = issuer_server.add_key("RS256", "k1")
    message = await _refused(verifier, issuer_server.token(kid, iss=issuer_server.issuer.rstrip("/")))
    assert "differs only by a trailing slash" in message


async def test_foreign_audience(verifier: JWTVerifier, issuer_server: IssuerServer) -> None:
    kid = issuer_server.add_key("RS256", "k1")
    message = await _refused(verifier, issuer_server.token(kid, aud="someone-else"), [CLIENT_ID])
    assert "audience 'someone-else'" in message
    assert "aud" in await _refused(verifier, issuer_server.token(kid, aud=None))


async def test_alg_none(verifier: JWTVerifier, issuer_server: IssuerServer) -> None:
    issuer_server.add_key("RS256", "k1")
    token = _handmade({"alg": "none", "typ": "JWT", "kid": "k1"}, issuer_server.claims(), None)
    assert "algorithm 'none' is not accepted" in await _refused(verifier, token)


async def test_hs256_with_the_public_key_as_secret(
    verifier: JWTVerifier, issuer_server: IssuerServer, key_store: KeyStore, verifier_settings: Settings
) -> None:
    issuer_server.add_key("RS256", "k1")
    _, private = issuer_server.keys["k1"]
    pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    token = _handmade({"alg": "HS256", "typ": "JWT", "kid": "k1"}, issuer_server.claims(), pem)
    assert await _refused(verifier, token) == HS256_MESSAGE

    # The same attack on Engram's own key.
    await key_store.ensure_active_key()
    jwk = (await key_store.jwks())["keys"][0]
    own_pem = jwt.PyJWK(jwk).key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = {
        "iss": verifier_settings.issuer,
        "aud": verifier_settings.mcp_resource,
        "exp": int(time.time()) + 60,
        "email": "a@example.com",
    }
    own = _handmade({"alg": "HS256", "typ": "at+jwt", "kid": jwk["kid"]}, claims, own_pem)
    assert "algorithm 'HS256' is not accepted" in await _refused(verifier, own, [verifier_settings.mcp_resource])


async def test_hs256_from_a_trusted_issuer_names_the_fix(verifier: JWTVerifier, issuer_server: IssuerServer) -> None:
    token = jwt.encode(issuer_server.claims(), "the-client-secret-of-authentik-0123", algorithm="HS256")
    assert await _refused(verifier, token) == HS256_MESSAGE
    assert issuer_server.hits[issuer_server.jwks_path] == 0


async def test_unknown_kid_refetches_once_within_the_interval(
    verifier: JWTVerifier, issuer_server: IssuerServer
) -> None:
    first = issuer_server.add_key("RS256", "first")
    await verifier.verify(issuer_server.token(first), audiences=[])
    await verifier.verify(issuer_server.token(first), audiences=[])
    assert issuer_server.hits[issuer_server.discovery_path] == 1
    assert issuer_server.hits[issuer_server.jwks_path] == 1

    rotated = issuer_server.add_key("ES256", "rotated")  # the issuer rotates its key
    await verifier.verify(issuer_server.token(rotated), audiences=[])
    await verifier.verify(issuer_server.token(rotated), audiences=[])
    assert issuer_server.hits[issuer_server.jwks_path] == 2

    again = issuer_server.add_key("EdDSA", "again")  # a second rotation within the interval
    assert "no signing key with kid 'again'" in await _refused(verifier, issuer_server.token(again))
    unpublished = issuer_server.add_key("RS256", "forged", publish=False)
    await _refused(verifier, issuer_server.token(unpublished))
    assert issuer_server.hits[issuer_server.jwks_path] == 2


async def test_concurrent_requests_share_one_fetch(verifier: JWTVerifier, issuer_server: IssuerServer) -> None:
    kid = issuer_server.add_key("ES256", "k1")
    results = await asyncio.gather(*(verifier.verify(issuer_server.token(kid), audiences=[]) for _ in range(10)))
    assert {r.email for r in results} == {"alice@example.com"}
    assert issuer_server.hits[issuer_server.jwks_path] == 1

    for n in range(5):
        issuer_server.add_key("ES256", f"new-{n}")
    tokens = [issuer_server.token(f"new-{n}") for n in range(5)]
    await asyncio.gather(*(verifier.verify(t, audiences=[]) for t in tokens))
    assert issuer_server.hits[issuer_server.jwks_path] == 2


async def test_configured_jwks_url_skips_discovery(
    settings: Settings, key_store: KeyStore, http: httpx.AsyncClient, issuer_server: IssuerServer
) -> None:
    trusted = TrustedIssuer(
        issuer=issuer_server.issuer,
        audiences=[CLIENT_ID],
        jwks_url=issuer_server.base + issuer_server.jwks_path,
    )
    verifier = JWTVerifier(settings.replace(trusted_issuers=[trusted]), key_store, http)
    kid = issuer_server.add_key("RS256", "k1")
    await verifier.verify(issuer_server.token(kid), audiences=[])
    assert issuer_server.hits[issuer_server.discovery_path] == 0
    # The JWKS also holds a symmetric key ("shared"); it is never used.
    _, private = issuer_server.keys[kid]
    token = jwt.encode(issuer_server.claims(), private, algorithm="RS256", headers={"kid": "shared"})
    assert "no signing key with kid 'shared'" in await _refused(verifier, token)


async def test_issuer_down(
    settings: Settings, key_store: KeyStore, http: httpx.AsyncClient, issuer_server: IssuerServer
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    issuer = f"http://127.0.0.1:{port}/application/o/engram/"
    verifier = JWTVerifier(
        settings.replace(trusted_issuers=[TrustedIssuer(issuer=issuer, audiences=[CLIENT_ID])]),
        key_store,
        http,
    )
    issuer_server.add_key("RS256", "k1")  # only to mint a token
    token = issuer_server.token("k1", iss=issuer)
    with pytest.raises(IssuerUnavailable, match="unreachable") as caught:
        await verifier.verify(token, audiences=[])
    assert token not in str(caught.value)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, b"<html>login</html>", "is not JSON"),
        (200, b'{"keys": "none"}', "has no 'keys' list"),
        (200, b"[]", "has no 'keys' list"),
        (500, None, "answered HTTP 500"),
    ],
)
async def test_malformed_or_failing_jwks(
    verifier: JWTVerifier, issuer_server: IssuerServer, status: int, body: bytes | None, expected: str
) -> None:
    kid = issuer_server.add_key("RS256", "k1")
    issuer_server.status, issuer_server.body = status, body
    with pytest.raises(IssuerUnavailable, match=expected):
        await verifier.verify(issuer_server.token(kid), audiences=[])

    issuer_server.status, issuer_server.body = 200, None  # recovery needs no restart
    await verifier.verify(issuer_server.token(kid), audiences=[])


async def test_discovery_naming_another_issuer(verifier: JWTVerifier, issuer_server: IssuerServer) -> None:
    kid = issuer_server.add_key("RS256", "k1")
    issuer_server.discovery_issuer = issuer_server.issuer.rstrip("/")
    with pytest.raises(IssuerUnavailable, match="configure the issuer exactly"):
        await verifier.verify(issuer_server.token(kid), audiences=[])


async def test_issuer_timeout(verifier_settings: Settings, key_store: KeyStore, issuer_server: IssuerServer) -> None:
    kid = issuer_server.add_key("RS256", "k1")
    issuer_server.stall = True
    async with httpx.AsyncClient(timeout=0.2) as http:
        verifier = JWTVerifier(verifier_settings, key_store, http)
        with pytest.raises(IssuerUnavailable, match="ReadTimeout"):
            await verifier.verify(issuer_server.token(kid), audiences=[])


async def test_malformed_tokens(verifier: JWTVerifier) -> None:
    for token in ["", "abc", "a.b.c", "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln"]:
        assert await _refused(verifier, token) == "the token is not a well-formed JWT"


async def test_engram_tokens(verifier: JWTVerifier, key_store: KeyStore, verifier_settings: Settings) -> None:
    await key_store.ensure_active_key()
    now = int(time.time())
    claims = {
        "iss": verifier_settings.issuer,
        "aud": verifier_settings.mcp_resource,
        "sub": "user-1",
        "email": "Bob@Example.com",
        "scope": "memories:write",
        "client_id": "client-1",
        "iat": now,
        "exp": now + 60,
    }
    verified = await verifier.verify(await key_store.sign(claims), audiences=[verifier_settings.mcp_resource])
    assert (verified.email, verified.client_id) == ("bob@example.com", "client-1")
    assert verified.scopes == frozenset({scopes.READ, scopes.WRITE})

    # Bound to the resource it was issued for.
    message = await _refused(verifier, await key_store.sign(claims), [verifier_settings.api_audience])
    assert "audience" in message
    # Only access tokens: another JWT signed with the same key is not one.
    id_token = await key_store.sign(claims, headers={"typ": "JWT"})
    assert "is not at+jwt" in await _refused(verifier, id_token, [verifier_settings.mcp_resource])
    # The kid is always the signing key's own.
    signed = await key_store.sign(claims, headers={"kid": "nope", "alg": "HS256"})
    await verifier.verify(signed, audiences=[verifier_settings.mcp_resource])
    # A key Engram never had, even under a plausible header.
    forged = jwt.encode(claims, generate_key("ES256"), algorithm="ES256", headers={"kid": "nope", "typ": "at+jwt"})
    assert "no signing key with kid 'nope'" in await _refused(verifier, forged, [verifier_settings.mcp_resource])
