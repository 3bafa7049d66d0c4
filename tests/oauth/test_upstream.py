"""The sign-in at an upstream OpenID Connect provider, against a real oidc-provider shaped like Authentik."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from app.oauth.upstream import (
    NOT_IN_GROUP,
    START_AGAIN,
    UNREACHABLE,
    UNVERIFIED,
    UpstreamError,
    UpstreamIdentity,
    UpstreamOIDC,
)
from app.settings import Settings
from tests.idp.peer import Idp, login_at_idp, start_idp

REDIRECT_URI = "http://127.0.0.1:8765/oauth/callback"
HS256_MESSAGE = (
    "the identity provider signed the ID token with HS256 (a shared secret): select an RSA or EC signing key "
    "in the provider (Authentik: Provider → Signing Key)"
)


def _started(tmp_path: Path, **env: str) -> Iterator[Idp]:
    peer = start_idp(tmp_path, redirect_uris=[REDIRECT_URI], extra_env=env)
    try:
        yield peer
    finally:
        peer.stop()


@pytest.fixture(scope="module")
def authentik(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Idp]:
    yield from _started(tmp_path_factory.mktemp("authentik"))


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """Engram's own outgoing client (no cookies of the browser)."""
    async with httpx.AsyncClient() as client:
        yield client


def settings_for(idp: Idp, **changes: object) -> Settings:
    base = Settings(oidc_issuer=idp.issuer, oidc_client_id=idp.client_id, oidc_client_secret=idp.client_secret)
    return base.replace(**changes)


async def _authorize(upstream: UpstreamOIDC, login: str) -> tuple[dict[str, str], str, str]:
    """Start a sign-in and log in at the provider: the callback's parameters, the verifier and the nonce."""
    state, nonce, verifier = secrets.token_urlsafe(16), secrets.token_urlsafe(16), secrets.token_urlsafe(48)
    url = await upstream.authorization_url(state=state, nonce=nonce, code_verifier=verifier, redirect_uri=REDIRECT_URI)
    async with httpx.AsyncClient(timeout=10) as browser:
        location = await login_at_idp(browser, url, login)
    assert location.startswith(REDIRECT_URI + "?")
    params = {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}
    assert params["state"] == state
    return params, verifier, nonce


async def sign_in(idp: Idp, http: httpx.AsyncClient, login: str, **changes: object) -> UpstreamIdentity:
    upstream = UpstreamOIDC(settings_for(idp, **changes), http)
    params, verifier, nonce = await _authorize(upstream, login)
    return await upstream.complete(
        code=params["code"], code_verifier=verifier, redirect_uri=REDIRECT_URI, nonce=nonce, iss=params.get("iss")
    )


async def refused(idp: Idp, http: httpx.AsyncClient, login: str, **changes: object) -> UpstreamError:
    with pytest.raises(UpstreamError) as caught:
        await sign_in(idp, http, login, **changes)
    assert idp.client_secret not in caught.value.operator_message
    assert idp.client_secret not in caught.value.user_message
    return caught.value


async def test_alice_signs_in_and_is_known_by_her_email(authentik: Idp, http: httpx.AsyncClient) -> None:
    identity = await sign_in(authentik, http, "alice")
    assert identity.email == "alice@example.com"
    assert identity.subject != identity.email
    assert "@" not in identity.subject  # Authentik-style hashed subject
    assert identity.name == "alice"
    assert identity.groups == ("engram-users", "admins")


async def test_bob_signs_in(authentik: Idp, http: httpx.AsyncClient) -> None:
    identity = await sign_in(authentik, http, "bob")
    alice = await sign_in(authentik, http, "alice")
    assert identity.email == "bob@example.com"
    assert identity.groups == ("engram-users",)
    assert identity.subject not in (alice.subject, identity.email)


async def test_discovery_follows_authentiks_shared_endpoints(authentik: Idp, http: httpx.AsyncClient) -> None:
    metadata = await UpstreamOIDC(settings_for(authentik), http).discover()
    assert metadata.issuer == authentik.issuer
    assert authentik.issuer.endswith("/application/o/engram/")
    assert metadata.authorization_endpoint == f"{authentik.base_url}/application/o/authorize/"
    assert metadata.token_endpoint == f"{authentik.base_url}/application/o/token/"
    assert metadata.jwks_uri == f"{authentik.base_url}/application/o/engram/jwks/"


async def test_allowed_groups_admit_members_only(authentik: Idp, http: httpx.AsyncClient) -> None:
    identity = await sign_in(authentik, http, "alice", oidc_allowed_groups=["admins"])
    assert identity.email == "alice@example.com"
    error = await refused(authentik, http, "bob", oidc_allowed_groups=["admins"])
    assert error.user_message == NOT_IN_GROUP
    assert error.reason == "group"
    assert "bob@example.com is not in an allowed group" in error.operator_message
    assert "admins" in error.operator_message
    error = await refused(authentik, http, "outsider", oidc_allowed_groups=["engram-users"])
    assert "outsider@example.com is not in an allowed group: member of []" in error.operator_message


