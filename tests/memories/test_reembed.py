"""`engram reembed`: resumable, and search keeps answering from the old vectors until the swap."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.principal import Principal
from app.db import migrate
from app.db.bootstrap import bootstrap
from app.db.embedded import EmbeddedPostgres
from app.db.session import Identity, bound_session, create_engine, session_factory
from app.embeddings import Embedder
from app.memories.reembed import reembed
from app.memories.service import MemoryContext, MemoryService
from app.settings import Settings
from app.users.service import touch
from tests.conftest import MIGRATION_CONTEXT

FACTS = [
    f"Fact {n}: the {animal} in room {n} likes {food}"
    for n, (animal, food) in enumerate(
        [("cat", "fish"), ("dog", "bones"), ("parrot", "seeds"), ("horse", "hay"), ("rabbit", "carrots")] * 3
    )
]


class Interrupted(Exception):
    pass


async def _service_search(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, embedder: Embedder, email: str, query: str
) -> list[str]:
    principal = Principal(email=email, scopes=frozenset(), kind="personal", client_id="t", client_name="t")
    async with bound_session(sessions, Identity(email, "t")) as session:
        caller = await touch(session, principal)
        ctx = MemoryContext(session, caller, settings, embedder, Identity(email, "t"), sessions)
        result = await MemoryService(ctx).search(query, mode="semantic", limit=3)
    return [h.memory.content for h in result.hits]


async def test_reembed_resumes_and_never_leaves_search_empty(
    embedded_pg: EmbeddedPostgres, embedder: Embedder, settings: Settings
) -> None:
    urls = await bootstrap(embedded_pg, database="engram_reembed")
    await migrate.upgrade(urls.admin, MIGRATION_CONTEXT)
    runtime = create_engine(urls.runtime, pool_size=2)
    admin = create_engine(urls.admin, pool_size=2)
    sessions = session_factory(runtime)
    try:
        for email, facts in (("r1@example.com", FACTS[:8]), ("r2@example.com", FACTS[8:])):
            principal = Principal(email=email, scopes=frozenset(), kind="personal", client_id="t", client_name="t")
            async with bound_session(sessions, Identity(email, "t")) as session:
                caller = await touch(session, principal)
                service = MemoryService(
                    MemoryContext(session, caller, settings, embedder, Identity(email, "t"), sessions)
                )
                for fact in facts:
                    await service.add(fact, merge_near_duplicate=False)

        assert (await reembed(admin, embedder, batch=4)).already_current

        def stop_after_first_batch(done: int, total: int) -> None:
            assert total == len(FACTS)
            raise Interrupted

        with pytest.raises(Interrupted):
            await reembed(admin, embedder, batch=4, force=True, progress=stop_after_first_batch)
        async with admin.connect() as conn:
            pending = await conn.scalar(text("SELECT count(*) FROM memories WHERE embedding_next IS NULL"))
        assert pending == len(FACTS) - 4
        # Mid-way, search still answers from the old vectors.
        assert (await _service_search(sessions, settings, embedder, "r1@example.com", "what does the parrot eat"))[
            0
        ].endswith("parrot in room 2 likes seeds")

        seen: list[int] = []
        report = await reembed(admin, embedder, batch=4, force=True, progress=lambda done, total: seen.append(done))
        assert report.reembedded == len(FACTS) - 4  # resumed: the first batch was not redone
        assert seen[-1] == len(FACTS) - 4
        async with admin.connect() as conn:
            columns = set(
                (
                    await conn.scalars(
                        text(
                            "SELECT attname FROM pg_attribute "
                            "WHERE attrelid = 'memories'::regclass AND attnum > 0 AND NOT attisdropped"
                        )
                    )
                ).all()
            )
            indexes = set(
                (await conn.scalars(text("SELECT indexname FROM pg_indexes WHERE tablename = 'memories'"))).all()
            )
            meta = dict((await conn.execute(text("SELECT key, value FROM engram_meta"))).all())
            # The swapped-in column keeps vectors in the row, as migration 0004 set for the old one.
            storage = await conn.scalar(
                text(
                    "SELECT attstorage::text FROM pg_attribute "
                    "WHERE attrelid = 'memories'::regclass AND attname = 'embedding'"
                )
            )
        assert storage == "m"
        assert "embedding_next" not in columns
        assert "embedding" in columns
        assert "memories_embedding_hnsw_idx" in indexes
        assert meta == {"embedding_dimensions": "384", "embedding_model": "all-MiniLM-L6-v2"}
        hits = await _service_search(sessions, settings, embedder, "r2@example.com", "what does the horse eat")
        assert hits[0].endswith("likes hay")  # rooms 8 and 13 both hold a horse
        # The audit did not record 15 vector rewrites as content changes.
        async with admin.connect() as conn:
            updates = await conn.scalar(
                text("SELECT count(*) FROM audit_log WHERE table_name = 'memories' AND operation = 'UPDATE'")
            )
        assert updates == 0
    finally:
        await runtime.dispose()
        await admin.dispose()
