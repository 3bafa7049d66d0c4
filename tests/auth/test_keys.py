from __future__ import annotations

import asyncio
import json
import secrets
import time
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth import kek as kek_crypto
from app.auth.jwt import JWTVerifier
from app.auth.kek import WrongKeyEncryptionKey
from app.auth.keys import WRONG_KEK_MESSAGE, KeyStore
from app.settings import Settings

Sessions = async_sessionmaker[AsyncSession]


def _store(sessions: Sessions, kek: bytes, settings: Settings, algorithm: Any = "ES256") -> KeyStore:
    return KeyStore(sessions, kek, algorithm, settings.access_token_ttl_seconds)


def _claims(settings: Settings) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": settings.issuer,
        "aud": settings.mcp_resource,
        "email": "c@example.com",
        "iat": now,
        "exp": now + 60,
    }


async def _active_kids(sessions: Sessions) -> list[str]:
    async with sessions() as session:
        rows = await session.execute(text("SELECT kid FROM signing_keys WHERE retired_at IS NULL"))
        return [row.kid for row in rows]


async def _retire_all(sessions: Sessions) -> None:
    async with sessions() as session, session.begin():
        await session.execute(text("UPDATE signing_keys SET retired_at = now() WHERE retired_at IS NULL"))


async def _verify(settings: Settings, store: KeyStore, token: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        verified = await JWTVerifier(settings, store, http).verify(token, audiences=[settings.mcp_resource])
    return verified.claims


async def test_sign_sets_kid_typ_and_publishes_the_key(key_store: KeyStore, settings: Settings) -> None:
    await key_store.ensure_active_key()
    token = await key_store.sign(_claims(settings))
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt"
    published = {k["kid"]: k for k in (await key_store.jwks())["keys"]}
    jwk = published[header["kid"]]
    assert (jwk["alg"], jwk["use"]) == (header["alg"], "sig")
    assert not {"d", "k", "p", "q"} & set(jwk)
    assert (await _verify(settings, key_store, token))["email"] == "c@example.com"


async def test_a_second_instance_reuses_the_existing_key(sessions: Sessions, kek: bytes, settings: Settings) -> None:
    first = _store(sessions, kek, settings)
    await first.ensure_active_key()
    before = await _active_kids(sessions)
    replica = _store(sessions, kek, settings)
    await replica.ensure_active_key()
    assert await _active_kids(sessions) == before
    token = await replica.sign(_claims(settings))
    assert [jwt.get_unverified_header(token)["kid"]] == before


async def test_concurrent_first_starts_create_exactly_one_key(
    sessions: Sessions, kek: bytes, settings: Settings
) -> None:
    await _retire_all(sessions)
    replicas = [_store(sessions, kek, settings) for _ in range(3)]
    await asyncio.wait_for(asyncio.gather(*(r.ensure_active_key() for r in replicas)), timeout=30)
    active = await _active_kids(sessions)
    assert len(active) == 1
    for replica in replicas:
        assert jwt.get_unverified_header(await replica.sign(_claims(settings)))["kid"] == active[0]


async def test_rotation_keeps_earlier_tokens_valid(sessions: Sessions, key_store: KeyStore, settings: Settings) -> None:
    await key_store.ensure_active_key()
    old_token = await key_store.sign(_claims(settings))
    old_kid = jwt.get_unverified_header(old_token)["kid"]
    new_kid = await key_store.rotate()
    new_token = await key_store.sign(_claims(settings))
    assert jwt.get_unverified_header(new_token)["kid"] == new_kid != old_kid
    assert await _active_kids(sessions) == [new_kid]
    assert {old_kid, new_kid} <= {k["kid"] for k in (await key_store.jwks())["keys"]}
    await _verify(settings, key_store, old_token)
    await _verify(settings, key_store, new_token)


async def test_eddsa_keys(sessions: Sessions, kek: bytes, settings: Settings) -> None:
    store = _store(sessions, kek, settings, "EdDSA")
    await store.rotate()
    token = await store.sign(_claims(settings))
    assert jwt.get_unverified_header(token)["alg"] == "EdDSA"
    await _verify(settings, _store(sessions, kek, settings), token)


async def test_another_replicas_new_key_becomes_verifiable(sessions: Sessions, kek: bytes, settings: Settings) -> None:
    here, there = _store(sessions, kek, settings), _store(sessions, kek, settings)
    await here.ensure_active_key()
    await there.ensure_active_key()
    kid = await there.rotate()
    assert await here.verification_key(kid) is not None
    token = await there.sign(_claims(settings))
    await _verify(settings, here, token)
    # Unknown kids reload the table at most every few seconds.
    newer = await there.rotate()
    assert await here.verification_key(newer) is None
    assert await here.verification_key(secrets.token_urlsafe(8)) is None


async def test_a_wrong_kek_is_reported_clearly(sessions: Sessions, kek: bytes, settings: Settings) -> None:
    await _store(sessions, kek, settings).ensure_active_key()
    with pytest.raises(WrongKeyEncryptionKey) as caught:
        await _store(sessions, secrets.token_bytes(32), settings).ensure_active_key()
    assert str(caught.value) == WRONG_KEK_MESSAGE
    assert "ENGRAM_KEY_ENCRYPTION_KEY" in WRONG_KEK_MESSAGE


async def test_private_keys_are_stored_encrypted(
    sessions: Sessions, kek: bytes, settings: Settings, key_store: KeyStore
) -> None:
    kid = await key_store.rotate()
    async with sessions() as session:
        row = (
            await session.execute(
                text("SELECT private_key_encrypted, public_jwk::text AS jwk FROM signing_keys WHERE kid = :kid"),
                {"kid": kid},
            )
        ).one()
    stored = bytes(row.private_key_encrypted)
    pkcs8 = kek_crypto.decrypt(kek, stored, kid.encode())
    private = serialization.load_der_private_key(pkcs8, password=None)
    assert pkcs8 not in stored
    assert private.private_numbers().private_value.to_bytes(32, "big") not in stored
    assert jwt.PyJWK(json.loads(row.jwk)).key.public_numbers() == private.public_key().public_numbers()
    with pytest.raises(WrongKeyEncryptionKey):
        kek_crypto.decrypt(kek, stored, b"another-kid")