async def test_email_verified_is_required_only_when_configured(authentik: Idp, http: httpx.AsyncClient) -> None:
    assert (await sign_in(authentik, http, "unverified")).email == "unverified@example.com"
    assert (await sign_in(authentik, http, "alice", oidc_require_email_verified=True)).email == "alice@example.com"
    error = await refused(authentik, http, "unverified", oidc_require_email_verified=True)
    assert error.user_message == UNVERIFIED
    assert error.reason == "email_unverified"
    assert "unverified@example.com" in error.operator_message
    assert "email not verified" in error.operator_message
    assert "ENGRAM_OIDC_REQUIRE_EMAIL_VERIFIED" in error.operator_message


async def test_wrong_client_secret_names_the_settings(authentik: Idp, http: httpx.AsyncClient) -> None:
    wrong = "not-the-secret-" + secrets.token_urlsafe(16)
    error = await refused(authentik, http, "alice", oidc_client_secret=wrong)
    assert wrong not in error.operator_message
    assert "401 invalid_client" in error.operator_message
    assert "ENGRAM_OIDC_CLIENT_ID / ENGRAM_OIDC_CLIENT_SECRET" in error.operator_message
    assert "'engram'" in error.operator_message  # the client id, which is not a secret
    assert error.reason == "client_rejected"


async def test_issuer_without_its_trailing_slash_is_a_clear_error(authentik: Idp, http: httpx.AsyncClient) -> None:
    configured = authentik.issuer.rstrip("/")
    upstream = UpstreamOIDC(settings_for(authentik, oidc_issuer=configured), http)
    with pytest.raises(UpstreamError) as caught:
        await upstream.discover()
    message = caught.value.operator_message
    assert repr(authentik.issuer) in message
    assert repr(configured) in message
    assert "ENGRAM_OIDC_ISSUER" in message
    assert "trailing slash" in message
    assert "configuration problem" in caught.value.user_message


async def test_a_code_works_once(authentik: Idp, http: httpx.AsyncClient) -> None:
    upstream = UpstreamOIDC(settings_for(authentik), http)
    params, verifier, nonce = await _authorize(upstream, "alice")
    code = params["code"]
    await upstream.complete(code=code, code_verifier=verifier, redirect_uri=REDIRECT_URI, nonce=nonce)
    with pytest.raises(UpstreamError) as caught:
        await upstream.complete(code=code, code_verifier=verifier, redirect_uri=REDIRECT_URI, nonce=nonce)
    assert caught.value.reason == "code_rejected"
    assert caught.value.user_message == START_AGAIN
    assert "invalid_grant" in caught.value.operator_message
    assert code not in caught.value.operator_message


async def test_wrong_verifier_nonce_or_issuer_parameter_is_refused(authentik: Idp, http: httpx.AsyncClient) -> None:
    upstream = UpstreamOIDC(settings_for(authentik), http)
    params, verifier, nonce = await _authorize(upstream, "alice")
    with pytest.raises(UpstreamError) as caught:
        await upstream.complete(
            code=params["code"], code_verifier=verifier, redirect_uri=REDIRECT_URI, nonce=nonce, iss="https://evil/"
        )
    assert caught.value.reason == "mix_up"
    with pytest.raises(UpstreamError) as caught:
        await upstream.complete(
            code=params["code"], code_verifier=secrets.token_urlsafe(48), redirect_uri=REDIRECT_URI, nonce=nonce
        )
    assert caught.value.reason == "code_rejected"  # PKCE: the provider refuses a verifier that does not match

    params, verifier, nonce = await _authorize(upstream, "alice")
    with pytest.raises(UpstreamError) as caught:
        await upstream.complete(code=params["code"], code_verifier=verifier, redirect_uri=REDIRECT_URI, nonce="other")
    assert caught.value.reason == "nonce"
    assert caught.value.user_message == START_AGAIN


@pytest.fixture
def hs256_idp(tmp_path: Path) -> Iterator[Idp]:
    yield from _started(tmp_path, IDP_ID_TOKEN_ALG="HS256")


async def test_hs256_id_token_is_refused(hs256_idp: Idp, http: httpx.AsyncClient) -> None:
    error = await refused(hs256_idp, http, "alice")
    assert error.operator_message == HS256_MESSAGE
    assert error.reason == "id_token"


@pytest.fixture
def unpublished_key_idp(tmp_path: Path) -> Iterator[Idp]:
    yield from _started(tmp_path, IDP_SIGNING_KEY="unpublished")


async def test_id_token_signed_with_an_unpublished_key_is_refused(
    unpublished_key_idp: Idp, http: httpx.AsyncClient
) -> None:
    error = await refused(unpublished_key_idp, http, "alice")
    assert error.reason == "id_token"
    assert "does not publish" in error.operator_message
    assert f"{unpublished_key_idp.base_url}/application/o/engram/jwks/" in error.operator_message


@pytest.fixture
def userinfo_idp(tmp_path: Path) -> Iterator[Idp]:
    # The ID token carries only `sub`, and the token endpoint refuses client_secret_basic.
    yield from _started(tmp_path, IDP_CLAIMS_IN_ID_TOKEN="false", IDP_CLIENT_AUTH_METHOD="client_secret_post")


