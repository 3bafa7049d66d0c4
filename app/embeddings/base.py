"""The embedder interface: what every provider offers, and the parts they share."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections import OrderedDict
from types import TracebackType
from typing import Self

import numpy as np
from numpy.typing import NDArray

from app.embeddings.batching import MicroBatcher
from app.settings import Settings

Vector = NDArray[np.float32]


class EmbeddingError(Exception):
    """Embedding failed in a way a person has to fix; the message says what to check."""


class EmbeddingUnavailable(EmbeddingError):
    """Embedding failed for a reason that may pass (timeout, overload); worth a 503 and a retry."""


def normalise(rows: NDArray[np.floating]) -> list[Vector]:
    """Rows as float32 unit vectors (all-zero rows stay zero), read-only because they are shared."""
    matrix = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    matrix = (matrix / np.where(norms == 0, 1, norms)).astype(np.float32, copy=False)
    matrix.flags.writeable = False
    return list(matrix)


class Embedder(ABC):
    """Turns texts into L2-normalised float32 vectors; call `start()` before use, `aclose()` after.

    Subclasses implement `_start` (load or probe, then set `_dimensions`), `_embed` (one model
    call or API request for at most `batch_size` texts) and `_close`.
    """

    provider: str
    model: str

    def __init__(self, settings: Settings) -> None:
        self.model = settings.embedding_model
        self.batch_size = max(1, settings.embedding_batch_size)
        self._dimensions: int | None = None
        self._batcher: MicroBatcher[Vector] = MicroBatcher(self._embed, self.batch_size)
        self._cache: OrderedDict[tuple[str, str], Vector] = OrderedDict()
        self._cache_size = settings.embedding_cache_size
        self._start_lock = asyncio.Lock()
        self._started = False

    @property
    def dimensions(self) -> int:
        if self._dimensions is None:
            raise RuntimeError(f"the {self.provider} embedder's dimension is known only after start()")
        return self._dimensions

    async def start(self) -> None:
        async with self._start_lock:
            if self._started:
                return
            await self._start()
            self._batcher.start()
            self._started = True

    async def aclose(self) -> None:
        async with self._start_lock:
            await self._batcher.stop(EmbeddingUnavailable(f"the {self.provider} embedder is shutting down"))
            await self._close()
            self._started = False

    async def embed_documents(self, texts: list[str]) -> list[Vector]:
        if not texts:
            return []
        return await self._batcher.submit(texts)

    async def embed_query(self, text: str, *, cache_scope: str = "") -> Vector:
        """The vector of a search text, from the cache when this scope asked for it recently.

        Callers pass the user as `cache_scope`: a cache shared between users would answer one
        user's search measurably faster when another had searched the same words, which tells
        them what someone else looked for.
        """
        key = (cache_scope, text)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        [vector] = await self._batcher.submit([text])
        if self._cache_size > 0:
            self._cache[key] = vector
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return vector

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    @abstractmethod
    async def _start(self) -> None: ...

    @abstractmethod
    async def _embed(self, texts: list[str]) -> list[Vector]: ...

    @abstractmethod
    async def _close(self) -> None: ...
