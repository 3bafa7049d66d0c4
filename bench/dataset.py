"""The benchmark dataset: who owns how many memories, their texts and vectors, and the bulk load.

Vectors. Embedding a million texts with the local model would take hours on this machine, so
only a pool of `base_sentences` distinct generated sentences is embedded with the real model
(all-MiniLM-L6-v2, cached in bench/.data/). Each memory is then either one pool sentence or two
joined ("… Also: …"), and its vector is derived from the real vectors of those sentences:
`normalise(w·v_i + (1-w)·v_j + σ·g)` with w ~ U(0.55, 0.9), g a standard normal vector scaled
to unit length and σ = `NOISE` (one sentence: `normalise(v_i + σ·g)`). The vectors therefore lie
where real embeddings of this kind of text lie (same clusters, same spread), the text of a
memory matches its vector, and no two memories share a vector.

Loading goes through the owner role (its maintenance policy may write any user's rows): in one
transaction the tables are truncated, the memories' secondary indexes dropped and its row
triggers (audit, memory count) disabled, users and memories are COPYed in binary, the counts
are set with one UPDATE, triggers re-enabled; the indexes (HNSW last) are rebuilt afterwards
and the tables analysed.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
from numpy.typing import NDArray
from pgvector.asyncpg import register_vector
from uuid_utils.compat import uuid7

from app.embeddings import Embedder
from app.memories.service import content_hash
from bench import text

NOISE = 0.15
DOMAIN = "bench.example"
ADD_USER_PREFIX = "add-"  # users the throughput measurements write to; removed before and after
Log = Callable[[str], None]


@dataclass(frozen=True)
class Spec:
    users: int = 200
    per_user: int = 500
    large_user_rows: int = 20_000
    tiny_users: int = 20
    tiny_rows: int = 20
    filler_rows: int = 0
    base_sentences: int = 4000
    seed: int = 7

    def owners(self) -> list[tuple[str, int, str]]:
        """(email, rows, size class) for every loaded user."""
        out = [(f"user{i:04d}@{DOMAIN}", self.per_user, "regular") for i in range(self.users)]
        if self.large_user_rows:
            out.append((f"large@{DOMAIN}", self.large_user_rows, "large"))
        out += [(f"tiny{i:04d}@{DOMAIN}", self.tiny_rows, "tiny") for i in range(self.tiny_users)]
        full, rest = divmod(self.filler_rows, self.per_user)
        out += [(f"filler{i:05d}@{DOMAIN}", self.per_user, "filler") for i in range(full)]
        if rest:
            out.append((f"filler{full:05d}@{DOMAIN}", rest, "filler"))
        return out

    @property
    def total_rows(self) -> int:
        return sum(rows for _, rows, _ in self.owners())

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- the embedded pool ------------------------------------------------------------------------
@dataclass
class Pool:
    sentences: list[str]
    vectors: NDArray[np.float32]  # unit rows


def _read_pool(path: Path) -> Pool | None:
    if not path.exists():
        return None
    data = np.load(path)
    return Pool(json.loads(str(data["sentences"])), data["vectors"].astype(np.float32))


def _write_pool(path: Path, pool: Pool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, sentences=np.array(json.dumps(pool.sentences)), vectors=pool.vectors)


async def base_pool(spec: Spec, embedder: Embedder, cache_dir: Path, log: Log) -> Pool:
    """The real embeddings every memory vector is derived from (computed once, then cached)."""
    path = cache_dir / f"pool-{spec.seed}-{spec.base_sentences}-{embedder.model}.npz"
    cached = _read_pool(path)
    if cached is not None:
        return cached
    sentences = text.memory_sentences(spec.base_sentences, random.Random(spec.seed))
    started = time.perf_counter()
    vectors: list[NDArray[np.float32]] = []
    for start in range(0, len(sentences), 256):
        vectors += await embedder.embed_documents(sentences[start : start + 256])
        log(f"  embedded {len(vectors)}/{len(sentences)} pool sentences")
    pool = Pool(sentences, np.vstack(vectors).astype(np.float32))
    log(f"pool of {len(sentences)} sentences embedded in {time.perf_counter() - started:.1f} s")
    _write_pool(path, pool)
    return pool


def _unit(rows: NDArray[np.float32]) -> NDArray[np.float32]:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def derive(pool: Pool, rows: int, rng: np.random.Generator) -> tuple[list[str], NDArray[np.float32]]:
    """`rows` distinct memory texts of one user and their derived vectors."""
    n = len(pool.sentences)
    picks: dict[tuple[int, int], None] = {}
    while len(picks) < rows:
        need = rows - len(picks)
        first = rng.integers(0, n, need * 2)
        second = np.where(rng.random(need * 2) < 0.6, rng.integers(0, n, need * 2), -1)
        for i, j in zip(first.tolist(), second.tolist(), strict=True):
            if i != j:
                picks.setdefault((i, j), None)
                if len(picks) == rows:
                    break
    pairs = np.array(list(picks), dtype=np.int64)
    i, j = pairs[:, 0], pairs[:, 1]
    weight = np.where(j >= 0, rng.uniform(0.55, 0.9, rows), 1.0).astype(np.float32)[:, None]
    mix = weight * pool.vectors[i] + (1 - weight) * pool.vectors[np.maximum(j, 0)]
    noise = _unit(rng.standard_normal((rows, pool.vectors.shape[1])).astype(np.float32))
    vectors = _unit(mix + NOISE * noise)
    texts = [
        pool.sentences[a] if b < 0 else text.join(pool.sentences[a], pool.sentences[b])
        for a, b in zip(i.tolist(), j.tolist(), strict=True)
    ]
    return texts, vectors


def user_records(
    pool: Pool, email: str, rows: int, rng: np.random.Generator, now: datetime
) -> Iterator[tuple[Any, ...]]:
    texts, vectors = derive(pool, rows, rng)
    ages = rng.uniform(0, 730 * 86400, rows)
    seen: set[str] = set()
    for content, vector, age in zip(texts, vectors, ages.tolist(), strict=True):
        digest = content_hash(content)
        if digest in seen:  # same text up to case: the unique (owner, hash) index would refuse it
            continue
        seen.add(digest)
        created = now - timedelta(seconds=age)
        yield (uuid7(), email, content, digest, vector, created, created)


# --- loading ----------------------------------------------------------------------------------
META_DDL = "CREATE TABLE IF NOT EXISTS bench_meta (key text PRIMARY KEY, value jsonb NOT NULL)"


async def stored_spec(conn: asyncpg.Connection) -> dict[str, Any] | None:
    await conn.execute(META_DDL)
    raw = await conn.fetchval("SELECT value FROM bench_meta WHERE key = 'dataset'")
    return json.loads(raw) if raw else None


async def restore_indexes(conn: asyncpg.Connection, log: Log) -> dict[str, float]:
    """Recreate memories indexes dropped by a load (also after an interrupted one); seconds each."""
    raw = await conn.fetchval("SELECT value FROM bench_meta WHERE key = 'dropped_indexes'")
    if not raw:
        return {}
    existing = {
        r["indexname"] for r in await conn.fetch("SELECT indexname FROM pg_indexes WHERE tablename = 'memories'")
    }
    timings: dict[str, float] = {}
    definitions: dict[str, str] = json.loads(raw)
    # HNSW last: the longest build, and the one worth timing on its own
    for name, definition in sorted(definitions.items(), key=lambda kv: "hnsw" in kv[1]):
        if name in existing:
            continue
        log(f"  building {name} …")
        started = time.perf_counter()
        await conn.execute(definition)
        timings[name] = time.perf_counter() - started
        log(f"  built {name} in {timings[name]:.1f} s")
    await conn.execute("DELETE FROM bench_meta WHERE key = 'dropped_indexes'")
    return timings


async def load(admin_dsn: dict[str, str], spec: Spec, pool: Pool, log: Log) -> dict[str, Any]:
    """Replace the database's users and memories with the dataset; returns timings."""
    conn = await asyncpg.connect(**admin_dsn)
    stats: dict[str, Any] = {}
    try:
        await register_vector(conn)
        await conn.execute(META_DDL)
        await conn.execute("SET maintenance_work_mem = '4GB'")
        started = time.perf_counter()
        async with conn.transaction():
            await conn.execute("DELETE FROM bench_meta WHERE key = 'dataset'")
            await conn.execute(
                "TRUNCATE users, apps, memories, memory_history, memory_access_log, personal_access_tokens, "
                "audit_log CASCADE"
            )
            indexes = await conn.fetch(
                """
                SELECT i.indexname, i.indexdef FROM pg_indexes i
                WHERE i.tablename = 'memories' AND NOT EXISTS (
                    SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)
                """
            )
            definitions = {r["indexname"]: r["indexdef"] for r in indexes}
            previous = await conn.fetchval("SELECT value FROM bench_meta WHERE key = 'dropped_indexes'")
            definitions = {**(json.loads(previous) if previous else {}), **definitions}
            await conn.execute(
                "INSERT INTO bench_meta VALUES ('dropped_indexes', $1::jsonb) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                json.dumps(definitions),
            )
            for name in [r["indexname"] for r in indexes]:
                await conn.execute(f'DROP INDEX "{name}"')
            for trigger in ("memories_audit", "memories_count"):
                await conn.execute(f"ALTER TABLE memories DISABLE TRIGGER {trigger}")
            # COPY FROM refuses tables whose RLS applies to the copying role; FORCE returns at commit.
            for table in ("users", "memories"):
                await conn.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")

            owners = spec.owners()
            await conn.copy_records_to_table("users", records=[(e,) for e, _, _ in owners], columns=["email"])
            rng = np.random.default_rng(spec.seed)
            now = datetime.now(UTC)
            loaded, batch = 0, []
            columns = ["id", "owner_email", "content", "content_hash", "embedding", "created_at", "updated_at"]
            for number, (email, rows, _) in enumerate(owners, start=1):
                batch.extend(user_records(pool, email, rows, rng, now))
                if len(batch) >= 20_000 or number == len(owners):
                    await conn.copy_records_to_table("memories", records=batch, columns=columns)
                    loaded += len(batch)
                    batch = []
                    log(f"  loaded {loaded:,}/{spec.total_rows:,} memories ({time.perf_counter() - started:.0f} s)")
            await conn.execute(
                "UPDATE users u SET memory_count = c.n FROM "
                "(SELECT owner_email, count(*) AS n FROM memories GROUP BY owner_email) c WHERE u.email = c.owner_email"
            )
            for trigger in ("memories_audit", "memories_count"):
                await conn.execute(f"ALTER TABLE memories ENABLE TRIGGER {trigger}")
            for table in ("users", "memories"):
                await conn.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        stats["copy_s"] = time.perf_counter() - started
        stats["rows"] = loaded
        log(f"copied {loaded:,} memories in {stats['copy_s']:.1f} s; building indexes")
        stats["index_s"] = await restore_indexes(conn, log)
        started = time.perf_counter()
        await conn.execute("VACUUM (ANALYZE) memories")
        await conn.execute("ANALYZE users")
        stats["analyze_s"] = time.perf_counter() - started
        await conn.execute(
            "INSERT INTO bench_meta VALUES ('dataset', $1::jsonb) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            json.dumps({**spec.as_dict(), "rows": loaded, "load": stats, "loaded_at": datetime.now(UTC).isoformat()}),
        )
    finally:
        await conn.close()
    return stats


