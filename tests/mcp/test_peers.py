"""Real clients against the live server: mcp-remote 0.15.1 (the stdio bridge desktop clients use) and
the MCP Inspector 2.12.0 CLI, each with a bearer header and through full OAuth with a scripted browser.
Remember in one client, recall in the other."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from mcp import Client
from mcp.client.client import ConnectMode
from mcp.client.stdio import StdioServerParameters
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.oauth.login import add_local_account
from app.oauth.passwords import hash_password
from tests.conftest import LiveServer, free_port, make_token
from tests.mcp.conftest import READ, bearer, uniq
from tests.mcp.external import REPO, browser_env, isolated_env, node, node_tool, run

PASSWORD = "correct horse battery staple"


def bridge(mcp_url: str, token: str, home: Path) -> StdioServerParameters:
    """How a stdio-only client is configured: `npx mcp-remote <url> --header Authorization:Bearer …`."""
    return StdioServerParameters(
        command=str(node()),
        args=[
            str(node_tool("mcp-remote/dist/proxy.js")),
            mcp_url,
            "--header",
            f"Authorization:Bearer {token}",  # no space after the colon: how clients are told to write it
            "--transport",
            "http-only",
        ],
        env=isolated_env(home),
    )


def oauth_bridge(mcp_url: str, env: dict[str, str]) -> StdioServerParameters:
    """`npx mcp-remote <url>` with no token: it signs in through the browser on first use."""
    args = [str(node_tool("mcp-remote/dist/proxy.js")), mcp_url, "--transport", "http-only"]
    return StdioServerParameters(command=str(node()), args=args, env=env, cwd=REPO)


async def inspector_cli(
    mcp_url: str, env: dict[str, str], *args: str, exit_code: int = 0, seconds: float = 90
) -> tuple[dict[str, Any], str]:
    """`npx @modelcontextprotocol/inspector --cli <url> --transport http …`: its JSON result and its stderr."""
    launcher = node_tool("@modelcontextprotocol/inspector/clients/launcher/build/index.js")
    completed = await run([node(), launcher, "--cli", mcp_url, "--transport", "http", *args], env, seconds)
    assert completed.returncode == exit_code, completed.stderr + completed.stdout
    output: dict[str, Any] = json.loads(completed.stdout)
    return output, completed.stderr


async def inspector(mcp_url: str, token: str, home: Path, *args: str, exit_code: int = 0) -> dict[str, Any]:
    header = ("--header", f"Authorization: Bearer {token}")
    output, _ = await inspector_cli(mcp_url, isolated_env(home), *header, *args, exit_code=exit_code)
    return output


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_remember_through_mcp_remote_recall_through_the_inspector(
    mode: ConnectMode, mcp_url: str, tmp_path: Path, sessions: async_sessionmaker[AsyncSession]
) -> None:
    email = uniq("peers")
    token = await make_token(sessions, email, name="desktop bridge")
    async with Client(bridge(mcp_url, token, tmp_path), mode=mode) as client:
        assert {t.name for t in (await client.list_tools()).tools} >= {"add_memories", "search_memory"}
        added = await client.call_tool("add_memories", {"text": "I prefer dark roast coffee"})
        assert not added.is_error
        assert added.structured_content is not None
        assert added.structured_content["memory"]["app"] == "desktop bridge"

    other = await make_token(sessions, email, [READ], name="inspector")
    listed = await inspector(mcp_url, other, tmp_path, "--method", "tools/list")
    assert {t["name"] for t in listed["tools"]} == {"search_memory", "list_memories", "get_memory"}
    found = await inspector(
        mcp_url, other, tmp_path, "--method", "tools/call", "--tool-name", "search_memory",
        "--tool-arg", "query=what coffee do I like?",
    )  # fmt: skip
    assert found["isError"] is False
    assert found["structuredContent"]["results"][0]["content"] == "I prefer dark roast coffee"
    assert json.loads(found["content"][0]["text"]) == found["structuredContent"]


async def test_the_inspector_calls_every_kind_of_tool(
    mcp_url: str, tmp_path: Path, sessions: async_sessionmaker[AsyncSession]
) -> None:
    token = await make_token(sessions, uniq("inspector"), name="inspector")
    added = await inspector(
        mcp_url, token, tmp_path, "--method", "tools/call", "--tool-name", "add_memories",
        "--tool-arg", "text=My sister lives in Lisbon",
    )  # fmt: skip
    memory_id = added["structuredContent"]["memory"]["id"]
    got = await inspector(
        mcp_url, token, tmp_path, "--method", "tools/call", "--tool-name", "get_memory", "--tool-arg", f"id={memory_id}"
    )
    assert got["structuredContent"]["content"] == "My sister lives in Lisbon"
    # The Inspector exits 5 when a tool answers isError.
    refused = await inspector(
        mcp_url, token, tmp_path, "--method", "tools/call", "--tool-name", "get_memory", "--tool-arg", "id=nope",
        exit_code=5,
    )  # fmt: skip
    assert refused["isError"] is True
    assert "valid UUID" in refused["content"][0]["text"]
    emptied = await inspector(mcp_url, token, tmp_path, "--method", "tools/call", "--tool-name", "delete_all_memories")
    assert emptied["structuredContent"] == {"deleted": 1, "not_found": []}


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_mcp_remote_signs_in_with_oauth_and_steps_up(
    mode: ConnectMode, mcp_url: str, tmp_path: Path, sessions: async_sessionmaker[AsyncSession]
) -> None:
    email = uniq("bridge-oauth")
    await add_local_account(sessions, email, await hash_password(PASSWORD))
    async with Client(oauth_bridge(mcp_url, browser_env(tmp_path, email, PASSWORD)), mode=mode) as client:
        added = await client.call_tool("add_memories", {"text": "Signed in through mcp-remote"})
        assert added.structured_content is not None
        assert added.structured_content["memory"]["app"] == "MCP CLI Proxy"  # mcp-remote's registered name
        # Beyond the first grant (read + write): mcp-remote follows the 403 challenge and signs in again.
        emptied = await client.call_tool("delete_all_memories", {})
        assert emptied.structured_content == {"deleted": 1, "not_found": []}


async def test_the_inspector_signs_in_with_oauth_then_reuses_its_grant(
    live_server: LiveServer,
    mcp_url: str,
    tmp_path: Path,
    sessions: async_sessionmaker[AsyncSession],
    api: httpx.AsyncClient,
) -> None:
    email = uniq("inspector-oauth")
    await add_local_account(sessions, email, await hash_password(PASSWORD))
    env = {
        **browser_env(tmp_path, email, PASSWORD),
        "MCP_AUTO_OPEN_ENABLED": "true",  # open BROWSER without a TTY (the CLI refuses interactive OAuth otherwise)
        "MCP_INSPECTOR_SECRET_STORE": "file",  # tokens in $HOME/.mcp-inspector, so the second run finds them
    }
    callback = f"http://127.0.0.1:{free_port()}/oauth/callback"
    added, signing_in = await inspector_cli(
        mcp_url, env, "--callback-url", callback, "--method", "tools/call", "--tool-name", "add_memories",
        "--tool-arg", "text=I keep my passport in the blue folder", seconds=40,
    )  # fmt: skip
    # It discovered Engram, registered, and sent the (scripted) browser to Engram's authorization endpoint.
    assert f"Please navigate to: {live_server.url}/oauth/authorize?" in signing_in
    assert "redirect_uri=" + quote(callback, safe="") in signing_in
    assert "Authorization complete." in signing_in
    assert added["isError"] is False
    memory = added["structuredContent"]["memory"]
    assert memory["app"] == "MCP Inspector"  # the Inspector's registered client name

    # A second run needs no browser: --stored-auth-only fails rather than sign in again.
    found, again = await inspector_cli(
        mcp_url, env, "--callback-url", callback, "--stored-auth-only", "--method", "tools/call",
        "--tool-name", "search_memory", "--tool-arg", "query=where is my passport?", seconds=30,
    )  # fmt: skip
    assert "navigate to" not in again
    assert found["structuredContent"]["results"][0]["id"] == memory["id"]

    # The memory is the signed-in person's, and nobody else's.
    own = await api.get(f"/api/v1/memories/{memory['id']}", headers=bearer(await make_token(sessions, email, [READ])))
    assert own.status_code == 200, own.text
    assert own.json()["content"] == "I keep my passport in the blue folder"
    other = bearer(await make_token(sessions, uniq("stranger"), [READ]))
    assert (await api.get(f"/api/v1/memories/{memory['id']}", headers=other)).status_code == 404
