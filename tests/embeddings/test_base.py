import asyncio

import numpy as np
import pytest

from app.embeddings.base import Embedder, Vector, normalise
from app.settings import Settings


class FakeEmbedder(Embedder):
    provider = "fake"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.starts = 0
        self.calls: list[list[str]] = []

    async def _start(self) -> None:
        self.starts += 1
        await asyncio.sleep(0)
        self._dimensions = 3

    async def _embed(self, texts: list[str]) -> list[Vector]:
        self.calls.append(texts)
        return normalise(np.array([[len(text), 1.0, 0.0] for text in texts]))

    async def _close(self) -> None:
        pass


def test_normalise_gives_read_only_float32_unit_vectors() -> None:
    vectors = normalise(np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float64))
    assert [v.dtype for v in vectors] == [np.float32, np.float32]
    assert np.allclose(vectors[0], [0.6, 0.8])
    assert np.array_equal(vectors[1], [0.0, 0.0])
    with pytest.raises(ValueError, match="read-only"):
        vectors[0][0] = 1.0


async def test_start_is_idempotent_and_dimensions_need_it() -> None:
    embedder = FakeEmbedder(Settings())
    with pytest.raises(RuntimeError, match="start"):
        _ = embedder.dimensions
    await asyncio.gather(embedder.start(), embedder.start())
    await embedder.start()
    assert embedder.starts == 1
    assert embedder.dimensions == 3
    await embedder.aclose()


async def test_query_cache_is_bounded_lru() -> None:
    async with FakeEmbedder(Settings(embedding_cache_size=2)) as embedder:
        first = await embedder.embed_query("a")
        await embedder.embed_query("bb")
        assert await embedder.embed_query("a") is first
        await embedder.embed_query("ccc")  # evicts "bb", the least recently used
        await embedder.embed_query("a")
        await embedder.embed_query("bb")
    assert embedder.calls == [["a"], ["bb"], ["ccc"], ["bb"]]


async def test_query_cache_is_scoped_per_caller() -> None:
    # One user's cached search must not make another user's identical search faster.
    async with FakeEmbedder(Settings()) as embedder:
        mine = await embedder.embed_query("a", cache_scope="alice@example.com")
        await embedder.embed_query("a", cache_scope="bob@example.com")
        assert await embedder.embed_query("a", cache_scope="alice@example.com") is mine
    assert embedder.calls == [["a"], ["a"]]


async def test_cache_size_zero_disables_the_cache() -> None:
    async with FakeEmbedder(Settings(embedding_cache_size=0)) as embedder:
        await embedder.embed_query("a")
        await embedder.embed_query("a")
    assert embedder.calls == [["a"], ["a"]]


async def test_documents_bypass_the_cache_and_empty_input_makes_no_call() -> None:
    async with FakeEmbedder(Settings()) as embedder:
        assert await embedder.embed_documents([]) == []
        vectors = await embedder.embed_documents(["a", "bb"])
        await embedder.embed_query("a")
    assert len(vectors) == 2
    assert embedder.calls == [["a", "bb"], ["a"]]


async def test_embedder_can_restart_after_aclose() -> None:
    embedder = FakeEmbedder(Settings())
    for _ in range(2):
        async with embedder:
            assert len(await embedder.embed_documents(["x"])) == 1
    assert embedder.starts == 2
