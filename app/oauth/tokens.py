"""The token endpoint (authorization_code with PKCE, refresh_token with rotation) and revocation.

Codes and refresh tokens are looked up by hash through `engram_owner_of` (the only step that runs
unbound); everything after happens under RLS as their owner. A reused code or refresh token
revokes its whole family: it means a copy leaked.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import unquote

import structlog
from litestar import Request, Response, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from uuid_utils.compat import uuid7

from app.auth import scopes as scope_names
from app.auth.verifier import email_allowed
from app.db.session import Identity, bound_session
from app.oauth import flow
from app.oauth.cimd import MetadataDocumentError
from app.oauth.clients import ClientRecord, RegistrationError, get_client, verify_client_secret
from app.services import Services, services_of

log = structlog.get_logger("engram.oauth")
Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]
REFRESH_PREFIX = "egr_"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@dataclass
class OAuthError(Exception):
    error: str
    description: str
    status: int = 400
    headers: dict[str, str] | None = None


def _error_response(exc: OAuthError) -> Response[dict[str, str]]:
    return Response(
        {"error": exc.error, "error_description": exc.description},
        status_code=exc.status,
        headers={**NO_STORE, **(exc.headers or {})},
    )


async def authenticate_client(
    services: Services, request: Request[Any, Any, Any], form: dict[str, str]
) -> ClientRecord:
    header = request.headers.get("authorization", "")
    basic_id = basic_secret = None
    if header.lower().startswith("basic "):
        try:
            raw = base64.b64decode(header[6:].strip()).decode()
            basic_id, _, basic_secret = raw.partition(":")
            basic_id, basic_secret = unquote(basic_id), unquote(basic_secret)
        except (ValueError, UnicodeDecodeError):
            raise OAuthError("invalid_client", "Malformed Basic credentials.", 401) from None
    client_id = basic_id or form.get("client_id")
    secret = basic_secret if basic_id else form.get("client_secret")
    challenge = {"WWW-Authenticate": 'Basic realm="engram"'} if basic_id else None
    if not client_id:
        raise OAuthError("invalid_client", "No client_id.", 401, challenge)
    try:
        async with bound_session(services.sessions, None) as session:
            client = await get_client(session, client_id, settings=services.settings)
    except (MetadataDocumentError, RegistrationError) as exc:
        raise OAuthError("invalid_client", f"The client's metadata document could not be used: {exc}", 401) from None
    if client is None:
        raise OAuthError("invalid_client", "Unknown client.", 401, challenge)
    if client.is_public:
        if secret:
            raise OAuthError("invalid_client", "This client is public and has no secret.", 401, challenge)
    elif not secret or not verify_client_secret(client, secret):
        raise OAuthError("invalid_client", "Client authentication failed.", 401, challenge)
    return client


def _pkce_ok(verifier: str, challenge: str) -> bool:
    if not 43 <= len(verifier) <= 128:
        return False
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return hmac.compare_digest(digest, challenge)


async def _revoke_family(session: AsyncSession, family_id: Any) -> None:
    await session.execute(
        text("UPDATE oauth_refresh_tokens SET revoked_at = now() WHERE family_id = :f AND revoked_at IS NULL"),
        {"f": family_id},
    )


async def _issue(
    services: Services,
    session: AsyncSession,
    *,
    email: str,
    client: ClientRecord,
    scopes: list[str],
    resource: str,
    family_id: Any,
) -> dict[str, Any]:
    settings = services.settings
    now = int(time.time())
    access = await services.keys.sign(
        {
            "iss": settings.issuer,
            "sub": email,
            "email": email,
            "aud": resource,
            "scope": " ".join(sorted(scopes)),
            "client_id": client.client_id,
            "client_name": client.client_name,
            "iat": now,
            "nbf": now,
            "exp": now + settings.access_token_ttl_seconds,
            "jti": secrets.token_urlsafe(16),
            # The sign-in (refresh-token family): revoking it refuses this token too (migration 0005).
            "sid": str(family_id),
        }
    )
    refresh = REFRESH_PREFIX + secrets.token_urlsafe(32)
    await session.execute(
        text(
            "INSERT INTO oauth_refresh_tokens (id, owner_email, token_hash, family_id, client_id, resource, scopes, "
            "expires_at) VALUES (:id, :email, :hash, :family, :client, :resource, :scopes, :expires)"
        ),
        {
            "id": uuid7(),
            "email": email,
            "hash": flow.token_hash(refresh),
            "family": family_id,
            "client": client.client_id,
            "resource": resource,
            "scopes": scopes,
            "expires": datetime.now(UTC) + timedelta(days=settings.refresh_token_ttl_days),
        },
    )
    await flow.audit(session, "OAUTH_TOKEN_ISSUED", email, client.client_id, scopes=scopes, resource=resource)
    return {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": settings.access_token_ttl_seconds,
        "refresh_token": refresh,
        "scope": " ".join(sorted(scopes)),
    }


async def _owner(services: Services, kind: str, token: str) -> str | None:
    async with bound_session(services.sessions, None) as session:
        owner: str | None = await session.scalar(
            text("SELECT engram_owner_of(:kind, :h)"), {"kind": kind, "h": flow.token_hash(token)}
        )
    return owner


async def _authorization_code(services: Services, client: ClientRecord, form: dict[str, str]) -> dict[str, Any]:
    code = form.get("code", "")
    email = await _owner(services, "code", code) if code else None
    if email is None:
        raise OAuthError("invalid_grant", "The authorization code is not valid.")
    failure: str | None = None
    async with bound_session(services.sessions, Identity(email, client.client_id)) as session:
        row = (
            await session.execute(
                text(
                    "SELECT client_id, redirect_uri, code_challenge, resource, scopes, family_id, expires_at, used_at "
                    "FROM oauth_codes WHERE code_hash = :h FOR UPDATE"
                ),
                {"h": flow.token_hash(code)},
            )
        ).one()
        if form.get("resource") and form["resource"].rstrip("/") != row.resource:
            raise OAuthError("invalid_target", "resource differs from the one in the authorization request.")
        if row.used_at is not None:
            # Committed although the request fails: the tokens of a leaked code must die now.
            await _revoke_family(session, row.family_id)
            await flow.audit(session, "OAUTH_CODE_REUSED", email, client.client_id)
            failure = "The authorization code was already used; its tokens are revoked."
        elif row.expires_at <= datetime.now(UTC):
            failure = "The authorization code has expired."
        elif row.client_id != client.client_id:
            failure = "The authorization code was issued to another client."
        elif form.get("redirect_uri") not in (None, row.redirect_uri):
            failure = "redirect_uri differs from the one in the authorization request."
        elif not _pkce_ok(form.get("code_verifier", ""), row.code_challenge):
            failure = "The PKCE code_verifier does not match the code_challenge."
        elif not email_allowed(services.settings, email):
            failure = f"{email} may no longer use this server."
        if failure is None:
            await session.execute(
                text("UPDATE oauth_codes SET used_at = now() WHERE code_hash = :h"), {"h": flow.token_hash(code)}
            )
            return await _issue(
                services,
                session,
                email=email,
                client=client,
                scopes=list(row.scopes),
                resource=row.resource,
                family_id=row.family_id,
            )
        await flow.audit(session, "OAUTH_TOKEN_REFUSED", email, client.client_id, reason=failure)
    raise OAuthError("invalid_grant", failure)


async def _refresh(services: Services, client: ClientRecord, form: dict[str, str]) -> dict[str, Any]:
    token = form.get("refresh_token", "")
    email = await _owner(services, "refresh", token) if token else None
    if email is None:
        raise OAuthError("invalid_grant", "The refresh token is not valid.")
    async with bound_session(services.sessions, Identity(email, client.client_id)) as session:
        row = (
            await session.execute(
                text(
                    "SELECT id, family_id, client_id, resource, scopes, expires_at, used_at, revoked_at "
                    "FROM oauth_refresh_tokens WHERE token_hash = :h FOR UPDATE"
                ),
                {"h": flow.token_hash(token)},
            )
        ).one()
        failure = None
        if row.revoked_at is not None:
            failure = "The refresh token has been revoked."
        elif row.used_at is not None:
            await _revoke_family(session, row.family_id)
            await flow.audit(session, "OAUTH_REFRESH_REUSED", email, client.client_id)
            failure = "The refresh token was already used; every token of this sign-in is now revoked."
        elif row.expires_at <= datetime.now(UTC):
            failure = "The refresh token has expired."
        elif row.client_id != client.client_id:
            failure = "The refresh token was issued to another client."
        elif not email_allowed(services.settings, email):
            failure = f"{email} may no longer use this server."
        if failure is None:
            requested = form.get("scope")
            scopes = list(row.scopes)
            if requested:
                asked = set(requested.split()) & set(scope_names.ALL_SCOPES)
                if not asked or not asked <= set(row.scopes):
                    raise OAuthError("invalid_scope", "A refresh may only keep or narrow the granted scopes.")
                scopes = sorted(asked)
            if form.get("resource") and form["resource"].rstrip("/") != row.resource:
                raise OAuthError("invalid_target", "resource differs from the one originally granted.")
            await session.execute(
                text("UPDATE oauth_refresh_tokens SET used_at = now() WHERE id = :id"), {"id": row.id}
            )
            await flow.audit(session, "OAUTH_REFRESHED", email, client.client_id)
            return await _issue(
                services,
                session,
                email=email,
                client=client,
                scopes=scopes,
                resource=row.resource,
                family_id=row.family_id,
            )
        await flow.audit(session, "OAUTH_TOKEN_REFUSED", email, client.client_id, reason=failure)
    raise OAuthError("invalid_grant", failure)


@post("/oauth/token", include_in_schema=False, status_code=200)
async def token_endpoint(request: Request[Any, Any, Any], data: Form) -> Response[Any]:
    services = services_of(request)
    try:
        client = await authenticate_client(services, request, data)
        grant = data.get("grant_type")
        if grant == "authorization_code":
            body = await _authorization_code(services, client, data)
        elif grant == "refresh_token":
            body = await _refresh(services, client, data)
        else:
            raise OAuthError("unsupported_grant_type", "Use authorization_code or refresh_token.")
    except OAuthError as exc:
        log.info("token request refused", error=exc.error, reason=exc.description)
        return _error_response(exc)
    return Response(body, headers=NO_STORE)


@post("/oauth/revoke", include_in_schema=False, status_code=200)
async def revoke_endpoint(request: Request[Any, Any, Any], data: Form) -> Response[Any]:
    """RFC 7009: always 200 for a token we do not know; a refresh token ends its whole sign-in."""
    services = services_of(request)
    try:
        client = await authenticate_client(services, request, data)
    except OAuthError as exc:
        return _error_response(exc)
    token = data.get("token", "")
    email = await _owner(services, "refresh", token) if token else None
    if email is not None:
        async with bound_session(services.sessions, Identity(email, client.client_id)) as session:
            family = await session.scalar(
                text("SELECT family_id FROM oauth_refresh_tokens WHERE token_hash = :h AND client_id = :c"),
                {"h": flow.token_hash(token), "c": client.client_id},
            )
            if family is not None:
                await _revoke_family(session, family)
                await flow.audit(session, "OAUTH_TOKEN_REVOKED", email, client.client_id)
    return Response({}, headers=NO_STORE)
