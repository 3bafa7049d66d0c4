"""REST routes for memories: thin wrappers that hand a bound context to the service."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime
from typing import Annotated

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.params import Parameter
from litestar.response import Stream
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED
from sqlalchemy import text

from app.auth.scopes import DELETE, READ, WRITE
from app.db.session import bound_session
from app.memories.schemas import (
    AccessEntry,
    AddResult,
    BulkDelete,
    CategoryCount,
    DeleteResult,
    Filters,
    HistoryEntry,
    ImportReport,
    MemoryCreate,
    MemoryOut,
    MemoryUpdate,
    Page,
    SearchRequest,
    SearchResult,
    Sort,
    State,
    StateChange,
    Stats,
)
from app.memories.service import MemoryContext, MemoryService
from app.problems import bad_request

MAX_IMPORT_BYTES = 50 * 1024 * 1024


def _unset_to_none(value: object) -> object:
    return None if value is msgspec.UNSET else value


class MemoryController(Controller):
    path = "/api/v1/memories"
    tags = ["memories"]

    @post("/", opt={"scope": WRITE}, status_code=HTTP_201_CREATED, summary="Add a memory")
    async def create(self, ctx: MemoryContext, data: MemoryCreate) -> Response[AddResult]:
        """Stores a memory. The same text (up to case and whitespace) returns the existing memory with
        200; near duplicates are reported, or merged when asked."""
        result = await MemoryService(ctx).add(
            data.text, metadata=data.metadata, tags=data.tags, merge_near_duplicate=data.merge_near_duplicate
        )
        return Response(result, status_code=HTTP_201_CREATED if result.created else HTTP_200_OK)

    @post("/search", opt={"scope": READ}, status_code=HTTP_200_OK, summary="Search memories")
    async def search(self, ctx: MemoryContext, data: SearchRequest) -> SearchResult:
        """Hybrid (keyword + semantic, fused by reciprocal rank), semantic or keyword search."""
        return await MemoryService(ctx).search(data.query, limit=data.limit, mode=data.mode, filters=data.filters())

    @get("/", opt={"scope": READ}, summary="List memories")
    async def list_memories(
        self,
        ctx: MemoryContext,
        states: Annotated[
            list[State] | None, Parameter(query="state", description="Default: active and paused")
        ] = None,
        tag: Annotated[list[str] | None, Parameter(description="Any of these tags")] = None,
        app_id: uuid.UUID | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        q: Annotated[str | None, Parameter(description="Text the memory contains", max_length=200)] = None,
        sort: Sort = "created_desc",
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
        cursor: str | None = None,
    ) -> Page:
        filters = Filters(
            tags=tag, app_id=app_id, states=states, created_after=created_after, created_before=created_before
        )
        return await MemoryService(ctx).list_memories(
            filters=filters, text_filter=q, sort=sort, limit=limit, cursor=cursor
        )

    @get("/{memory_id:uuid}", opt={"scope": READ}, summary="Get a memory")
    async def get_memory(self, ctx: MemoryContext, memory_id: uuid.UUID) -> MemoryOut:
        return await MemoryService(ctx).get(memory_id)

    @patch("/{memory_id:uuid}", opt={"scope": WRITE}, summary="Update a memory (re-embeds changed text)")
    async def update(self, ctx: MemoryContext, memory_id: uuid.UUID, data: MemoryUpdate) -> MemoryOut:
        return await MemoryService(ctx).update(
            memory_id,
            content=_unset_to_none(data.text),  # type: ignore[arg-type]
            metadata=_unset_to_none(data.metadata),  # type: ignore[arg-type]
            tags=_unset_to_none(data.tags),  # type: ignore[arg-type]
        )

    @post("/{memory_id:uuid}/state", opt={"scope": WRITE}, status_code=HTTP_200_OK, summary="Change state")
    async def change_state(self, ctx: MemoryContext, memory_id: uuid.UUID, data: StateChange) -> MemoryOut:
        return await MemoryService(ctx).set_state(memory_id, data.state)

    @delete("/{memory_id:uuid}", opt={"scope": DELETE}, summary="Delete a memory (content and embedding)")
    async def delete_memory(self, ctx: MemoryContext, memory_id: uuid.UUID) -> None:
        await MemoryService(ctx).delete(memory_id)

    @post("/delete", opt={"scope": DELETE}, status_code=HTTP_200_OK, summary="Delete several memories")
    async def delete_many(self, ctx: MemoryContext, data: BulkDelete) -> DeleteResult:
        return await MemoryService(ctx).delete_many(data.ids)

    @delete("/", opt={"scope": DELETE}, status_code=HTTP_200_OK, summary="Delete all of your memories")
    async def delete_all(
        self, ctx: MemoryContext, confirm: Annotated[str, Parameter(description="Must be 'all'")] = ""
    ) -> DeleteResult:
        if confirm != "all":
            raise bad_request("Deleting every memory needs ?confirm=all.")
        return await MemoryService(ctx).delete_all()

    @get("/{memory_id:uuid}/history", opt={"scope": READ}, summary="Changes to a memory")
    async def history(self, ctx: MemoryContext, memory_id: uuid.UUID) -> list[HistoryEntry]:
        return await MemoryService(ctx).history(memory_id)

    @get("/{memory_id:uuid}/access", opt={"scope": READ}, summary="Which apps read a memory")
    async def access(self, ctx: MemoryContext, memory_id: uuid.UUID) -> list[AccessEntry]:
        return await MemoryService(ctx).access_log(memory_id)


class OverviewController(Controller):
    path = "/api/v1"
    tags = ["overview"]

    @get("/categories", opt={"scope": READ}, summary="Tags with memory counts")
    async def categories(self, ctx: MemoryContext) -> list[CategoryCount]:
        return await MemoryService(ctx).categories()

    @get("/stats", opt={"scope": READ}, summary="Counts and 30-day activity")
    async def stats(self, ctx: MemoryContext) -> Stats:
        return await MemoryService(ctx).stats()

    @get("/export", opt={"scope": READ}, summary="Export all memories as JSON lines")
    async def export(self, ctx: MemoryContext) -> Stream:
        await ctx.session.execute(
            text("SELECT engram_audit_event('EXPORT', :email, NULL, CAST(:detail AS jsonb))"),
            {"email": ctx.caller.email, "detail": '{"format": "jsonl"}'},
        )

        # The response streams after the request's session has been committed and closed, so the
        # stream reads through a session of its own, bound to the same identity.
        async def lines() -> AsyncIterator[bytes]:
            async with bound_session(ctx.sessions, ctx.identity) as session:
                async for line in MemoryService(replace(ctx, session=session)).export():
                    yield line

        return Stream(
            lines(),
            media_type="application/x-ndjson",
            headers={"Content-Disposition": 'attachment; filename="engram-memories.jsonl"'},
        )

    @post(
        "/import",
        opt={"scope": WRITE},
        status_code=HTTP_200_OK,
        summary="Import JSON lines (re-embeds every memory)",
        request_max_body_size=MAX_IMPORT_BYTES,
    )
    async def import_memories(self, ctx: MemoryContext, request: Request) -> ImportReport:
        body = await request.body()
        return await MemoryService(ctx).import_lines(body.splitlines())
