"""Dynamic Client Registration (RFC 7591) at /oauth/register.

Errors use OAuth's JSON shape (`{"error", "error_description"}`), not problem details: that is
what registering clients parse.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from litestar import Request, Response, post
from litestar.di import NamedDependency
from litestar.status_codes import HTTP_201_CREATED
from sqlalchemy.ext.asyncio import AsyncSession

from app.oauth.clients import ClientRecord, RedirectPolicy, RegistrationError, register_dynamic
from app.services import services_of

MAX_BODY_BYTES = 16 * 1024
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def oauth_error(status: int, error: str, description: str, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(
        {"error": error, "error_description": description},
        status_code=status,
        headers={**NO_STORE, **(headers or {})},
    )


def registration_response(record: ClientRecord, secret: str | None) -> dict[str, Any]:
    """RFC 7591 §3.2.1: the credentials and the metadata as Engram registered it."""
    body: dict[str, Any] = {
        "client_id": record.client_id,
        "client_id_issued_at": int(record.created_at.timestamp()),
    }
    if secret is not None:
        body["client_secret"] = secret
        body["client_secret_expires_at"] = 0
    body.update(
        {
            "redirect_uris": list(record.redirect_uris),
            "grant_types": list(record.grant_types),
            "response_types": list(record.response_types),
            "token_endpoint_auth_method": record.token_endpoint_auth_method,
            "application_type": record.application_type,
            "client_name": record.client_name,
        }
    )
    for name in ("client_uri", "logo_uri", "scope", "software_id", "software_version"):
        value = getattr(record, name)
        if value is not None:
            body[name] = value
    return body


def _authorized(request: Request[Any, Any, Any], expected: str) -> bool:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    return hmac.compare_digest(token.strip().encode(), expected.encode())


@post(
    "/oauth/register",
    status_code=HTTP_201_CREATED,
    tags=["oauth"],
    summary="Register an OAuth client (RFC 7591)",
)
async def register_client(request: Request[Any, Any, Any], db_session: NamedDependency[AsyncSession]) -> Response[Any]:
    """Registers an MCP client with its redirect URIs; confidential clients get a secret, shown once."""
    settings = services_of(request).settings
    if settings.registration_access_token and not _authorized(request, settings.registration_access_token):
        return oauth_error(
            401,
            "invalid_token",
            "This server requires an initial access token for client registration: "
            "send Authorization: Bearer <registration access token>.",
            {"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return oauth_error(
            400, "invalid_client_metadata", f"Client metadata may be at most {MAX_BODY_BYTES // 1024} KiB."
        )
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return oauth_error(400, "invalid_client_metadata", "The request body must be a JSON object of client metadata.")
    try:
        record, secret = await register_dynamic(db_session, document, RedirectPolicy(settings))
    except RegistrationError as exc:
        return oauth_error(400, exc.error, exc.description)
    return Response(registration_response(record, secret), status_code=HTTP_201_CREATED, headers=NO_STORE)
