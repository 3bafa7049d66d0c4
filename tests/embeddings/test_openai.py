import asyncio
import hashlib
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from app.embeddings import EmbeddingError, EmbeddingUnavailable
from app.embeddings.openai import OpenAIEmbedder
from app.settings import Settings

KEY = "sk-test-5ecret-key"


def fake_vector(text: str, dimensions: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest() * (dimensions // 32 + 1)
    return [(byte - 127.5) / 127.5 for byte in digest[:dimensions]]


def expected(text: str, dimensions: int = 8) -> np.ndarray:
    vector = np.array(fake_vector(text, dimensions), dtype=np.float32)
    return vector / np.linalg.norm(vector)


@dataclass
class Step:
    """A scripted answer that replaces the normal one for one request."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    delay: float = 0.0


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: Any


class FakeAPI:
    def __init__(self) -> None:
        self.dimensions = 8
        self.requests: list[Request] = []
        self.script: deque[Step] = deque()
        self.lock = threading.Lock()

    def answer(self, request: Request) -> tuple[Step | None, dict[str, Any]]:
        with self.lock:
            self.requests.append(request)
            step = self.script.popleft() if self.script else None
        # Like a model that cannot shorten its vectors, this ignores a requested "dimensions".
        data = [
            {"object": "embedding", "index": i, "embedding": fake_vector(text, self.dimensions)}
            for i, text in enumerate(request.body["input"])
        ]
        data.reverse()
        return step, {"object": "list", "data": data, "model": request.body["model"]}


class Handler(BaseHTTPRequestHandler):
    server: "FakeServer"

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        step, normal = self.server.api.answer(Request(self.path, dict(self.headers), body))
        status, headers, payload = (step.status, step.headers, step.body) if step else (200, {}, normal)
        if step is not None:
            time.sleep(step.delay)
        if self.path != "/v1/embeddings":
            status, payload = 404, {"error": {"message": "not found"}}
        content = json.dumps(payload).encode()
        try:
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)
        except ConnectionError:
            pass  # the client gave up waiting (timeout tests)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True
    api = FakeAPI()


@pytest.fixture(scope="module")
def server() -> Iterator[FakeServer]:
    server = FakeServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def api(server: FakeServer) -> FakeAPI:
    server.api = FakeAPI()
    return server.api


@pytest.fixture
def url(server: FakeServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/v1"


def embedder(url: str, **changes: Any) -> OpenAIEmbedder:
    settings = Settings(
        embedding_provider="openai",
        embedding_api_url=url,
        embedding_model="fake-embed",
        embedding_api_key=KEY,
        embedding_batch_size=4,
        embedding_timeout=2.0,
        embedding_retries=2,
    ).replace(**changes)
    return OpenAIEmbedder(settings, backoff_base=0.01)


async def test_request_body_and_auth_header(api: FakeAPI, url: str) -> None:
    async with embedder(url, embedding_dimensions=8) as client:
        await client.embed_documents(["one", "two"])
    [request] = api.requests
    assert request.path == "/v1/embeddings"
    assert request.body == {"model": "fake-embed", "input": ["one", "two"], "dimensions": 8}
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["Content-Type"] == "application/json"


async def test_probe_learns_dimensions_without_key_or_dimensions_field(api: FakeAPI, url: str) -> None:
    api.dimensions = 12
    async with embedder(url, embedding_api_key=None) as client:
        assert client.dimensions == 12
    [probe] = api.requests
    assert probe.body == {"model": "fake-embed", "input": ["dimension probe"]}
    assert "Authorization" not in probe.headers


async def test_vectors_follow_index_order_and_are_normalised(api: FakeAPI, url: str) -> None:
    texts = ["alpha", "beta", "gamma"]
    async with embedder(url, embedding_dimensions=8) as client:
        vectors = await client.embed_documents(texts)
    for text, vector in zip(texts, vectors, strict=True):
        assert vector.dtype == np.float32
        assert np.allclose(vector, expected(text), atol=1e-6)


async def test_inputs_are_split_into_requests_of_batch_size(api: FakeAPI, url: str) -> None:
    texts = [f"text {i}" for i in range(10)]
    async with embedder(url, embedding_dimensions=8) as client:
        vectors = await client.embed_documents(texts)
    assert [len(r.body["input"]) for r in api.requests] == [4, 4, 2]
    assert [text for r in api.requests for text in r.body["input"]] == texts
    assert all(np.allclose(v, expected(t), atol=1e-6) for t, v in zip(texts, vectors, strict=True))


async def test_concurrent_queries_share_requests(api: FakeAPI, url: str) -> None:
    async with embedder(url, embedding_dimensions=8) as client:
        await asyncio.gather(*(client.embed_query(f"q{i}") for i in range(8)))
    assert len(api.requests) < 8
    assert all(len(r.body["input"]) <= 4 for r in api.requests)


async def test_retries_after_a_503(api: FakeAPI, url: str) -> None:
    api.script.append(Step(503, body={"error": "overloaded"}))
    async with embedder(url, embedding_dimensions=8) as client:
        [vector] = await client.embed_documents(["retry me"])
    assert np.allclose(vector, expected("retry me"), atol=1e-6)
    assert len(api.requests) == 2


async def test_gives_up_after_the_configured_retries(api: FakeAPI, url: str) -> None:
    api.script.extend([Step(500), Step(502), Step(500)])
    async with embedder(url, embedding_dimensions=8, embedding_retries=2) as client:
        with pytest.raises(EmbeddingUnavailable, match="answered 500") as caught:
            await client.embed_documents(["never"])
    assert len(api.requests) == 3
    assert url in str(caught.value)


async def test_429_waits_for_retry_after(api: FakeAPI, url: str) -> None:
    api.script.append(Step(429, headers={"Retry-After": "1"}))
    async with embedder(url, embedding_dimensions=8) as client:
        start = time.monotonic()
        await client.embed_documents(["patience"])
        waited = time.monotonic() - start
    assert len(api.requests) == 2
    assert 0.95 <= waited < 3


async def test_401_fails_at_once_without_revealing_the_key(api: FakeAPI, url: str) -> None:
    api.script.append(Step(401, body={"error": {"message": f"Incorrect API key provided: {KEY}"}}))
    async with embedder(url, embedding_dimensions=8) as client:
        with pytest.raises(EmbeddingError) as caught:
            await client.embed_documents(["secret"])
    message = str(caught.value)
    assert not isinstance(caught.value, EmbeddingUnavailable)
    assert "401" in message
    assert url in message
    assert "ENGRAM_EMBEDDING_API_KEY" in message
    assert KEY not in message
    assert len(api.requests) == 1


async def test_other_4xx_report_the_detail_without_the_key(api: FakeAPI, url: str) -> None:
    api.script.append(Step(400, body={"error": {"message": f"input too long (key {KEY})"}}))
    async with embedder(url, embedding_dimensions=8) as client:
        with pytest.raises(EmbeddingError, match=r"answered 400: input too long \(key \*\*\*\)") as caught:
            await client.embed_documents(["long"])
    assert KEY not in str(caught.value)
    assert len(api.requests) == 1


async def test_timeout_is_unavailable(api: FakeAPI, url: str) -> None:
    api.script.extend([Step(200, delay=0.6), Step(200, delay=0.6)])
    async with embedder(url, embedding_dimensions=8, embedding_timeout=0.2, embedding_retries=1) as client:
        with pytest.raises(EmbeddingUnavailable, match=r"did not answer within 0\.2 s"):
            await client.embed_documents(["slow"])
    assert len(api.requests) == 2


async def test_unreachable_api_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with embedder(f"http://127.0.0.1:{port}/v1", embedding_dimensions=8) as client:
        with pytest.raises(EmbeddingUnavailable, match="could not be reached"):
            await client.embed_query("anyone there?")


async def test_configured_dimension_mismatch_names_both_numbers(api: FakeAPI, url: str) -> None:
    async with embedder(url, embedding_dimensions=16) as client:
        assert client.dimensions == 16
        with pytest.raises(EmbeddingError, match=r"8-dimensional .* ENGRAM_EMBEDDING_DIMENSIONS is 16"):
            await client.embed_query("wrong size")


async def test_start_fails_when_the_probe_is_refused(api: FakeAPI, url: str) -> None:
    api.script.append(Step(404, body={"error": "no such model"}))
    client = embedder(url)
    with pytest.raises(EmbeddingError, match="answered 404: check ENGRAM_EMBEDDING_API_URL"):
        await client.start()
    await client.start()
    assert client.dimensions == 8
    await client.aclose()
