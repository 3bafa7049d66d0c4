"""Memory operations for one caller. Framework-free: takes a bound session, never commits.

Row-level security decides what the caller can see; the `WHERE` clauses here only make answers
precise (a clean 404), they are never the guard.
"""

from __future__ import annotations

import base64
import hashlib
import re
import unicodedata
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import numpy as np
from sqlalchemy import delete, func, literal, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from uuid_utils.compat import uuid7

from app.db.models import App, Memory, MemoryAccess, MemoryHistory
from app.db.session import Identity
from app.embeddings import Embedder
from app.memories import search
from app.memories.schemas import (
    AccessEntry,
    AddResult,
    AppRef,
    CategoryCount,
    DailyCount,
    DeleteResult,
    ExportLine,
    Filters,
    HistoryEntry,
    ImportReport,
    MemoryOut,
    NearDuplicate,
    Page,
    SearchHit,
    SearchMode,
    SearchResult,
    Sort,
    Stats,
)
from app.problems import ProblemError, bad_request, not_found
from app.settings import Settings
from app.system.timing import phase
from app.users.service import Caller

LIST_DEFAULT_STATES = ("active", "paused")
MAX_METADATA_BYTES = 16_384
_WS = re.compile(r"\s+")


@dataclass
class MemoryContext:
    session: AsyncSession
    caller: Caller
    settings: Settings
    embedder: Embedder
    identity: Identity
    sessions: async_sessionmaker[AsyncSession]
    principal_scopes: frozenset[str] = frozenset()


def normalise(content: str) -> str:
    return _WS.sub(" ", unicodedata.normalize("NFC", content)).strip()


def content_hash(content: str) -> str:
    """Exact duplicates: the same text up to case, Unicode form and whitespace."""
    return hashlib.sha256(normalise(content).casefold().encode()).hexdigest()


def _clean_tags(tags: Iterable[str]) -> list[str]:
    return sorted({t.strip().lower() for t in tags if t.strip()})


def _check_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    if len(msgspec.json.encode(metadata)) > MAX_METADATA_BYTES:
        raise bad_request(f"metadata is larger than {MAX_METADATA_BYTES} bytes of JSON.")
    return metadata


