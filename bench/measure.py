"""Timings and recall: database-only search, REST search end to end, embedding, add throughput.

Database timings use the service's own code path: a runtime-role session from
`app.db.session` (same engine options), bound to the user by `bound_session` (so the binding
statement is part of the time), `app.memories.search.find` — the one statement a search sends:
ranking, the hits' rows and app names, their access-log rows — with the route chosen the way
`MemoryService._exact_route` chooses it. Each timing covers the whole transaction: BEGIN, the
binding statement, the search, COMMIT.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import numpy as np
from numpy.typing import NDArray
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.auth.principal import Principal
from app.db.models import Memory
from app.db.session import Identity, bound_session
from app.embeddings import Embedder
from app.memories import search
from app.memories.schemas import SearchMode
from app.memories.service import MemoryContext, MemoryService
from app.settings import Settings
from app.tokens import service as tokens
from app.users.service import ensure_user, touch

CLIENT_ID = "bench"


def pct(values: Sequence[float], q: float) -> float:
    """Percentile (linear interpolation), q in [0, 100]."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")


def summary(values_ms: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values_ms),
        "p50": pct(values_ms, 50),
        "p95": pct(values_ms, 95),
        "mean": statistics.fmean(values_ms) if values_ms else float("nan"),
    }


@dataclass
class SizeClass:
    name: str
    users: list[tuple[str, int]]  # (email, memory count) of the measured users
    texts: list[str] = field(default_factory=list)  # semantic queries (DB, recall, REST semantic)
    hybrid_texts: list[str] = field(default_factory=list)  # distinct texts for hybrid search
    vectors: list[NDArray[np.float32]] = field(default_factory=list)
    hybrid_vectors: list[NDArray[np.float32]] = field(default_factory=list)
    offset: int = 0  # of a part: where its queries start, so users stay spread round-robin

    def user_of(self, index: int) -> tuple[str, int]:
        return self.users[(self.offset + index) % len(self.users)]

    def part(self, start: int, stop: int) -> SizeClass:
        return SizeClass(
            self.name,
            self.users,
            self.texts[start:stop],
            self.hybrid_texts[start:stop],
            self.vectors[start:stop],
            self.hybrid_vectors[start:stop],
            self.offset + start,
        )


def busy_now(seconds: float = 5.0) -> float:
    """Share of the machine's CPU busy over the next `seconds`."""
    sampler = CpuSampler()
    time.sleep(seconds)
    return sampler.read()["busy_pct"]


class CpuSampler:
    """Share of the machine's CPU time that was busy, and stolen by the hypervisor, between two
    reads of /proc/stat (every process counts: this benchmark, its server and PostgreSQL too)."""

    def __init__(self) -> None:
        self.start = self._read()

    @staticmethod
    def _read() -> list[int]:
        with open("/proc/stat") as f:
            return [int(x) for x in f.readline().split()[1:]]

    def read(self) -> dict[str, float]:
        now = self._read()
        delta = [b - a for a, b in zip(self.start, now, strict=False)]
        total = sum(delta[:8]) or 1
        idle = delta[3] + delta[4]
        return {"busy_pct": 100 * (total - idle) / total, "steal_pct": 100 * delta[7] / total}


# --- embedding ------------------------------------------------------------------------------
async def embed_queries(embedder: Embedder, texts: list[str]) -> tuple[list[NDArray[np.float32]], list[float]]:
    """One `embed_query` per text, one at a time (the embedder's cache is off): vectors, ms each."""
    vectors, times = [], []
    for t in texts:
        started = time.perf_counter()
        vectors.append(await embedder.embed_query(t))
        times.append((time.perf_counter() - started) * 1000)
    return vectors, times


