"""What the memories API takes and returns (msgspec Structs; also the shapes MCP tools return)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

State = Literal["active", "paused", "archived"]
SearchMode = Literal["hybrid", "semantic", "keyword"]
Sort = Literal["created_desc", "created_asc", "updated_desc"]

Tag = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Tags = Annotated[list[Tag], msgspec.Meta(max_length=32)]
Limit = Annotated[int, msgspec.Meta(ge=1, le=100)]


class AppRef(msgspec.Struct):
    id: uuid.UUID
    name: str


class MemoryOut(msgspec.Struct):
    id: uuid.UUID
    content: str
    metadata: dict[str, Any]
    tags: list[str]
    state: State
    app: AppRef | None
    created_at: datetime
    updated_at: datetime
    archived_at: datetime | None = None


class MemoryCreate(msgspec.Struct, forbid_unknown_fields=True):
    text: Annotated[str, msgspec.Meta(min_length=1, description="What to remember, as a self-contained sentence.")]
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    tags: Tags = msgspec.field(default_factory=list)
    merge_near_duplicate: bool | None = None


class NearDuplicate(msgspec.Struct):
    id: uuid.UUID
    content: str
    similarity: float


class AddResult(msgspec.Struct):
    memory: MemoryOut
    created: bool
    # "exact" when the same text was already stored, "merged" when it replaced a near duplicate.
    deduplicated: Literal["exact", "merged"] | None = None
    near_duplicates: list[NearDuplicate] = msgspec.field(default_factory=list)


class MemoryUpdate(msgspec.Struct, forbid_unknown_fields=True):
    text: str | msgspec.UnsetType = msgspec.UNSET
    metadata: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    tags: Tags | msgspec.UnsetType = msgspec.UNSET


class StateChange(msgspec.Struct, forbid_unknown_fields=True):
    state: State


class Filters(msgspec.Struct, forbid_unknown_fields=True):
    tags: list[str] | None = None
    app_id: uuid.UUID | None = None
    states: list[State] | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


class SearchRequest(msgspec.Struct, forbid_unknown_fields=True):
    query: Annotated[str, msgspec.Meta(min_length=1, max_length=4000)]
    limit: Limit = 10
    mode: SearchMode = "hybrid"
    tags: list[str] | None = None
    app_id: uuid.UUID | None = None
    states: list[State] | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None

    def filters(self) -> Filters:
        return Filters(
            tags=self.tags,
            app_id=self.app_id,
            states=self.states,
            created_after=self.created_after,
            created_before=self.created_before,
        )


class SearchHit(msgspec.Struct):
    memory: MemoryOut
    score: float
    similarity: float


class SearchResult(msgspec.Struct):
    hits: list[SearchHit]
    mode: SearchMode


class Page(msgspec.Struct):
    items: list[MemoryOut]
    next_cursor: str | None


class BulkDelete(msgspec.Struct, forbid_unknown_fields=True):
    ids: Annotated[list[uuid.UUID], msgspec.Meta(min_length=1, max_length=1000)]


class DeleteResult(msgspec.Struct):
    deleted: int
    not_found: list[uuid.UUID] = msgspec.field(default_factory=list)


class HistoryEntry(msgspec.Struct):
    event: str
    at: datetime
    from_state: str | None
    to_state: str | None
    old_content: str | None
    new_content: str | None
    client_id: str | None


class AccessEntry(msgspec.Struct):
    operation: str
    at: datetime
    app: AppRef | None
    client_id: str | None


class CategoryCount(msgspec.Struct):
    name: str
    count: int


class DailyCount(msgspec.Struct):
    day: str
    added: int
    accessed: int


class Stats(msgspec.Struct):
    total: int
    by_state: dict[str, int]
    apps: int
    last_30_days: list[DailyCount]


class ImportReport(msgspec.Struct):
    imported: int
    skipped_duplicates: int
    errors: list[str]


class ExportLine(msgspec.Struct, omit_defaults=True):
    """One line of the JSONL export; import takes the same shape (only `content` is required)."""

    content: str
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    tags: list[str] = msgspec.field(default_factory=list)
    state: State = "active"
    created_at: datetime | None = None
    app: str | None = None
    id: str | None = None
