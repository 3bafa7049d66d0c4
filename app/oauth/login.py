"""Signing in to Engram itself: local accounts, the upstream OpenID Connect provider, sign-out,
the first-run set-up link and password change."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote

import structlog
from litestar import Request, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect, Response, Template
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.verifier import email_allowed, normalise_email
from app.db.session import Identity, bound_session
from app.oauth import flow, passwords
from app.oauth.browser import create_session, csrf_token, csrf_valid, current_user, end_session, with_cookies
from app.oauth.pages import error_page, page
from app.oauth.upstream import UpstreamError
from app.services import Services, services_of
from app.settings import Settings
from app.users.service import ensure_user

log = structlog.get_logger("engram.login")
Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]
LOCK_WINDOW = timedelta(minutes=15)
WRONG = "That email and password do not match an account."
# Upstream errors that refuse the person rather than report a broken provider: 403, not 502.
REFUSALS = frozenset({"group", "email_unverified"})


async def _signed_in(services: Services, email: str, method: str, next_path: str) -> Response[Any]:
    _, cookie = await create_session(services.sessions, services.settings, email, method)
    return with_cookies(Redirect(path=next_path, status_code=303), cookie)


def _login_page(
    request: Request[Any, Any, Any], services: Services, next_path: str, *, status: int = 200, **extra: Any
) -> Template:
    csrf, cookie = csrf_token(request, services.settings)
    template = page(
        "login.html",
        {
            "next": next_path,
            "csrf": csrf,
            "sso": services.settings.oidc_issuer is not None,
            "local": services.settings.local_accounts_enabled,
            **extra,
        },
        services,
        status=status,
    )
    if cookie is not None:
        template.cookies.append(cookie)
    return template


@get("/login", include_in_schema=False)
async def login_page(
    request: Request[Any, Any, Any], next: str | None = None, signed_out: str | None = None
) -> Response[Any] | Template:
    services = services_of(request)
    next_path = flow.safe_next(next)
    if await current_user(request, services.sessions, services.settings):
        return Redirect(path=next_path, status_code=303)
    # Just signed out: stay here (the provider's own session would sign the browser straight back in).
    if services.settings.oidc_issuer and not services.settings.local_accounts_enabled and not signed_out:
        return Redirect(path=f"/login/sso?next={quote(next_path)}", status_code=303)
    return _login_page(request, services, next_path, signed_out=bool(signed_out))


async def _too_many_failures(services: Services, address: str) -> bool:
    async with bound_session(services.sessions, None) as session:
        await session.execute(text("DELETE FROM login_failures WHERE at < now() - interval '1 hour'"))
        recent = await session.scalar(
            text("SELECT count(*) FROM login_failures WHERE address = :a AND at > now() - interval '15 minutes'"),
            {"a": address},
        )
    return int(recent or 0) >= services.settings.login_max_failures * 4


@post("/login", include_in_schema=False, status_code=303)
async def login_submit(request: Request[Any, Any, Any], data: Form) -> Response[Any] | Template:
    services = services_of(request)
    settings = services.settings
    next_path = flow.safe_next(data.get("next"))
    if not settings.local_accounts_enabled:
        return error_page(services, "Local accounts are off", "Sign in with single sign-on instead.", status=403)
    if not csrf_valid(request, settings, data.get("csrf_token")):
        return _login_page(request, services, next_path, error="The form expired; try again.", status=403)
    email = normalise_email(data.get("email"))
    password = data.get("password", "")
    address = flow.client_address(request)
    if await _too_many_failures(services, address):
        return _login_page(request, services, next_path, error="Too many failed attempts; wait 15 minutes.", status=429)
    if email is None:
        return _login_page(request, services, next_path, error=WRONG, status=400)
    async with bound_session(services.sessions, Identity(email, "web")) as session:
        account = (
            await session.execute(
                text("SELECT password_hash, locked_until FROM local_accounts WHERE owner_email = :e FOR UPDATE"),
                {"e": email},
            )
        ).one_or_none()
        locked = account is not None and account.locked_until is not None and account.locked_until > datetime.now(UTC)
        ok = await passwords.verify_password(password, account.password_hash if account else None)
        allowed = email_allowed(settings, email)
        if ok and not locked:
            await session.execute(
                text("UPDATE local_accounts SET failed_attempts = 0, locked_until = NULL WHERE owner_email = :e"),
                {"e": email},
            )
            if allowed:
                await flow.audit(session, "LOGIN", email, None, method="local")
            else:
                await flow.audit(session, "LOGIN_FAILED", email, None, method="local", reason="email not allowed")
        else:
            if account is not None and not locked:
                await session.execute(
                    text(
                        "UPDATE local_accounts SET failed_attempts = failed_attempts + 1, "
                        "locked_until = CASE WHEN failed_attempts + 1 >= :max THEN now() + interval '15 minutes' END "
                        "WHERE owner_email = :e"
                    ),
                    {"e": email, "max": settings.login_max_failures},
                )
            await session.execute(text("INSERT INTO login_failures (address) VALUES (:a)"), {"a": address})
            await flow.audit(session, "LOGIN_FAILED", email, None, method="local", locked=locked)
    if not ok or locked:
        message = "This account is locked for 15 minutes after repeated failures." if locked else WRONG
        return _login_page(request, services, next_path, error=message, email=email, status=401)
    if not allowed:
        return error_page(services, "Not allowed", f"{email} may not use this Engram server.", status=403)
    return await _signed_in(services, email, "local", next_path)


@get("/login/sso", include_in_schema=False)
async def sso_start(request: Request[Any, Any, Any], next: str | None = None) -> Response[Any] | Template:
    services = services_of(request)
    if not services.settings.oidc_issuer:
        return error_page(services, "Single sign-on is not configured", "Sign in with your Engram account.")
    state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    verifier = secrets.token_urlsafe(48)  # RFC 7636: 43 to 128 characters
    assert services.upstream is not None
    try:
        url = await services.upstream.authorization_url(
            state=state,
            nonce=nonce,
            code_verifier=verifier,
            redirect_uri=services.settings.public_url + "/oauth/callback",
        )
    except UpstreamError as exc:
        log.warning("single sign-on unavailable", problem=exc.operator_message)
        return error_page(services, "Sign-in unavailable", exc.user_message, status=502)
    async with bound_session(services.sessions, None) as session:
        await session.execute(
            text(
                "INSERT INTO login_states (id, nonce, code_verifier, next_path, expires_at) "
                "VALUES (:id, :nonce, :verifier, :next, now() + interval '10 minutes')"
            ),
            {"id": state, "nonce": nonce, "verifier": verifier, "next": flow.safe_next(next)},
        )
        await session.execute(text("DELETE FROM login_states WHERE expires_at < now() - interval '1 hour'"))
    return Redirect(path=url, status_code=303)


@get("/oauth/callback", include_in_schema=False)
async def sso_callback(request: Request[Any, Any, Any]) -> Response[Any] | Template:
    services = services_of(request)
    params = request.query_params
    async with bound_session(services.sessions, None) as session:
        row = (
            await session.execute(
                text(
                    "DELETE FROM login_states WHERE id = :id AND expires_at > now() "
                    "RETURNING nonce, code_verifier, next_path"
                ),
                {"id": params.get("state", "")},
            )
        ).one_or_none()
    if row is None:
        return error_page(services, "Sign-in expired", "This sign-in took too long or was already used. Start again.")
    if params.get("error"):
        return error_page(
            services,
            "Sign-in refused",
            f"The identity provider did not sign you in ({params.get('error')}). "
            "Start again, or ask your administrator.",
            status=403,
        )
    if services.upstream is None:
        return error_page(services, "Single sign-on is not configured", "Sign in with your Engram account.")
    try:
        identity = await services.upstream.complete(
            code=params.get("code", ""),
            code_verifier=row.code_verifier,
            redirect_uri=services.settings.public_url + "/oauth/callback",
            nonce=row.nonce,
            iss=params.get("iss"),
        )
    except UpstreamError as exc:
        log.warning("single sign-on failed", problem=exc.operator_message)
        async with bound_session(services.sessions, None) as session:
            await flow.audit(session, "LOGIN_FAILED", None, None, method="sso", reason=exc.operator_message)
        if exc.reason in REFUSALS:  # the provider works; this person may not use Engram
            return error_page(services, "Sign-in refused", exc.user_message, status=403)
        return error_page(services, "Sign-in failed", exc.user_message, status=502)
    if not email_allowed(services.settings, identity.email):
        async with bound_session(services.sessions, None) as session:
            await flow.audit(session, "LOGIN_FAILED", identity.email, None, method="sso", reason="email not allowed")
        return error_page(services, "Not allowed", f"{identity.email} may not use this Engram server.", status=403)
    async with bound_session(services.sessions, Identity(identity.email, "web")) as session:
        await ensure_user(session, identity.email)
        await flow.audit(session, "LOGIN", identity.email, None, method="sso")
    return await _signed_in(services, identity.email, "sso", row.next_path)


@post("/logout", include_in_schema=False, status_code=303)
async def logout(request: Request[Any, Any, Any], data: Form) -> Response[Any] | Template:
    services = services_of(request)
    if not csrf_valid(request, services.settings, data.get("csrf_token")):
        return error_page(services, "Form expired", "Reload the page and try again.", status=403)
    user = await current_user(request, services.sessions, services.settings)
    # Not back into single sign-on: a form's redirect chain may not leave the site (CSP form-action).
    response = Redirect(path="/login?signed_out=1", status_code=303)
    if user is not None:
        response.set_cookie(await end_session(services.sessions, user, services.settings))
    return response


# --- first run -------------------------------------------------------------------------------------
async def create_setup_link(sessions: async_sessionmaker[AsyncSession], settings: Settings) -> str | None:
    """A one-time link to create the first account, when local accounts are on and none exists."""
    if not settings.local_accounts_enabled:
        return None
    async with bound_session(sessions, None) as session:
        if int(await session.scalar(text("SELECT engram_local_account_count()")) or 0) > 0:
            return None
        token = secrets.token_urlsafe(32)
        await session.execute(
            text("INSERT INTO setup_links (token_hash, expires_at) VALUES (:h, now() + interval '24 hours')"),
            {"h": flow.token_hash(token)},
        )
    return f"{settings.public_url}/setup?token={token}"


async def _setup_link_valid(services: Services, token: str) -> bool:
    async with bound_session(services.sessions, None) as session:
        return bool(
            await session.scalar(
                text("SELECT 1 FROM setup_links WHERE token_hash = :h AND used_at IS NULL AND expires_at > now()"),
                {"h": flow.token_hash(token)},
            )
        )


def _setup_page(request: Request[Any, Any, Any], services: Services, token: str, **extra: Any) -> Template:
    csrf, cookie = csrf_token(request, services.settings)
    status = extra.pop("status", 200)
    template = page("setup.html", {"csrf": csrf, "token": token, **extra}, services, status=status)
    if cookie is not None:
        template.cookies.append(cookie)
    return template


@get("/setup", include_in_schema=False)
async def setup_page(request: Request[Any, Any, Any], token: str = "") -> Template:
    services = services_of(request)
    if not await _setup_link_valid(services, token):
        return error_page(services, "Link not valid", "This set-up link was already used or has expired.", status=404)
    return _setup_page(request, services, token)


@post("/setup", include_in_schema=False, status_code=303)
async def setup_submit(request: Request[Any, Any, Any], data: Form) -> Response[Any] | Template:
    services = services_of(request)
    token = data.get("token", "")
    if not csrf_valid(request, services.settings, data.get("csrf_token")):
        return _setup_page(request, services, token, error="The form expired; try again.", status=403)
    email = normalise_email(data.get("email"))
    if email is None:
        return _setup_page(request, services, token, error="Enter a valid email address.", status=400)
    try:
        passwords.check_strength(data.get("password", ""), email)
    except passwords.WeakPassword as exc:
        return _setup_page(request, services, token, error=str(exc), email=email, status=400)
    password_hash = await passwords.hash_password(data.get("password", ""))
    async with bound_session(services.sessions, None) as session:
        used = await session.scalar(
            text(
                "UPDATE setup_links SET used_at = now() WHERE token_hash = :h AND used_at IS NULL "
                "AND expires_at > now() RETURNING 1"
            ),
            {"h": flow.token_hash(token)},
        )
    if not used:
        return error_page(services, "Link not valid", "This set-up link was already used or has expired.", status=404)
    await add_local_account(services.sessions, email, password_hash, admin=True)
    return await _signed_in(services, email, "local", "/")


async def add_local_account(
    sessions: async_sessionmaker[AsyncSession], email: str, password_hash: str, *, admin: bool = False
) -> None:
    async with bound_session(sessions, Identity(email, "cli")) as session:
        await ensure_user(session, email)
        await session.execute(
            text(
                "INSERT INTO local_accounts (owner_email, password_hash, is_admin) VALUES (:e, :h, :a) "
                "ON CONFLICT (owner_email) DO UPDATE SET password_hash = excluded.password_hash, "
                "password_changed_at = now(), failed_attempts = 0, locked_until = NULL"
            ),
            {"e": email, "h": password_hash, "a": admin},
        )


# --- password change -------------------------------------------------------------------------------
@get("/account/password", include_in_schema=False)
async def password_page(request: Request[Any, Any, Any]) -> Response[Any] | Template:
    services = services_of(request)
    user = await current_user(request, services.sessions, services.settings)
    if user is None:
        return Redirect(path="/login?next=/account/password", status_code=303)
    csrf, cookie = csrf_token(request, services.settings)
    template = page("password.html", {"csrf": csrf, "email": user.email}, services)
    if cookie is not None:
        template.cookies.append(cookie)
    return template


@post("/account/password", include_in_schema=False, status_code=200)
async def password_submit(request: Request[Any, Any, Any], data: Form) -> Response[Any] | Template:
    services = services_of(request)
    user = await current_user(request, services.sessions, services.settings)
    if user is None:
        return Redirect(path="/login?next=/account/password", status_code=303)
    csrf, _ = csrf_token(request, services.settings)

    def again(error: str, status: int) -> Template:
        return page("password.html", {"csrf": csrf, "email": user.email, "error": error}, services, status=status)

    if not csrf_valid(request, services.settings, data.get("csrf_token")):
        return again("The form expired; try again.", 403)
    async with bound_session(services.sessions, Identity(user.email, "web")) as session:
        current = await session.scalar(
            text("SELECT password_hash FROM local_accounts WHERE owner_email = :e"), {"e": user.email}
        )
    if current is None:
        return again("Your account signs in through single sign-on; change the password there.", 400)
    if not await passwords.verify_password(data.get("current", ""), current):
        return again("The current password is not right.", 400)
    try:
        passwords.check_strength(data.get("new", ""), user.email)
    except passwords.WeakPassword as exc:
        return again(str(exc), 400)
    new_hash = await passwords.hash_password(data.get("new", ""))
    async with bound_session(services.sessions, Identity(user.email, "web")) as session:
        await session.execute(
            text("UPDATE local_accounts SET password_hash = :h, password_changed_at = now() WHERE owner_email = :e"),
            {"h": new_hash, "e": user.email},
        )
        # Every other browser session of this user ends with the old password.
        await session.execute(
            text("DELETE FROM browser_sessions WHERE token_hash <> :h"), {"h": flow.token_hash(user.session_id)}
        )
    return page("password.html", {"csrf": csrf, "email": user.email, "done": True}, services)