# --- database -------------------------------------------------------------------------------
class StatementCapture:
    """Remembers the last SQL statement sent, to replay it under EXPLAIN ANALYZE."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.last: tuple[str, Any] | None = None
        self.active = False
        event.listen(engine.sync_engine, "before_cursor_execute", self._hook)

    def _hook(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if self.active and "set_config" not in statement:
            self.last = (statement, parameters)


async def db_search(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    cls: SizeClass,
    k: int,
    fetch: int | None = None,
) -> tuple[list[float], list[list[uuid.UUID]]]:
    """Semantic search (k nearest) per query vector: transaction times in ms, and the ids returned.
    `fetch` > k asks the index for more rows and keeps the nearest k (a possible remedy, not what
    the service does)."""
    times, results = [], []
    for index, (query, vector) in enumerate(zip(cls.texts, cls.vectors, strict=True)):
        email, count = cls.user_of(index)
        started = time.perf_counter()
        async with bound_session(sessions, Identity(email, CLIENT_ID), ef_search=settings.hnsw_ef_search) as s:
            rows = await find(s, settings, "semantic", email, count, query, vector, fetch or k)
        times.append((time.perf_counter() - started) * 1000)
        results.append([r.id for r in rows[:k]])
    return times, results


async def find(
    session: AsyncSession,
    settings: Settings,
    mode: SearchMode,
    email: str,
    count: int,
    query: str,
    vector: NDArray[np.float32],
    k: int,
) -> Sequence[Any]:
    """`search.find` as `MemoryService.search` calls it (route, default filters, access log)."""
    return await search.find(
        session,
        mode=mode,
        query=query,
        query_vector=vector,
        limit=k,
        filters=None,
        exact=count <= settings.search_exact_max_rows,  # MemoryService._exact_route
        access=search.AccessRecord(email, None, CLIENT_ID),
    )


RAW_BIND = (
    "SELECT set_config('app.user_email', $1, true), set_config('app.client_id', $2, true), "
    "set_config('app.request_id', $3, true), set_config('hnsw.ef_search', $4, true), "
    "set_config('hnsw.iterative_scan', 'relaxed_order', true)"
)


async def db_raw(
    conn: asyncpg.Connection,
    sessions: async_sessionmaker[AsyncSession],
    capture: StatementCapture,
    settings: Settings,
    cls: SizeClass,
    k: int,
) -> list[float]:
    """The same statements without SQLAlchemy: a plain asyncpg connection of the runtime role
    (with the app's binary vector codec), BEGIN, the binding statement, the search SQL captured
    from `find`, COMMIT. The difference to `db_search` is the client library's cost."""
    statements: dict[bool, tuple[str, list[Any], int, int]] = {}
    times = []
    for index, (query, vector) in enumerate(zip(cls.texts, cls.vectors, strict=True)):
        email, count = cls.user_of(index)
        exact = count <= settings.search_exact_max_rows
        if exact not in statements:  # capture the route's SQL once, in a throwaway transaction
            async with bound_session(sessions, Identity(email, CLIENT_ID)) as s:
                capture.active = True
                try:
                    await find(s, settings, "semantic", email, count, query, vector, k)
                finally:
                    capture.active = False
            assert capture.last is not None
            statement, parameters = capture.last
            params = list(parameters)
            slot = next(i for i, p in enumerate(params) if isinstance(p, np.ndarray))
            owner = params.index(email)  # the access-log rows' owner
            statements[exact] = (statement, params, slot, owner)
        statement, params, slot, owner = statements[exact]
        started = time.perf_counter()
        params[slot] = vector
        params[owner] = email
        async with conn.transaction():
            await conn.execute(RAW_BIND, email, CLIENT_ID, "", str(settings.hnsw_ef_search))
            await conn.fetch(statement, *params)
        times.append((time.perf_counter() - started) * 1000)
    return times


async def db_empty(sessions: async_sessionmaker[AsyncSession], settings: Settings, cls: SizeClass) -> list[float]:
    """A bound transaction that runs `SELECT 1`: the app path's cost without the search."""
    times = []
    for index in range(len(cls.vectors)):
        email, _ = cls.user_of(index)
        started = time.perf_counter()
        async with bound_session(sessions, Identity(email, CLIENT_ID), ef_search=settings.hnsw_ef_search) as s:
            await s.execute(select(1))
        times.append((time.perf_counter() - started) * 1000)
    return times


async def db_hybrid(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, cls: SizeClass, k: int
) -> list[float]:
    """The database part of a hybrid search: `find` in hybrid mode (vector and keyword rankings of
    40 each, fused in SQL), in its transaction."""
    times = []
    for index, (query, vector) in enumerate(zip(cls.hybrid_texts, cls.hybrid_vectors, strict=True)):
        email, count = cls.user_of(index)
        started = time.perf_counter()
        async with bound_session(sessions, Identity(email, CLIENT_ID), ef_search=settings.hnsw_ef_search) as s:
            await find(s, settings, "hybrid", email, count, query, vector, k)
        times.append((time.perf_counter() - started) * 1000)
    return times


async def explain_sample(
    sessions: async_sessionmaker[AsyncSession],
    capture: StatementCapture,
    settings: Settings,
    cls: SizeClass,
    k: int,
    n: int,
) -> dict[str, Any]:
    """Server-side execution time of the search statement (EXPLAIN ANALYZE) and its plan's top node."""
    execution, planning, nodes = [], [], set()
    for index, (query, vector) in enumerate(zip(cls.texts[:n], cls.vectors[:n], strict=True)):
        email, count = cls.user_of(index)
        async with bound_session(sessions, Identity(email, CLIENT_ID), ef_search=settings.hnsw_ef_search) as s:
            capture.active = True
            try:
                await find(s, settings, "semantic", email, count, query, vector, k)
            finally:
                capture.active = False
            assert capture.last is not None
            statement, parameters = capture.last
            raw = await (await s.connection()).get_raw_connection()
            driver = raw.driver_connection
            assert driver is not None
            plan = await driver.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, *parameters)
        doc = plan if isinstance(plan, list) else json.loads(plan)
        execution.append(doc[0]["Execution Time"])
        planning.append(doc[0]["Planning Time"])
        nodes.add(_scan_nodes(doc[0]["Plan"]))
    return {"execution": summary(execution), "planning": summary(planning), "plans": sorted(nodes)}


