"""Structured logs: JSON when not on a terminal. Never log tokens, secrets or memory content."""

from __future__ import annotations

import logging
import sys
import time
import uuid
from typing import Any

import structlog
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from app.settings import Settings
from app.system import timing


def configure_logging(settings: Settings) -> None:
    """Every log line, ours (structlog) and libraries' (stdlib logging), goes through one locked
    stdlib handler and one renderer, so lines from different threads never interleave."""
    use_json = settings.log_format == "json" or (settings.log_format == "auto" and not sys.stderr.isatty())
    renderer: Any = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    level = getattr(logging, settings.log_level.upper())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.stdlib.BoundLogger,
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info if use_json else structlog.dev.set_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Libraries speak at INFO about every request or model load; keep their warnings only.
    for noisy in ("mcp", "httpx", "httpcore", "sentence_transformers", "transformers", "asyncio"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


_access_log = structlog.get_logger("engram.http")


def _clean_request_id(raw: str | None) -> str:
    if raw and len(raw) <= 64 and all(c.isalnum() or c in "-_." for c in raw):
        return raw
    return uuid.uuid4().hex


class RequestLogMiddleware:
    """Gives every request an id (kept from X-Request-ID when sane) and logs one line per request,
    with the time of its phases (and a Server-Timing header when `server_timing` is on)."""

    def __init__(self, app: ASGIApp, server_timing: bool = False) -> None:
        self.app = app
        self.server_timing = server_timing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        request_id = _clean_request_id(headers.get(b"x-request-id", b"").decode("latin-1") or None)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        phases = timing.start()
        status = 500
        # Read now: mounted apps (/mcp) see a rewritten scope["path"] further down.
        raw_path = scope.get("raw_path")
        path = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else scope.get("path")

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                extra = [(b"x-request-id", request_id.encode())]
                if self.server_timing:
                    total = (time.perf_counter() - started) * 1000
                    extra.append((b"server-timing", timing.server_timing(phases, total)))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            # The path only: query strings can carry search text or (ignored) tokens.
            _access_log.info(
                "request",
                method=scope.get("method"),
                path=path,
                status=status,
                ms=round((time.perf_counter() - started) * 1000, 1),
                request_id=request_id,
                **{f"{name}_ms": round(ms, 1) for name, ms in phases.items()},
            )
