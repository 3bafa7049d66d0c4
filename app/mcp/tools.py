"""The memory tools. Names and arguments follow OpenMemory so prompts written for it keep working.

Every tool runs its database work in one bound session (row-level security as the caller),
through MemoryService, after registering the calling client as an app. Failures a model can act
on come back as `isError` results whose text says what to do next.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import structlog
from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from app.auth.principal import Principal
from app.auth.scopes import ALL_SCOPES, DELETE, READ, WRITE, expand
from app.db.session import Identity, bound_session
from app.embeddings.base import EmbeddingError, EmbeddingUnavailable
from app.mcp.context import current_call
from app.mcp.schemas import (
    AddOutput,
    DeleteOutput,
    ListOutput,
    Memory,
    SearchOutput,
    add_view,
    delete_view,
    list_view,
    memory_view,
    search_view,
)
from app.memories.schemas import Filters
from app.memories.service import MemoryContext, MemoryService
from app.problems import ProblemError
from app.users.service import touch

log = structlog.get_logger("engram.mcp")

# The scope each tool needs; a broader scope implies the narrower ones (app/auth/scopes.py).
TOOL_SCOPES: dict[str, str] = {
    "add_memories": WRITE,
    "search_memory": READ,
    "list_memories": READ,
    "get_memory": READ,
    "update_memory": WRITE,
    "delete_memories": DELETE,
    "delete_all_memories": DELETE,
}


def visible(tool: str, principal: Principal) -> bool:
    """Whether tools/list shows `tool` to this token: a function of the token alone, never the connection.

    A tool the token's scopes allow is shown. So is every tool to a token Engram's own authorization
    server issued: its client can step up through the 403 challenge (ask the user to consent to more
    scope), which only happens if the model can see the tool to call it. Personal access tokens and
    trusted issuers' tokens have fixed scopes, so what they can never call stays hidden.
    """
    return principal.kind == "engram" or principal.has(TOOL_SCOPES[tool])


def scopes_for(tool: str) -> list[str]:
    """Every scope a call of `tool` needs, narrowest first: what a 403 challenge names."""
    needed = expand([TOOL_SCOPES[tool]])
    return [s for s in ALL_SCOPES if s in needed]


TagList = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=64)]] | None,
    Field(max_length=32, description="Short lowercase labels, e.g. ['food', 'work']."),
]
Since = Annotated[
    datetime | None,
    Field(description="Only memories created at or after this ISO 8601 time, e.g. 2026-05-01T00:00:00Z."),
]


def _since(value: datetime | None) -> datetime | None:
    # A time without a zone is read as UTC, as the model most likely meant.
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _error(message: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=message)], is_error=True)


def _result(output: BaseModel) -> CallToolResult:
    structured = output.model_dump(mode="json")
    # The same content as text, for clients that predate structuredContent.
    text = json.dumps(structured, ensure_ascii=False, separators=(",", ":"))
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=structured)


async def _run(tool: str, work: Callable[[MemoryService], Awaitable[BaseModel]]) -> CallToolResult:
    started = time.perf_counter()
    result = await _call(tool, work)
    # Which tool, for whom, how it went: never the arguments or the memories (they are the user's).
    call = current_call.get()
    log.info(
        "mcp tool",
        tool=tool,
        client_id=call.principal.client_id if call else None,
        request_id=call.request_id if call else None,
        is_error=bool(result.is_error),
        ms=round((time.perf_counter() - started) * 1000, 1),
    )
    return result


async def _call(tool: str, work: Callable[[MemoryService], Awaitable[BaseModel]]) -> CallToolResult:
    call = current_call.get()
    if call is None:  # only reachable if the endpoint were served without its wrapper
        return _error("This request is not authenticated; reconnect to Engram with a valid token.")
    principal, services = call.principal, call.services
    needed = TOOL_SCOPES[tool]
    if not principal.has(needed):
        return _error(
            f"This connection's token lacks the {needed} scope that {tool} needs. Ask the user to reconnect "
            f"Engram and grant {needed}."
        )
    identity = Identity(principal.email, principal.client_id, call.request_id)
    try:
        async with bound_session(services.sessions, identity, ef_search=services.settings.hnsw_ef_search) as session:
            caller = await touch(session, principal)
            if caller.app_paused:
                return _error(
                    f"The app {caller.app_name!r} is paused in Engram: it can neither read nor write memories. "
                    "Tell the user; they can resume it on Engram's apps page."
                )
            ctx = MemoryContext(
                session=session,
                caller=caller,
                settings=services.settings,
                embedder=services.embedder,
                identity=identity,
                sessions=services.sessions,
                principal_scopes=principal.scopes,
            )
            output = await work(MemoryService(ctx))
    except ProblemError as exc:
        log.info("mcp tool refused", tool=tool, status=exc.status, problem=exc.slug)
        return _error(exc.detail)
    except EmbeddingUnavailable:
        log.warning("mcp tool failed: embedding unavailable", tool=tool)
        return _error("Engram's embedding service is busy or unreachable right now; try again in a moment.")
    except EmbeddingError as exc:
        log.error("mcp tool failed: embedding error", tool=tool, reason=str(exc))
        return _error(
            "Engram cannot compute embeddings (a configuration problem); tell the user to check the server log."
        )
    return _result(output)


# --- the tools ------------------------------------------------------------------------------


async def add_memories(
    text: Annotated[
        str,
        Field(
            min_length=1,
            description="One durable fact about the user as a self-contained sentence, e.g. "
            "'Prefers dark roast coffee'. Several facts: one call each.",
        ),
    ],
    infer: Annotated[
        bool,
        Field(description="Accepted for OpenMemory compatibility and ignored: the text is stored as given."),
    ] = True,
    tags: TagList = None,
) -> Annotated[CallToolResult, AddOutput]:
    async def work(service: MemoryService) -> BaseModel:
        return add_view(await service.add(text, tags=tags or ()))

    return await _run("add_memories", work)


async def search_memory(
    query: Annotated[
        str,
        Field(min_length=1, max_length=4000, description="What to look for in plain words, e.g. 'coffee preferences'."),
    ],
    limit: Annotated[int, Field(ge=1, le=100, description="Most results to return.")] = 10,
    tags: TagList = None,
    since: Since = None,
) -> Annotated[CallToolResult, SearchOutput]:
    async def work(service: MemoryService) -> BaseModel:
        filters = Filters(tags=tags, created_after=_since(since))
        return search_view(await service.search(query, limit=limit, filters=filters))

    return await _run("search_memory", work)


async def list_memories(
    tags: TagList = None,
    state: Annotated[
        Literal["active", "paused", "archived"] | None,
        Field(description="Only memories in this state; default: active and paused."),
    ] = None,
    since: Since = None,
    limit: Annotated[int, Field(ge=1, le=200, description="Page size.")] = 50,
    cursor: Annotated[str | None, Field(description="next_cursor from the previous page.")] = None,
) -> Annotated[CallToolResult, ListOutput]:
    async def work(service: MemoryService) -> BaseModel:
        filters = Filters(tags=tags, states=[state] if state else None, created_after=_since(since))
        return list_view(await service.list_memories(filters=filters, limit=limit, cursor=cursor))

    return await _run("list_memories", work)


async def get_memory(
    id: Annotated[uuid.UUID, Field(description="The memory's id.")],
) -> Annotated[CallToolResult, Memory]:
    async def work(service: MemoryService) -> BaseModel:
        return memory_view(await service.get(id))

    return await _run("get_memory", work)


async def update_memory(
    id: Annotated[uuid.UUID, Field(description="The id of the memory to change.")],
    text: Annotated[str, Field(min_length=1, description="The corrected fact, as a self-contained sentence.")],
    tags: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=64)]] | None,
        Field(max_length=32, description="New tags replacing the old ones; omit to keep them."),
    ] = None,
) -> Annotated[CallToolResult, Memory]:
    async def work(service: MemoryService) -> BaseModel:
        return memory_view(await service.update(id, content=text, tags=tags))

    return await _run("update_memory", work)


async def delete_memories(
    memory_ids: Annotated[
        list[uuid.UUID],
        Field(min_length=1, max_length=1000, description="Ids of the memories to delete."),
    ],
) -> Annotated[CallToolResult, DeleteOutput]:
    async def work(service: MemoryService) -> BaseModel:
        return delete_view(await service.delete_many(memory_ids))

    return await _run("delete_memories", work)


async def delete_all_memories() -> Annotated[CallToolResult, DeleteOutput]:
    async def work(service: MemoryService) -> BaseModel:
        return delete_view(await service.delete_all())

    return await _run("delete_all_memories", work)


_READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)

TOOLS: list[tuple[Callable[..., Any], str, str, ToolAnnotations]] = [
    (
        add_memories,
        "Remember a fact about the user",
        "Store a durable fact about the user so any assistant they use can recall it later. Call it whenever "
        "the user tells you something about themselves that will still matter in future conversations "
        "(preferences, people, projects, plans, decisions, standing instructions) or asks you to remember "
        "something. Write one self-contained sentence per fact. Never store secrets (passwords, API keys, "
        "tokens, card numbers) or passing chit-chat. If the fact corrects one already stored, use "
        "update_memory on that memory instead. Storing the same text twice is harmless: the existing memory "
        "is returned.",
        ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False),
    ),
    (
        search_memory,
        "Search the user's memories",
        "Search the user's memories by meaning and keywords. Call it before answering anything that may "
        "depend on what you know about the user (their preferences, people, projects, past decisions), and "
        "before add_memories to find a memory to update rather than duplicate. Best matches come first; an "
        "empty list means nothing relevant is stored.",
        _READ_ONLY,
    ),
    (
        list_memories,
        "List the user's memories",
        "List the user's memories, newest first, one page at a time. Use it when the user asks what you "
        "remember about them or to review memories by tag or state; use search_memory to find something "
        "specific. Pass next_cursor back as cursor for the next page.",
        _READ_ONLY,
    ),
    (
        get_memory,
        "Get one memory",
        "Get one memory by its id (from search_memory or list_memories).",
        _READ_ONLY,
    ),
    (
        update_memory,
        "Correct a memory",
        "Replace the text (and optionally the tags) of one memory when a fact about the user has changed or "
        "was wrong. Prefer this to adding a second, conflicting memory. Find the id with search_memory.",
        ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False),
    ),
    (
        delete_memories,
        "Forget memories",
        "Permanently delete the given memories, e.g. when the user asks you to forget something. Find the ids "
        "with search_memory or list_memories. This cannot be undone.",
        ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False),
    ),
    (
        delete_all_memories,
        "Forget everything",
        "Permanently delete ALL of the user's memories, from every app. Only call it when the user explicitly "
        "asks to erase everything you remember about them. This cannot be undone.",
        ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False),
    ),
]


def register(server: MCPServer[Any]) -> None:
    for fn, title, description, hints in TOOLS:
        server.add_tool(fn, title=title, description=description, annotations=hints)
