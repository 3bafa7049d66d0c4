from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.jwt import JWTVerifier
from app.auth.kek import load_kek
from app.auth.keys import KeyStore
from app.settings import Settings, TrustedIssuer
from tests.auth.issuer_server import CLIENT_ID, IssuerServer


@pytest.fixture(scope="session")
def kek(settings: Settings) -> bytes:
    # The same KEK every test module derives from the shared settings: keys left in the shared
    # table stay decryptable for the others.
    return load_kek(settings)


@pytest.fixture
def key_store(sessions: async_sessionmaker[AsyncSession], kek: bytes, settings: Settings) -> KeyStore:
    return KeyStore(sessions, kek, settings.signing_algorithm, settings.access_token_ttl_seconds)


@pytest.fixture
def issuer_server() -> Iterator[IssuerServer]:
    server = IssuerServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=2.0) as client:
        yield client


@pytest.fixture
def verifier_settings(settings: Settings, issuer_server: IssuerServer) -> Settings:
    return settings.replace(trusted_issuers=[TrustedIssuer(issuer=issuer_server.issuer, audiences=[CLIENT_ID])])


@pytest.fixture
def verifier(verifier_settings: Settings, key_store: KeyStore, http: httpx.AsyncClient) -> JWTVerifier:
    return JWTVerifier(verifier_settings, key_store, http)
