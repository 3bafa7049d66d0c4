"""One memory: its content, metadata, history and access log; edit, state changes and delete."""

from __future__ import annotations

import uuid

from litestar import get, post
from litestar.response import Redirect, Template

from app.apps.service import list_apps
from app.problems import ProblemError, not_found
from app.ui.forms import FormError, format_metadata, parse_metadata, parse_tags, parse_uuid
from app.ui.web import Web, redirect, render

STATE_ACTIONS = {"active": "Resume", "paused": "Pause", "archived": "Archive"}


def _memory_id(raw: str) -> uuid.UUID:
    try:
        return parse_uuid(raw, "memory")
    except FormError:
        raise not_found() from None


async def _detail(
    web: Web, memory_id: uuid.UUID, *, status: int = 200, error: str | None = None, values: dict[str, str] | None = None
) -> Template:
    service = web.memories()
    memory = await service.get(memory_id)
    form = values or {
        "content": memory.content,
        "tags": ", ".join(memory.tags),
        "metadata": format_metadata(memory.metadata),
    }
    clients = {a.client_id: a.name for a in await list_apps(web.session)}
    return render(
        web,
        "memory.html",
        {
            "memory": memory,
            "clients": clients,
            "metadata_text": format_metadata(memory.metadata),
            "history": await service.history(memory_id),
            "access": await service.access_log(memory_id, limit=50),
            "values": form,
            "error": error,
            "state_actions": {k: v for k, v in STATE_ACTIONS.items() if k != memory.state},
        },
        nav="memories",
        status=status,
    )


@get("/memories/{memory_id:str}", include_in_schema=False)
async def memory_page(web: Web, memory_id: str) -> Template:
    return await _detail(web, _memory_id(memory_id))


@post("/memories/{memory_id:str}", include_in_schema=False, status_code=303)
async def edit_memory(web: Web, memory_id: str) -> Redirect | Template:
    the_id = _memory_id(memory_id)
    form = await web.form()
    values = {name: str(form.get(name) or "") for name in ("content", "tags", "metadata")}
    try:
        await web.memories().update(
            the_id,
            content=values["content"],
            tags=parse_tags(values["tags"]),
            metadata=parse_metadata(values["metadata"]),
        )
    except FormError as exc:
        return await _detail(web, the_id, status=400, error=str(exc), values=values)
    except ProblemError as exc:
        if exc.status == 404:
            raise
        await web.session.rollback()
        return await _detail(web, the_id, status=exc.status, error=exc.detail, values=values)
    return redirect(f"/memories/{the_id}", "updated")


@post("/memories/{memory_id:str}/state", include_in_schema=False, status_code=303)
async def change_state(web: Web, memory_id: str) -> Redirect | Template:
    the_id = _memory_id(memory_id)
    form = await web.form()
    state = form.get("state")
    if state not in STATE_ACTIONS:
        return await _detail(web, the_id, status=400, error="Choose active, paused or archived.")
    await web.memories().set_state(the_id, str(state))
    return redirect(f"/memories/{the_id}", "state")


@get("/memories/{memory_id:str}/delete", include_in_schema=False)
async def confirm_delete(web: Web, memory_id: str) -> Template:
    memory = await web.memories().get(_memory_id(memory_id))
    return render(web, "memory_delete.html", {"memory": memory}, nav="memories")


@post("/memories/{memory_id:str}/delete", include_in_schema=False, status_code=303)
async def delete_memory(web: Web, memory_id: str) -> Redirect:
    the_id = _memory_id(memory_id)
    await web.form()
    await web.memories().delete(the_id)
    return redirect("/memories", "deleted")
