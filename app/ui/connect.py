"""Connect: a tab per MCP client with its exact command or configuration for this server, and an
optional personal access token (created here, shown once) for setups that cannot do OAuth."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import get, post
from litestar.response import Template
from markupsafe import Markup

from app.auth import scopes
from app.connect import CLIENTS, Client, Snippet, logo_svg, snippet
from app.connect import get as get_client
from app.connect.clients import Platform, mcp_url
from app.oauth.flow import SCOPE_TEXT
from app.problems import ProblemError
from app.tokens.service import CreatedToken
from app.ui.forms import FormError
from app.ui.tokens import EXPIRY_CHOICES, create_from_form, default_days
from app.ui.web import Web, render

PLATFORMS: tuple[tuple[Platform, str], ...] = (
    ("darwin", "macOS"),
    ("win32", "Windows"),
    ("linux", "Linux"),
)
DEFAULT_CLIENT = "claude-code"
DEFAULT_PLATFORM: Platform = "darwin"


@dataclass(frozen=True)
class Tab:
    client: Client
    logo: Markup
    snippet: Snippet


def decorative_logo(client: Client) -> Markup:
    """The client's vendored SVG (or monogram) inline, coloured with its brand and hidden from
    screen readers: the client's name is always written next to it."""
    svg = logo_svg(client.id)
    attributes = 'aria-hidden="true" focusable="false" class="logo"'
    if client.brand:
        attributes += f' fill="{client.brand}"'
    return Markup(svg.replace("<svg ", f"<svg {attributes} ", 1))  # noqa: S704 - our vendored files


def _choice(raw: object, allowed: set[str], default: str) -> str:
    return raw if isinstance(raw, str) and raw in allowed else default


def _page(
    web: Web,
    *,
    selected: str,
    platform: Platform,
    created: CreatedToken | None = None,
    status: int = 200,
    **extra: Any,
) -> Template:
    url = web.services.settings.public_url
    token = created.token if created else None
    tabs = [Tab(c, decorative_logo(c), snippet(c.id, url=url, token=token, platform=platform)) for c in CLIENTS]
    return render(
        web,
        "connect.html",
        {
            "tabs": tabs,
            "selected": selected,
            "platform": platform,
            "platforms": PLATFORMS,
            "mcp_url": mcp_url(url),
            "created": created,
            "scope_names": scopes.ALL_SCOPES,
            "scope_text": SCOPE_TEXT,
            "expiry_choices": EXPIRY_CHOICES,
            "values": extra.pop("values", {"scopes": [scopes.READ, scopes.WRITE], "days": default_days(web)}),
            **extra,
        },
        nav="connect",
        status=status,
    )


def _ids() -> set[str]:
    return {c.id for c in CLIENTS}


@get("/connect", include_in_schema=False)
async def connect_page(web: Web) -> Template:
    params = web.request.query_params
    return _page(
        web,
        selected=_choice(params.get("client"), _ids(), DEFAULT_CLIENT),
        platform=_choice(params.get("os"), {p for p, _ in PLATFORMS}, DEFAULT_PLATFORM),  # type: ignore[arg-type]
    )


@post("/connect/token", include_in_schema=False, status_code=200)
async def connect_token(web: Web) -> Template:
    form = await web.form()
    selected = _choice(form.get("client"), _ids(), DEFAULT_CLIENT)
    platform = _choice(form.get("os"), {p for p, _ in PLATFORMS}, DEFAULT_PLATFORM)
    name = f"{get_client(selected).name} (from Connect)"
    values = {
        "scopes": [s for s in form.getall("scopes", []) if isinstance(s, str)],
        "days": int(str(form.get("days"))) if str(form.get("days") or "").isdigit() else default_days(web),
    }
    try:
        created = await create_from_form(web, form, name)
    except (FormError, ProblemError) as exc:
        message = exc.detail if isinstance(exc, ProblemError) else str(exc)
        return _page(
            web,
            selected=selected,
            platform=platform,  # type: ignore[arg-type]
            status=400,
            token_error=message,
            values=values,
        )
    return _page(web, selected=selected, platform=platform, created=created)  # type: ignore[arg-type]
