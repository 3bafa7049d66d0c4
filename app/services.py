"""The long-lived objects one app instance shares across requests, built once in the lifespan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from litestar import Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.auth.jwt import JWTVerifier
from app.auth.keys import KeyStore
from app.auth.verifier import TokenVerifier
from app.embeddings import Embedder
from app.oauth.upstream import UpstreamOIDC
from app.settings import Settings


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    embedder: Embedder
    keys: KeyStore
    jwt: JWTVerifier
    verifier: TokenVerifier
    http: httpx.AsyncClient
    upstream: UpstreamOIDC | None = None


def services_of(request: Request[Any, Any, Any]) -> Services:
    """The app instance's Services, which the lifespan put in the app state."""
    services: Services = request.app.state.services
    return services
