"""Request phases: measured where they happen, reported in the access log and Server-Timing."""

from __future__ import annotations

import asyncio
import contextvars

import httpx
from litestar.types import Receive, Scope, Send

from app.system import timing
from app.system.logging import RequestLogMiddleware
from app.system.timing import phase


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    with phase("embed"):
        await asyncio.sleep(0.02)
    with phase("search"):
        await asyncio.sleep(0.005)
    with phase("search"):  # a phase entered twice adds up
        await asyncio.sleep(0.005)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _parse(header: str) -> dict[str, float]:
    out = {}
    for part in header.split(","):
        name, _, duration = part.strip().partition(";dur=")
        out[name] = float(duration)
    return out


async def _get(server_timing: bool) -> httpx.Response:
    transport = httpx.ASGITransport(app=RequestLogMiddleware(_app, server_timing=server_timing))
    async with httpx.AsyncClient(transport=transport, base_url="http://engram.test") as client:
        return await client.get("/")


async def test_server_timing_reports_each_phase_and_the_total() -> None:
    response = await _get(server_timing=True)
    phases = _parse(response.headers["server-timing"])
    assert list(phases) == ["embed", "search", "total"]
    assert phases["embed"] >= 20
    assert phases["search"] >= 10
    assert phases["total"] >= phases["embed"] + phases["search"]


async def test_server_timing_is_off_unless_enabled() -> None:
    response = await _get(server_timing=False)
    assert response.status_code == 200
    assert "server-timing" not in response.headers
    assert response.headers["x-request-id"]


def test_phase_outside_a_request_records_nothing() -> None:
    def outside_any_request() -> dict[str, float] | None:
        with phase("embed"):  # the CLI and background work run the same code
            pass
        return timing._current.get()

    assert contextvars.Context().run(outside_any_request) is None
