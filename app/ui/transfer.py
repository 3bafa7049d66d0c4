"""Export (a JSON-lines download) and import (an upload, every memory re-embedded)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

from litestar import get, post
from litestar.datastructures import UploadFile
from litestar.response import Stream, Template

from app.db.session import bound_session
from app.memories.routes import MAX_IMPORT_BYTES
from app.memories.service import MemoryService
from app.oauth import flow
from app.ui.web import Web, render

SHOWN_ERRORS = 20


@get("/memories/transfer", include_in_schema=False)
async def transfer_page(web: Web) -> Template:
    return render(web, "transfer.html", {"max_mb": MAX_IMPORT_BYTES // (1024 * 1024)}, nav="memories")


@get("/memories/export", include_in_schema=False)
async def export(web: Web) -> Stream:
    await flow.audit(web.session, "EXPORT", web.email, None, format="jsonl", via="web")
    ctx = web.ctx

    # The response streams after the request's session is committed and closed: read through a
    # session of its own, bound to the same identity.
    async def lines() -> AsyncIterator[bytes]:
        async with bound_session(ctx.sessions, ctx.identity) as session:
            async for line in MemoryService(replace(ctx, session=session)).export():
                yield line

    return Stream(
        lines(),
        media_type="application/x-ndjson",
        headers={
            "Content-Disposition": 'attachment; filename="engram-memories.jsonl"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


@post("/memories/import", include_in_schema=False, status_code=200, request_max_body_size=MAX_IMPORT_BYTES)
async def import_memories(web: Web) -> Template:
    form = await web.form()
    upload = form.get("file")
    context = {"max_mb": MAX_IMPORT_BYTES // (1024 * 1024)}

    def refused(error: str) -> Template:
        return render(web, "transfer.html", {**context, "error": error}, nav="memories", status=400)

    if not isinstance(upload, UploadFile) or not upload.filename:
        return refused("Choose a .jsonl file to import.")
    body = await upload.read()
    if not body.strip():
        return refused("That file is empty.")
    report = await web.memories().import_lines(body.splitlines())
    return render(
        web,
        "transfer.html",
        {
            **context,
            "report": report,
            "filename": upload.filename,
            "shown_errors": report.errors[:SHOWN_ERRORS],
        },
        nav="memories",
    )
