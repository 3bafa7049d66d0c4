"""The client table and its snippets: every client's JSON/TOML parses and has the fields it expects."""

from __future__ import annotations

import json
import shlex
import tomllib
from typing import Any

import pytest

from app.connect import CLIENTS, Client, UnknownClient, get, snippet
from app.connect.clients import Connection, TokenStyle, config_entry, mcp_url
from tests.connect.expectations import BRIDGE_ARGS, BRIDGE_TOKEN_ARGS, EXPECTED, PUBLIC, TOKEN, URL


def test_the_fourteen_clients_in_order() -> None:
    assert [c.id for c in CLIENTS] == list(EXPECTED)
    assert [c.name for c in CLIENTS] == [
        "Claude",
        "Claude Code",
        "Cursor",
        "Cline",
        "Roo Code",
        "Windsurf",
        "VS Code",
        "Codex CLI",
        "Gemini CLI",
        "Factory Droid",
        "Witsy",
        "Enconvo",
        "Augment",
        "Any MCP client",
    ]


@pytest.mark.parametrize("client", CLIENTS, ids=lambda c: c.id)
def test_every_row_is_complete(client: Client) -> None:
    assert client.id == client.id.lower()
    assert " " not in client.id
    assert client.steps
    assert client.docs is None or client.docs.startswith("https://")
    if client.connection is Connection.BRIDGE:
        assert client.file is not None
        assert not client.entry
    if client.kind in ("json", "toml"):
        assert client.file is not None
        assert {p for p, _ in client.file.paths} == {"linux", "darwin", "win32"}
    if client.file:
        assert all(not rel.startswith(("/", "~")) for _, rel in client.file.paths), "paths are relative to HOME"


def _parse(kind: str, text: str) -> dict[str, Any]:
    if kind == "toml":
        return tomllib.loads(text)
    parsed: dict[str, Any] = json.loads(text)
    return parsed


@pytest.mark.parametrize("client_id", list(EXPECTED))
def test_snippet_without_token(client_id: str) -> None:
    expect = EXPECTED[client_id]
    shown = snippet(client_id, url=PUBLIC)
    assert shown.kind == expect.kind
    assert shown.instructions
    if expect.kind == "command":
        assert tuple(shlex.split(shown.text)) == expect.command
        return
    if expect.kind == "link":
        assert shown.text == URL
        return
    assert shown.path == expect.path
    doc = _parse(expect.kind, shown.text)
    entry = doc[expect.key]["engram"]
    if expect.fields is None:
        assert entry == {"command": "npx", "args": BRIDGE_ARGS}
    else:
        assert entry == expect.fields
    assert "inputs" not in doc


@pytest.mark.parametrize("client_id", list(EXPECTED))
def test_snippet_with_token(client_id: str) -> None:
    expect = EXPECTED[client_id]
    shown = snippet(client_id, url=PUBLIC, token=TOKEN)
    if expect.token == "flag":
        words = shlex.split(shown.text)
        assert tuple(words[: len(expect.command)]) == expect.command
        assert words[len(expect.command) :] == ["--header", f"Authorization: Bearer {TOKEN}"]
        return
    if expect.token == "link":
        assert shown.text == URL
        assert f"Authorization: Bearer {TOKEN}" in shown.instructions
        return
    doc = _parse(shown.kind, shown.text)
    entry = doc[expect.key]["engram"]
    if expect.token == "bridge":
        assert shown.kind == "json"
        assert shown.path == expect.path
        assert entry == {
            "command": "npx",
            "args": [*BRIDGE_ARGS, *BRIDGE_TOKEN_ARGS],
            "env": {"ENGRAM_AUTH": f"Bearer {TOKEN}"},
        }
        assert all(" " not in arg for arg in entry["args"]), "a space inside an argument breaks some clients"
    elif expect.token == "headers":
        assert entry == {**(expect.fields or {}), "headers": {"Authorization": f"Bearer {TOKEN}"}}
    elif expect.token == "input":
        assert entry == {**(expect.fields or {}), "headers": {"Authorization": "Bearer ${input:engram-token}"}}
        assert doc["inputs"] == [
            {
                "type": "promptString",
                "id": "engram-token",
                "description": "Engram personal access token",
                "password": True,
            }
        ]
        assert TOKEN not in shown.text
        assert TOKEN in shown.instructions
    elif expect.token == "env":
        assert entry == {**(expect.fields or {}), "bearer_token_env_var": "ENGRAM_TOKEN"}
        assert TOKEN not in shown.text, "Codex refuses inline tokens"
        assert f"export ENGRAM_TOKEN={TOKEN}" in shown.instructions
    else:
        pytest.fail(f"unexpected token style {expect.token}")


def test_windows_runs_the_bridge_through_cmd() -> None:
    shown = snippet("witsy", url=PUBLIC, token=TOKEN, platform="win32")
    entry = json.loads(shown.text)["mcpServers"]["engram"]
    assert entry["command"] == "cmd"
    assert entry["args"] == ["/c", "npx", *BRIDGE_ARGS, *BRIDGE_TOKEN_ARGS]
    assert shown.path == "~/AppData/Roaming/Witsy/settings.json"


def test_platform_paths() -> None:
    vscode = get("vscode").file
    assert vscode is not None
    assert vscode.path("darwin") == "Library/Application Support/Code/User/mcp.json"
    assert vscode.path("win32") == "AppData/Roaming/Code/User/mcp.json"
    assert snippet("cursor", url=PUBLIC, platform="darwin").path == "~/.cursor/mcp.json"


@pytest.mark.parametrize(
    ("given", "endpoint"),
    [
        ("https://engram.example.com", URL),
        ("https://engram.example.com/", URL),
        ("https://engram.example.com/mcp", URL),
        ("https://example.com/engram", "https://example.com/engram/mcp"),
    ],
)
def test_the_url_is_the_mcp_endpoint(given: str, endpoint: str) -> None:
    assert mcp_url(given) == endpoint
    assert json.loads(snippet("cursor", url=given).text)["mcpServers"]["engram"]["url"] == endpoint


def test_the_bridge_allows_plain_http_only_where_it_must() -> None:
    remote = config_entry(get("witsy"), url="http://engram.lan:8765").value
    assert remote["args"] == ["-y", "mcp-remote@latest", "http://engram.lan:8765/mcp", "--allow-http"]
    local = config_entry(get("witsy"), url="http://127.0.0.1:8765").value
    assert "--allow-http" not in local["args"]


def test_claude_without_a_token_is_a_connector_and_with_one_the_desktop_bridge() -> None:
    connector = snippet("claude", url=PUBLIC)
    assert connector.kind == "link"
    assert "Add custom connector" in connector.instructions
    bridge = snippet("claude", url=PUBLIC, token=TOKEN)
    assert bridge.kind == "json"
    assert "claude_desktop_config.json" in (bridge.path or "")
    assert get("claude").token is TokenStyle.NONE


def test_unknown_client() -> None:
    with pytest.raises(UnknownClient, match=r"unknown client 'nope'; choose one of: claude, claude-code, cursor"):
        snippet("nope", url=PUBLIC)
