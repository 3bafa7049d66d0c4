"""`engram connect` as a person runs it, against a temporary HOME for each file-based client."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.connect import CLIENTS, Client
from app.connect.jsonc import loads as jsonc_loads
from app.db.bootstrap import EmbeddedUrls
from app.db.session import Identity, bound_session
from app.tokens import service as tokens
from tests.connect.expectations import BRIDGE_ARGS, EXPECTED, PUBLIC, URL

FILE_CLIENTS = [c for c in CLIENTS if c.kind in ("json", "toml")]

JSONC_FILE = """\
// The user's own settings: comments and other servers must survive.
{
  /* servers the user added by hand */
  "KEY": {
    "other": {"command": "other-mcp", "args": ["--flag"]} // keep me
  },
  "theme": "dark", // a trailing comma follows
}
"""
JSON_FILE = """\
{
    "KEY": {
        "other": {
            "command": "other-mcp",
            "args": ["--flag"]
        }
    },
    "theme": "dark"
}
"""
TOML_FILE = """\
# Codex settings, by hand
model = "o3"  # my model

[mcp_servers.other]
command = "other-mcp"  # keep me
args = ["--flag"]
"""
MALFORMED_JSON = '{\n  "KEY": {\n    "other": {"command": "other-mcp",\n'
MALFORMED_TOML = '[mcp_servers.other\ncommand = "other-mcp"\n'


def connect(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_") and k != "XDG_CONFIG_HOME"}
    return subprocess.run(
        [sys.executable, "-m", "app", "connect", *args],
        env={**clean, "HOME": str(home), **(env or {})},
        cwd=home,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def path_of(client: Client, home: Path) -> Path:
    assert client.file is not None
    relative = client.file.path("linux")
    assert relative is not None
    return home / relative


def existing_file(client: Client) -> str:
    assert client.file is not None
    if client.file.format == "toml":
        return TOML_FILE
    return (JSONC_FILE if client.file.comments else JSON_FILE).replace("KEY", client.file.servers_key)


def malformed_file(client: Client) -> str:
    assert client.file is not None
    return MALFORMED_TOML if client.file.format == "toml" else MALFORMED_JSON.replace("KEY", client.file.servers_key)


def read(client: Client, text: str) -> dict[str, Any]:
    assert client.file is not None
    if client.file.format == "toml":
        return tomllib.loads(text)
    parsed: dict[str, Any] = jsonc_loads(text, comments=client.file.comments)
    return parsed


def expected_entry(client: Client) -> dict[str, Any]:
    fields = EXPECTED[client.id].fields
    return {"command": "npx", "args": BRIDGE_ARGS} if fields is None else fields


def backups(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".bak-*"))


def leftovers(path: Path) -> list[Path]:
    return [p for p in path.parent.iterdir() if p.name.endswith(".tmp")] if path.parent.exists() else []


def uncomma(text: str) -> list[str]:
    return [line.replace(",", "") for line in text.splitlines()]


def is_subsequence(small: list[str], big: list[str]) -> bool:
    items = iter(big)
    return all(any(line == other for other in items) for line in small)


@pytest.mark.parametrize("client", FILE_CLIENTS, ids=lambda c: c.id)
def test_creates_a_new_file(client: Client, tmp_path: Path) -> None:
    result = connect(tmp_path, client.id, "--url", PUBLIC)
    assert result.returncode == 0, result.stderr
    path = path_of(client, tmp_path)
    doc = read(client, path.read_text())
    assert client.file is not None
    assert doc == {client.file.servers_key: {"engram": expected_entry(client)}}
    assert f"+++ {path}" in result.stdout
    assert f"Wrote {path}." in result.stdout
    assert backups(path) == []
    assert leftovers(path) == []
    assert not stat.S_IMODE(path.stat().st_mode) & 0o022, "no one else may write it"


@pytest.mark.parametrize("client", FILE_CLIENTS, ids=lambda c: c.id)
def test_merges_into_an_existing_file_and_keeps_a_backup(client: Client, tmp_path: Path) -> None:
    path = path_of(client, tmp_path)
    path.parent.mkdir(parents=True)
    before = existing_file(client)
    path.write_text(before)
    result = connect(tmp_path, client.id, "--url", PUBLIC)
    assert result.returncode == 0, result.stderr
    after = path.read_text()
    doc = read(client, after)
    assert client.file is not None
    servers = doc[client.file.servers_key]
    assert servers["other"] == {"command": "other-mcp", "args": ["--flag"]}
    assert servers["engram"] == expected_entry(client)
    assert doc.get("theme", doc.get("model")) in ("dark", "o3")
    # Every line the user had is still there, in order (only a comma may have joined the last entry).
    assert is_subsequence(uncomma(before), uncomma(after))
    for comment in ("// keep me", "/* servers the user added by hand */", "# keep me", "# my model"):
        if comment in before:
            assert comment in after
    [backup] = backups(path)
    assert backup.read_text() == before
    assert f"Backup of the previous file: {backup}" in result.stdout
    assert any(line.startswith("+") and URL in line for line in result.stdout.splitlines())


@pytest.mark.parametrize("client", FILE_CLIENTS, ids=lambda c: c.id)
def test_a_malformed_file_is_left_untouched(client: Client, tmp_path: Path) -> None:
    path = path_of(client, tmp_path)
    path.parent.mkdir(parents=True)
    before = malformed_file(client).encode()
    path.write_bytes(before)
    result = connect(tmp_path, client.id, "--url", PUBLIC)
    assert result.returncode == 1
    assert str(path) in result.stderr
    assert "is not valid" in result.stderr
    assert "nothing was changed" in result.stderr
    assert "line" in result.stderr, "the error says where"
    assert path.read_bytes() == before
    assert backups(path) == []
    assert leftovers(path) == []


@pytest.mark.parametrize("client", FILE_CLIENTS, ids=lambda c: c.id)
def test_dry_run_prints_the_change_and_writes_nothing(client: Client, tmp_path: Path) -> None:
    path = path_of(client, tmp_path)
    path.parent.mkdir(parents=True)
    before = existing_file(client).encode()
    path.write_bytes(before)
    result = connect(tmp_path, client.id, "--url", PUBLIC, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert any(line.startswith("+") and URL in line for line in result.stdout.splitlines())
    assert "dry run: nothing was written" in result.stdout
    assert path.read_bytes() == before
    assert backups(path) == []


def test_dry_run_creates_no_file(tmp_path: Path) -> None:
    result = connect(tmp_path, "cursor", "--url", PUBLIC, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "+++ " in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_a_plain_json_file_with_comments_is_refused(tmp_path: Path) -> None:
    path = tmp_path / ".cursor" / "mcp.json"
    path.parent.mkdir()
    path.write_text('{\n  // Cursor reads this file as plain JSON\n  "mcpServers": {}\n}\n')
    result = connect(tmp_path, "cursor", "--url", PUBLIC)
    assert result.returncode == 1
    assert "line 2, column 3: comments are not allowed" in result.stderr


def test_running_twice_changes_nothing_the_second_time(tmp_path: Path) -> None:
    assert connect(tmp_path, "codex", "--url", PUBLIC).returncode == 0
    again = connect(tmp_path, "codex", "--url", PUBLIC)
    assert again.returncode == 0
    assert "nothing to change" in again.stdout
    assert backups(tmp_path / ".codex" / "config.toml") == []


def test_unknown_client_lists_the_valid_ids(tmp_path: Path) -> None:
    result = connect(tmp_path, "notepad", "--url", PUBLIC)
    assert result.returncode == 2
    assert "unknown client 'notepad'" in result.stderr
    for client in CLIENTS:
        assert client.id in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_command_clients_get_the_command_printed(tmp_path: Path) -> None:
    result = connect(tmp_path, "claude-code", "--url", PUBLIC)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"claude mcp add --transport http --scope user engram {URL}"
    assert list(tmp_path.iterdir()) == []
    claude = connect(tmp_path, "claude", "--url", PUBLIC)
    assert claude.stdout.strip() == URL
    assert "Add custom connector" in claude.stderr


def test_the_url_defaults_to_the_public_url(tmp_path: Path) -> None:
    result = connect(tmp_path, "windsurf", env={"ENGRAM_PUBLIC_URL": "https://memory.example.org"})
    assert result.returncode == 0, result.stderr
    doc = json.loads((tmp_path / ".codeium" / "windsurf" / "mcp_config.json").read_text())
    assert doc["mcpServers"]["engram"] == {"serverUrl": "https://memory.example.org/mcp"}


def test_xdg_config_home_is_honoured(tmp_path: Path) -> None:
    config = tmp_path / "xdg"
    result = connect(tmp_path, "vscode", "--url", PUBLIC, env={"XDG_CONFIG_HOME": str(config)})
    assert result.returncode == 0, result.stderr
    assert (config / "Code" / "User" / "mcp.json").exists()


# --- personal access tokens ------------------------------------------------------------------------
def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}@example.com"


@pytest.fixture
def db_env(db_urls: EmbeddedUrls, data_dir: Path) -> dict[str, str]:
    return {"ENGRAM_DATABASE_URL": db_urls.runtime, "ENGRAM_DATA_DIR": str(data_dir)}


async def token_names(sessions: async_sessionmaker[AsyncSession], email: str) -> list[str]:
    async with bound_session(sessions, Identity(email, "test")) as session:
        return [t.name for t in await tokens.list_tokens(session)]


async def resolve(sessions: async_sessionmaker[AsyncSession], token: str) -> tokens.ResolvedToken | None:
    async with sessions() as session, session.begin():
        return await tokens.resolve(session, token)


async def test_token_goes_into_the_headers(
    tmp_path: Path, db_env: dict[str, str], sessions: async_sessionmaker[AsyncSession]
) -> None:
    email = uniq("alice")
    result = await asyncio.to_thread(
        connect, tmp_path, "cursor", "--url", PUBLIC, "--token", "--user", email, env=db_env
    )
    assert result.returncode == 0, result.stderr
    path = tmp_path / ".cursor" / "mcp.json"
    entry = json.loads(path.read_text())["mcpServers"]["engram"]
    token = entry["headers"]["Authorization"].removeprefix("Bearer ")
    assert token.startswith("egm_")
    assert entry["url"] == URL
    assert token not in result.stdout, "the diff shows only the token's prefix"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, "a file holding a token is private"
    resolved = await resolve(sessions, token)
    assert resolved is not None
    assert resolved.owner_email == email
    assert resolved.scopes == {"memories:read", "memories:write"}
    assert await token_names(sessions, email) == ["engram connect cursor"]


async def test_codex_reads_the_token_from_the_environment(
    tmp_path: Path, db_env: dict[str, str], sessions: async_sessionmaker[AsyncSession]
) -> None:
    email = uniq("carol")
    result = await asyncio.to_thread(
        connect, tmp_path, "codex", "--url", PUBLIC, "--token", "--user", email, env=db_env
    )
    assert result.returncode == 0, result.stderr
    text = (tmp_path / ".codex" / "config.toml").read_text()
    assert tomllib.loads(text)["mcp_servers"]["engram"] == {"url": URL, "bearer_token_env_var": "ENGRAM_TOKEN"}
    [export] = [line for line in result.stdout.splitlines() if line.startswith("export ENGRAM_TOKEN=")]
    token = export.removeprefix("export ENGRAM_TOKEN=")
    assert token not in text
    assert (await resolve(sessions, token)) is not None


async def test_vscode_prompts_for_the_token(
    tmp_path: Path, db_env: dict[str, str], sessions: async_sessionmaker[AsyncSession]
) -> None:
    email = uniq("dave")
    result = await asyncio.to_thread(
        connect, tmp_path, "vscode", "--url", PUBLIC, "--token", "--user", email, env=db_env
    )
    assert result.returncode == 0, result.stderr
    doc = jsonc_loads((tmp_path / ".config" / "Code" / "User" / "mcp.json").read_text(), comments=True)
    assert doc["servers"]["engram"]["headers"] == {"Authorization": "Bearer ${input:engram-token}"}
    assert doc["inputs"][0]["id"] == "engram-token"
    assert doc["inputs"][0]["password"] is True
    token = result.stdout.strip().splitlines()[-1]
    assert token.startswith("egm_")
    assert (await resolve(sessions, token)) is not None


async def test_claude_with_a_token_gets_the_desktop_bridge(
    tmp_path: Path, db_env: dict[str, str], sessions: async_sessionmaker[AsyncSession]
) -> None:
    email = uniq("erin")
    result = await asyncio.to_thread(
        connect, tmp_path, "claude", "--url", PUBLIC, "--token", "--user", email, env=db_env
    )
    assert result.returncode == 0, result.stderr
    entry = json.loads((tmp_path / ".config" / "Claude" / "claude_desktop_config.json").read_text())["mcpServers"][
        "engram"
    ]
    assert entry["command"] == "npx"
    assert entry["args"] == [*BRIDGE_ARGS, "--header", "Authorization:${ENGRAM_AUTH}"]
    token = entry["env"]["ENGRAM_AUTH"].removeprefix("Bearer ")
    assert (await resolve(sessions, token)) is not None


async def test_no_token_is_created_for_a_dry_run_or_a_file_we_will_not_edit(
    tmp_path: Path, db_env: dict[str, str], sessions: async_sessionmaker[AsyncSession]
) -> None:
    email = uniq("frank")
    dry = await asyncio.to_thread(
        connect, tmp_path, "gemini-cli", "--url", PUBLIC, "--token", "--user", email, "--dry-run", env=db_env
    )
    assert dry.returncode == 0, dry.stderr
    assert "egm_<new-token>" in dry.stdout
    assert "no token was created" in dry.stdout
    assert not (tmp_path / ".gemini").exists()
    path = tmp_path / ".gemini" / "settings.json"
    path.parent.mkdir()
    path.write_text("{ not json")
    broken = await asyncio.to_thread(
        connect, tmp_path, "gemini-cli", "--url", PUBLIC, "--token", "--user", email, env=db_env
    )
    assert broken.returncode == 1
    assert path.read_text() == "{ not json"
    assert await token_names(sessions, email) == []


def test_a_url_without_a_scheme_is_refused(tmp_path: Path) -> None:
    result = connect(tmp_path, "cursor", "--url", "engram.example.com")
    assert result.returncode == 2
    assert "--url needs Engram's public URL" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_token_needs_a_user(tmp_path: Path) -> None:
    result = connect(tmp_path, "cursor", "--url", PUBLIC, "--token")
    assert result.returncode == 2
    assert "--user EMAIL" in result.stderr
    assert list(tmp_path.iterdir()) == []
