"""The authorization endpoint and the consent page.

Until the client and its redirect URI are verified, errors are shown on our own page (never
redirected: that would make Engram an open redirector); after that they go back to the client.
"""

from __future__ import annotations

import re
import secrets
from typing import Annotated, Any

from litestar import Request, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body, Parameter
from litestar.response import Redirect, Response, Template
from sqlalchemy import text

from app.auth import scopes as scope_names
from app.auth.verifier import email_allowed
from app.db.session import Identity, bound_session
from app.oauth import flow
from app.oauth.browser import csrf_token, csrf_valid, current_user, with_cookies
from app.oauth.cimd import MetadataDocumentError
from app.oauth.clients import ClientRecord, RegistrationError, get_client, redirect_uri_matches
from app.oauth.metadata import DEFAULT_CLIENT_SCOPES
from app.oauth.pages import error_page, page
from app.services import Services, services_of

PKCE_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43,128}$")
Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]


async def _client(services: Services, client_id: str) -> ClientRecord | None:
    async with bound_session(services.sessions, None) as session:
        return await get_client(session, client_id, settings=services.settings)


def _requested_scopes(raw: str | None) -> list[str]:
    wanted = [s for s in (raw or "").split() if s in scope_names.ALL_SCOPES]
    return sorted(set(wanted)) if wanted else list(DEFAULT_CLIENT_SCOPES)


def _resource(raw: str | None, services: Services) -> str | None:
    allowed = {services.settings.mcp_resource, services.settings.api_audience}
    if not raw:
        return services.settings.mcp_resource
    candidate = raw.rstrip("/")
    return candidate if candidate in allowed else None


@get("/oauth/authorize", include_in_schema=False)
async def authorize(request: Request[Any, Any, Any]) -> Response[Any] | Template:
    services = services_of(request)
    params = request.query_params
    client_id = params.get("client_id")
    if not client_id:
        return error_page(services, "Incomplete request", "The application did not say who it is (no client_id).")
    try:
        client = await _client(services, client_id)
    except (MetadataDocumentError, RegistrationError) as exc:
        return error_page(services, "Application not usable", f"Its metadata document could not be used: {exc}")
    if client is None:
        return error_page(
            services,
            "Unknown application",
            "This application is not registered with Engram. Remove the server from the application and add it "
            "again so that it registers itself.",
        )
    redirect_uri = params.get("redirect_uri")
    if not redirect_uri and len(client.redirect_uris) == 1:
        redirect_uri = client.redirect_uris[0]
    if not redirect_uri or not redirect_uri_matches(client.redirect_uris, redirect_uri):
        return error_page(
            services,
            "Redirect address not registered",
            "The application asked to be sent back to an address it did not register, so Engram stops here.",
        )
    state = params.get("state")

    def fail(error: str, description: str) -> Redirect:
        return flow.client_redirect(
            redirect_uri, services.settings, error=error, error_description=description, state=state
        )

    if params.get("response_type") != "code":
        return fail("unsupported_response_type", "Only response_type=code is supported.")
    challenge = params.get("code_challenge") or ""
    if params.get("code_challenge_method") != "S256" or not PKCE_CHALLENGE.match(challenge):
        return fail("invalid_request", "PKCE with code_challenge_method=S256 is required.")
    resource = _resource(params.get("resource"), services)
    if resource is None:
        return fail("invalid_target", f"This server only issues tokens for {services.settings.mcp_resource}.")
    pending = flow.Pending(
        id=secrets.token_urlsafe(24),
        client_id=client.client_id,
        redirect_uri=redirect_uri,
        state=state,
        code_challenge=challenge,
        resource=resource,
        scopes=_requested_scopes(params.get("scope")),
        prompt=params.get("prompt"),
    )
    async with bound_session(services.sessions, None) as session:
        await flow.save_pending(session, pending)
    return Redirect(path=f"/oauth/authorize/continue?request={pending.id}", status_code=303)


