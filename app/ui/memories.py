"""The memories page: semantic search, filters, sort, pages, bulk actions and creating a memory."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from litestar import get, post
from litestar.datastructures import MultiDict
from litestar.response import Redirect, Template

from app.apps.service import list_apps
from app.memories.schemas import Filters, MemoryOut, SearchMode, Sort, State
from app.oauth import flow
from app.problems import ProblemError
from app.ui.forms import FormError, parse_choice, parse_date, parse_metadata, parse_tags, parse_uuid
from app.ui.web import Web, redirect, render

STATES = ("", "active", "paused", "archived", "all")
SORTS: tuple[Sort, ...] = ("created_desc", "created_asc", "updated_desc")
MODES: tuple[SearchMode, ...] = ("hybrid", "semantic", "keyword")
SIZES = (10, 25, 50, 100)
DEFAULT_SIZE = 25
MAX_QUERY = 4000
MAX_TRAIL = 50
BULK_ACTIONS = {"archive": "archived", "pause": "paused", "activate": "active", "delete": None}


@dataclass
class ListQuery:
    """The memories page's query string, as typed (so the form shows it back) and as understood."""

    q: str = ""
    mode: str = "hybrid"
    app: str = ""
    tag: str = ""
    state: str = ""
    date_from: str = ""
    date_to: str = ""
    sort: str = "created_desc"
    size: int = DEFAULT_SIZE
    cursor: str = ""
    trail: list[str] = field(default_factory=list)

    def url(self, **changes: Any) -> str:
        q = replace(self, **changes)
        pairs: list[tuple[str, str]] = []
        defaults = ListQuery()
        for name in ("q", "mode", "app", "tag", "state", "date_from", "date_to", "sort", "size", "cursor"):
            value = getattr(q, name)
            if value != getattr(defaults, name):
                pairs.append((name, str(value)))
        pairs.extend(("trail", t) for t in q.trail)
        return "/memories" + (f"?{urlencode(pairs)}" if pairs else "")

    @property
    def filtered(self) -> bool:
        return any((self.app, self.tag, self.state, self.date_from, self.date_to))


def parse_list_query(params: MultiDict[Any]) -> tuple[ListQuery, Filters | None, list[str]]:
    def one(name: str) -> str:
        value = params.get(name)
        return value.strip() if isinstance(value, str) else ""

    size_raw = one("size")
    query = ListQuery(
        q=one("q")[:MAX_QUERY],
        mode=parse_choice(one("mode"), MODES, "hybrid"),
        app=one("app"),
        tag=one("tag"),
        state=parse_choice(one("state"), STATES, ""),
        date_from=one("date_from"),
        date_to=one("date_to"),
        sort=parse_choice(one("sort"), SORTS, "created_desc"),
        size=int(size_raw) if size_raw.isdigit() and int(size_raw) in SIZES else DEFAULT_SIZE,
        cursor=one("cursor"),
        trail=[t for t in params.getall("trail", []) if isinstance(t, str) and t][-MAX_TRAIL:],
    )
    errors: list[str] = []
    app_id = None
    try:
        app_id = parse_uuid(query.app, "client") if query.app else None
    except FormError as exc:
        errors.append(str(exc))
    try:
        after = parse_date(query.date_from, "“Added from”")
        before = parse_date(query.date_to, "“Added until”")
    except FormError as exc:
        errors.append(str(exc))
        after = before = None
    if after and before and after > before:
        errors.append("“Added from” is after “Added until”.")
    states: list[State] | None
    if query.state == "all":
        states = ["active", "paused", "archived"]
    elif query.state:
        states = [query.state]  # type: ignore[list-item]
    else:
        states = None
    filters = Filters(
        tags=[query.tag] if query.tag else None,
        app_id=app_id,
        states=states,
        created_after=datetime.combine(after, time.min, UTC) if after else None,
        created_before=datetime.combine(before + timedelta(days=1), time.min, UTC) if before else None,
    )
    return query, None if errors else filters, errors


@dataclass(frozen=True)
class Row:
    memory: MemoryOut
    score: float | None = None


