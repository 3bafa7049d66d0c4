"""`engram reembed`: move every memory to the configured embedding model, without downtime.

New vectors are written into a side column (`embedding_next`) while the old ones keep serving
search; an HNSW index on the side column is built concurrently; then one short transaction
catches up rows that changed meanwhile and swaps the columns. Interrupted, it resumes where it
stopped (rows that already have a current `embedding_next` are skipped). Runs as the owner role.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.embeddings import Embedder

NEXT_INDEX = "memories_embedding_next_hnsw_idx"
INDEX = "memories_embedding_hnsw_idx"


@dataclass
class ReembedReport:
    model: str
    dimensions: int
    reembedded: int
    already_current: bool = False


async def _meta(conn: AsyncConnection) -> dict[str, str]:
    return {r.key: r.value for r in await conn.execute(text("SELECT key, value FROM engram_meta"))}


async def _has_column(conn: AsyncConnection, column: str) -> bool:
    return bool(
        await conn.scalar(
            text(
                "SELECT 1 FROM pg_attribute WHERE attrelid = 'memories'::regclass AND attname = :c AND NOT attisdropped"
            ),
            {"c": column},
        )
    )


async def _embed_pending(
    conn: AsyncConnection, embedder: Embedder, batch: int, *, stale_only_after: str | None = None
) -> int:
    """Embeds one batch of rows whose side vector is missing or older than their text."""
    rows = (
        await conn.execute(
            text(
                "SELECT id, content, content_hash FROM memories "
                "WHERE embedding_next IS NULL OR embedding_next_hash IS DISTINCT FROM content_hash "
                "ORDER BY id LIMIT :n"
            ),
            {"n": batch},
        )
    ).all()
    if not rows:
        return 0
    vectors = await embedder.embed_documents([r.content for r in rows])
    await conn.execute(
        text("UPDATE memories SET embedding_next = CAST(:v AS vector), embedding_next_hash = :h WHERE id = :id"),
        [
            # The connection's binary vector codec (app/db/vectors.py) sends the array as it is.
            {"id": r.id, "h": r.content_hash, "v": v}
            for r, v in zip(rows, vectors, strict=True)
        ],
    )
    return len(rows)


async def reembed(
    admin_engine: AsyncEngine,
    embedder: Embedder,
    *,
    batch: int = 128,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ReembedReport:
    dims, model = embedder.dimensions, embedder.model
    async with admin_engine.connect() as conn:
        meta = await _meta(conn)
        in_progress = await _has_column(conn, "embedding_next")
        target = f"{model}:{dims}"
        if (
            not in_progress
            and not force
            and meta.get("embedding_model") == model
            and meta.get("embedding_dimensions") == str(dims)
        ):
            return ReembedReport(model, dims, 0, already_current=True)
        if in_progress and meta.get("reembed_target") != target:
            # A different model was being prepared: start over for this one.
            await conn.execute(text("ALTER TABLE memories DROP COLUMN embedding_next, DROP COLUMN embedding_next_hash"))
            in_progress = False
        if not in_progress:
            await conn.execute(
                text(
                    f"ALTER TABLE memories ADD COLUMN embedding_next vector({int(dims)}), "
                    "ADD COLUMN embedding_next_hash text"
                )
            )
            # Inline like `embedding` (migration 0004): the swap renames this column into place.
            await conn.execute(text("ALTER TABLE memories ALTER COLUMN embedding_next SET STORAGE MAIN"))
            await conn.execute(
                text(
                    "INSERT INTO engram_meta (key, value) VALUES ('reembed_target', :t) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
                ),
                {"t": target},
            )
        await conn.commit()

        total = int(
            await conn.scalar(
                text(
                    "SELECT count(*) FROM memories "
                    "WHERE embedding_next IS NULL OR embedding_next_hash IS DISTINCT FROM content_hash"
                )
            )
            or 0
        )
        await conn.commit()
        done = 0
        while True:
            n = await _embed_pending(conn, embedder, batch)
            await conn.commit()
            if n == 0:
                break
            done += n
            if progress:
                progress(done, max(total, done))

    # Built outside a transaction so searches and writes go on meanwhile.
    async with admin_engine.connect() as conn:
        auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await auto.execute(text(f"DROP INDEX IF EXISTS {NEXT_INDEX}"))
        await auto.execute(
            text(f"CREATE INDEX CONCURRENTLY {NEXT_INDEX} ON memories USING hnsw (embedding_next vector_cosine_ops)")
        )

    async with admin_engine.begin() as conn:
        # Writes wait for the swap (reads go on); rows that changed since their batch are redone.
        await conn.execute(text("LOCK TABLE memories IN SHARE ROW EXCLUSIVE MODE"))
        while (n := await _embed_pending(conn, embedder, batch)) > 0:
            done += n
        await conn.execute(text(f"DROP INDEX {INDEX}"))
        await conn.execute(text("ALTER TABLE memories DROP COLUMN embedding"))
        await conn.execute(text("ALTER TABLE memories RENAME COLUMN embedding_next TO embedding"))
        await conn.execute(text("ALTER TABLE memories DROP COLUMN embedding_next_hash"))
        await conn.execute(text("ALTER TABLE memories ALTER COLUMN embedding SET NOT NULL"))
        await conn.execute(text(f"ALTER INDEX {NEXT_INDEX} RENAME TO {INDEX}"))
        await conn.execute(
            text(
                "INSERT INTO engram_meta (key, value) VALUES ('embedding_model', :m), ('embedding_dimensions', :d) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
            ),
            {"m": model, "d": str(dims)},
        )
        await conn.execute(text("DELETE FROM engram_meta WHERE key = 'reembed_target'"))
    return ReembedReport(model, dims, done)