def _scan_nodes(plan: dict[str, Any]) -> str:
    found: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        if "Scan" in node["Node Type"]:
            found.append(f"{node['Node Type']}({node.get('Index Name', node.get('Relation Name', ''))})")
        for child in node.get("Plans", []):
            walk(child)

    walk(plan)
    return " + ".join(found)


async def user_vectors(
    sessions: async_sessionmaker[AsyncSession], email: str
) -> tuple[list[uuid.UUID], NDArray[np.float32]]:
    """Every active memory of a user (through the runtime role, so RLS decides what is there)."""
    async with bound_session(sessions, Identity(email, CLIENT_ID)) as s:
        rows = (await s.execute(select(Memory.id, Memory.embedding).where(Memory.state == "active"))).all()
    ids = [r.id for r in rows]
    matrix = np.vstack([np.asarray(r.embedding, dtype=np.float32) for r in rows]) if rows else np.zeros((0, 1))
    return ids, matrix.astype(np.float32)


def recall(
    cls: SizeClass,
    results: list[list[uuid.UUID]],
    corpora: dict[str, tuple[list[uuid.UUID], NDArray[np.float32]]],
    k: int,
) -> dict[str, float]:
    """recall@k against exact cosine top-k (ties at the k-th distance count as hits), short share."""
    scores, short, minimum = [], 0, 1.0
    for index, (vector, got) in enumerate(zip(cls.vectors, results, strict=True)):
        email, _ = cls.user_of(index)
        ids, matrix = corpora[email]
        want = min(k, len(ids))
        if want == 0:
            continue
        sims = matrix @ vector.astype(np.float32)
        kth = np.partition(sims, len(sims) - want)[len(sims) - want]
        similarity = dict(zip(ids, sims.tolist(), strict=True))
        hits = sum(1 for i in got[:want] if similarity.get(i, -2.0) >= kth - 1e-5)
        score = hits / want
        scores.append(score)
        minimum = min(minimum, score)
        short += len(got) < want
    return {
        "recall": statistics.fmean(scores) if scores else float("nan"),
        "min_recall": minimum,
        "short_share": short / max(1, len(scores)),
        "short": short,
    }


