"""The `engram` command as a person runs it: embedded defaults, tokens, users, refusal to run unsafely."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from app.db.bootstrap import EmbeddedUrls
from tests.conftest import start_server, stop_server


def engram(
    *args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment of a fresh checkout: no ENGRAM_* settings from the test session."""
    return {key: value for key, value in os.environ.items() if not key.startswith("ENGRAM_")} | extra


def test_serve_on_embedded_defaults_keeps_memories_across_restarts(tmp_path: Path) -> None:
    env = _clean_env(ENGRAM_DATA_DIR=str(tmp_path / "state"), ENGRAM_LOG_FORMAT="json")
    server = start_server(env, tmp_path / "first.log", clean=True, cwd=tmp_path)
    try:
        created = engram("token", "create", "--user", "Carol@Example.com", "--name", "curl", env=env, cwd=tmp_path)
        assert created.returncode == 0, created.stderr
        token = created.stdout.strip()
        assert token.startswith("egm_")
        assert "shown only once" in created.stderr
        headers = {"Authorization": f"Bearer {token}"}
        added = httpx.post(
            server.url + "/api/v1/memories", json={"text": "Carol's desk is on floor 3"}, headers=headers
        )
        assert added.status_code == 201, added.text
        me = httpx.get(server.url + "/api/v1/me", headers=headers).json()
        assert me["email"] == "carol@example.com"
    finally:
        assert stop_server(server) == 0
    # The embedded PostgreSQL stopped cleanly with the server.
    assert not (tmp_path / "state" / "postgres" / "data" / "postmaster.pid").exists()
    assert "Embedded PostgreSQL stopped." in server.log()

    server = start_server(env, tmp_path / "second.log", clean=True, cwd=tmp_path)
    try:
        found = httpx.post(
            server.url + "/api/v1/memories/search", json={"query": "where does Carol sit?"}, headers=headers
        )
        assert found.json()["hits"][0]["memory"]["content"] == "Carol's desk is on floor 3"
        users = engram("user", "list", env=env, cwd=tmp_path)
        assert "carol@example.com" in users.stdout
        status = engram("db", "status", env=env, cwd=tmp_path)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "up to date" in status.stdout
    finally:
        stop_server(server)


def test_serve_refuses_a_database_role_that_could_bypass_rls(db_urls: EmbeddedUrls, tmp_path: Path) -> None:
    server = start_server(
        _clean_env(ENGRAM_DATABASE_URL=db_urls.admin, ENGRAM_DATA_DIR=str(tmp_path)),
        tmp_path / "refused.log",
        wait_ready=False,
    )
    try:
        server.process.wait(90)
    except subprocess.TimeoutExpired:
        stop_server(server)
        pytest.fail("engram serve kept running with an owner role:\n" + server.log()[-2000:])
    assert server.process.returncode != 0
    assert "Refusing to serve" in server.log()
    assert "could bypass row-level security" in server.log()


def test_token_commands(db_urls: EmbeddedUrls, data_dir: Path) -> None:
    env = _clean_env(
        ENGRAM_DATABASE_URL=db_urls.runtime, ENGRAM_DATABASE_ADMIN_URL=db_urls.admin, ENGRAM_DATA_DIR=str(data_dir)
    )
    created = engram(
        "token",
        "create",
        "--user",
        "dave@example.com",
        "--name",
        "reader",
        "--scope",
        "memories:read",
        "--days",
        "3",
        env=env,
    )
    assert created.returncode == 0, created.stderr
    listed = engram("token", "list", "--user", "dave@example.com", env=env)
    assert "reader" in listed.stdout
    assert "memories:read" in listed.stdout
    assert created.stdout.strip() not in listed.stdout
    token_id = created.stderr.split("token ", 1)[1].split(" ", 1)[0]
    revoked = engram("token", "revoke", "--user", "dave@example.com", token_id, env=env)
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked" in engram("token", "list", "--user", "dave@example.com", env=env).stdout
    # Another user cannot revoke (or see) Dave's token.
    other = engram("token", "revoke", "--user", "eve@example.com", token_id, env=env)
    assert other.returncode == 1
    assert "No token with that id exists for you" in other.stderr
    bad = engram("token", "create", "--user", "not-an-email", env=env)
    assert bad.returncode == 1
    assert "is not an email address" in bad.stderr


def test_bad_settings_are_reported_not_raised(tmp_path: Path) -> None:
    result = engram("db", "status", env=_clean_env(ENGRAM_PORT="eighty"), cwd=tmp_path)
    assert result.returncode == 2
    assert "ENGRAM_PORT must be a number" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_docs_prints_the_reference() -> None:
    result = engram("config", "docs", env=_clean_env())
    assert result.returncode == 0
    assert result.stdout == (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
