"""Start-up checks: the runtime role must not be able to get around row-level security."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

USER_OWNED_TABLES = (
    "users",
    "apps",
    "memories",
    "memory_history",
    "memory_access_log",
    "personal_access_tokens",
)


class UnsafeDatabaseRole(RuntimeError):
    """The configured runtime role could read other users' rows; Engram refuses to serve."""


class SchemaMismatch(RuntimeError):
    """The database is not in the shape this version of Engram expects."""


async def check_runtime_role(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        role = (
            await conn.execute(
                text("SELECT current_user AS name, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
            )
        ).one()
        problems: list[str] = []
        if role.rolsuper:
            problems.append("it is a superuser")
        if role.rolbypassrls:
            problems.append("it has BYPASSRLS")
        tables = (
            await conn.execute(
                text(
                    "SELECT c.relname, pg_get_userbyid(c.relowner) AS owner, c.relrowsecurity, c.relforcerowsecurity, "
                    "pg_has_role(current_user, c.relowner, 'MEMBER') AS member_of_owner "
                    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = current_schema() AND c.relname = ANY(:tables)"
                ),
                {"tables": list(USER_OWNED_TABLES)},
            )
        ).all()
        for t in tables:
            if t.member_of_owner:
                problems.append(f"it owns (or is a member of the owner {t.owner!r} of) table {t.relname!r}")
            if not (t.relrowsecurity and t.relforcerowsecurity):
                problems.append(f"row-level security is not enabled and forced on {t.relname!r}")
        missing = set(USER_OWNED_TABLES) - {t.relname for t in tables}
        if missing:
            raise SchemaMismatch(
                f"tables {', '.join(sorted(missing))} are missing: run `engram db upgrade` with the owner role first"
            )
        if problems:
            raise UnsafeDatabaseRole(
                f"Refusing to serve: the database role {role.name!r} could bypass row-level security ("
                + "; ".join(dict.fromkeys(problems))
                + "). Connect ENGRAM_DATABASE_URL as a role that is not the tables' owner, not superuser, "
                "and has NOBYPASSRLS (see docs/security.md)."
            )


async def stored_embedding_model(engine: AsyncEngine) -> str | None:
    """The model every stored vector was made with (recorded at initialisation and by `engram reembed`)."""
    async with engine.connect() as conn:
        return await conn.scalar(text("SELECT value FROM engram_meta WHERE key = 'embedding_model'"))


async def stored_embedding_dimensions(engine: AsyncEngine) -> int:
    """The dimension the memories.embedding column was created with."""
    async with engine.connect() as conn:
        typmod = (
            await conn.execute(
                text(
                    "SELECT atttypmod FROM pg_attribute WHERE attrelid = 'memories'::regclass "
                    "AND attname = 'embedding' AND NOT attisdropped"
                )
            )
        ).scalar()
    if typmod is None:
        raise SchemaMismatch("memories.embedding is missing: run `engram db upgrade`")
    return int(typmod)


def check_embedding_model(stored_model: str | None, stored: int, configured: int, model: str) -> None:
    """Vectors from two models are not comparable: refuse to mix them, and say how to move."""
    if stored == configured and stored_model not in (None, model):
        raise SchemaMismatch(
            f"The stored memories were embedded with {stored_model!r} but the configured model is {model!r}. "
            f"Their vectors are not comparable: set ENGRAM_EMBEDDING_MODEL={stored_model} again, or move every "
            "memory to the new model with `engram reembed`, then start the server again."
        )
    if stored != configured:
        raise SchemaMismatch(
            f"The database stores {stored}-dimensional embeddings but the configured embedding model "
            f"{model!r} produces {configured} dimensions. Either configure a model with {stored} "
            f"dimensions, or move every memory to the new model with `engram reembed` (run it with the "
            f"new ENGRAM_EMBEDDING_* settings), then start the server again."
        )
