"""The long-lived objects one app instance shares across requests, built once in the lifespan."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
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
