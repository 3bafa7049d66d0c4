"""Vector, keyword and hybrid retrieval under row-level security.

Routing follows the measurements in docs/architecture.md: a user with at most
`search_exact_max_rows` memories is searched exactly (a MATERIALIZED CTE that cannot use the HNSW
index, so the owner btree of the RLS policy drives it: recall 1.0, about 3 µs per row); larger
users go through HNSW with `hnsw.iterative_scan = relaxed_order` (set when the transaction is
bound) and the outer result is re-sorted. The two routes are two distinct SQL texts, so a plan
cached for one user never serves the other route.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, Select, and_, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Memory
from app.memories.schemas import Filters

RRF_K = 60
ACTIVE_ONLY: tuple[str, ...] = ("active",)


def filter_clauses(filters: Filters | None, default_states: Sequence[str]) -> list[ColumnElement[bool]]:
    f = filters or Filters()
    states = list(dict.fromkeys(f.states)) if f.states else list(default_states)
    clauses: list[ColumnElement[bool]] = []
    if set(states) != {"active", "paused", "archived"}:
        clauses.append(Memory.state.in_(states))
    if f.tags:
        clauses.append(Memory.tags.overlap([t.strip().lower() for t in f.tags]))
    if f.app_id is not None:
        clauses.append(Memory.app_id == f.app_id)
    if f.created_after is not None:
        clauses.append(Memory.created_at >= f.created_after)
    if f.created_before is not None:
        clauses.append(Memory.created_at < f.created_before)
    return clauses


async def nearest(
    session: AsyncSession,
    query_vector: np.ndarray,
    k: int,
    clauses: list[ColumnElement[bool]],
    *,
    exact: bool,
) -> list[tuple[uuid.UUID, float]]:
    """The k nearest memories as (id, cosine distance), nearest first."""
    distance = Memory.embedding.cosine_distance(query_vector)
    if exact:
        scan = select(Memory.id, distance.label("d")).where(and_(True, *clauses)).cte("scan")
        scan = scan.prefix_with("MATERIALIZED")
        stmt: Select[Any] = select(scan.c.id, scan.c.d).order_by(scan.c.d).limit(k)
        rows = (await session.execute(stmt)).all()
        return [(r.id, float(r.d)) for r in rows]
    stmt = select(Memory.id, distance.label("d")).where(and_(True, *clauses)).order_by(distance).limit(k)
    rows = (await session.execute(stmt)).all()
    # relaxed_order may return neighbours slightly out of order
    return sorted(((r.id, float(r.d)) for r in rows), key=lambda pair: pair[1])


async def keyword(session: AsyncSession, query: str, n: int, clauses: list[ColumnElement[bool]]) -> list[uuid.UUID]:
    """Full-text matches (English stemming, web-search syntax), best ranked first."""
    tsquery = func.websearch_to_tsquery(literal_column("'english'::regconfig"), query)
    rank = func.ts_rank_cd(Memory.content_tsv, tsquery)
    stmt = (
        select(Memory.id)
        .where(Memory.content_tsv.op("@@")(tsquery), *clauses)
        .order_by(rank.desc(), Memory.created_at.desc())
        .limit(n)
    )
    return list((await session.scalars(stmt)).all())


def reciprocal_rank_fusion(*rankings: Sequence[uuid.UUID]) -> list[tuple[uuid.UUID, float]]:
    scores: dict[uuid.UUID, float] = {}
    for ranking in rankings:
        for position, memory_id in enumerate(ranking):
            scores[memory_id] = scores.get(memory_id, 0.0) + 1.0 / (RRF_K + position + 1)
    return sorted(scores.items(), key=lambda pair: pair[1], reverse=True)
