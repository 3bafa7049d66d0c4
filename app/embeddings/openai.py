"""The OpenAI-compatible embedder: `POST {api_url}/embeddings` over httpx, with retries."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import numpy as np
import structlog

from app.embeddings.base import Embedder, EmbeddingError, EmbeddingUnavailable, Vector, normalise
from app.settings import Settings

log = structlog.get_logger("engram.embeddings")


class OpenAIEmbedder(Embedder):
    provider = "openai"

    def __init__(
        self,
        settings: Settings,
        *,
        backoff_base: float = 0.5,
        backoff_cap: float = 8.0,
        retry_after_cap: float = 30.0,
    ) -> None:
        super().__init__(settings)
        self.url = settings.embedding_api_url.rstrip("/") + "/embeddings"
        self._api_key = settings.embedding_api_key
        self._timeout = settings.embedding_timeout
        self._retries = max(0, settings.embedding_retries)
        self._configured_dimensions = settings.embedding_dimensions
        self._dimensions = settings.embedding_dimensions
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._retry_after_cap = retry_after_cap
        self._client: httpx.AsyncClient | None = None

    async def _start(self) -> None:
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        self._client = httpx.AsyncClient(timeout=self._timeout, headers=headers)
        if self._configured_dimensions is not None:
            return
        try:
            [probe] = await self._embed(["dimension probe"])
        except BaseException:
            await self._close()
            raise
        self._dimensions = len(probe)

    async def _close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
        self._client = None

    async def _embed(self, texts: list[str]) -> list[Vector]:
        body: dict[str, Any] = {"model": self.model, "input": texts}
        if self._configured_dimensions is not None:
            body["dimensions"] = self._configured_dimensions
        response = await self._post(body)
        return self._vectors(response, len(texts))

    async def _post(self, body: dict[str, Any]) -> httpx.Response:
        if self._client is None:
            raise RuntimeError("the embedder is not running: call start() first")
        attempts = self._retries + 1
        for attempt in range(1, attempts + 1):
            retry_after = None
            try:
                response = await self._client.post(self.url, json=body)
            except httpx.UnsupportedProtocol as exc:
                raise EmbeddingError(
                    f"ENGRAM_EMBEDDING_API_URL must start with http:// or https://; the URL is {self.url}"
                ) from exc
            except httpx.TimeoutException:
                problem = f"did not answer within {self._timeout:g} s (ENGRAM_EMBEDDING_TIMEOUT)"
            except httpx.TransportError as exc:
                problem = f"could not be reached ({type(exc).__name__}: {exc})"
            else:
                status = response.status_code
                if status < 400:
                    return response
                if status < 500 and status not in (408, 429):
                    raise EmbeddingError(self._refusal(response))
                problem = f"answered {status}"
                if status == 429:
                    retry_after = self._retry_after(response)
            if attempt == attempts:
                break
            delay = retry_after if retry_after is not None else self._backoff(attempt)
            log.warning("embedding API call failed, retrying", url=self.url, problem=problem, delay=delay)
            await asyncio.sleep(delay)
        raise EmbeddingUnavailable(f"the embedding API at {self.url} {problem} ({attempts} attempts)")

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self._backoff_cap, self._backoff_base * 2 ** (attempt - 1))
        return ceiling * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret

    def _retry_after(self, response: httpx.Response) -> float | None:
        value = response.headers.get("Retry-After")
        if value is None:
            return None
        try:
            seconds = float(value)
        except ValueError:
            try:
                when = parsedate_to_datetime(value)
            except (TypeError, ValueError):
                return None
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            seconds = (when - datetime.now(UTC)).total_seconds()
        return min(max(seconds, 0.0), self._retry_after_cap)

    def _refusal(self, response: httpx.Response) -> str:
        status = response.status_code
        if status in (401, 403):
            hint = "check ENGRAM_EMBEDDING_API_KEY"
        elif status == 404:
            hint = "check ENGRAM_EMBEDDING_API_URL (it usually ends in /v1) and ENGRAM_EMBEDDING_MODEL"
        else:
            hint = self._detail(response)
            if self._configured_dimensions is not None:
                hint += " (if the model cannot shorten its vectors, unset ENGRAM_EMBEDDING_DIMENSIONS)"
        return f"the embedding API at {self.url} answered {status}: {hint}"

    def _detail(self, response: httpx.Response) -> str:
        try:
            payload = response.json()
        except ValueError:
            payload = None
        message: Any = None
        if isinstance(payload, dict):
            message = payload.get("error") or payload.get("message") or payload.get("detail")
            if isinstance(message, dict):
                message = message.get("message")
        detail = str(message) if message else response.text
        if self._api_key:
            detail = detail.replace(self._api_key, "***")
        return detail.strip()[:300] or "no details given"

    def _vectors(self, response: httpx.Response, count: int) -> list[Vector]:
        try:
            items = sorted(response.json()["data"], key=lambda item: item["index"])
            rows = np.array([item["embedding"] for item in items], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbeddingError(
                f"the embedding API at {self.url} did not answer with OpenAI embeddings JSON ({exc!r})"
            ) from exc
        if rows.ndim != 2 or rows.shape[0] != count:
            raise EmbeddingError(f"the embedding API at {self.url} returned {len(items)} vectors for {count} texts")
        if self._dimensions is not None and rows.shape[1] != self._dimensions:
            source = (
                f"ENGRAM_EMBEDDING_DIMENSIONS is {self._dimensions}"
                if self._configured_dimensions is not None
                else f"it returned {self._dimensions} at start-up"
            )
            raise EmbeddingError(
                f"the embedding API at {self.url} returned {rows.shape[1]}-dimensional vectors but {source}"
            )
        return normalise(rows)
