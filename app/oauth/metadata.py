"""Discovery documents: Protected Resource Metadata (RFC 9728) for /mcp and /api/v1.

Every URL comes from ENGRAM_PUBLIC_URL, so the documents are right behind a reverse proxy.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, get

from app.auth import scopes
from app.services import services_of
from app.settings import Settings

# What a client should ask for up front; deleting is a step-up through a 403 challenge.
DEFAULT_CLIENT_SCOPES = (scopes.READ, scopes.WRITE)


def protected_resource(settings: Settings, resource: str) -> dict[str, Any]:
    return {
        "resource": resource,
        "authorization_servers": [settings.issuer],
        "scopes_supported": list(DEFAULT_CLIENT_SCOPES),
        "bearer_methods_supported": ["header"],
        "resource_name": "Engram memory",
        "resource_documentation": f"{settings.public_url}/schema/",
    }


def prm_url(settings: Settings, resource_path: str) -> str:
    return f"{settings.public_url}/.well-known/oauth-protected-resource{resource_path}"


def _settings(request: Request[Any, Any, Any]) -> Settings:
    services = services_of(request)
    return services.settings


@get(
    ["/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"],
    tags=["oauth"],
    summary="Protected Resource Metadata of the MCP endpoint",
)
async def mcp_resource_metadata(request: Request[Any, Any, Any]) -> dict[str, Any]:
    settings = _settings(request)
    return protected_resource(settings, settings.mcp_resource)


@get(
    "/.well-known/oauth-protected-resource/api/v1",
    tags=["oauth"],
    summary="Protected Resource Metadata of the REST API",
)
async def api_resource_metadata(request: Request[Any, Any, Any]) -> dict[str, Any]:
    settings = _settings(request)
    return protected_resource(settings, settings.api_audience)


def authorization_server(settings: Settings) -> dict[str, Any]:
    base = settings.public_url
    auth_methods = ["none", "client_secret_basic", "client_secret_post"]
    return {
        "issuer": settings.issuer,
        "authorization_endpoint": f"{base}/oauth/authorize",
        "token_endpoint": f"{base}/oauth/token",
        "registration_endpoint": f"{base}/oauth/register",
        "revocation_endpoint": f"{base}/oauth/revoke",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "scopes_supported": list(scopes.ALL_SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "authorization_response_iss_parameter_supported": True,
        "client_id_metadata_document_supported": True,
        "service_documentation": f"{base}/schema/",
    }


@get(
    ["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"],
    tags=["oauth"],
    summary="Authorization server metadata (RFC 8414)",
)
async def authorization_server_metadata(request: Request[Any, Any, Any]) -> dict[str, Any]:
    return authorization_server(_settings(request))
