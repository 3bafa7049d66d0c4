"""The signed-in browser user as every UI page sees them, and how a UI page answers.

The principal of the UI is the browser user acting through the client "web" ("Engram web"): the
same MemoryContext as the REST API builds for a bearer token, bound to the same row-level
security identity. A paused "web" app does not lock its owner out of their own UI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from litestar import Request, Response
from litestar.datastructures import Cookie, FormMultiDict
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import scopes
from app.auth.deps import request_id_of
from app.auth.principal import Principal
from app.auth.verifier import email_allowed
from app.db.session import Identity, bind
from app.memories.service import MemoryContext, MemoryService
from app.oauth.browser import CSRF_FIELD, SignedIn, csrf_token, csrf_valid, current_user
from app.oauth.pages import error_page, page
from app.problems import ProblemError
from app.services import Services, services_of
from app.users.service import touch

WEB_CLIENT_ID = "web"
WEB_CLIENT_NAME = "Engram web"
NAV = (
    ("dashboard", "/", "Dashboard"),
    ("memories", "/memories", "Memories"),
    ("clients", "/clients", "Clients"),
    ("connect", "/connect", "Connect"),
    ("tokens", "/tokens", "Tokens"),
)
# Outcomes a redirect after a form can report: a fixed list, so a link cannot put words on the page.
NOTICES = {
    "created": "Memory saved.",
    "exists": "You already had a memory with exactly this text; here it is.",
    "merged": "This text replaced a near-identical memory.",
    "updated": "Memory updated.",
    "state": "State changed.",
    "deleted": "Memory deleted.",
    "paused": "Client paused: it can neither read nor write memories until you resume it.",
    "resumed": "Client resumed.",
    "revoked": "Access revoked.",
    "nothing-to-revoke": "That client holds no tokens or consent to revoke.",
    "token-revoked": "Token revoked.",
}
COUNTED_NOTICES = {
    "deleted": ("{n} memory deleted.", "{n} memories deleted."),
    "changed": ("{n} memory changed.", "{n} memories changed."),
}


def notice(done: str) -> str | None:
    name, _, count = done.rpartition("-")
    if name in COUNTED_NOTICES and count.isdigit():
        one, many = COUNTED_NOTICES[name]
        return (one if int(count) == 1 else many).format(n=int(count))
    return NOTICES.get(done)


class SignInRequired(Exception):
    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


@dataclass
class Web:
    request: Request[Any, Any, Any]
    services: Services
    user: SignedIn
    ctx: MemoryContext
    csrf: str
    csrf_cookie: Cookie | None

    @property
    def email(self) -> str:
        return self.user.email

    @property
    def session(self) -> AsyncSession:
        return self.ctx.session

    def memories(self) -> MemoryService:
        return MemoryService(self.ctx)

    async def form(self) -> FormMultiDict:
        """The submitted form, after checking its CSRF token."""
        form = await self.request.form()
        submitted = form.get(CSRF_FIELD)
        if not csrf_valid(self.request, self.services.settings, submitted if isinstance(submitted, str) else None):
            raise ProblemError(
                403,
                "csrf",
                "Form expired",
                "This form expired or was sent from another site. Reload the page and try again.",
            )
        return form


def _here(request: Request[Any, Any, Any]) -> str:
    query = request.scope.get("query_string", b"").decode("latin-1")
    return request.url.path + (f"?{query}" if query else "")


def web_principal(email: str) -> Principal:
    return Principal(
        email=email,
        scopes=scopes.expand(scopes.ALL_SCOPES),
        kind="session",
        client_id=WEB_CLIENT_ID,
        client_name=WEB_CLIENT_NAME,
    )


async def provide_web(request: Request[Any, Any, Any], db_session: NamedDependency[AsyncSession]) -> Web:
    services = services_of(request)
    settings = services.settings
    user = await current_user(request, services.sessions, settings)
    if user is None:
        raise SignInRequired(_here(request) if request.method == "GET" else "/")
    if not email_allowed(settings, user.email):
        raise ProblemError(403, "forbidden", "Not allowed", f"{user.email} may not use this Engram server.")
    identity = Identity(user.email, WEB_CLIENT_ID, request_id_of(request))
    bind(db_session, identity, ef_search=settings.hnsw_ef_search)
    caller = await touch(db_session, web_principal(user.email))
    ctx = MemoryContext(
        session=db_session,
        caller=caller,
        settings=settings,
        embedder=services.embedder,
        identity=identity,
        sessions=services.sessions,
        principal_scopes=scopes.expand(scopes.ALL_SCOPES),
    )
    csrf, cookie = csrf_token(request, settings)
    web = Web(request=request, services=services, user=user, ctx=ctx, csrf=csrf, csrf_cookie=cookie)
    request.state.ui_web = web
    return web


def render(web: Web, template: str, context: dict[str, Any], *, nav: str | None, status: int = 200) -> Template:
    response = page(
        template,
        {
            "user_email": web.email,
            "csrf": web.csrf,
            "nav": NAV,
            "current": nav,
            "local_accounts": web.services.settings.local_accounts_enabled,
            "notice": notice(str(web.request.query_params.get("done", ""))),
            **context,
        },
        web.services,
        status=status,
    )
    if web.csrf_cookie is not None:
        response.cookies.append(web.csrf_cookie)
    return response


def redirect(path: str, done: str | None = None) -> Redirect:
    if done:
        path += ("&" if "?" in path else "?") + f"done={done}"
    return Redirect(path=path, status_code=303)


def problem_page(web: Web, title: str, message: str, *, status: int, back: str | None = None) -> Template:
    return render(web, "problem.html", {"title": title, "message": message, "back": back}, nav=None, status=status)


# --- exception handlers of the UI router: pages, never problem+json or a 500 ----------------------------
def _sign_in(request: Request[Any, Any, Any], exc: SignInRequired) -> Response[Any]:
    return Redirect(path=f"/login?next={quote(exc.next_path, safe='/')}", status_code=303)


def _problem(request: Request[Any, Any, Any], exc: ProblemError) -> Response[Any]:
    web: Web | None = getattr(request.state, "ui_web", None)
    if web is None:
        return error_page(services_of(request), exc.title, exc.detail, status=exc.status)
    return problem_page(web, exc.title, exc.detail, status=exc.status)


_HTTP_MESSAGES = {
    400: ("Not understood", "The page could not read what was sent. Go back and check the form."),
    404: ("Not found", "There is nothing at this address."),
    405: ("Not possible", "This page cannot be used that way."),
    413: ("Too large", "What you sent is larger than this server accepts."),
}


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    title, message = _HTTP_MESSAGES.get(exc.status_code, ("Something is not right", str(exc.detail)))
    return _problem(request, ProblemError(exc.status_code, "http", title, message))


EXCEPTION_HANDLERS: dict[Any, Any] = {
    SignInRequired: _sign_in,
    ProblemError: _problem,
    HTTPException: _http,
}
