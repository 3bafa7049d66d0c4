"""Vector search under RLS: every user with at least k memories gets k results, on both routes."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from uuid_utils.compat import uuid7

from app.db.session import Identity, bound_session
from app.memories import search

DIM = 384
K = 10


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _literal(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.6f}" for x in vector) + "]"


async def _load(sessions: async_sessionmaker[AsyncSession], email: str, vectors: np.ndarray) -> list[uuid.UUID]:
    ids = [uuid7() for _ in range(len(vectors))]
    async with bound_session(sessions, Identity(email, "test")) as s:
        await s.execute(text("INSERT INTO users (email) VALUES (:e) ON CONFLICT DO NOTHING"), {"e": email})
        await s.execute(
            text(
                "INSERT INTO memories (id, owner_email, content, content_hash, embedding) "
                "VALUES (:id, :e, :c, :h, CAST(:v AS vector))"
            ),
            [
                {"id": i, "e": email, "c": f"synthetic {n}", "h": f"{email}-{n}", "v": _literal(v)}
                for n, (i, v) in enumerate(zip(ids, vectors, strict=True))
            ],
        )
    return ids


@pytest.fixture(scope="module")
async def population(sessions: async_sessionmaker[AsyncSession]) -> dict[str, tuple[list[uuid.UUID], np.ndarray]]:
    """One large user (3,000 rows in tight clusters) next to three small users (15 rows each)."""
    rng = np.random.default_rng(7)
    centres = _unit(rng.normal(size=(30, DIM)))
    large = _unit(np.repeat(centres, 100, axis=0) + 0.05 * rng.normal(size=(3000, DIM))).astype(np.float32)
    tag = uuid.uuid4().hex[:6]
    people = {f"large-{tag}@example.com": large}
    for n in range(3):
        people[f"small{n}-{tag}@example.com"] = _unit(rng.normal(size=(15, DIM))).astype(np.float32)
    loaded = {}
    for email, vectors in people.items():
        loaded[email] = (await _load(sessions, email, vectors), vectors)
    return loaded


def _exact_top(ids: list[uuid.UUID], vectors: np.ndarray, query: np.ndarray) -> list[uuid.UUID]:
    order = np.argsort(1.0 - vectors @ query)[:K]
    return [ids[i] for i in order]


@pytest.mark.parametrize("exact", [True, False])
async def test_small_users_next_to_a_large_one_get_k_exact_results(
    sessions: async_sessionmaker[AsyncSession],
    population: dict[str, tuple[list[uuid.UUID], np.ndarray]],
    exact: bool,
) -> None:
    rng = np.random.default_rng(11)
    for email, (ids, vectors) in population.items():
        if email.startswith("large"):
            continue
        for _ in range(5):
            query = _unit(rng.normal(size=(1, DIM)))[0].astype(np.float32)
            async with bound_session(sessions, Identity(email), ef_search=1000) as s:
                found = await search.nearest(s, query, K, [], exact=exact)
            assert len(found) == K, f"short result on the {'exact' if exact else 'HNSW'} route"
            assert {i for i, _ in found} <= set(ids)
            assert [i for i, _ in found] == _exact_top(ids, vectors, query)


async def test_large_user_through_hnsw_keeps_recall(
    sessions: async_sessionmaker[AsyncSession], population: dict[str, tuple[list[uuid.UUID], np.ndarray]]
) -> None:
    email = next(e for e in population if e.startswith("large"))
    ids, vectors = population[email]
    rng = np.random.default_rng(13)
    recalls = []
    for row in rng.choice(len(vectors), size=20, replace=False):
        query = _unit((vectors[row] + 0.02 * rng.normal(size=DIM))[None, :])[0].astype(np.float32)
        async with bound_session(sessions, Identity(email), ef_search=1000) as s:
            found = await search.nearest(s, query, K, [], exact=False)
        assert len(found) == K
        distances = [d for _, d in found]
        assert distances == sorted(distances), "relaxed order must be re-sorted"
        recalls.append(len({i for i, _ in found} & set(_exact_top(ids, vectors, query))) / K)
    assert float(np.mean(recalls)) >= 0.95


async def test_the_exact_route_never_uses_the_hnsw_index(
    sessions: async_sessionmaker[AsyncSession], population: dict[str, tuple[list[uuid.UUID], np.ndarray]]
) -> None:
    """The MATERIALIZED scan is driven by the owner btree of the RLS policy, never by HNSW."""
    email = next(e for e in population if e.startswith("small"))
    query = np.ones(DIM, dtype=np.float32) / np.sqrt(DIM)
    async with bound_session(sessions, Identity(email)) as s:
        exact_plan = "\n".join(
            (
                await s.execute(
                    text(
                        "EXPLAIN WITH scan AS MATERIALIZED (SELECT id, embedding <=> CAST(:q AS vector) AS d "
                        "FROM memories) SELECT id FROM scan ORDER BY d LIMIT 10"
                    ),
                    {"q": _literal(query)},
                )
            ).scalars()
        )
    assert "memories_owner_created_idx" in exact_plan or "Bitmap" in exact_plan or "Index" in exact_plan
    assert "hnsw" not in exact_plan


async def test_runtime_connections_never_reuse_generic_plans(runtime_engine: AsyncEngine) -> None:
    async with runtime_engine.connect() as conn:
        assert await conn.scalar(text("SHOW plan_cache_mode")) == "force_custom_plan"