@get("/oauth/authorize/continue", include_in_schema=False)
async def continue_authorization(
    request: Request[Any, Any, Any], pending_id: Annotated[str, Parameter(query="request")]
) -> Response[Any] | Template:
    services = services_of(request)
    async with bound_session(services.sessions, None) as session:
        pending = await flow.load_pending(session, pending_id)
    if pending is None:
        return error_page(
            services, "Request expired", "This sign-in request has expired. Start again in your application."
        )
    user = await current_user(request, services.sessions, services.settings)
    if user is None:
        return Redirect(path=f"/login?next=/oauth/authorize/continue%3Frequest%3D{pending.id}", status_code=303)
    if not email_allowed(services.settings, user.email):
        return error_page(services, "Not allowed", f"{user.email} may not use this Engram server.", status=403)
    async with bound_session(services.sessions, Identity(user.email, pending.client_id)) as session:
        granted = await session.scalar(
            text("SELECT scopes FROM oauth_consents WHERE client_id = :c"), {"c": pending.client_id}
        )
        if granted is not None and set(pending.scopes) <= set(granted) and pending.prompt != "consent":
            code = await flow.issue_code(session, pending, user.email, services.settings)
            await flow.audit(session, "OAUTH_AUTHORIZED", user.email, pending.client_id, remembered_consent=True)
            return flow.client_redirect(pending.redirect_uri, services.settings, code=code, state=pending.state)
    client = await _client(services, pending.client_id)
    csrf, cookie = csrf_token(request, services.settings)
    template = page(
        "consent.html",
        {
            "client_name": client.client_name if client else pending.client_id,
            "client_uri": client.client_uri if client else None,
            "redirect_host": flow.redirect_target_source(pending.redirect_uri),
            "scopes": pending.scopes,
            "scope_text": flow.SCOPE_TEXT,
            "email": user.email,
            "csrf": csrf,
            "pending_id": pending.id,
        },
        services,
        form_targets=(flow.redirect_target_source(pending.redirect_uri),),
    )
    if cookie is not None:
        template.cookies.append(cookie)
    return template


@post("/oauth/consent", include_in_schema=False, status_code=303)
async def consent(request: Request[Any, Any, Any], data: Form) -> Response[Any] | Template:
    services = services_of(request)
    if not csrf_valid(request, services.settings, data.get("csrf_token")):
        return error_page(services, "Form expired", "Reload the page and try again.", status=403)
    user = await current_user(request, services.sessions, services.settings)
    async with bound_session(services.sessions, None) as session:
        pending = await flow.load_pending(session, data.get("request", ""))
    if pending is None:
        return error_page(
            services, "Request expired", "This sign-in request has expired. Start again in your application."
        )
    if user is None:
        return Redirect(path=f"/login?next=/oauth/authorize/continue%3Frequest%3D{pending.id}", status_code=303)
    async with bound_session(services.sessions, Identity(user.email, pending.client_id)) as session:
        if data.get("decision") != "allow":
            await flow.drop_pending(session, pending.id)
            await flow.audit(session, "OAUTH_CONSENT_DENIED", user.email, pending.client_id)
            return flow.client_redirect(
                pending.redirect_uri,
                services.settings,
                error="access_denied",
                error_description="The user declined.",
                state=pending.state,
            )
        await session.execute(
            text(
                "INSERT INTO oauth_consents (owner_email, client_id, scopes) VALUES (:e, :c, :s) "
                "ON CONFLICT (owner_email, client_id) DO UPDATE "
                "SET scopes = ARRAY(SELECT DISTINCT unnest(oauth_consents.scopes || excluded.scopes)), "
                "granted_at = now()"
            ),
            {"e": user.email, "c": pending.client_id, "s": pending.scopes},
        )
        code = await flow.issue_code(session, pending, user.email, services.settings)
        await flow.audit(session, "OAUTH_AUTHORIZED", user.email, pending.client_id, scopes=pending.scopes)
    return with_cookies(flow.client_redirect(pending.redirect_uri, services.settings, code=code, state=pending.state))
