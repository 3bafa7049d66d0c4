"""Engram's public signing keys (JWKS), for anyone verifying tokens Engram issued."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get

from app.services import services_of


@get("/.well-known/jwks.json", tags=["oauth"], summary="Engram's public signing keys")
async def jwks(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    services = services_of(request)
    # Short caching: a rotated key must reach verifiers well before the old one retires.
    return Response(await services.keys.jwks(), headers={"Cache-Control": "public, max-age=300"})
