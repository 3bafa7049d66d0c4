"""Engines and sessions, and the listener that binds the request's identity to every transaction.

Every transaction of a bound session starts with one statement that sets `app.user_email`
(which the row-level security policies read), the client and request ids (which the audit
triggers read) and the vector-search settings. All are transaction-local (`set_config(…, true)`),
so nothing survives into the next use of a pooled connection; a session with no identity runs no
binding statement, and the unset setting matches no row.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.pool import ConnectionPoolEntry

from app.db.vectors import register_vector_codec

IDENTITY_KEY = "engram_identity"
SEARCH_SETTINGS_KEY = "engram_search_settings"

BIND_SQL = text(
    "SELECT set_config('app.user_email', :email, true), set_config('app.client_id', :client_id, true), "
    "set_config('app.request_id', :request_id, true), set_config('hnsw.ef_search', :ef_search, true), "
    "set_config('hnsw.iterative_scan', 'relaxed_order', true)"
)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the database work is for: the RLS key and what the audit records."""

    email: str
    client_id: str | None = None
    request_id: str | None = None


class EngramSession(Session):
    """The sync session class behind every runtime AsyncSession; carries the binding listener."""


def _binding(info: dict[Any, Any]) -> dict[str, str]:
    identity: Identity | None = info.get(IDENTITY_KEY)
    return {
        "email": identity.email if identity else "",
        "client_id": (identity.client_id or "") if identity else "",
        "request_id": (identity.request_id or "") if identity else "",
        "ef_search": str(info.get(SEARCH_SETTINGS_KEY, 1000)),
    }


@event.listens_for(EngramSession, "after_begin")
def _bind_identity(session: Session, transaction: SessionTransaction, connection: Connection) -> None:
    # Unbound work (resolving a token, SECURITY DEFINER lookups) needs no statement: an unset
    # app.user_email matches no row, exactly like the empty string.
    if session.info.get(IDENTITY_KEY) is not None:
        connection.execute(BIND_SQL, _binding(session.info))


def bind(session: AsyncSession, identity: Identity | None, *, ef_search: int | None = None) -> None:
    """Bind (or unbind) the identity; it applies from the session's next transaction on."""
    session.info[IDENTITY_KEY] = identity
    if ef_search is not None:
        session.info[SEARCH_SETTINGS_KEY] = ef_search


def async_database_url(url: str) -> str:
    """Accept the usual `postgresql://` / `postgres://` forms; SQLAlchemy needs the driver named."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError("the database URL must start with postgresql://")


async def bind_now(session: AsyncSession, identity: Identity | None, *, ef_search: int | None = None) -> None:
    """bind(), and also rebind the transaction already open (the listener only sees new ones).

    Lets a request resolve its token and then act as its owner in one transaction.
    """
    bind(session, identity, ef_search=ef_search)
    if session.in_transaction():
        await session.execute(BIND_SQL, _binding(session.info))


# A pooled connection idle longer than this is pinged before use. SQLAlchemy's pool_pre_ping
# pings every time (BEGIN, `;`, ROLLBACK: three round trips, 0.3–0.5 ms per request measured);
# a connection used a moment ago is alive, and one the server closed meanwhile is already known
# to asyncpg as closed, which costs nothing to check.
PING_AFTER_IDLE_SECONDS = 5.0
_CHECKED_IN_AT = "engram_checked_in_at"


def _on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    dbapi_connection.run_async(register_vector_codec)
    record.info[_CHECKED_IN_AT] = time.monotonic()  # just opened: no ping on its first checkout


def _on_checkin(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    record.info[_CHECKED_IN_AT] = time.monotonic()


def _on_checkout(dbapi_connection: Any, record: ConnectionPoolEntry, proxy: Any) -> None:
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("the database closed this pooled connection")
    idle = time.monotonic() - record.info.get(_CHECKED_IN_AT, 0.0)
    if idle > PING_AFTER_IDLE_SECONDS:
        try:
            dbapi_connection.ping()
        except Exception as exc:
            # The pool discards the connection and checks out another (or opens a new one).
            raise DisconnectionError(f"a pooled connection failed its ping: {exc}") from exc


def create_engine(url: str, *, pool_size: int = 10, max_overflow: int = 10, **kwargs: Any) -> AsyncEngine:
    engine = create_async_engine(
        async_database_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        # Parameters carry memory text and embeddings: keep them out of error messages and logs.
        hide_parameters=True,
        connect_args={
            "server_settings": {
                "application_name": "engram",
                # Belt and braces with the two-query routing: a generic plan built for one user
                # must never be reused for another (measured: recall 0.45 for small users).
                "plan_cache_mode": "force_custom_plan",
            }
        },
        **kwargs,
    )
    event.listen(engine.sync_engine, "connect", _on_connect)
    event.listen(engine.sync_engine.pool, "checkin", _on_checkin)
    event.listen(engine.sync_engine.pool, "checkout", _on_checkout)
    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, sync_session_class=EngramSession)


@asynccontextmanager
async def bound_session(
    factory: async_sessionmaker[AsyncSession], identity: Identity | None, *, ef_search: int | None = None
) -> AsyncIterator[AsyncSession]:
    """A session for work outside an HTTP request (MCP tools, CLI, tests); commits on success."""
    async with factory() as session:
        bind(session, identity, ef_search=ef_search)
        async with session.begin():
            yield session
