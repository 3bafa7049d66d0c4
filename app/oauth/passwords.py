"""Password hashing for local accounts: scrypt (memory-hard), a random salt per password."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets

# 2^15 × 8 × 128 bytes = 32 MiB per hash: memory-hard enough to make GPU guessing expensive.
N, R, P = 2**15, 8, 1
MAX_MEMORY = 64 * 1024 * 1024
MIN_LENGTH = 10


class WeakPassword(ValueError):
    pass


def check_strength(password: str, email: str) -> None:
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"Use at least {MIN_LENGTH} characters.")
    if password.lower() in {email.lower(), email.split("@")[0].lower()}:
        raise WeakPassword("The password must not be your email address.")


def _hash(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=MAX_MEMORY, dklen=32)


def hash_password_sync(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _hash(password, salt, N, R, P)
    return f"scrypt${N}${R}${P}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password_sync(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        actual = _hash(password, base64.b64decode(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, base64.b64decode(digest))


# A hash to compare against when the account does not exist, so timing does not reveal it.
DUMMY_HASH = hash_password_sync(secrets.token_urlsafe(16))


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(hash_password_sync, password)


async def verify_password(password: str, encoded: str | None) -> bool:
    ok = await asyncio.to_thread(verify_password_sync, password, encoded or DUMMY_HASH)
    return ok and encoded is not None
