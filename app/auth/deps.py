"""Request dependencies: the authenticated principal, and the bound per-request memory context.

Each route states the scope it needs in `opt={"scope": ...}`; the principal dependency checks it,
so there is one mechanism for every route.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Principal
from app.auth.verifier import AuthFailure
from app.db.session import Identity, bind_now
from app.memories.service import MemoryContext
from app.oauth.metadata import DEFAULT_CLIENT_SCOPES, prm_url
from app.problems import ProblemError
from app.services import Services, services_of
from app.system.timing import phase
from app.users.service import touch


def request_id_of(request: Request[Any, Any, Any]) -> str | None:
    value = request.scope.get("state", {}).get("request_id")
    return value if isinstance(value, str) else None


def _challenge(services: Services, failure: AuthFailure | None, scope: str | None) -> str:
    metadata = prm_url(services.settings, "/api/v1")
    parts = [f'Bearer resource_metadata="{metadata}"']
    if failure is not None:
        parts.append(f'error="{failure.error}"')
        parts.append('error_description="{}"'.format(failure.description.replace('"', "'")))
    if scope:
        parts.append(f'scope="{scope}"')
    return ", ".join(parts)


async def provide_principal(request: Request[Any, Any, Any], db_session: NamedDependency[AsyncSession]) -> Principal:
    services = services_of(request)
    needed: str | None = request.route_handler.opt.get("scope")
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ProblemError(
            401,
            "unauthorized",
            "Authentication required",
            "Send a bearer token: Authorization: Bearer <personal access token or OAuth access token>.",
            # What a client should start with (read and write), not just this route's scope: asking
            # for read alone would make the first write send the person through consent again.
            headers={"WWW-Authenticate": _challenge(services, None, " ".join(DEFAULT_CLIENT_SCOPES))},
        )
    try:
        # The request's own session: token lookup, binding and the work share one transaction.
        with phase("auth"):
            principal = await services.verifier.verify(
                token.strip(), audiences=[services.settings.api_audience], session=db_session
            )
    except AuthFailure as failure:
        challenge = _challenge(services, failure, " ".join(DEFAULT_CLIENT_SCOPES))
        headers = {"WWW-Authenticate": challenge} if failure.status == 401 else {}
        if failure.status == 503:
            headers["Retry-After"] = "5"
        slug = {401: "invalid-token", 403: "access-denied", 503: "issuer-unavailable"}[failure.status]
        raise ProblemError(failure.status, slug, "Not authenticated", failure.description, headers=headers) from None
    if needed and not principal.has(needed):
        missing = AuthFailure(403, "insufficient_scope", f"This operation needs the {needed} scope.")
        raise ProblemError(
            403,
            "insufficient-scope",
            "Insufficient scope",
            f"This operation needs the {needed} scope; the token has {' '.join(sorted(principal.scopes)) or 'none'}.",
            headers={"WWW-Authenticate": _challenge(services, missing, needed)},
            required_scope=needed,
        )
    return principal


async def provide_memory_context(
    request: Request[Any, Any, Any], principal: Principal, db_session: NamedDependency[AsyncSession]
) -> MemoryContext:
    services = services_of(request)
    identity = Identity(principal.email, principal.client_id, request_id_of(request))
    with phase("caller"):
        await bind_now(db_session, identity, ef_search=services.settings.hnsw_ef_search)
        caller = await touch(db_session, principal)
    if caller.app_paused and not request.route_handler.opt.get("allow_paused_app"):
        raise ProblemError(
            403,
            "app-paused",
            "App paused",
            f"The app {caller.app_name!r} is paused: it can neither read nor write memories. "
            "Resume it in Engram's apps page or with PATCH /api/v1/apps/{id}.",
        )
    return MemoryContext(
        session=db_session,
        caller=caller,
        settings=services.settings,
        embedder=services.embedder,
        identity=identity,
        sessions=services.sessions,
        principal_scopes=principal.scopes,
    )
