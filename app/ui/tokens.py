"""Tokens: personal access tokens (create, list, revoke) and OAuth grants (list, revoke)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from litestar import get, post
from litestar.datastructures import FormMultiDict
from litestar.response import Redirect, Template

from app.auth import scopes
from app.db.models import PersonalAccessToken
from app.oauth.flow import SCOPE_TEXT
from app.problems import ProblemError
from app.tokens import service as tokens
from app.ui import grants
from app.ui.forms import FormError, parse_uuid
from app.ui.web import Web, problem_page, redirect, render

EXPIRY_CHOICES = (7, 30, 90, 180, 365)


@dataclass(frozen=True)
class TokenView:
    record: PersonalAccessToken
    status: str  # active, expired or revoked


def _status(t: PersonalAccessToken, now: datetime) -> str:
    if t.revoked_at is not None:
        return "revoked"
    if t.expires_at is not None and t.expires_at <= now:
        return "expired"
    return "active"


def default_days(web: Web) -> int:
    days = web.services.settings.token_default_days
    return days if days in EXPIRY_CHOICES else 90


def token_form_defaults(web: Web) -> dict[str, Any]:
    return {"name": "", "scopes": [scopes.READ, scopes.WRITE], "days": default_days(web)}


async def create_from_form(web: Web, form: FormMultiDict, default_name: str) -> tokens.CreatedToken:
    """A token from the create form; FormError or ProblemError say what to fix."""
    name = str(form.get("name") or "").strip() or default_name
    chosen = [s for s in form.getall("scopes", []) if isinstance(s, str)]
    if not chosen:
        raise FormError("Choose at least one permission for the token.")
    if set(chosen) - set(scopes.ALL_SCOPES):
        raise FormError("Unknown permission.")
    days_raw = str(form.get("days") or "")
    if not days_raw.isdigit() or int(days_raw) not in EXPIRY_CHOICES:
        # Never-expiring tokens come only from the CLI: a stolen browser session must not mint one.
        raise FormError(f"Choose an expiry of {', '.join(map(str, EXPIRY_CHOICES))} days.")
    return await tokens.create(web.session, web.email, name, chosen, int(days_raw))


async def _page(web: Web, *, status: int = 200, **extra: Any) -> Template:
    now = datetime.now(UTC)
    records = await tokens.list_tokens(web.session)
    return render(
        web,
        "tokens.html",
        {
            "tokens": [TokenView(t, _status(t, now)) for t in records],
            "grants": await grants.list_grants(web.session),
            "scope_names": scopes.ALL_SCOPES,
            "scope_text": SCOPE_TEXT,
            "expiry_choices": EXPIRY_CHOICES,
            "values": extra.pop("values", token_form_defaults(web)),
            "access_minutes": web.services.settings.access_token_ttl_seconds // 60,
            **extra,
        },
        nav="tokens",
        status=status,
    )


@get("/tokens", include_in_schema=False)
async def tokens_page(web: Web) -> Template:
    return await _page(web)


@post("/tokens", include_in_schema=False, status_code=200)
async def create_token(web: Web) -> Template:
    form = await web.form()
    values = {
        "name": str(form.get("name") or ""),
        "scopes": [s for s in form.getall("scopes", []) if isinstance(s, str)],
        "days": int(str(form.get("days"))) if str(form.get("days") or "").isdigit() else default_days(web),
    }
    try:
        created = await create_from_form(web, form, "Personal token")
    except FormError as exc:
        return await _page(web, status=400, error=str(exc), values=values)
    except ProblemError as exc:
        return await _page(web, status=exc.status, error=exc.detail, values=values)
    # Shown once, in this response only (never in a URL or a redirect).
    return await _page(web, created=created)


@post("/tokens/{token_id:str}/revoke", include_in_schema=False, status_code=303)
async def revoke_token(web: Web, token_id: str) -> Redirect | Template:
    form = await web.form()
    try:
        the_id = parse_uuid(token_id, "token")
    except FormError as exc:
        return problem_page(web, "Not found", str(exc), status=404, back="/tokens")
    await tokens.revoke(web.session, the_id)
    back = "/connect" if form.get("back") == "connect" else "/tokens"
    return redirect(back, "token-revoked")


@post("/tokens/grants/revoke", include_in_schema=False, status_code=303)
async def revoke_grant(web: Web) -> Redirect:
    form = await web.form()
    client_id = str(form.get("client_id") or "")
    revoked = bool(client_id) and await grants.revoke_grant(web.session, web.email, client_id)
    return redirect("/tokens", "revoked" if revoked else "nothing-to-revoke")
