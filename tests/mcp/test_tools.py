"""Every memory tool through the MCP Python SDK client, in both protocol eras, as alice and as bob."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from mcp import Client
from mcp.client.client import ConnectMode
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import LiveServer, make_token
from tests.mcp.conftest import DELETE, READ, WRITE, Minter, bearer, connect, uniq

MODES: list[ConnectMode] = ["legacy", "auto"]
TOOL_NAMES = {
    "add_memories",
    "search_memory",
    "list_memories",
    "get_memory",
    "update_memory",
    "delete_memories",
    "delete_all_memories",
}


async def call(client: Client, tool: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    """A successful call's structuredContent, checked against the text copy older clients read."""
    result = await client.call_tool(tool, arguments or {})
    assert not result.is_error, result.content
    assert result.structured_content is not None
    assert json.loads(result.content[0].text) == result.structured_content  # type: ignore[union-attr]
    return result.structured_content


async def fail(client: Client, tool: str, arguments: dict[str, Any] | None = None) -> str:
    """A call that must come back as an isError result; its message."""
    result = await client.call_tool(tool, arguments or {})
    assert result.is_error, result.structured_content
    assert result.structured_content is None
    return result.content[0].text  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", MODES)
async def test_every_tool_as_alice_and_bob(
    mode: ConnectMode, mcp_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    alice = await make_token(sessions, uniq("alice"), name="alice laptop")
    bob = await make_token(sessions, uniq("bob"), name="bob phone")
    async with connect(mcp_url, alice, mode) as a, connect(mcp_url, bob, mode) as b:
        assert a.protocol_version == ("2025-11-25" if mode == "legacy" else "2026-07-28")
        assert "search_memory" in (a.instructions or "")
        listed = (await a.list_tools()).tools
        assert {t.name for t in listed} == TOOL_NAMES
        for tool in listed:
            assert tool.description
            assert tool.output_schema
            assert tool.input_schema["type"] == "object"
            assert tool.annotations is not None
            assert tool.annotations.read_only_hint is not None

        coffee = await call(a, "add_memories", {"text": "I prefer dark roast coffee", "tags": ["Coffee"]})
        assert coffee["created"] is True
        memory = coffee["memory"]
        assert (memory["tags"], memory["app"], memory["state"]) == (["coffee"], "alice laptop", "active")
        again = await call(a, "add_memories", {"text": "i prefer  dark roast coffee", "infer": False})
        assert (again["created"], again["deduplicated"], again["memory"]["id"]) == (False, "exact", memory["id"])
        cat = (await call(a, "add_memories", {"text": "My cat is called Miso"}))["memory"]
        tea = (await call(b, "add_memories", {"text": "I prefer green tea"}))["memory"]

        found = await call(a, "search_memory", {"query": "what coffee do I like?"})
        assert found["results"][0]["id"] == memory["id"]
        assert found["results"][0]["similarity"] > 0.5
        assert tea["id"] not in {hit["id"] for hit in found["results"]}
        bobs = await call(b, "search_memory", {"query": "coffee or tea", "limit": 5})
        assert {hit["id"] for hit in bobs["results"]} == {tea["id"]}
        tagged = await call(a, "search_memory", {"query": "pets", "tags": ["coffee"]})
        assert [hit["id"] for hit in tagged["results"]] == [memory["id"]]
        future = await call(a, "search_memory", {"query": "coffee", "since": "2999-01-01T00:00:00Z"})
        assert future["results"] == []

        page = await call(a, "list_memories", {"limit": 1})
        assert [m["id"] for m in page["memories"]] == [cat["id"]]
        assert page["next_cursor"]
        rest = await call(a, "list_memories", {"limit": 1, "cursor": page["next_cursor"]})
        assert [m["id"] for m in rest["memories"]] == [memory["id"]]
        assert rest["next_cursor"] is None
        assert [m["id"] for m in (await call(a, "list_memories", {"tags": ["coffee"]}))["memories"]] == [memory["id"]]
        assert [m["id"] for m in (await call(b, "list_memories"))["memories"]] == [tea["id"]]

        assert (await call(a, "get_memory", {"id": memory["id"]}))["content"] == "I prefer dark roast coffee"
        assert "No memory with that id exists for you" in await fail(b, "get_memory", {"id": memory["id"]})
        assert "No memory with that id" in await fail(b, "update_memory", {"id": memory["id"], "text": "Hacked"})
        updated = await call(a, "update_memory", {"id": memory["id"], "text": "I switched to decaf coffee"})
        assert updated["content"] == "I switched to decaf coffee"
        assert updated["tags"] == ["coffee"]
        decaf = await call(a, "search_memory", {"query": "decaf"})
        assert decaf["results"][0]["id"] == memory["id"]

        # Bob cannot delete alice's memory: it is simply not found for him.
        assert await call(b, "delete_memories", {"memory_ids": [memory["id"]]}) == {
            "deleted": 0,
            "not_found": [memory["id"]],
        }
        assert await call(a, "delete_memories", {"memory_ids": [memory["id"]]}) == {"deleted": 1, "not_found": []}
        assert await call(b, "delete_all_memories") == {"deleted": 1, "not_found": []}
        assert [m["id"] for m in (await call(a, "list_memories"))["memories"]] == [cat["id"]]
        assert await call(a, "delete_all_memories") == {"deleted": 1, "not_found": []}
        assert (await call(a, "list_memories"))["memories"] == []


@pytest.mark.parametrize("mode", MODES)
async def test_errors_are_results_a_model_can_act_on(
    mode: ConnectMode, mcp_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    token = await make_token(sessions, uniq("errors"))
    async with connect(mcp_url, token, mode) as client:
        assert "valid UUID" in await fail(client, "get_memory", {"id": "not-an-id"})
        assert "text" in await fail(client, "add_memories", {})
        assert "A memory needs some text" in await fail(client, "add_memories", {"text": "   "})
        assert "cursor is not one this server issued" in await fail(client, "list_memories", {"cursor": "bogus"})
        assert "Unknown tool" in await fail(client, "no_such_tool")


async def test_each_memory_records_the_client_as_its_app(mcp_url: str, mint: Minter) -> None:
    email = uniq("apps")
    claude = await mint(
        email, [READ, WRITE], client_id="https://claude.ai/oauth/claude-code", client_name="Claude Code"
    )
    cursor = await mint(email, [READ, WRITE], client_id="cursor-dcr-1", client_name="Cursor")
    async with connect(mcp_url, claude, "auto") as a, connect(mcp_url, cursor, "legacy") as b:
        first = await call(a, "add_memories", {"text": "Works at the harbour museum"})
        second = await call(b, "add_memories", {"text": "Runs on Tuesday evenings"})
        assert (first["memory"]["app"], second["memory"]["app"]) == ("Claude Code", "Cursor")
        # One user: each client sees the other's memories, labelled with where they came from.
        listed = await call(a, "list_memories")
        assert [m["app"] for m in listed["memories"]] == ["Cursor", "Claude Code"]


async def test_a_paused_app_gets_errors_not_data(
    mcp_url: str, live_server: LiveServer, sessions: async_sessionmaker[AsyncSession]
) -> None:
    email = uniq("paused")
    laptop = await make_token(sessions, email, name="laptop")
    phone = await make_token(sessions, email, name="phone")
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as api:
        app_id = (await api.get("/api/v1/me", headers=bearer(laptop))).json()["app_id"]
        await api.post("/api/v1/memories", json={"text": "Allergic to peanuts"}, headers=bearer(phone))
        paused = await api.patch(f"/api/v1/apps/{app_id}", json={"paused": True}, headers=bearer(phone))
        assert paused.json()["paused"] is True
        async with connect(mcp_url, laptop, "auto") as client:
            assert {t.name for t in (await client.list_tools()).tools} == TOOL_NAMES
            for tool, arguments in [
                ("search_memory", {"query": "allergies"}),
                ("list_memories", {}),
                ("add_memories", {"text": "Likes hiking"}),
                ("delete_all_memories", {}),
            ]:
                assert "'laptop' is paused" in await fail(client, tool, arguments)
            await api.patch(f"/api/v1/apps/{app_id}", json={"paused": False}, headers=bearer(phone))
            hits = await call(client, "search_memory", {"query": "allergies"})
            assert hits["results"][0]["content"] == "Allergic to peanuts"


async def test_tools_list_follows_the_token(
    mcp_url: str, mint: Minter, sessions: async_sessionmaker[AsyncSession]
) -> None:
    email = uniq("scopes")
    read_only = await make_token(sessions, email, [READ], name="read only")
    writer = await make_token(sessions, email, [WRITE], name="writer")
    everything = await make_token(sessions, email, [DELETE], name="everything")
    read_tools = {"search_memory", "list_memories", "get_memory"}
    expected = [
        (read_only, read_tools),
        (writer, read_tools | {"add_memories", "update_memory"}),
        (everything, TOOL_NAMES),
        # An Engram OAuth token can step up through the 403 challenge, so every tool stays visible.
        (await mint(email, [READ]), TOOL_NAMES),
    ]
    for token, names in expected:
        seen = []
        for mode in MODES:  # separate connections, both eras: the same token, the same list
            async with connect(mcp_url, token, mode) as client:
                seen.append([t.model_dump() for t in (await client.list_tools()).tools])
        assert seen[0] == seen[1]
        assert {t["name"] for t in seen[0]} == names
