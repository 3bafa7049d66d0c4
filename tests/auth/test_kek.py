from __future__ import annotations

import base64
import secrets
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from app.auth.kek import WrongKeyEncryptionKey, decrypt, encrypt, load_kek
from app.settings import Settings


def test_kek_from_the_setting() -> None:
    raw = secrets.token_bytes(32)
    assert load_kek(Settings(key_encryption_key=base64.b64encode(raw).decode())) == raw


@pytest.mark.parametrize("value", ["not base64 at all!", base64.b64encode(b"sixteen bytes!!!").decode(), ""])
def test_kek_setting_must_be_base64_of_32_bytes(value: str) -> None:
    with pytest.raises(ValueError, match="ENGRAM_KEY_ENCRYPTION_KEY"):
        load_kek(Settings(key_encryption_key=value))


def test_kek_file_is_generated_once_private_and_reusable(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "fresh" / "data")
    first = load_kek(settings)
    path = tmp_path / "fresh" / "data" / "kek"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_kek(settings) == first
    # The file holds exactly what ENGRAM_KEY_ENCRYPTION_KEY takes, so replicas can share it.
    assert load_kek(Settings(key_encryption_key=path.read_text())) == first
    assert [p.name for p in path.parent.iterdir()] == ["kek"]


def test_processes_starting_together_agree_on_one_kek(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    start = threading.Barrier(8)

    def first_start() -> bytes:
        start.wait(timeout=10)
        return load_kek(settings)

    with ThreadPoolExecutor(max_workers=8) as pool:
        keys = list(pool.map(lambda _: first_start(), range(8)))
    assert len(set(keys)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["kek"]


def test_a_damaged_kek_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "kek").write_text("garbage\n")
    with pytest.raises(ValueError, match="kek does not hold"):
        load_kek(Settings(data_dir=tmp_path))


def test_encryption_round_trip_and_binding() -> None:
    kek = secrets.token_bytes(32)
    first = encrypt(kek, b"private key", b"kid-1")
    assert decrypt(kek, first, b"kid-1") == b"private key"
    assert encrypt(kek, b"private key", b"kid-1") != first  # a fresh nonce every time
    assert b"private key" not in first
    with pytest.raises(WrongKeyEncryptionKey):
        decrypt(kek, first, b"kid-2")  # moved to another row
    with pytest.raises(WrongKeyEncryptionKey):
        decrypt(secrets.token_bytes(32), first, b"kid-1")
    with pytest.raises(WrongKeyEncryptionKey):
        decrypt(kek, first[:20], b"kid-1")
