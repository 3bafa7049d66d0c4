"""The key-encryption key (KEK): AES-256-GCM over Engram's signing keys at rest.

It comes from `ENGRAM_KEY_ENCRYPTION_KEY`, or else from a file in the data directory that the
first process to start generates.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.settings import Settings, SettingsError

KEK_BYTES = 32
NONCE_BYTES = 12
KEK_FILE = "kek"


class WrongKeyEncryptionKey(ValueError):
    """A ciphertext does not decrypt: another KEK, or data moved between rows."""


def load_kek(settings: Settings) -> bytes:
    if settings.key_encryption_key is not None:
        kek = _decode(settings.key_encryption_key)
        if kek is None:
            raise SettingsError(
                "ENGRAM_KEY_ENCRYPTION_KEY must be the base64 of exactly 32 bytes "
                "(generate one with `openssl rand -base64 32`)"
            )
        return kek
    return _file_kek(settings.resolved_data_dir() / KEK_FILE)


def encrypt(kek: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + AESGCM(kek).encrypt(nonce, plaintext, aad)


def decrypt(kek: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    try:
        return AESGCM(kek).decrypt(ciphertext[:NONCE_BYTES], ciphertext[NONCE_BYTES:], aad)
    except (InvalidTag, ValueError):
        raise WrongKeyEncryptionKey(
            "the ciphertext does not decrypt with this key-encryption key and associated data"
        ) from None


def _decode(text: str) -> bytes | None:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == KEK_BYTES else None


def _file_kek(path: Path) -> bytes:
    if not path.exists():
        _create_once(path)
    kek = _decode(path.read_text())
    if kek is None:
        raise SettingsError(
            f"{path} does not hold the base64 of 32 bytes; restore it, or set ENGRAM_KEY_ENCRYPTION_KEY"
        )
    return kek


def _create_once(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(base64.b64encode(secrets.token_bytes(KEK_BYTES)).decode() + "\n")
            f.flush()
            os.fsync(f.fileno())
        # link() never replaces an existing file: when two processes race, the first link wins
        # and the other reads the winner's complete file (rename() would let the last one win).
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
