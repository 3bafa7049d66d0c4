"""Where a request's time went: named phases, reported in the access log and, when enabled, in a
`Server-Timing` response header (browsers' developer tools and `curl -i` show it).

The request middleware opens a collector for each request; code anywhere below it marks a phase
with `with phase("embed"): ...`. Outside a request (CLI, MCP sessions' own tasks) `phase` costs
one context-variable read and records nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_current: ContextVar[dict[str, float] | None] = ContextVar("engram_timings", default=None)


def start() -> dict[str, float]:
    """A fresh collector for the current request (phase name → milliseconds)."""
    timings: dict[str, float] = {}
    _current.set(timings)
    return timings


@contextmanager
def phase(name: str) -> Iterator[None]:
    timings = _current.get()
    if timings is None:
        yield
        return
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + (time.perf_counter() - started) * 1000


def server_timing(timings: dict[str, float], total_ms: float) -> bytes:
    """The header value: `auth;dur=1.2, embed;dur=9.8, …, total;dur=14.0` (RFC-less but W3C's)."""
    parts = [f"{name};dur={ms:.2f}" for name, ms in timings.items()]
    parts.append(f"total;dur={total_ms:.2f}")
    return ", ".join(parts).encode("ascii")