# --- tokens and REST ------------------------------------------------------------------------
async def make_token(sessions: async_sessionmaker[AsyncSession], email: str) -> str:
    """A personal access token, created the way `engram token create` does."""
    async with bound_session(sessions, Identity(email, CLIENT_ID)) as session:
        await ensure_user(session, email)
        created = await tokens.create(
            session, email, "bench", ["memories:read", "memories:write", "memories:delete"], 1
        )
    return created.token


async def rest_search(
    client: httpx.AsyncClient,
    tokens_by_email: dict[str, str],
    cls: SizeClass,
    texts: list[str],
    mode: str,
    k: int,
    phases: dict[str, list[float]] | None = None,
) -> tuple[list[float], int, int]:
    """POST /api/v1/memories/search per text, one at a time: ms each, errors, short results.
    `phases` collects the server's own account of each request (its Server-Timing header)."""
    times, errors, short = [], 0, 0
    for index, query in enumerate(texts):
        email, count = cls.user_of(index)
        started = time.perf_counter()
        response = await client.post(
            "/api/v1/memories/search",
            json={"query": query, "mode": mode, "limit": k},
            headers={"Authorization": f"Bearer {tokens_by_email[email]}"},
        )
        times.append((time.perf_counter() - started) * 1000)
        if phases is not None:
            for name, ms in server_timing(response.headers.get("server-timing", "")).items():
                phases.setdefault(name, []).append(ms)
        if response.status_code != 200:
            errors += 1
        elif len(response.json()["hits"]) < min(k, count):
            short += 1
    return times, errors, short


def server_timing(header: str) -> dict[str, float]:
    """`auth;dur=1.2, embed;dur=9.8` → {"auth": 1.2, "embed": 9.8}."""
    out: dict[str, float] = {}
    for part in header.split(","):
        name, _, params = part.strip().partition(";")
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "dur" and name:
                out[name] = float(value)
    return out


async def rest_adds(client: httpx.AsyncClient, token: str, texts: list[str], concurrency: int) -> dict[str, Any]:
    """POST /api/v1/memories for every text with `concurrency` clients at once."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for t in texts:
        queue.put_nowait(t)
    times: list[float] = []
    statuses: dict[int, int] = {}

    async def worker() -> None:
        while not queue.empty():
            body = queue.get_nowait()
            started = time.perf_counter()
            response = await client.post(
                "/api/v1/memories", json={"text": body}, headers={"Authorization": f"Bearer {token}"}
            )
            times.append((time.perf_counter() - started) * 1000)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    return {
        "n": len(texts),
        "concurrency": concurrency,
        "wall_s": wall,
        "per_s": len(texts) / wall,
        "latency": summary(times),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


async def service_adds(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    embedder: Embedder,
    email: str,
    texts: list[str],
    batch: int,
) -> dict[str, Any]:
    """MemoryService.add with vectors from embed_documents in batches (the import path), one
    transaction per batch."""
    principal = Principal(
        email=email, scopes=frozenset({"memories:write"}), kind="personal", client_id=CLIENT_ID, client_name="bench"
    )
    identity = Identity(email, CLIENT_ID)
    embed_s = db_s = 0.0
    created = 0
    started = time.perf_counter()
    for start in range(0, len(texts), batch):
        chunk = texts[start : start + batch]
        t0 = time.perf_counter()
        vectors = await embedder.embed_documents(chunk)
        t1 = time.perf_counter()
        async with bound_session(sessions, identity, ef_search=settings.hnsw_ef_search) as s:
            caller = await touch(s, principal)
            ctx = MemoryContext(
                session=s, caller=caller, settings=settings, embedder=embedder, identity=identity, sessions=sessions
            )
            service = MemoryService(ctx)
            for content, vector in zip(chunk, vectors, strict=True):
                result = await service.add(content, vector=vector)
                created += result.created
        db_s += time.perf_counter() - t1
        embed_s += t1 - t0
    wall = time.perf_counter() - started
    return {
        "n": len(texts),
        "created": created,
        "batch": batch,
        "wall_s": wall,
        "per_s": len(texts) / wall,
        "embed_s": embed_s,
        "db_s": db_s,
    }
