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


# --- find: the whole search in one statement --------------------------------------------------
async def _access_rows(sessions: async_sessionmaker[AsyncSession], email: str) -> list[tuple[uuid.UUID, str]]:
    async with bound_session(sessions, Identity(email)) as s:
        rows = await s.execute(text("SELECT memory_id, operation FROM memory_access_log ORDER BY id"))
        return [(r.memory_id, r.operation) for r in rows]


@pytest.mark.parametrize("exact", [True, False])
async def test_find_semantic_returns_the_nearest_rows_and_logs_each_hit(
    sessions: async_sessionmaker[AsyncSession],
    population: dict[str, tuple[list[uuid.UUID], np.ndarray]],
    exact: bool,
) -> None:
    email = next(e for e in population if e.startswith("small"))
    ids, vectors = population[email]
    query = _unit(np.random.default_rng(17).normal(size=(1, DIM)))[0].astype(np.float32)
    before = await _access_rows(sessions, email)
    async with bound_session(sessions, Identity(email, "test"), ef_search=1000) as s:
        rows = await search.find(
            s,
            mode="semantic",
            query="ignored in semantic mode",
            query_vector=query,
            limit=K,
            filters=None,
            exact=exact,
            access=search.AccessRecord(email, None, "test"),
        )
    assert [r.id for r in rows] == _exact_top(ids, vectors, query)
    similarities = dict(zip(ids, (vectors @ query).tolist(), strict=True))
    for r in rows:
        assert r.score == pytest.approx(similarities[r.id], abs=1e-5)
        assert r.similarity == r.score
        assert r.content.startswith("synthetic ")
    after = await _access_rows(sessions, email)
    assert sorted(after[len(before) :]) == sorted((r.id, "search") for r in rows)


@pytest.fixture(scope="module")
async def fruit(sessions: async_sessionmaker[AsyncSession]) -> tuple[str, dict[uuid.UUID, str], np.ndarray]:
    """A user whose memories match a keyword query with different strengths."""
    email = f"fruit-{uuid.uuid4().hex[:6]}@example.com"
    vectors = _unit(np.random.default_rng(23).normal(size=(30, DIM))).astype(np.float32)
    contents = [f"note {i}" + " apple" * (i % 4) + (" banana" if i % 3 == 0 else "") for i in range(30)]
    ids = [uuid7() for _ in contents]
    async with bound_session(sessions, Identity(email, "test")) as s:
        await s.execute(text("INSERT INTO users (email) VALUES (:e)"), {"e": email})
        for n, (i, content, vector) in enumerate(zip(ids, contents, vectors, strict=True)):
            await s.execute(
                text(
                    "INSERT INTO memories (id, owner_email, content, content_hash, embedding, created_at) "
                    "VALUES (:id, :e, :c, :h, CAST(:v AS vector), now() - make_interval(secs => :n))"
                ),
                {"id": i, "e": email, "c": content, "h": f"fruit-{n}", "v": _literal(vector), "n": n},
            )
    return email, dict(zip(ids, contents, strict=True)), vectors


async def _keyword_ranking(sessions: async_sessionmaker[AsyncSession], email: str, query: str) -> list[uuid.UUID]:
    async with bound_session(sessions, Identity(email)) as s:
        rows = await s.execute(
            text(
                "SELECT id FROM memories WHERE content_tsv @@ websearch_to_tsquery('english', :q) "
                "ORDER BY ts_rank_cd(content_tsv, websearch_to_tsquery('english', :q)) DESC, created_at DESC, id"
            ),
            {"q": query},
        )
        return [r.id for r in rows]


async def test_find_hybrid_fuses_both_rankings_by_reciprocal_rank(
    sessions: async_sessionmaker[AsyncSession], fruit: tuple[str, dict[uuid.UUID, str], np.ndarray]
) -> None:
    email, contents, vectors = fruit
    ids = list(contents)
    query_text = "apple banana"
    query = _unit(np.random.default_rng(29).normal(size=(1, DIM)))[0].astype(np.float32)
    keyword = await _keyword_ranking(sessions, email, query_text)
    assert 3 <= len(keyword) < len(ids)  # a real mix: some rows match the words, most do not
    by_vector = [ids[i] for i in np.argsort(1.0 - vectors @ query)]
    # Reciprocal rank fusion, written out: 1/(60 + rank) summed over the rankings; ties keep the
    # order of first appearance (the vector ranking first, then keyword-only rows).
    scores: dict[uuid.UUID, float] = {}
    for ranking in (by_vector, keyword):
        for position, memory_id in enumerate(ranking, start=1):
            scores[memory_id] = scores.get(memory_id, 0.0) + 1.0 / (60 + position)
    expected = sorted(scores, key=lambda i: -scores[i])[:5]
    async with bound_session(sessions, Identity(email, "test")) as s:
        rows = await search.find(
            s,
            mode="hybrid",
            query=query_text,
            query_vector=query,
            limit=5,
            filters=None,
            exact=True,
            access=None,
        )
    assert [r.id for r in rows] == expected
    similarities = dict(zip(ids, (vectors @ query).tolist(), strict=True))
    for r in rows:
        assert r.score == pytest.approx(scores[r.id])
        assert r.similarity == pytest.approx(similarities[r.id], abs=1e-5)
        assert r.content == contents[r.id]


async def test_find_keyword_ranks_by_text_and_reports_no_similarity(
    sessions: async_sessionmaker[AsyncSession], fruit: tuple[str, dict[uuid.UUID, str], np.ndarray]
) -> None:
    email, _, _ = fruit
    keyword = await _keyword_ranking(sessions, email, "apple banana")
    before = await _access_rows(sessions, email)
    async with bound_session(sessions, Identity(email, "test")) as s:
        rows = await search.find(
            s,
            mode="keyword",
            query="apple banana",
            query_vector=None,
            limit=3,
            filters=None,
            exact=True,
            access=search.AccessRecord(email, None, "test"),
        )
    assert [r.id for r in rows] == keyword[:3]
    assert [r.score for r in rows] == pytest.approx([1 / 61, 1 / 62, 1 / 63])
    assert all(r.similarity == 0.0 for r in rows)
    assert sorted((await _access_rows(sessions, email))[len(before) :]) == sorted((r.id, "search") for r in rows)
