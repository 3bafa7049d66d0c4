"""Logs never carry secrets or memory text; a stopping server finishes what it started."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.bootstrap import EmbeddedUrls
from tests.conftest import LiveServer, make_token, start_server, stop_server


async def test_logs_are_json_lines_without_tokens_or_content(
    api: httpx.AsyncClient, live_server: LiveServer, sessions: async_sessionmaker[AsyncSession]
) -> None:
    token = await make_token(sessions, "logcheck@example.com")
    secret_text = "The vault combination is 31-415-92"
    headers = {"Authorization": f"Bearer {token}", "X-Request-ID": "trace-me-123"}
    assert (await api.post("/api/v1/memories", json={"text": secret_text}, headers=headers)).status_code == 201
    searched = await api.post("/api/v1/memories/search", json={"query": "vault combination"}, headers=headers)
    assert "server-timing" not in searched.headers
    await api.get("/api/v1/memories", params={"q": "vault", "access_token": token}, headers=headers)
    await asyncio.sleep(0.5)  # let the server flush its log lines
    log = live_server.log()
    assert token not in log
    assert token[:12] not in log
    assert "31-415-92" not in log
    assert "vault" not in log
    request_lines = [json.loads(line) for line in log.splitlines() if line.startswith("{") and '"request"' in line]
    traced = [line for line in request_lines if line.get("request_id") == "trace-me-123"]
    assert {line["path"] for line in traced} == {"/api/v1/memories", "/api/v1/memories/search"}
    assert all(line["status"] in (200, 201) for line in traced)
    # Where the search spent its time is logged (Server-Timing itself is off by default).
    search_line = next(line for line in traced if line["path"] == "/api/v1/memories/search")
    assert {"auth_ms", "caller_ms", "embed_ms", "search_ms"} <= set(search_line)


async def test_in_flight_requests_finish_during_shutdown(
    db_urls: EmbeddedUrls, data_dir: Path, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    server = start_server(
        {"ENGRAM_DATABASE_URL": db_urls.runtime, "ENGRAM_DATA_DIR": str(data_dir)}, tmp_path / "engram.log"
    )
    token = await make_token(sessions, "shutdown@example.com")
    headers = {"Authorization": f"Bearer {token}"}
    lines = "".join(json.dumps({"content": f"Imported fact number {n} for shutdown"}) + "\n" for n in range(150))
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            request = asyncio.create_task(client.post("/api/v1/import", content=lines.encode(), headers=headers))
            await asyncio.sleep(0.3)  # the import (150 embeddings) is under way
            assert not request.done()
            server.process.send_signal(signal.SIGTERM)
            response = await request
        assert response.status_code == 200, response.text
        assert response.json()["imported"] == 150
    finally:
        assert stop_server(server) == 0
    with pytest.raises(httpx.TransportError):
        async with httpx.AsyncClient() as client:
            await client.get(server.url + "/health", timeout=2)
