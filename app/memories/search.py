"""Vector, keyword and hybrid retrieval under row-level security.

Routing follows the measurements in docs/architecture.md: a user with at most
`search_exact_max_rows` memories is searched exactly (a MATERIALIZED CTE that cannot use the HNSW
index, so the owner btree of the RLS policy drives it: recall 1.0, about 1 µs per row); larger
users go through HNSW with `hnsw.iterative_scan = relaxed_order` (set when the transaction is
bound) and the outer result is re-sorted. The two routes are two distinct SQL texts, so a plan
cached for one user never serves the other route.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import (
    CTE,
    ColumnElement,
    DateTime,
    Float,
    Integer,
    Row,
    Select,
    Text,
    and_,
    any_,
    bindparam,
    case,
    cast,
    func,
    insert,
    literal,
    literal_column,
    select,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import App, Memory, MemoryAccess
from app.memories.schemas import Filters, SearchMode

RRF_K = 60
ACTIVE_ONLY: tuple[str, ...] = ("active",)


ALL_STATES = frozenset({"active", "paused", "archived"})


@dataclass(frozen=True, slots=True)
class FilterShape:
    """Which filters a request uses; their values travel as bind parameters (`f_*`), so the SQL of a
    shape is built once and reused."""

    states: bool = False
    tags: bool = False
    app: bool = False
    after: bool = False
    before: bool = False


def filter_values(filters: Filters | None, default_states: Sequence[str]) -> tuple[FilterShape, dict[str, Any]]:
    """The shape of the filters and the values of their bind parameters."""
    f = filters or Filters()
    states = list(dict.fromkeys(f.states)) if f.states else list(default_states)
    values: dict[str, Any] = {}
    if set(states) != ALL_STATES:
        values["f_states"] = states
    if f.tags:
        values["f_tags"] = [t.strip().lower() for t in f.tags]
    if f.app_id is not None:
        values["f_app"] = f.app_id
    if f.created_after is not None:
        values["f_after"] = f.created_after
    if f.created_before is not None:
        values["f_before"] = f.created_before
    shape = FilterShape(**{name: f"f_{name}" in values for name in FilterShape.__dataclass_fields__})
    return shape, values


@functools.cache
def filter_template(shape: FilterShape) -> tuple[ColumnElement[bool], ...]:
    clauses: list[ColumnElement[bool]] = []
    if shape.states:
        clauses.append(Memory.state == any_(bindparam("f_states", type_=ARRAY(Text))))
    if shape.tags:
        clauses.append(Memory.tags.overlap(bindparam("f_tags", type_=ARRAY(Text))))
    if shape.app:
        clauses.append(Memory.app_id == bindparam("f_app", type_=UUID(as_uuid=True)))
    if shape.after:
        clauses.append(Memory.created_at >= bindparam("f_after", type_=DateTime(timezone=True)))
    if shape.before:
        clauses.append(Memory.created_at < bindparam("f_before", type_=DateTime(timezone=True)))
    return tuple(clauses)


def filter_clauses(filters: Filters | None, default_states: Sequence[str]) -> list[ColumnElement[bool]]:
    """The filters as WHERE clauses with their values bound, for statements built per request."""
    shape, values = filter_values(filters, default_states)
    return [clause.params(values) for clause in filter_template(shape)]


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


@dataclass(frozen=True, slots=True)
class AccessRecord:
    """Who the access-log rows of a search are written for."""

    email: str
    app_id: uuid.UUID | None
    client_id: str | None


def _vector_ranking(n: Any, clauses: Sequence[ColumnElement[bool]], *, exact: bool) -> CTE:
    """`vec(id, d)`: the n nearest memories and their cosine distances."""
    distance = Memory.embedding.cosine_distance(bindparam("query_vector", type_=Memory.embedding.type))
    where = and_(True, *clauses)
    if exact:
        scan = select(Memory.id, distance.label("d")).where(where).cte("scan").prefix_with("MATERIALIZED")
        return select(scan.c.id, scan.c.d).order_by(scan.c.d).limit(n).cte("vec")
    return select(Memory.id, distance.label("d")).where(where).order_by(distance).limit(n).cte("vec")


def _keyword_ranking(n: Any, clauses: Sequence[ColumnElement[bool]]) -> CTE:
    """`kw(id, r)`: the n best full-text matches, r = 1 for the best."""
    tsquery = func.websearch_to_tsquery(literal_column("'english'::regconfig"), bindparam("query", type_=Text))
    order = (func.ts_rank_cd(Memory.content_tsv, tsquery).desc(), Memory.created_at.desc(), Memory.id)
    return (
        select(Memory.id, func.row_number().over(order_by=order).label("r"))
        .where(Memory.content_tsv.op("@@")(tsquery), *clauses)
        .order_by(*order)
        .limit(n)
        .cte("kw")
    )


@functools.cache
def _find_statement(mode: SearchMode, exact: bool, shape: FilterShape, logged: bool) -> Select[Any]:
    """The statement of `find` for one kind of request, built once (bind parameters carry the values)."""
    clauses = filter_template(shape)
    k = bindparam("k", type_=Integer)
    pool = bindparam("pool", type_=Integer)
    vec: CTE | None = None
    if mode == "semantic":
        vec = _vector_ranking(k, clauses, exact=exact)
        ranked = select(vec.c.id, (1 - vec.c.d).label("score"), vec.c.d.label("seen")).cte("ranked")
    else:
        kw = _keyword_ranking(k if mode == "keyword" else pool, clauses)
        parts = [select(kw.c.id, kw.c.r, literal(1).label("source"))]
        if mode == "hybrid":
            vec = _vector_ranking(pool, clauses, exact=exact)
            by_distance = func.row_number().over(order_by=(vec.c.d, vec.c.id))
            parts.insert(0, select(vec.c.id, by_distance.label("r"), literal(0).label("source")))
        both = union_all(*parts).subquery("both")
        score = func.sum(cast(1.0, Float) / (RRF_K + both.c.r))
        # Ties keep the order in which ids were first seen: the vector ranking, then keyword-only hits.
        seen = func.min(case((both.c.source == 0, both.c.r), else_=pool + both.c.r))
        ranked = (
            select(both.c.id, score.label("score"), seen.label("seen"))
            .group_by(both.c.id)
            .order_by(score.desc(), seen)
            .limit(k)
            .cte("ranked")
        )
    source = ranked.join(Memory, Memory.id == ranked.c.id).outerjoin(App, App.id == Memory.app_id)
    if mode == "semantic":
        similarity: Any = ranked.c.score
    elif mode == "hybrid":
        assert vec is not None
        source = source.outerjoin(vec, vec.c.id == Memory.id)
        query_vector = bindparam("query_vector", type_=Memory.embedding.type)
        similarity = 1 - func.coalesce(vec.c.d, Memory.embedding.cosine_distance(query_vector))
    else:
        similarity = cast(0.0, Float)
    stmt = (
        select(
            Memory.id.label("id"),
            Memory.content.label("content"),
            Memory.metadata_.label("metadata"),
            Memory.tags.label("tags"),
            Memory.state.label("state"),
            Memory.app_id.label("app_id"),
            App.name.label("app_name"),
            Memory.created_at.label("created_at"),
            Memory.updated_at.label("updated_at"),
            Memory.archived_at.label("archived_at"),
            ranked.c.score.label("score"),
            similarity.label("similarity"),
        )
        .select_from(source)
        .order_by(ranked.c.score.desc(), ranked.c.seen)
    )
    if logged:
        logged_cte = insert(MemoryAccess).from_select(
            ["memory_id", "owner_email", "app_id", "client_id", "operation"],
            select(
                ranked.c.id,
                bindparam("log_email", type_=Text),
                bindparam("log_app_id", type_=UUID(as_uuid=True)),
                bindparam("log_client_id", type_=Text),
                literal("search", Text),
            ),
        )
        stmt = stmt.add_cte(logged_cte.cte("logged"))
    return stmt


async def find(
    session: AsyncSession,
    *,
    mode: SearchMode,
    query: str,
    query_vector: np.ndarray | None,
    limit: int,
    filters: Filters | None,
    exact: bool,
    access: AccessRecord | None,
) -> Sequence[Row[Any]]:
    """The hits of a search, best first, in one statement.

    Each row has the memory's columns, `app_name`, `score` (1 − cosine distance for semantic
    search, the reciprocal-rank-fusion score otherwise) and `similarity` (1 − cosine distance,
    0 in keyword mode). With `access`, an access-log row per hit is written by the same statement.
    Executed on the session's connection as a Core statement: the ORM adds nothing here and cost
    about 0.4 ms per search.
    """
    shape, values = filter_values(filters, ACTIVE_ONLY)
    stmt = _find_statement(mode, exact, shape, access is not None)
    params: dict[str, Any] = {"k": limit, "pool": max(limit * 4, 40), "query": query, **values}
    if query_vector is not None:
        params["query_vector"] = query_vector
    if access is not None:
        params |= {"log_email": access.email, "log_app_id": access.app_id, "log_client_id": access.client_id}
    connection = await session.connection()
    return (await connection.execute(stmt, params)).all()
