"""What the MCP tools return: the `outputSchema` of each tool and its `structuredContent`.

Pydantic models, because the SDK derives `outputSchema` from them; they are views of the
service's msgspec results (app/memories/schemas.py), flattened for a model to read.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from app.memories.schemas import AddResult, DeleteResult, MemoryOut, Page, SearchResult


class Memory(BaseModel):
    id: uuid.UUID = Field(description="Pass this to get_memory, update_memory or delete_memories.")
    content: str = Field(description="The remembered fact.")
    tags: list[str]
    state: Literal["active", "paused", "archived"]
    app: str | None = Field(description="The client that stored it.")
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class SearchHit(Memory):
    score: float = Field(description="Rank score (higher is better); compare within one result only.")
    similarity: float = Field(description="Cosine similarity of meaning, 0 to 1.")


class SearchOutput(BaseModel):
    results: list[SearchHit] = Field(description="Best match first; empty when nothing relevant is stored.")


class ListOutput(BaseModel):
    memories: list[Memory] = Field(description="Newest first.")
    next_cursor: str | None = Field(description="Pass as `cursor` to get the next page; null on the last page.")


class NearDuplicate(BaseModel):
    id: uuid.UUID
    content: str
    similarity: float


class AddOutput(BaseModel):
    memory: Memory
    created: bool = Field(description="False when the same text was already stored (or merged into a near duplicate).")
    deduplicated: Literal["exact", "merged"] | None
    near_duplicates: list[NearDuplicate] = Field(
        description="Existing memories that say nearly the same; consider update_memory or delete_memories."
    )


class DeleteOutput(BaseModel):
    deleted: int
    not_found: list[uuid.UUID] = Field(description="Ids that matched none of your memories.")


def memory_view(memory: MemoryOut) -> Memory:
    return Memory(
        id=memory.id,
        content=memory.content,
        tags=memory.tags,
        state=memory.state,
        app=memory.app.name if memory.app else None,
        metadata=memory.metadata,
        created_at=memory.created_at,
        updated_at=memory.updated_at,
    )


def search_view(result: SearchResult) -> SearchOutput:
    return SearchOutput(
        results=[
            SearchHit(**memory_view(hit.memory).model_dump(), score=hit.score, similarity=hit.similarity)
            for hit in result.hits
        ]
    )


def list_view(page: Page) -> ListOutput:
    return ListOutput(memories=[memory_view(m) for m in page.items], next_cursor=page.next_cursor)


def add_view(result: AddResult) -> AddOutput:
    return AddOutput(
        memory=memory_view(result.memory),
        created=result.created,
        deduplicated=result.deduplicated,
        near_duplicates=[
            NearDuplicate(id=n.id, content=n.content, similarity=n.similarity) for n in result.near_duplicates
        ],
    )


def delete_view(result: DeleteResult) -> DeleteOutput:
    return DeleteOutput(deleted=result.deleted, not_found=result.not_found)
