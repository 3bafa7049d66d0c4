"""Clients: every app that has used the caller's memories; pause, resume, revoke its access."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from litestar import get, post
from litestar.response import Redirect, Template

from app.apps.service import AppOut, list_apps, set_paused
from app.tokens import service as tokens
from app.ui import grants
from app.ui.forms import FormError, parse_uuid
from app.ui.web import WEB_CLIENT_ID, Web, problem_page, redirect, render

Kind = Literal["web", "token", "oauth", "external"]
PAT_PREFIX = "pat:"


@dataclass(frozen=True)
class ClientView:
    app: AppOut
    kind: Kind
    revocable: bool


def _kind(app: AppOut, oauth_clients: set[str]) -> Kind:
    if app.client_id == WEB_CLIENT_ID:
        return "web"
    if app.client_id.startswith(PAT_PREFIX):
        return "token"
    return "oauth" if app.client_id in oauth_clients else "external"


async def _token_live(web: Web, client_id: str) -> bool:
    try:
        token_id = uuid.UUID(client_id.removeprefix(PAT_PREFIX))
    except ValueError:
        return False
    return any(t.id == token_id and t.revoked_at is None for t in await tokens.list_tokens(web.session))


@get("/clients", include_in_schema=False)
async def clients_page(web: Web) -> Template:
    apps = await list_apps(web.session)
    granted = await grants.granted_clients(web.session)
    oauth_clients = granted | await grants.registered_clients(web.session, [a.client_id for a in apps])
    live_tokens = {f"{PAT_PREFIX}{t.id}" for t in await tokens.list_tokens(web.session) if t.revoked_at is None}
    views = []
    for app in apps:
        kind = _kind(app, oauth_clients)
        revocable = app.client_id in granted or app.client_id in live_tokens
        views.append(ClientView(app=app, kind=kind, revocable=revocable))
    return render(
        web,
        "clients.html",
        {"clients": views, "access_minutes": web.services.settings.access_token_ttl_seconds // 60},
        nav="clients",
    )


async def _app(web: Web, raw: str) -> AppOut | None:
    try:
        app_id = parse_uuid(raw, "client")
    except FormError:
        return None
    return next((a for a in await list_apps(web.session) if a.id == app_id), None)


@post("/clients/{app_id:str}/pause", include_in_schema=False, status_code=303)
async def pause_client(web: Web, app_id: str) -> Redirect | Template:
    form = await web.form()
    app = await _app(web, app_id)
    if app is None:
        return problem_page(web, "Not found", "No client with that id has used your memories.", status=404)
    if app.client_id == WEB_CLIENT_ID:
        return problem_page(web, "Not possible", "This web interface cannot pause itself.", status=400, back="/clients")
    paused = form.get("paused") == "true"
    await set_paused(web.session, app.id, paused)
    return redirect("/clients", "paused" if paused else "resumed")


@post("/clients/{app_id:str}/revoke", include_in_schema=False, status_code=303)
async def revoke_client(web: Web, app_id: str) -> Redirect | Template:
    await web.form()
    app = await _app(web, app_id)
    if app is None:
        return problem_page(web, "Not found", "No client with that id has used your memories.", status=404)
    if app.client_id == WEB_CLIENT_ID:
        return problem_page(web, "Not possible", "Sign out to end this web session.", status=400, back="/clients")
    if app.client_id.startswith(PAT_PREFIX):
        if not await _token_live(web, app.client_id):
            return redirect("/clients", "nothing-to-revoke")
        await tokens.revoke(web.session, uuid.UUID(app.client_id.removeprefix(PAT_PREFIX)))
        return redirect("/clients", "revoked")
    revoked = await grants.revoke_grant(web.session, web.email, app.client_id)
    return redirect("/clients", "revoked" if revoked else "nothing-to-revoke")
