"""`/health` says the process is up; `/ready` says it can serve (database, schema, embedder)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get
from sqlalchemy import text

from app.db.migrate import current_revision, head_revision
from app.services import services_of


class Health(msgspec.Struct):
    status: str


class Readiness(msgspec.Struct):
    status: str
    database: str
    migrations: str
    embedder: str


@get("/health", tags=["system"], summary="Liveness")
async def health() -> Health:
    return Health(status="ok")


@get("/ready", tags=["system"], summary="Readiness", cache=False)
async def ready(request: Request[Any, Any, Any]) -> Response[Readiness]:
    services = services_of(request)
    database = migrations = "ok"
    try:
        async with services.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        revision = await current_revision(services.engine)
        if revision != head_revision():
            migrations = f"at {revision}, expected {head_revision()}"
    except Exception as exc:  # any database failure means "not ready", never a 500
        database = f"unreachable: {type(exc).__name__}"
        migrations = "unknown"
    embedder = "ok" if services.embedder.dimensions else "not loaded"
    ok = database == migrations == embedder == "ok"
    body = Readiness(status="ok" if ok else "unavailable", database=database, migrations=migrations, embedder=embedder)
    return Response(body, status_code=200 if ok else 503)
