"""Bearer JWT verification, for Engram's own tokens and for trusted external issuers alike.

PyJWT with an asymmetric algorithm allow-list, exact `iss`, required `exp` and `aud`, `nbf`/`iat`
honoured with a small leeway. Trusted issuers' JWKS are cached, and refetched on an unknown `kid`
no more often than the configured interval, one fetch in flight per issuer. Error messages are
for operators and never contain the token.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt

from app.auth import scopes
from app.auth.keys import KeyStore
from app.settings import Settings, TrustedIssuer

ALGORITHMS = ("RS256", "ES256", "EdDSA")
_ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})


class TokenInvalid(Exception):
    """The token is not acceptable: answer 401 invalid_token."""


class IssuerUnavailable(Exception):
    """A trusted issuer's discovery document or JWKS could not be obtained: answer 503."""


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    issuer: str
    subject: str | None
    email: str | None
    scopes: frozenset[str]
    client_id: str
    claims: dict[str, Any] = field(compare=False, repr=False)


@dataclass
class _IssuerKeys:
    keys: list[jwt.PyJWK] = field(default_factory=list)
    fetched_at: float = -math.inf
    unknown_kid_fetch_at: float = -math.inf
    attempts: int = 0  # completed fetches, successful or not
    error: str | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def find(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None:
            return self.keys[0] if len(self.keys) == 1 else None
        return next((k for k in self.keys if k.key_id == kid), None)


class JWTVerifier:
    def __init__(self, settings: Settings, key_store: KeyStore, http: httpx.AsyncClient) -> None:
        self._settings = settings
        self._key_store = key_store
        self._http = http
        self._trusted = {t.issuer: t for t in settings.trusted_issuers}
        self._jwks: dict[str, _IssuerKeys] = {}

    async def verify(self, token: str, *, audiences: list[str]) -> VerifiedToken:
        header, unverified = _peek(token)
        issuer = unverified.get("iss")
        if not isinstance(issuer, str):
            raise TokenInvalid("the token has no iss claim")
        kid = header.get("kid")
        key: jwt.PyJWK | None
        if issuer == self._settings.issuer:
            _check_algorithm(header.get("alg"), trusted=False)
            if str(header.get("typ", "")).lower() not in _ACCESS_TOKEN_TYPES:
                raise TokenInvalid(f"the token's typ {_show(header.get('typ'))} is not at+jwt")
            key = await self._key_store.verification_key(kid) if kid is not None else None
            accepted, email_claim, scope_claim, default_scopes = audiences, "email", "scope", []
        elif (trusted := self._trusted.get(issuer)) is not None:
            _check_algorithm(header.get("alg"), trusted=True)
            key = await self._issuer_key(trusted, kid)
            accepted, email_claim = trusted.audiences, trusted.email_claim
            scope_claim, default_scopes = trusted.scope_claim, trusted.default_scopes
        else:
            raise TokenInvalid(self._unknown_issuer(issuer))
        if key is None:
            raise TokenInvalid(f"issuer {_show(issuer)} has no signing key with kid {_show(kid)}")
        claims = self._decode(token, key, issuer, accepted, unverified.get("aud"))
        return _read(claims, issuer, email_claim, scope_claim, default_scopes)

    def _decode(
        self, token: str, key: jwt.PyJWK, issuer: str, audiences: list[str], token_aud: object
    ) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=list(ALGORITHMS),
                audience=audiences,
                issuer=issuer,
                leeway=self._settings.jwt_leeway_seconds,
                options={"require": ["exp", "iss", "aud"], "enforce_minimum_key_length": True},
            )
        except jwt.ExpiredSignatureError:
            raise TokenInvalid("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenInvalid("the token is not valid yet (nbf or iat in the future)") from None
        except jwt.InvalidAudienceError:
            raise TokenInvalid(
                f"the token's audience {_show(token_aud)} is not one of the accepted {audiences}"
            ) from None
        except jwt.InvalidSignatureError:
            raise TokenInvalid("the token's signature does not verify") from None
        except jwt.PyJWTError as exc:
            raise TokenInvalid(f"the token is invalid: {exc}") from None

    def _unknown_issuer(self, issuer: str) -> str:
        known = [self._settings.issuer, *self._trusted]
        near = next((k for k in known if k.rstrip("/") == issuer.rstrip("/")), None)
        hint = f" (the trusted issuer {near!r} differs only by a trailing slash)" if near else ""
        return f"the token's issuer {_show(issuer)} is not trusted{hint}"

    # --- trusted issuers' keys ------------------------------------------------------------------
    async def _issuer_key(self, issuer: TrustedIssuer, kid: str | None) -> jwt.PyJWK | None:
        entry = self._jwks.setdefault(issuer.issuer, _IssuerKeys())
        now = time.monotonic()
        if now - entry.fetched_at < self._settings.jwks_cache_seconds:
            key = entry.find(kid)
            if key is not None:
                return key
            if not entry.lock.locked():
                if now - entry.unknown_kid_fetch_at < self._settings.jwks_min_refetch_seconds:
                    return None
                entry.unknown_kid_fetch_at = now
        await self._refresh(issuer, entry)
        return entry.find(kid)

    async def _refresh(self, issuer: TrustedIssuer, entry: _IssuerKeys) -> None:
        seen = entry.attempts
        async with entry.lock:
            if entry.attempts != seen:  # a fetch completed while this task waited: use its outcome
                if entry.error is not None:
                    raise IssuerUnavailable(entry.error)
                return
            try:
                keys = await self._fetch_keys(issuer)
            except IssuerUnavailable as exc:
                entry.error = str(exc)
                entry.attempts += 1
                raise
            entry.keys, entry.fetched_at, entry.error = keys, time.monotonic(), None
            entry.attempts += 1

    async def _fetch_keys(self, issuer: TrustedIssuer) -> list[jwt.PyJWK]:
        url = issuer.jwks_url or await self._discover_jwks_url(issuer)
        document = await self._get_json(issuer, url, "JWKS")
        raw_keys = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(raw_keys, list):
            raise IssuerUnavailable(f"the JWKS of issuer {issuer.issuer!r} at {url} has no 'keys' list")
        return [key for key in map(_usable_key, raw_keys) if key is not None]

    async def _discover_jwks_url(self, issuer: TrustedIssuer) -> str:
        url = issuer.issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = await self._get_json(issuer, url, "discovery document")
        if not isinstance(document, dict) or not isinstance(document.get("jwks_uri"), str):
            raise IssuerUnavailable(f"the discovery document of issuer {issuer.issuer!r} at {url} has no jwks_uri")
        if document.get("issuer") != issuer.issuer:
            raise IssuerUnavailable(
                f"the discovery document at {url} names the issuer {_show(document.get('issuer'))}, "
                f"not {issuer.issuer!r}: configure the issuer exactly as the provider spells it"
            )
        return str(document["jwks_uri"])

    async def _get_json(self, issuer: TrustedIssuer, url: str, what: str) -> object:
        where = f"the {what} of issuer {issuer.issuer!r} at {url}"
        try:
            response = await self._http.get(url, headers={"Accept": "application/json"})
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise IssuerUnavailable(f"{where} is unreachable: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            raise IssuerUnavailable(f"{where} answered HTTP {response.status_code}")
        try:
            return response.json()
        except ValueError:
            raise IssuerUnavailable(f"{where} is not JSON") from None


def _peek(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims before any verification: only to choose the issuer and its key."""
    try:
        return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})
    except (jwt.PyJWTError, ValueError, TypeError):
        raise TokenInvalid("the token is not a well-formed JWT") from None


def _check_algorithm(alg: object, *, trusted: bool) -> None:
    if alg in ALGORITHMS:
        return
    if trusted and isinstance(alg, str) and alg.upper().startswith("HS"):
        # Authentik signs with the client secret when no signing key is selected.
        raise TokenInvalid(
            f"the issuer signed this token with {alg} (a shared secret); "
            "select an RSA or EC signing key in the identity provider"
        )
    raise TokenInvalid(f"the token's algorithm {_show(alg)} is not accepted (only {', '.join(ALGORITHMS)})")


def _usable_key(raw: object) -> jwt.PyJWK | None:
    if not isinstance(raw, dict) or raw.get("kty") == "oct" or raw.get("use", "sig") != "sig":
        return None
    try:
        key = jwt.PyJWK(raw)
    except (jwt.PyJWTError, KeyError, TypeError, ValueError):
        return None
    return key if key.algorithm_name in ALGORITHMS else None


def _read(
    claims: dict[str, Any], issuer: str, email_claim: str, scope_claim: str, default_scopes: list[str]
) -> VerifiedToken:
    email = claims.get(email_claim)
    email = (email.strip().lower() or None) if isinstance(email, str) else None
    raw_scope = claims.get(scope_claim)
    if raw_scope is None:
        granted = scopes.parse(default_scopes)
    elif isinstance(raw_scope, str) or (isinstance(raw_scope, list) and all(isinstance(s, str) for s in raw_scope)):
        # A provider that knows nothing of Engram's scopes ("openid email profile") gets the
        # issuer's defaults; one that names any of them gets exactly what it named.
        granted = scopes.parse(raw_scope) or scopes.parse(default_scopes)
    else:
        raise TokenInvalid(f"the token's {scope_claim} claim is neither a string nor a list of strings")
    aud = claims["aud"]
    candidates = [claims.get("client_id"), claims.get("azp"), aud if isinstance(aud, str) else aud[0]]
    client_id = next((c for c in candidates if isinstance(c, str) and c), "")
    subject = claims.get("sub")
    return VerifiedToken(issuer, subject if isinstance(subject, str) else None, email, granted, client_id, claims)


def _show(value: object, limit: int = 120) -> str:
    """A claim or header value quoted in a message, cut short (it comes from the caller)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
