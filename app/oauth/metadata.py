"""Discovery documents: Protected Resource Metadata (RFC 9728) for /mcp and /api/v1.

Every URL comes from ENGRAM_PUBLIC_URL, so the documents are right behind a reverse proxy.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, get

from app.auth import scopes
from app.services import Services
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
    services: Services = request.app.state.services
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
