"""Micro-batching: concurrent callers share model calls without waiting for a timer.

One worker task takes everything pending (up to `batch_size` texts), runs one call for it and
resolves each text's future. While that call runs, new texts queue up and form the next batch,
so batches grow with load while a lone request goes straight through.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class MicroBatcher(Generic[T]):
    def __init__(self, call: Callable[[list[str]], Awaitable[list[T]]], batch_size: int) -> None:
        self._call = call
        self._batch_size = max(1, batch_size)
        self._pending: deque[tuple[str, asyncio.Future[T]]] = deque()
        self._in_flight: list[tuple[str, asyncio.Future[T]]] = []
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._worker is not None and not self._worker.done()

    def start(self) -> None:
        if not self.running:
            self._wakeup = asyncio.Event()
            self._worker = asyncio.get_running_loop().create_task(self._run(), name="embedding-batcher")

    async def stop(self, error: BaseException) -> None:
        """Stop the worker; callers still waiting get `error`."""
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        for _, future in [*self._in_flight, *self._pending]:
            if not future.done():
                future.set_exception(error)
        self._in_flight = []
        self._pending.clear()

    async def submit(self, texts: list[str]) -> list[T]:
        if not self.running:
            raise RuntimeError("the embedder is not running: call start() first")
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[T]] = []
        for text in texts:
            future: asyncio.Future[T] = loop.create_future()
            self._pending.append((text, future))
            futures.append(future)
        self._wakeup.set()
        try:
            return list(await asyncio.gather(*futures))
        except BaseException:
            # This caller is gone (cancelled, or one of its texts failed): the worker skips the rest.
            for future in futures:
                future.cancel()
            raise

    def _take_batch(self) -> list[tuple[str, asyncio.Future[T]]]:
        batch: list[tuple[str, asyncio.Future[T]]] = []
        while self._pending and len(batch) < self._batch_size:
            item = self._pending.popleft()
            if not item[1].done():
                batch.append(item)
        return batch

    async def _run(self) -> None:
        while True:
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            self._in_flight = self._take_batch()
            if self._in_flight:
                await self._run_batch(self._in_flight)
            self._in_flight = []

    async def _run_batch(self, batch: list[tuple[str, asyncio.Future[T]]]) -> None:
        unique = list(dict.fromkeys(text for text, _ in batch))
        try:
            results = await self._call(unique)
            if len(results) != len(unique):
                raise RuntimeError(f"the embedder returned {len(results)} results for {len(unique)} texts")
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        by_text = dict(zip(unique, results, strict=True))
        for text, future in batch:
            if not future.done():
                future.set_result(by_text[text])