async def remove_add_users(conn: asyncpg.Connection) -> None:
    """Drop what the add-throughput measurements wrote (as the owner; cascades to memories)."""
    await conn.execute("DELETE FROM users WHERE email LIKE $1", f"{ADD_USER_PREFIX}%@{DOMAIN}")


async def prewarm(superuser_dsn: dict[str, str], log: Log) -> None:
    """Read the memories table and its indexes into memory (the HNSW index and the owner btree into
    shared buffers, the rest into the OS cache), so the first measured queries are not the ones
    that fault pages in after a cluster start."""
    conn = await asyncpg.connect(**superuser_dsn)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        started = time.perf_counter()
        relations = [
            r["relname"]
            for r in await conn.fetch(
                "SELECT c.relname FROM pg_class c WHERE c.relname = 'memories' OR c.oid IN "
                "(SELECT indexrelid FROM pg_index WHERE indrelid = 'memories'::regclass)"
            )
        ]
        for name in relations:
            mode = "buffer" if name in ("memories_embedding_hnsw_idx", "memories_owner_created_idx") else "read"
            await conn.execute("SELECT pg_prewarm($1::regclass, $2)", name, mode)
        log(f"prewarmed {len(relations)} relations in {time.perf_counter() - started:.1f} s")
    finally:
        await conn.close()