class MemoryService:
    def __init__(self, ctx: MemoryContext) -> None:
        self.session = ctx.session
        self.caller = ctx.caller
        self.settings = ctx.settings
        self.embedder = ctx.embedder

    # --- helpers ---------------------------------------------------------------------------
    def _check_text(self, content: str) -> str:
        cleaned = content.strip()
        if not cleaned:
            raise bad_request("A memory needs some text.")
        if len(cleaned) > self.settings.max_memory_chars:
            raise bad_request(
                f"A memory may be at most {self.settings.max_memory_chars} characters; this one has "
                f"{len(cleaned)}. Split it into smaller, self-contained facts."
            )
        return cleaned

    async def _apps(self, ids: Iterable[uuid.UUID | None]) -> dict[uuid.UUID, AppRef]:
        wanted = {i for i in ids if i is not None}
        if not wanted:
            return {}
        rows = await self.session.execute(select(App.id, App.name).where(App.id.in_(wanted)))
        return {r.id: AppRef(id=r.id, name=r.name) for r in rows}

    async def _out(self, memories: list[Memory]) -> list[MemoryOut]:
        apps = await self._apps(m.app_id for m in memories)
        return [
            MemoryOut(
                id=m.id,
                content=m.content,
                metadata=m.metadata_,
                tags=list(m.tags),
                state=m.state,  # type: ignore[arg-type]
                app=apps.get(m.app_id) if m.app_id else None,
                created_at=m.created_at,
                updated_at=m.updated_at,
                archived_at=m.archived_at,
            )
            for m in memories
        ]

    async def _one_out(self, memory: Memory) -> MemoryOut:
        return (await self._out([memory]))[0]

    async def _load(self, memory_id: uuid.UUID, *, for_update: bool = False) -> Memory:
        stmt = select(Memory).where(Memory.id == memory_id)
        if for_update:
            stmt = stmt.with_for_update()
        memory = await self.session.scalar(stmt)
        if memory is None:
            raise not_found()
        return memory

    async def _by_ids(self, ids: list[uuid.UUID]) -> dict[uuid.UUID, Memory]:
        if not ids:
            return {}
        rows = await self.session.scalars(select(Memory).where(Memory.id.in_(ids)))
        return {m.id: m for m in rows}

    async def _log_access(self, ids: list[uuid.UUID], operation: str) -> None:
        if not ids:
            return
        await self.session.execute(
            text(
                "INSERT INTO memory_access_log (memory_id, owner_email, app_id, client_id, operation) "
                "SELECT unnest(CAST(:ids AS uuid[])), :email, :app_id, :client_id, :op"
            ),
            {
                "ids": ids,
                "email": self.caller.email,
                "app_id": self.caller.app_id,
                "client_id": self.caller.client_id,
                "op": operation,
            },
        )

    def _history(self, memory: Memory, event: str, **fields: Any) -> None:
        self.session.add(
            MemoryHistory(
                memory_id=memory.id,
                owner_email=self.caller.email,
                event=event,
                client_id=self.caller.client_id,
                **fields,
            )
        )

    def _exact_route(self) -> bool:
        return self.caller.memory_count <= self.settings.search_exact_max_rows

    # --- add -------------------------------------------------------------------------------
    async def add(
        self,
        content: str,
        *,
        metadata: dict[str, Any] | None = None,
        tags: Iterable[str] = (),
        merge_near_duplicate: bool | None = None,
        state: str = "active",
        created_at: datetime | None = None,
        vector: np.ndarray | None = None,
    ) -> AddResult:
        content = self._check_text(content)
        metadata = _check_metadata(metadata or {})
        digest = content_hash(content)
        existing = await self.session.scalar(select(Memory).where(Memory.content_hash == digest))
        if existing is not None:
            return AddResult(memory=await self._one_out(existing), created=False, deduplicated="exact")

        if vector is None:
            vector = (await self.embedder.embed_documents([content]))[0]
        near = await self._near_duplicates(vector)
        merge = self.settings.merge_near_duplicates if merge_near_duplicate is None else merge_near_duplicate
        if merge and near:
            merged = await self._replace_content(
                await self._load(near[0].id, for_update=True), content, digest, vector, event="merged"
            )
            return AddResult(memory=merged, created=False, deduplicated="merged", near_duplicates=near)

        memory_id = uuid7()
        values: dict[str, Any] = {
            "id": memory_id,
            "owner_email": self.caller.email,
            "app_id": self.caller.app_id,
            "content": content,
            "content_hash": digest,
            "embedding": vector,
            "metadata_": metadata,
            "tags": _clean_tags(tags),
            "state": state,
        }
        if created_at is not None:
            values["created_at"] = created_at
            values["updated_at"] = created_at
        if state == "archived":
            values["archived_at"] = created_at or datetime.now(UTC)
        inserted = await self.session.scalar(
            pg_insert(Memory)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[Memory.owner_email, Memory.content_hash])
            .returning(Memory)
        )
        if inserted is None:  # a concurrent request stored the same text first
            existing = await self.session.scalar(select(Memory).where(Memory.content_hash == digest))
            assert existing is not None
            return AddResult(memory=await self._one_out(existing), created=False, deduplicated="exact")
        self._history(inserted, "created", to_state=state, new_content=content)
        await self.session.flush()
        return AddResult(memory=await self._one_out(inserted), created=True, near_duplicates=near)

    async def _near_duplicates(self, vector: np.ndarray) -> list[NearDuplicate]:
        if self.caller.memory_count == 0:
            return []
        clauses = search.filter_clauses(None, ("active", "paused", "archived"))
        nearest = await search.nearest(self.session, vector, 3, clauses, exact=self._exact_route())
        threshold = self.settings.near_duplicate_threshold
        close = [(i, 1.0 - d) for i, d in nearest if 1.0 - d >= threshold]
        rows = await self._by_ids([i for i, _ in close])
        return [NearDuplicate(id=i, content=rows[i].content, similarity=round(s, 4)) for i, s in close if i in rows]

    # --- read ------------------------------------------------------------------------------
    async def get(self, memory_id: uuid.UUID) -> MemoryOut:
        memory = await self._load(memory_id)
        await self._log_access([memory.id], "get")
        return await self._one_out(memory)

    async def search(
        self, query: str, *, limit: int = 10, mode: SearchMode = "hybrid", filters: Filters | None = None
    ) -> SearchResult:
        query = query.strip()
        if not query:
            raise bad_request("The search query is empty.")
        vector = None
        if mode != "keyword":
            with phase("embed"):
                vector = await self.embedder.embed_query(query, cache_scope=self.caller.email)
        with phase("search"):
            rows = await search.find(
                self.session,
                mode=mode,
                query=query,
                query_vector=vector,
                limit=limit,
                filters=filters,
                exact=self._exact_route(),
                access=search.AccessRecord(self.caller.email, self.caller.app_id, self.caller.client_id),
            )
        hits = [
            SearchHit(
                memory=MemoryOut(
                    id=r.id,
                    content=r.content,
                    metadata=r.metadata,
                    tags=list(r.tags),
                    state=r.state,
                    app=AppRef(id=r.app_id, name=r.app_name) if r.app_id is not None else None,
                    created_at=r.created_at,
                    updated_at=r.updated_at,
                    archived_at=r.archived_at,
                ),
                score=round(float(r.score), 6),
                similarity=round(float(r.similarity), 6),
            )
            for r in rows
        ]
        return SearchResult(hits=hits, mode=mode)

    async def list_memories(
        self,
        *,
        filters: Filters | None = None,
        text_filter: str | None = None,
        sort: Sort = "created_desc",
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        clauses = search.filter_clauses(filters, LIST_DEFAULT_STATES)
        if text_filter:
            pattern = "%" + text_filter.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            clauses.append(Memory.content.ilike(pattern, escape="\\"))
        column = Memory.updated_at if sort == "updated_desc" else Memory.created_at
        descending = sort != "created_asc"
        if cursor:
            at, last_id = _decode_cursor(cursor)
            if descending:
                clauses.append(func.row(column, Memory.id) < func.row(literal(at), literal(last_id)))
            else:
                clauses.append(func.row(column, Memory.id) > func.row(literal(at), literal(last_id)))
        order = (column.desc(), Memory.id.desc()) if descending else (column.asc(), Memory.id.asc())
        rows = list(await self.session.scalars(select(Memory).where(*clauses).order_by(*order).limit(limit + 1)))
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = None
        if more and rows:
            last = rows[-1]
            next_cursor = _encode_cursor(last.updated_at if sort == "updated_desc" else last.created_at, last.id)
        await self._log_access([m.id for m in rows], "list")
        return Page(items=await self._out(rows), next_cursor=next_cursor)

    async def history(self, memory_id: uuid.UUID) -> list[HistoryEntry]:
        await self._load(memory_id)
        rows = await self.session.scalars(
            select(MemoryHistory).where(MemoryHistory.memory_id == memory_id).order_by(MemoryHistory.id)
        )
        return [
            HistoryEntry(
                event=h.event,
                at=h.at,
                from_state=h.from_state,
                to_state=h.to_state,
                old_content=h.old_content,
                new_content=h.new_content,
                client_id=h.client_id,
            )
            for h in rows
        ]

    async def access_log(self, memory_id: uuid.UUID, limit: int = 100) -> list[AccessEntry]:
        await self._load(memory_id)
        rows = list(
            await self.session.scalars(
                select(MemoryAccess)
                .where(MemoryAccess.memory_id == memory_id)
                .order_by(MemoryAccess.id.desc())
                .limit(limit)
            )
        )
        apps = await self._apps(r.app_id for r in rows)
        return [
            AccessEntry(
                operation=r.operation,
                at=r.at,
                app=apps.get(r.app_id) if r.app_id else None,
                client_id=r.client_id,
            )
            for r in rows
        ]

    # --- write -----------------------------------------------------------------------------
    async def update(
        self,
        memory_id: uuid.UUID,
        *,
        content: str | None = None,
        metadata: dict[str, Any] | None = None,
        tags: Iterable[str] | None = None,
    ) -> MemoryOut:
        memory = await self._load(memory_id, for_update=True)
        if metadata is not None:
            memory.metadata_ = _check_metadata(metadata)
        if tags is not None:
            memory.tags = _clean_tags(tags)
        if content is not None:
            content = self._check_text(content)
            if content != memory.content:
                vector = (await self.embedder.embed_documents([content]))[0]
                return await self._replace_content(memory, content, content_hash(content), vector, event="updated")
        memory.updated_at = datetime.now(UTC)
        await self.session.flush()
        return await self._one_out(memory)

    async def _replace_content(
        self, memory: Memory, content: str, digest: str, vector: np.ndarray, *, event: str
    ) -> MemoryOut:
        old = memory.content
        memory.content = content
        memory.content_hash = digest
        memory.embedding = vector
        memory.updated_at = datetime.now(UTC)
        self._history(memory, event, old_content=old, new_content=content)
        try:
            await self.session.flush()
        except IntegrityError:
            raise ProblemError(
                409,
                "duplicate",
                "Duplicate memory",
                "You already have a memory with exactly this text; update or delete that one instead.",
            ) from None
        await self.session.refresh(memory)
        return await self._one_out(memory)

    async def set_state(self, memory_id: uuid.UUID, state: str) -> MemoryOut:
        memory = await self._load(memory_id, for_update=True)
        if memory.state != state:
            self._history(memory, "state", from_state=memory.state, to_state=state)
            memory.state = state
            memory.archived_at = datetime.now(UTC) if state == "archived" else None
            memory.updated_at = datetime.now(UTC)
            await self.session.flush()
        return await self._one_out(memory)

    async def delete(self, memory_id: uuid.UUID) -> None:
        deleted = await self.session.scalar(delete(Memory).where(Memory.id == memory_id).returning(Memory.id))
        if deleted is None:
            raise not_found()

    async def delete_many(self, ids: list[uuid.UUID]) -> DeleteResult:
        wanted = list(dict.fromkeys(ids))
        deleted = set(
            (await self.session.scalars(delete(Memory).where(Memory.id.in_(wanted)).returning(Memory.id))).all()
        )
        return DeleteResult(deleted=len(deleted), not_found=[i for i in wanted if i not in deleted])

    async def delete_all(self) -> DeleteResult:
        # Explicit owner clause for clarity; RLS would confine it to the caller's rows regardless.
        result = await self.session.execute(
            delete(Memory).where(Memory.owner_email == self.caller.email).returning(Memory.id)
        )
        return DeleteResult(deleted=len(result.all()))

    # --- overview --------------------------------------------------------------------------
    async def categories(self) -> list[CategoryCount]:
        tag = func.unnest(Memory.tags).label("tag")
        sub = select(tag).subquery()
        rows = await self.session.execute(
            select(sub.c.tag, func.count().label("n")).group_by(sub.c.tag).order_by(func.count().desc(), sub.c.tag)
        )
        return [CategoryCount(name=r.tag, count=r.n) for r in rows]

    async def stats(self) -> Stats:
        by_state = {
            r.state: r.n
            for r in await self.session.execute(select(Memory.state, func.count().label("n")).group_by(Memory.state))
        }
        apps = await self.session.scalar(select(func.count()).select_from(App)) or 0
        since = datetime.now(UTC).date() - timedelta(days=29)
        added = {
            r.day: r.n
            for r in await self.session.execute(
                text(
                    "SELECT created_at::date AS day, count(*) AS n FROM memories WHERE created_at >= :since GROUP BY 1"
                ),
                {"since": since},
            )
        }
        accessed = {
            r.day: r.n
            for r in await self.session.execute(
                text(
                    "SELECT at::date AS day, count(*) AS n FROM memory_access_log "
                    "WHERE at >= :since AND operation = 'search' GROUP BY 1"
                ),
                {"since": since},
            )
        }
        days = [since + timedelta(days=i) for i in range(30)]
        return Stats(
            total=sum(by_state.values()),
            by_state={s: by_state.get(s, 0) for s in ("active", "paused", "archived")},
            apps=apps,
            last_30_days=[
                DailyCount(day=d.isoformat(), added=added.get(d, 0), accessed=accessed.get(d, 0)) for d in days
            ],
        )

    # --- export / import -------------------------------------------------------------------
    async def export(self, batch: int = 500) -> AsyncIterator[bytes]:
        last: uuid.UUID | None = None
        encoder = msgspec.json.Encoder()
        while True:
            stmt = select(Memory).order_by(Memory.id).limit(batch)
            if last is not None:
                stmt = stmt.where(Memory.id > last)
            rows = list(await self.session.scalars(stmt))
            if not rows:
                return
            apps = await self._apps(m.app_id for m in rows)
            for m in rows:
                line = ExportLine(
                    id=str(m.id),
                    content=m.content,
                    metadata=m.metadata_,
                    tags=list(m.tags),
                    state=m.state,  # type: ignore[arg-type]
                    created_at=m.created_at,
                    app=apps[m.app_id].name if m.app_id in apps else None,
                )
                yield encoder.encode(line) + b"\n"
            last = rows[-1].id

    async def import_lines(self, lines: Iterable[bytes], batch: int = 64) -> ImportReport:
        decoder = msgspec.json.Decoder(ExportLine)
        parsed: list[tuple[int, ExportLine]] = []
        errors: list[str] = []
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                parsed.append((number, decoder.decode(raw)))
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                errors.append(f"line {number}: {exc}")
        imported = skipped = 0
        for start in range(0, len(parsed), batch):
            chunk = parsed[start : start + batch]
            valid: list[tuple[int, ExportLine]] = []
            for number, line in chunk:
                try:
                    self._check_text(line.content)
                    _check_metadata(line.metadata)
                except ProblemError as exc:
                    errors.append(f"line {number}: {exc.detail}")
                    continue
                valid.append((number, line))
            vectors = await self.embedder.embed_documents([line.content.strip() for _, line in valid])
            for (_, line), vector in zip(valid, vectors, strict=True):
                result = await self.add(
                    line.content,
                    metadata=line.metadata,
                    tags=line.tags,
                    merge_near_duplicate=False,
                    state=line.state,
                    created_at=line.created_at,
                    vector=vector,
                )
                if result.created:
                    imported += 1
                    self.caller = _with_count(self.caller, self.caller.memory_count + 1)
                else:
                    skipped += 1
        return ImportReport(imported=imported, skipped_duplicates=skipped, errors=errors)


def _with_count(caller: Caller, count: int) -> Caller:
    return Caller(
        email=caller.email,
        client_id=caller.client_id,
        app_id=caller.app_id,
        app_name=caller.app_name,
        app_paused=caller.app_paused,
        memory_count=count,
    )


def _encode_cursor(at: datetime, memory_id: uuid.UUID) -> str:
    raw = msgspec.json.encode([at.isoformat(), str(memory_id)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at, memory_id = msgspec.json.decode(base64.urlsafe_b64decode(padded))
        return datetime.fromisoformat(at), uuid.UUID(memory_id)
    except (ValueError, TypeError, msgspec.DecodeError):
        raise bad_request("The cursor is not one this server issued; start again without it.") from None
