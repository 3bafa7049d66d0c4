"""REST routes for apps, the caller's identity and personal access tokens."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec
from litestar import Controller, delete, get, patch, post
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from app.apps import service
from app.apps.service import AppOut, AppPatch
from app.auth.scopes import READ, WRITE
from app.memories.service import MemoryContext
from app.problems import ProblemError
from app.tokens import service as tokens


class Me(msgspec.Struct):
    email: str
    scopes: list[str]
    client_id: str
    app_id: uuid.UUID
    app_name: str
    memory_count: int


class TokenCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    scopes: list[str]
    expires_in_days: int | None = None


class TokenOut(msgspec.Struct):
    id: uuid.UUID
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(msgspec.Struct):
    token: str
    details: TokenOut


def _token_out(t: tokens.PersonalAccessToken) -> TokenOut:
    return TokenOut(
        id=t.id,
        name=t.name,
        prefix=t.token_prefix,
        scopes=list(t.scopes),
        created_at=t.created_at,
        expires_at=t.expires_at,
        last_used_at=t.last_used_at,
        revoked_at=t.revoked_at,
    )


class AccountController(Controller):
    path = "/api/v1"

    @get("/me", opt={"scope": READ, "allow_paused_app": True}, tags=["account"])
    async def me(self, ctx: MemoryContext) -> Me:
        return Me(
            email=ctx.caller.email,
            scopes=sorted(ctx.principal_scopes),
            client_id=ctx.caller.client_id,
            app_id=ctx.caller.app_id,
            app_name=ctx.caller.app_name,
            memory_count=ctx.caller.memory_count,
        )

    @get("/apps", opt={"scope": READ, "allow_paused_app": True}, tags=["apps"])
    async def list_apps(self, ctx: MemoryContext) -> list[AppOut]:
        return await service.list_apps(ctx.session)

    @patch("/apps/{app_id:uuid}", opt={"scope": WRITE, "allow_paused_app": True}, tags=["apps"])
    async def patch_app(self, ctx: MemoryContext, app_id: uuid.UUID, data: AppPatch) -> AppOut:
        """Pause (a paused app can neither read nor write) or resume an app."""
        return await service.set_paused(ctx.session, app_id, data.paused)

    @get("/tokens", opt={"scope": READ}, tags=["tokens"])
    async def list_tokens(self, ctx: MemoryContext) -> list[TokenOut]:
        return [_token_out(t) for t in await tokens.list_tokens(ctx.session)]

    @post("/tokens", opt={"scope": WRITE}, status_code=HTTP_201_CREATED, tags=["tokens"])
    async def create_token(self, ctx: MemoryContext, data: TokenCreate) -> TokenCreated:
        """Creates a personal access token. The token is shown once; only its hash is stored.
        A token can carry at most the scopes of the credential that creates it."""
        allowed = ctx.principal_scopes
        too_broad = sorted(set(data.scopes) - allowed)
        if too_broad:
            raise ProblemError(
                403,
                "insufficient-scope",
                "Insufficient scope",
                f"A token cannot grant more than its creator holds; missing: {', '.join(too_broad)}.",
            )
        days = ctx.settings.token_default_days if data.expires_in_days is None else data.expires_in_days
        if not 1 <= (days or 0) <= 365:
            # Never-expiring tokens come only from the CLI: a stolen token must not mint an eternal one.
            raise ProblemError(400, "invalid-request", "Invalid request", "expires_in_days must be between 1 and 365.")
        created = await tokens.create(ctx.session, ctx.caller.email, data.name, data.scopes, days or None)
        return TokenCreated(token=created.token, details=_token_out(created.record))

    @delete("/tokens/{token_id:uuid}", opt={"scope": WRITE}, status_code=HTTP_200_OK, tags=["tokens"])
    async def revoke_token(self, ctx: MemoryContext, token_id: uuid.UUID) -> TokenOut:
        return _token_out(await tokens.revoke(ctx.session, token_id))