async def test_claims_come_from_userinfo_and_post_auth_is_used(userinfo_idp: Idp, http: httpx.AsyncClient) -> None:
    identity = await sign_in(
        userinfo_idp, http, "alice", oidc_allowed_groups=["admins"], oidc_require_email_verified=True
    )
    assert identity.email == "alice@example.com"
    assert identity.groups == ("engram-users", "admins")
    assert identity.name == "alice"
    mixed = await sign_in(userinfo_idp, http, "Carol.Mixed")
    assert mixed.email == "carol.mixed@example.com"
    error = await refused(userinfo_idp, http, "bob", oidc_allowed_groups=["admins"])
    assert error.reason == "group"


@pytest.fixture
def auth0_like_idp(tmp_path: Path) -> Iterator[Idp]:
    # Discovery lists client_secret_basic and client_secret_post; the application accepts post only.
    yield from _started(tmp_path, IDP_CLIENT_AUTH_METHOD="client_secret_post", IDP_ADVERTISE_AUTH_METHODS="both")


async def test_token_auth_method_can_be_chosen_when_discovery_lists_both(
    auth0_like_idp: Idp, http: httpx.AsyncClient
) -> None:
    error = await refused(auth0_like_idp, http, "alice")
    assert error.reason == "client_rejected"
    assert "client_secret_basic" in error.operator_message
    assert "ENGRAM_OIDC_TOKEN_AUTH_METHOD" in error.operator_message
    identity = await sign_in(auth0_like_idp, http, "alice", oidc_token_auth_method="client_secret_post")
    assert identity.email == "alice@example.com"


async def test_a_silent_provider_times_out_with_a_clear_message(http: httpx.AsyncClient) -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes
        writer.close()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    issuer = f"http://127.0.0.1:{port}/application/o/engram/"
    settings = Settings(oidc_issuer=issuer, oidc_client_id="engram", oidc_client_secret="secret-" + "x" * 32)
    try:
        with pytest.raises(UpstreamError) as caught:
            await UpstreamOIDC(settings, http, timeout=0.5).discover()
    finally:
        server.close()
        await server.wait_closed()
    assert caught.value.user_message == UNREACHABLE
    assert caught.value.operator_message == (
        f"GET {issuer}.well-known/openid-configuration timed out after 0.5 s: "
        "check ENGRAM_OIDC_ISSUER and that Engram can reach the provider"
    )


@pytest.fixture
def doomed_idp(tmp_path: Path) -> Iterator[Idp]:
    yield from _started(tmp_path)


async def test_provider_down_gives_a_user_safe_message(doomed_idp: Idp, http: httpx.AsyncClient) -> None:
    upstream = UpstreamOIDC(settings_for(doomed_idp), http)
    params, verifier, nonce = await _authorize(upstream, "alice")
    await asyncio.to_thread(doomed_idp.stop)
    with pytest.raises(UpstreamError) as caught:
        await upstream.complete(code=params["code"], code_verifier=verifier, redirect_uri=REDIRECT_URI, nonce=nonce)
    assert caught.value.user_message == UNREACHABLE
    assert caught.value.reason == "unreachable"
    assert f"POST {doomed_idp.base_url}/application/o/token/ failed" in caught.value.operator_message
    assert "check ENGRAM_OIDC_ISSUER and that Engram can reach the provider" in caught.value.operator_message

    with pytest.raises(UpstreamError) as caught:
        await UpstreamOIDC(settings_for(doomed_idp), http).discover()
    assert caught.value.user_message == UNREACHABLE
    assert f"GET {doomed_idp.issuer}.well-known/openid-configuration failed" in caught.value.operator_message


def _signed_id_token(iss: str, client_id: str) -> tuple[str, jwt.PyJWK]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    claims = {"iss": iss, "aud": client_id, "sub": "1234", "iat": now, "exp": now + 300}
    token = jwt.encode(claims, private, algorithm="RS256", headers={"kid": "k1"})
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    return token, jwt.PyJWK({**public, "kid": "k1", "alg": "RS256"})


@pytest.mark.parametrize(
    ("configured", "token_issuer", "accepted"),
    [
        ("https://accounts.google.com", "https://accounts.google.com", True),
        ("https://accounts.google.com", "accounts.google.com", True),  # Google's documented legacy form
        ("https://idp.example.com", "idp.example.com", False),  # no alias for anyone else
    ],
)
async def test_google_id_tokens_may_name_the_legacy_issuer(
    http: httpx.AsyncClient, configured: str, token_issuer: str, accepted: bool
) -> None:
    settings = Settings(oidc_issuer=configured, oidc_client_id="engram-client", oidc_client_secret="s" * 32)
    upstream = UpstreamOIDC(settings, http)
    token, key = _signed_id_token(token_issuer, "engram-client")
    unverified = jwt.decode(token, options={"verify_signature": False})
    if accepted:
        assert upstream._decode(token, key, "RS256", unverified)["iss"] == token_issuer
    else:
        with pytest.raises(UpstreamError, match="differs from ENGRAM_OIDC_ISSUER"):
            upstream._decode(token, key, "RS256", unverified)
