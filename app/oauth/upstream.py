"""Engram as a relying party of the organisation's OpenID Connect provider.

Discovery, the authorization URL (code flow with PKCE S256), the code exchange, the ID token check
through the provider's JWKS and the identity Engram keys on: the email. Framework-free; every
failure is an `UpstreamError` carrying a message for the browser and one for the operator's log,
neither of which ever holds a secret or a token.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus, urlencode

import httpx
import jwt

from app.auth.jwt import ALGORITHMS
from app.auth.verifier import normalise_email
from app.settings import Settings

UNREACHABLE = "The sign-in service is not reachable right now. Try again in a minute."
MISCONFIGURED = (
    "Sign-in is not working because of a configuration problem on this server. "
    "Please tell the administrator; the details are in Engram's log."
)
START_AGAIN = "The sign-in could not be completed. Please start again from your application."
NO_EMAIL = (
    "The sign-in service did not share your email address, which Engram needs to identify you. "
    "Please tell the administrator."
)
UNVERIFIED = "Your email address is not verified at the sign-in service. Verify it there, then sign in again."
NOT_IN_GROUP = "Your account is not in a group that may use Engram. Ask the administrator for access."

_REACH_HINT = "check ENGRAM_OIDC_ISSUER and that Engram can reach the provider"
_CLIENT_HINT = "check ENGRAM_OIDC_CLIENT_ID / ENGRAM_OIDC_CLIENT_SECRET"
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")


# Issuers that also sign as a documented alias. Google: "the value of iss in the ID token is equal
# to accounts.google.com or https://accounts.google.com".
_ISSUER_ALIASES = {"https://accounts.google.com": "accounts.google.com"}


def accepted_issuers(issuer: str) -> tuple[str, ...]:
    """The `iss` values an ID token of this provider may carry."""
    alias = _ISSUER_ALIASES.get(issuer)
    return (issuer, alias) if alias else (issuer,)


class UpstreamError(Exception):
    """The sign-in at the provider failed.

    `user_message` is safe to show in the browser; `operator_message` says what to fix and belongs in
    the log; `reason` is a short stable word for audit events and metrics.
    """

    def __init__(self, user_message: str, operator_message: str, *, reason: str = "configuration") -> None:
        super().__init__(operator_message)
        self.user_message = user_message
        self.operator_message = operator_message
        self.reason = reason


@dataclass(frozen=True, slots=True)
class UpstreamIdentity:
    email: str  # normalised: trimmed, lower-case
    name: str | None  # preferred_username, else name
    groups: tuple[str, ...]
    subject: str  # the provider's `sub`: never used as Engram's key (Authentik hashes it per provider)


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    token_endpoint_auth_methods: tuple[str, ...]


@dataclass
class _Cached:
    metadata: ProviderMetadata | None = None
    metadata_at: float = -math.inf
    keys: list[jwt.PyJWK] = field(default_factory=list)
    keys_at: float = -math.inf
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class UpstreamOIDC:
    """The sign-in at one OpenID Connect provider, configured by the `oidc_*` settings."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient, *, timeout: float = 10.0) -> None:
        if not (settings.oidc_issuer and settings.oidc_client_id and settings.oidc_client_secret):
            raise ValueError("UpstreamOIDC needs oidc_issuer, oidc_client_id and oidc_client_secret")
        self._settings = settings
        self._http = http
        self._timeout = timeout
        self.issuer: str = settings.oidc_issuer
        self._client_id: str = settings.oidc_client_id
        self._client_secret: str = settings.oidc_client_secret
        self._cache = _Cached()

    @property
    def discovery_url(self) -> str:
        # Authentik's issuer ends with a slash; the document lives right under it either way.
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"

    # --- discovery ------------------------------------------------------------------------------
    async def discover(self) -> ProviderMetadata:
        """The provider's discovery document, cached; a stale copy is used while a refetch fails."""
        cache = self._cache
        if cache.metadata is not None and time.monotonic() - cache.metadata_at < self._settings.jwks_cache_seconds:
            return cache.metadata
        async with cache.lock:
            stale = cache.metadata
            if stale is not None and time.monotonic() - cache.metadata_at < self._settings.jwks_cache_seconds:
                return stale  # fetched while this task waited for the lock
            try:
                fresh = await self._fetch_metadata()
            except UpstreamError as exc:
                if stale is None or exc.reason != "unreachable":
                    raise
                fresh = stale
            cache.metadata, cache.metadata_at = fresh, time.monotonic()
            return fresh

    async def _fetch_metadata(self) -> ProviderMetadata:
        url = self.discovery_url
        document = await self._get_json(url, "the discovery document")
        found = document.get("issuer")
        if found != self.issuer:
            hint = ""
            if isinstance(found, str) and found.rstrip("/") == self.issuer.rstrip("/"):
                hint = " (they differ only by the trailing slash)"
            raise UpstreamError(
                MISCONFIGURED,
                f"the discovery document at {url} names the issuer {_show(found)}, but ENGRAM_OIDC_ISSUER is "
                f"{self.issuer!r}{hint}: set ENGRAM_OIDC_ISSUER to exactly the issuer the provider names",
            )
        endpoints: dict[str, str] = {}
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            value = document.get(name)
            if not isinstance(value, str) or not value.startswith(("https://", "http://")):
                raise UpstreamError(
                    MISCONFIGURED, f"the discovery document at {url} has no usable {name} ({_show(value)})"
                )
            endpoints[name] = value
        userinfo = document.get("userinfo_endpoint")
        methods = document.get("token_endpoint_auth_methods_supported")
        challenge_methods = document.get("code_challenge_methods_supported")
        if isinstance(challenge_methods, list) and "S256" not in challenge_methods:
            raise UpstreamError(
                MISCONFIGURED,
                f"the provider does not support PKCE with S256 (code_challenge_methods_supported: "
                f"{_show(challenge_methods)}): enable PKCE for Engram's application at the provider",
            )
        signing = document.get("id_token_signing_alg_values_supported")
        if isinstance(signing, list) and signing and not any(alg in ALGORITHMS for alg in signing):
            if any(isinstance(alg, str) and alg.upper().startswith("HS") for alg in signing):
                raise UpstreamError(MISCONFIGURED, _symmetric_message("HS256"))
            raise UpstreamError(
                MISCONFIGURED,
                f"the provider signs ID tokens only with {_show(signing)}; Engram accepts {', '.join(ALGORITHMS)}",
            )
        return ProviderMetadata(
            issuer=self.issuer,
            authorization_endpoint=endpoints["authorization_endpoint"],
            token_endpoint=endpoints["token_endpoint"],
            jwks_uri=endpoints["jwks_uri"],
            userinfo_endpoint=userinfo if isinstance(userinfo, str) and userinfo else None,
            token_endpoint_auth_methods=tuple(m for m in methods if isinstance(m, str))
            if isinstance(methods, list)
            else ("client_secret_basic",),  # the default when the document is silent (OpenID Discovery §3)
        )

    # --- the redirect to the provider --------------------------------------------------------------
    async def authorization_url(self, *, state: str, nonce: str, code_verifier: str, redirect_uri: str) -> str:
        """Where to send the browser: the code flow with PKCE S256 and the configured scopes."""
        if not _VERIFIER.fullmatch(code_verifier):
            raise ValueError("code_verifier must be 43 to 128 unreserved characters (RFC 7636 §4.1)")
        metadata = await self.discover()
        challenge = base64.urlsafe_b64encode(hashlib.sha256(code_verifier.encode()).digest()).rstrip(b"=").decode()
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self._client_id,
                "redirect_uri": redirect_uri,
                "scope": " ".join(self._settings.oidc_scopes.split()),
                "state": state,
                "nonce": nonce,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        endpoint = metadata.authorization_endpoint
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"

    # --- back from the provider ---------------------------------------------------------------------
    async def complete(
        self, *, code: str, code_verifier: str, redirect_uri: str, nonce: str, iss: str | None = None
    ) -> UpstreamIdentity:
        """Exchange the code, check the ID token and return who signed in.

        `iss` is the callback's `iss` parameter (RFC 9207) when the provider sent one (Authentik does
        not); when given it must name the configured issuer.
        """
        metadata = await self.discover()
        if iss is not None and iss != self.issuer:
            raise UpstreamError(
                START_AGAIN,
                f"the authorization response names the issuer {_show(iss)}, not ENGRAM_OIDC_ISSUER "
                f"{self.issuer!r}: it came from another provider (mix-up) and was refused",
                reason="mix_up",
            )
        if not code:
            raise UpstreamError(START_AGAIN, "the authorization response has no code", reason="code_rejected")
        tokens = await self._exchange(metadata, code, code_verifier, redirect_uri)
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise UpstreamError(
                MISCONFIGURED,
                f"the token endpoint {metadata.token_endpoint} answered without an id_token: "
                "check that ENGRAM_OIDC_SCOPES contains openid",
            )
        claims = await self._check_id_token(metadata, id_token, nonce)
        access_token = tokens.get("access_token")
        return await self._identity(metadata, claims, access_token if isinstance(access_token, str) else None)

    def _token_auth_method(self, metadata: ProviderMetadata) -> str:
        chosen = self._settings.oidc_token_auth_method
        if chosen != "auto":
            return chosen
        methods = metadata.token_endpoint_auth_methods
        post_only = "client_secret_basic" not in methods and "client_secret_post" in methods
        return "client_secret_post" if post_only else "client_secret_basic"

    async def _exchange(
        self, metadata: ProviderMetadata, code: str, code_verifier: str, redirect_uri: str
    ) -> dict[str, Any]:
        url = metadata.token_endpoint
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": code_verifier,
        }
        headers = {"Accept": "application/json"}
        method = self._token_auth_method(metadata)
        if method == "client_secret_post":
            form |= {"client_id": self._client_id, "client_secret": self._client_secret}
        else:
            # RFC 6749 §2.3.1: both halves form-encoded before base64.
            pair = f"{quote_plus(self._client_id)}:{quote_plus(self._client_secret)}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        response = await self._request("POST", url, data=form, headers=headers)
        body = _json_object(response)
        if response.status_code == 200:
            if body is None:
                raise UpstreamError(MISCONFIGURED, f"the token endpoint {url} did not answer with a JSON object")
            return body
        error = str(body.get("error", "")) if body else ""
        described = f"{response.status_code} {error or '(no error code)'}"
        if body and body.get("error_description"):
            described += f" ({_show(body['error_description'])})"
        if error == "invalid_client" or (response.status_code == 401 and not error):
            raise UpstreamError(
                MISCONFIGURED,
                f"token endpoint {url} answered {described} for client id {self._client_id!r} with "
                f"{method}: {_CLIENT_HINT}, and that the application at the provider accepts {method} "
                f"(ENGRAM_OIDC_TOKEN_AUTH_METHOD picks client_secret_basic or client_secret_post)",
                reason="client_rejected",
            )
        if error == "invalid_grant":
            raise UpstreamError(
                START_AGAIN,
                f"token endpoint {url} answered {described}: the code expired, was used already, or was issued "
                f"for another redirect URI or PKCE verifier (redirect URI {redirect_uri!r})",
                reason="code_rejected",
            )
        if response.status_code >= 500:
            raise UpstreamError(UNREACHABLE, f"token endpoint {url} answered {described}", reason="unreachable")
        raise UpstreamError(
            MISCONFIGURED,
            f"token endpoint {url} answered {described}: check Engram's application at the provider "
            f"(client id {self._client_id!r}, redirect URI {redirect_uri!r}, grant type authorization_code)",
        )

    # --- the ID token -------------------------------------------------------------------------------
    async def _check_id_token(self, metadata: ProviderMetadata, id_token: str, nonce: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(id_token)
            unverified = jwt.decode(id_token, options={"verify_signature": False})
        except (jwt.PyJWTError, ValueError, TypeError):
            raise UpstreamError(MISCONFIGURED, "the ID token is not a well-formed JWT", reason="id_token") from None
        alg, kid = header.get("alg"), header.get("kid")
        if isinstance(alg, str) and alg.upper().startswith("HS"):
            raise UpstreamError(MISCONFIGURED, _symmetric_message(alg), reason="id_token")
        if alg not in ALGORITHMS:
            raise UpstreamError(
                MISCONFIGURED,
                f"the ID token is signed with {_show(alg)}; Engram accepts {', '.join(ALGORITHMS)}",
                reason="id_token",
            )
        key = await self._signing_key(metadata, kid if isinstance(kid, str) else None, str(alg))
        if key is None:
            raise UpstreamError(
                MISCONFIGURED,
                f"the ID token is signed with a key (kid {_show(kid)}, {alg}) that the provider's JWKS at "
                f"{metadata.jwks_uri} does not publish: the token was refused; check the provider's signing key",
                reason="id_token",
            )
        claims = self._decode(id_token, key, str(alg), unverified)
        audience = claims["aud"]
        if isinstance(audience, list) and len(audience) > 1 and "azp" not in claims:
            raise UpstreamError(
                MISCONFIGURED,
                f"the ID token has several audiences {_show(audience)} and no azp claim naming Engram",
                reason="id_token",
            )
        if "azp" in claims and claims["azp"] != self._client_id:
            raise UpstreamError(
                MISCONFIGURED,
                f"the ID token's azp {_show(claims['azp'])} is not ENGRAM_OIDC_CLIENT_ID {self._client_id!r}",
                reason="id_token",
            )
        sent = claims.get("nonce")
        if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), nonce.encode()):
            raise UpstreamError(
                START_AGAIN,
                "the ID token's nonce is missing or differs from the one Engram sent: "
                "the response was replayed or belongs to another sign-in",
                reason="nonce",
            )
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise UpstreamError(MISCONFIGURED, "the ID token has no sub claim", reason="id_token")
        return claims

    def _decode(self, id_token: str, key: jwt.PyJWK, alg: str, unverified: Mapping[str, Any]) -> dict[str, Any]:
        def refused(message: str) -> UpstreamError:
            return UpstreamError(MISCONFIGURED, message, reason="id_token")

        try:
            return jwt.decode(
                id_token,
                key,
                algorithms=[alg],
                audience=self._client_id,
                issuer=accepted_issuers(self.issuer),
                leeway=self._settings.jwt_leeway_seconds,
                options={"require": ["iss", "aud", "exp", "iat", "sub"], "enforce_minimum_key_length": True},
            )
        except jwt.InvalidSignatureError:
            raise refused(f"the ID token's signature does not verify with the published key {key.key_id!r}") from None
        except jwt.InvalidIssuerError:
            raise refused(
                f"the ID token's issuer {_show(unverified.get('iss'))} differs from ENGRAM_OIDC_ISSUER "
                f"{self.issuer!r}: copy the issuer exactly from the provider's discovery document"
            ) from None
        except jwt.InvalidAudienceError:
            raise refused(
                f"the ID token's audience {_show(unverified.get('aud'))} does not contain ENGRAM_OIDC_CLIENT_ID "
                f"{self._client_id!r}"
            ) from None
        except jwt.ExpiredSignatureError:
            raise refused(
                "the ID token has expired: check that the clocks of Engram and the provider agree "
                f"(tolerance ENGRAM_JWT_LEEWAY_SECONDS={self._settings.jwt_leeway_seconds})"
            ) from None
        except jwt.ImmatureSignatureError:
            raise refused(
                "the ID token is issued in the future: check that the clocks of Engram and the provider agree "
                f"(tolerance ENGRAM_JWT_LEEWAY_SECONDS={self._settings.jwt_leeway_seconds})"
            ) from None
        except jwt.MissingRequiredClaimError as exc:
            raise refused(f"the ID token has no {exc.claim} claim") from None
        except jwt.PyJWTError as exc:
            raise refused(f"the ID token is invalid: {exc}") from None

    async def _signing_key(self, metadata: ProviderMetadata, kid: str | None, alg: str) -> jwt.PyJWK | None:
        cache = self._cache
        if time.monotonic() - cache.keys_at < self._settings.jwks_cache_seconds:
            key = _find(cache.keys, kid, alg)
            if key is not None:
                return key
            # An unknown kid may be a rotation: refetch, but not more often than configured.
            if time.monotonic() - cache.keys_at < self._settings.jwks_min_refetch_seconds:
                return None
        async with cache.lock:
            if time.monotonic() - cache.keys_at >= self._settings.jwks_min_refetch_seconds:
                cache.keys = await self._fetch_keys(metadata.jwks_uri)
                cache.keys_at = time.monotonic()
        return _find(cache.keys, kid, alg)

    async def _fetch_keys(self, url: str) -> list[jwt.PyJWK]:
        document = await self._get_json(url, "the JWKS")
        raw_keys = document.get("keys")
        if not isinstance(raw_keys, list):
            raise UpstreamError(MISCONFIGURED, f"the JWKS at {url} has no keys list")
        return [key for key in map(_usable_key, raw_keys) if key is not None]

    # --- who signed in ------------------------------------------------------------------------------
    async def _identity(
        self, metadata: ProviderMetadata, claims: dict[str, Any], access_token: str | None
    ) -> UpstreamIdentity:
        settings = self._settings
        email_claim, groups_claim = settings.oidc_email_claim, settings.oidc_groups_claim
        wanted = [email_claim]
        if settings.oidc_require_email_verified:
            wanted.append("email_verified")
        if settings.oidc_allowed_groups:
            wanted.append(groups_claim)
        if any(name not in claims for name in wanted):
            claims = {**await self._userinfo(metadata, access_token, claims["sub"]), **claims}
        subject: str = claims["sub"]
        email = normalise_email(claims.get(email_claim))
        if email is None:
            raise UpstreamError(
                NO_EMAIL,
                f"neither the ID token nor userinfo has a usable {email_claim!r} claim for subject {subject!r}: "
                "map the email into the token at the provider (the email scope) or set ENGRAM_OIDC_EMAIL_CLAIM",
                reason="no_email",
            )
        if settings.oidc_require_email_verified and claims.get("email_verified") not in (True, "true"):
            raise UpstreamError(
                UNVERIFIED,
                f"{email} signed in but the provider says email_verified is {_show(claims.get('email_verified'))} "
                "and ENGRAM_OIDC_REQUIRE_EMAIL_VERIFIED is on: email not verified — verify the address at the "
                "provider (Authentik sends false unless a property mapping sets it) or turn the setting off",
                reason="email_unverified",
            )
        raw_groups = claims.get(groups_claim)
        if isinstance(raw_groups, str):
            raw_groups = [raw_groups]
        groups = tuple(g for g in raw_groups if isinstance(g, str)) if isinstance(raw_groups, list) else ()
        if settings.oidc_allowed_groups and not set(groups) & set(settings.oidc_allowed_groups):
            hint = (
                f"; the provider sent no {groups_claim!r} claim: add the groups to the token (Authentik: the profile "
                "scope mapping) or set ENGRAM_OIDC_GROUPS_CLAIM"
                if groups_claim not in claims
                else ""
            )
            raise UpstreamError(
                NOT_IN_GROUP,
                f"{email} is not in an allowed group: member of {list(groups)}, ENGRAM_OIDC_ALLOWED_GROUPS is "
                f"{settings.oidc_allowed_groups}{hint}",
                reason="group",
            )
        name = next((claims[n] for n in ("preferred_username", "name") if isinstance(claims.get(n), str)), None)
        return UpstreamIdentity(email=email, name=name or None, groups=groups, subject=subject)

    async def _userinfo(self, metadata: ProviderMetadata, access_token: str | None, subject: str) -> dict[str, Any]:
        url = metadata.userinfo_endpoint
        if url is None or not access_token:
            return {}  # nothing more to learn; the caller reports what is missing
        response = await self._request(
            "GET", url, headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"}
        )
        if response.status_code >= 500:
            raise UpstreamError(
                UNREACHABLE, f"GET {url} (userinfo) answered HTTP {response.status_code}", reason="unreachable"
            )
        body = _json_object(response)
        if response.status_code != 200 or body is None:
            raise UpstreamError(
                MISCONFIGURED,
                f"GET {url} (userinfo) answered HTTP {response.status_code} "
                f"{response.headers.get('content-type', '')}: Engram reads claims the ID token lacks from a JSON "
                "userinfo answer; map the claims into the ID token or allow the access token at userinfo",
            )
        if body.get("sub") != subject:
            raise UpstreamError(
                MISCONFIGURED,
                f"the userinfo answer is about subject {_show(body.get('sub'))}, not the ID token's {subject!r}",
                reason="id_token",
            )
        return body

    # --- HTTP ---------------------------------------------------------------------------------------
    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, url, timeout=self._timeout, follow_redirects=False, **kwargs)
        except httpx.TimeoutException:
            message = f"{method} {url} timed out after {self._timeout:g} s: {_REACH_HINT}"
        except httpx.TransportError as exc:
            message = f"{method} {url} failed ({type(exc).__name__}: {str(exc) or 'no detail'}): {_REACH_HINT}"
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            message = f"{method} {url} could not be sent ({type(exc).__name__}: {exc}): check ENGRAM_OIDC_ISSUER"
        raise UpstreamError(UNREACHABLE, message, reason="unreachable")

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        response = await self._request("GET", url, headers={"Accept": "application/json"})
        if response.status_code >= 500:
            raise UpstreamError(
                UNREACHABLE, f"GET {url} ({what}) answered HTTP {response.status_code}", reason="unreachable"
            )
        if response.status_code != 200:
            raise UpstreamError(
                MISCONFIGURED,
                f"GET {url} ({what}) answered HTTP {response.status_code}: check ENGRAM_OIDC_ISSUER (the "
                "provider serves its discovery document at ISSUER/.well-known/openid-configuration)",
            )
        body = _json_object(response)
        if body is None:
            raise UpstreamError(MISCONFIGURED, f"GET {url} ({what}) did not answer with a JSON object")
        return body


def _symmetric_message(alg: str) -> str:
    return (
        f"the identity provider signed the ID token with {alg} (a shared secret): select an RSA or EC signing "
        "key in the provider (Authentik: Provider → Signing Key)"
    )


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _usable_key(raw: object) -> jwt.PyJWK | None:
    if not isinstance(raw, dict) or raw.get("kty") == "oct" or raw.get("use", "sig") != "sig":
        return None
    try:
        key = jwt.PyJWK(raw)
    except (jwt.PyJWTError, KeyError, TypeError, ValueError):
        return None
    return key if key.algorithm_name in ALGORITHMS else None


def _find(keys: list[jwt.PyJWK], kid: str | None, alg: str) -> jwt.PyJWK | None:
    matches = [k for k in keys if k.algorithm_name == alg and (kid is None or k.key_id == kid)]
    if kid is None and len(matches) > 1:
        return None  # without a kid only an unambiguous key will do
    return matches[0] if matches else None


def _show(value: object, limit: int = 120) -> str:
    """A value from the provider quoted in a message, cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