@get("/memories", include_in_schema=False)
async def memories_page(web: Web) -> Template:
    query, filters, errors = parse_list_query(web.request.query_params)
    service = web.memories()
    apps = await list_apps(web.session)
    tags = await service.categories()
    rows: list[Row] = []
    next_cursor: str | None = None
    if filters is not None:
        try:
            if query.q:
                found = await service.search(query.q, limit=query.size, mode=query.mode, filters=filters)  # type: ignore[arg-type]
                rows = [Row(hit.memory, hit.similarity) for hit in found.hits]
            else:
                listed = await service.list_memories(
                    filters=filters,
                    sort=query.sort,  # type: ignore[arg-type]
                    limit=query.size,
                    cursor=query.cursor or None,
                )
                rows = [Row(m) for m in listed.items]
                next_cursor = listed.next_cursor
        except ProblemError as exc:
            errors.append(exc.detail)
    trail = [*query.trail, query.cursor] if query.cursor else query.trail
    next_url = query.url(cursor=next_cursor, trail=trail) if next_cursor else None
    prev_url = None
    if query.cursor:
        prev_url = query.url(cursor=query.trail[-1] if query.trail else "", trail=query.trail[:-1])
    return render(
        web,
        "memories.html",
        {
            "query": query,
            "rows": rows,
            "apps": apps,
            "tags": tags,
            "errors": errors,
            "sizes": SIZES,
            "next_url": next_url,
            "prev_url": prev_url,
            "page_number": len(query.trail) + (2 if query.cursor else 1),
            "here": query.url(),
        },
        nav="memories",
        status=400 if errors else 200,
    )


def _back(raw: object) -> str:
    path = flow.safe_next(raw if isinstance(raw, str) else None, "/memories")
    return path if path.startswith("/memories") else "/memories"


@post("/memories/bulk", include_in_schema=False, status_code=303)
async def bulk(web: Web) -> Redirect | Template:
    form = await web.form()
    back = _back(form.get("back"))
    action = form.get("action")
    if not isinstance(action, str) or action not in BULK_ACTIONS:
        return render(
            web,
            "problem.html",
            {"title": "Choose an action", "message": "Pick what to do with the selected memories.", "back": back},
            nav="memories",
            status=400,
        )
    ids: list[uuid.UUID] = []
    for raw in form.getall("ids", []):
        try:
            ids.append(parse_uuid(str(raw), "memory"))
        except FormError:
            continue
    if not ids:
        return render(
            web,
            "problem.html",
            {"title": "Nothing selected", "message": "Tick the memories you want to change first.", "back": back},
            nav="memories",
            status=400,
        )
    service = web.memories()
    if action == "delete":
        if form.get("confirm") != "yes":
            return render(web, "bulk_confirm.html", {"ids": ids, "back": back}, nav="memories")
        result = await service.delete_many(ids)
        return redirect(back, f"deleted-{result.deleted}")
    state = BULK_ACTIONS[action]
    assert state is not None
    changed = 0
    for memory_id in ids:
        try:
            await service.set_state(memory_id, state)
            changed += 1
        except ProblemError:
            continue  # deleted meanwhile, or never the caller's: nothing to change
    return redirect(back, f"changed-{changed}")


# --- create --------------------------------------------------------------------------------------------
def _new_page(web: Web, *, status: int = 200, **values: Any) -> Template:
    return render(web, "memory_new.html", {"values": values}, nav="memories", status=status)


@get("/memories/new", include_in_schema=False)
async def new_memory(web: Web) -> Template:
    return _new_page(web)


@post("/memories/new", include_in_schema=False, status_code=303)
async def create_memory(web: Web) -> Redirect | Template:
    form = await web.form()
    values = {name: str(form.get(name) or "") for name in ("content", "tags", "metadata")}
    try:
        tags = parse_tags(values["tags"])
        metadata = parse_metadata(values["metadata"])
        result = await web.memories().add(values["content"], tags=tags, metadata=metadata)
    except FormError as exc:
        return _new_page(web, status=400, error=str(exc), **values)
    except ProblemError as exc:
        await web.session.rollback()
        return _new_page(web, status=exc.status, error=exc.detail, **values)
    done = "created" if result.created else ("merged" if result.deduplicated == "merged" else "exists")
    return redirect(f"/memories/{result.memory.id}", done)
