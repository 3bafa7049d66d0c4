"""Engram's own signing keys: created once, rotated on demand, stored encrypted, cached per process.

Every replica reads the same `signing_keys` table, so a key one replica creates or rotates in
becomes verifiable everywhere (an unknown `kid` reloads the table, at most every few seconds).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from jwt.algorithms import ECAlgorithm, OKPAlgorithm
from jwt.utils import base64url_encode
from sqlalchemy import DateTime, LargeBinary, String, column, func, insert, or_, select, table, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth import kek as kek_crypto
from app.auth.kek import WrongKeyEncryptionKey

SigningAlgorithm = Literal["ES256", "EdDSA"]
PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

WRONG_KEK_MESSAGE = (
    "the key-encryption key does not match the one the signing keys were encrypted with: "
    "check ENGRAM_KEY_ENCRYPTION_KEY"
)

_ADVISORY_LOCK = 0x656E6772616D6B31  # b"engramk1": serialises key creation across replicas
_CACHE_SECONDS = 60.0
_UNKNOWN_KID_RELOAD_SECONDS = 5.0
# A retired key stays published while tokens it signed may live: their lifetime, plus clock skew,
# plus the cache period during which another replica may still sign with it.
_RETIRED_GRACE_SECONDS = 300
_THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}

signing_keys = table(
    "signing_keys",
    column("kid", String),
    column("algorithm", String),
    column("private_key_encrypted", LargeBinary),
    column("public_jwk", JSONB),
    column("created_at", DateTime(timezone=True)),
    column("retired_at", DateTime(timezone=True)),
)


@dataclass(frozen=True, slots=True)
class _Key:
    kid: str
    jwk: dict[str, Any]
    public: jwt.PyJWK
    encrypted: bytes
    retired_at: datetime | None


class KeyStore:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        kek: bytes,
        algorithm: SigningAlgorithm,
        token_ttl_seconds: int,
    ) -> None:
        self._sessions = sessions
        self._kek = kek
        self._algorithm = algorithm
        self._published_for = timedelta(seconds=token_ttl_seconds + _RETIRED_GRACE_SECONDS)
        self._keys: list[_Key] = []  # newest first
        self._private: dict[str, PrivateKey] = {}
        self._loaded_at: float | None = None
        self._unknown_kid_reload_at = -math.inf
        self._generation = 0
        self._lock = asyncio.Lock()

    async def ensure_active_key(self) -> None:
        """Create the first key unless some process already has; fail now if the KEK is wrong."""
        async with self._sessions() as session, session.begin():
            await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK})
            active = await session.scalar(
                select(signing_keys.c.kid).where(signing_keys.c.retired_at.is_(None)).limit(1)
            )
            if active is None:
                await self._insert_new_key(session)
        await self._reload(force=True)
        await self._signing_key()

    async def rotate(self) -> str:
        """Make a new key active and retire the others (still published for their tokens); its kid."""
        async with self._sessions() as session, session.begin():
            await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK})
            await session.execute(
                update(signing_keys).where(signing_keys.c.retired_at.is_(None)).values(retired_at=func.now())
            )
            kid = await self._insert_new_key(session)
        await self._reload(force=True)
        return kid

    async def jwks(self) -> dict[str, Any]:
        # Read fresh: a key another replica just rotated in must be published at once.
        await self._reload()
        now = datetime.now(UTC)
        return {"keys": [dict(k.jwk) for k in self._keys if self._published(k, now)]}

    async def sign(self, claims: dict[str, Any], *, headers: dict[str, Any] | None = None) -> str:
        key, private = await self._signing_key()
        merged = {"typ": "at+jwt", **(headers or {}), "kid": key.kid}
        merged.pop("alg", None)
        return jwt.encode(claims, private, algorithm=key.public.algorithm_name, headers=merged)

    async def verification_key(self, kid: str) -> jwt.PyJWK | None:
        key = self._find(await self._current(), kid)
        if key is None and (
            self._lock.locked() or time.monotonic() - self._unknown_kid_reload_at >= _UNKNOWN_KID_RELOAD_SECONDS
        ):
            self._unknown_kid_reload_at = time.monotonic()
            await self._reload()
            key = self._find(self._keys, kid)
        return key.public if key is not None else None

    # --------------------------------------------------------------------------------------------
    def _published(self, key: _Key, now: datetime) -> bool:
        return key.retired_at is None or key.retired_at + self._published_for > now

    def _find(self, keys: list[_Key], kid: str) -> _Key | None:
        now = datetime.now(UTC)
        return next((k for k in keys if k.kid == kid and self._published(k, now)), None)

    async def _current(self) -> list[_Key]:
        if self._loaded_at is None or time.monotonic() - self._loaded_at >= _CACHE_SECONDS:
            await self._reload()
        return self._keys

    async def _reload(self, *, force: bool = False) -> None:
        seen = self._generation
        async with self._lock:
            if self._generation != seen and not force:
                return  # another task reloaded while this one waited
            async with self._sessions() as session:
                rows = (
                    await session.execute(
                        select(signing_keys)
                        .where(
                            or_(
                                signing_keys.c.retired_at.is_(None),
                                signing_keys.c.retired_at > func.now() - self._published_for,
                            )
                        )
                        .order_by(signing_keys.c.created_at.desc(), signing_keys.c.kid.desc())
                    )
                ).all()
            self._keys = [
                _Key(r.kid, r.public_jwk, jwt.PyJWK(r.public_jwk), r.private_key_encrypted, r.retired_at) for r in rows
            ]
            live = {k.kid for k in self._keys}
            self._private = {kid: v for kid, v in self._private.items() if kid in live}
            self._loaded_at = time.monotonic()
            self._generation += 1

    async def _signing_key(self) -> tuple[_Key, PrivateKey]:
        active = next((k for k in await self._current() if k.retired_at is None), None)
        if active is None:
            raise RuntimeError("no active signing key: call KeyStore.ensure_active_key() at start-up")
        private = self._private.get(active.kid)
        if private is None:
            try:
                der = kek_crypto.decrypt(self._kek, active.encrypted, active.kid.encode())
            except WrongKeyEncryptionKey:
                raise WrongKeyEncryptionKey(WRONG_KEK_MESSAGE) from None
            loaded = serialization.load_der_private_key(der, password=None)
            if not isinstance(loaded, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
                raise TypeError(f"signing key {active.kid} is a {type(loaded).__name__}")
            private = self._private[active.kid] = loaded
        return active, private

    async def _insert_new_key(self, session: AsyncSession) -> str:
        private: PrivateKey
        if self._algorithm == "ES256":
            private = ec.generate_private_key(ec.SECP256R1())
            public_jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
        else:
            private = ed25519.Ed25519PrivateKey.generate()
            public_jwk = OKPAlgorithm.to_jwk(private.public_key(), as_dict=True)
        kid = _thumbprint(public_jwk)
        der = private.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        await session.execute(
            insert(signing_keys).values(
                kid=kid,
                algorithm=self._algorithm,
                private_key_encrypted=kek_crypto.encrypt(self._kek, der, kid.encode()),
                public_jwk={**public_jwk, "kid": kid, "alg": self._algorithm, "use": "sig"},
            )
        )
        return kid


def _thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256), used as the kid."""
    members = {name: jwk[name] for name in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return base64url_encode(hashlib.sha256(canonical).digest()).decode()
