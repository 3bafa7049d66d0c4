"""The `engram` command (also `python -m app`)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import uuid
from collections.abc import Sequence

from sqlalchemy import text

from app.auth import scopes
from app.connect.clients import CLIENTS
from app.db import migrate
from app.db.provision import Database, database, downgrade, upgrade
from app.db.session import Identity, bound_session, create_engine, session_factory
from app.settings import Settings, SettingsError, load_settings, render_configuration_doc
from app.tokens import service as tokens
from app.users.service import ensure_user


def _print(*lines: str) -> None:
    for line in lines:
        print(line)


def _email(raw: str) -> str:
    email = raw.strip().lower()
    if "@" not in email:
        raise SystemExit(f"{raw!r} is not an email address")
    return email


# --- serve ---------------------------------------------------------------------------------------
def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from granian.constants import Interfaces
    from granian.server import Server

    from app.oauth.login import create_setup_link

    host = args.host or settings.host
    port = args.port or settings.port
    workers = args.workers or settings.workers
    env_backup = dict(os.environ)
    # Workers read their settings from the environment: hand them what this command decided.
    os.environ.update({"ENGRAM_HOST": host, "ENGRAM_PORT": str(port)})
    settings = load_settings()

    async def prepare() -> tuple[Database, str | None]:
        async with database(settings, keep_running=True) as db:
            if db.admin_url is not None:
                await upgrade(settings, db)
            engine = create_engine(db.runtime_url, pool_size=1)
            try:
                return db, await create_setup_link(session_factory(engine), settings)
            finally:
                await engine.dispose()

    db, setup_link = asyncio.run(prepare())
    os.environ["ENGRAM_DATABASE_URL"] = db.runtime_url
    if db.embedded:
        # The auditor's command: it reads the audit trail and nothing else.
        audit = db.embedded.psql_command("engram_auditor", "engram")
        print(f"Embedded PostgreSQL: {db.embedded.root} (audit with: {audit})")
    print(f"Engram serves on http://{host}:{port} (public URL {settings.public_url})", flush=True)
    if setup_link:
        print(f"No accounts yet. Create the administrator account (once, within 24 hours): {setup_link}", flush=True)
    try:
        server = Server(
            "app.asgi:create_app",
            address=host,
            port=port,
            interface=Interfaces.ASGI,
            workers=workers,
            factory=True,
            log_access=False,
            log_level=settings.log_level,  # type: ignore[arg-type]
        )
        server.serve()
    finally:
        os.environ.clear()
        os.environ.update(env_backup)
        if db.embedded and db.started_here:
            db.embedded.stop()
            print("Embedded PostgreSQL stopped.", flush=True)
    return 0


# --- db ------------------------------------------------------------------------------------------
async def _db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    async with database(settings) as db:
        await upgrade(settings, db, args.revision)
        print(f"Database at revision {args.revision}.")
    return 0


async def _db_downgrade(settings: Settings, args: argparse.Namespace) -> int:
    async with database(settings) as db:
        await downgrade(settings, db, args.revision)
        print(f"Database downgraded to {args.revision}.")
    return 0


async def _db_status(settings: Settings, args: argparse.Namespace) -> int:
    async with database(settings) as db:
        engine = create_engine(db.runtime_url, pool_size=1)
        try:
            current = await migrate.current_revision(engine)
        finally:
            await engine.dispose()
        head = migrate.head_revision()
        where = db.embedded.root if db.embedded else "external database"
        print(f"database: {where}")
        print(f"revision: {current or '(empty)'}; latest: {head}; {'up to date' if current == head else 'behind'}")
        return 0 if current == head else 1


# --- tokens --------------------------------------------------------------------------------------
async def _token_create(settings: Settings, args: argparse.Namespace) -> int:
    email = _email(args.user)
    chosen = args.scope or list(scopes.ALL_SCOPES)
    days = settings.token_default_days if args.days is None else args.days
    async with database(settings) as db:
        engine = create_engine(db.runtime_url, pool_size=1)
        try:
            async with bound_session(session_factory(engine), Identity(email, "cli")) as session:
                await ensure_user(session, email)
                created = await tokens.create(session, email, args.name, chosen, days or None)
        finally:
            await engine.dispose()
    expiry = created.record.expires_at.isoformat() if created.record.expires_at else "never"
    print(created.token)
    print(
        f"(token {created.record.id} for {email}, scopes {' '.join(created.record.scopes)}, expires {expiry}; "
        "it is shown only once)",
        file=sys.stderr,
    )
    return 0


async def _token_list(settings: Settings, args: argparse.Namespace) -> int:
    email = _email(args.user)
    async with database(settings) as db:
        engine = create_engine(db.runtime_url, pool_size=1)
        try:
            async with bound_session(session_factory(engine), Identity(email, "cli")) as session:
                rows = await tokens.list_tokens(session)
        finally:
            await engine.dispose()
    print(f"{'id':36}  {'name':20}  {'prefix':12}  {'scopes':45}  {'expires':25}  {'last used':25}  status")
    for t in rows:
        status = "revoked" if t.revoked_at else "active"
        print(
            f"{t.id!s:36}  {t.name[:20]:20}  {t.token_prefix:12}  {' '.join(t.scopes)[:45]:45}  "
            f"{(t.expires_at.isoformat() if t.expires_at else 'never')[:25]:25}  "
            f"{(t.last_used_at.isoformat() if t.last_used_at else '-')[:25]:25}  {status}"
        )
    return 0


async def _token_revoke(settings: Settings, args: argparse.Namespace) -> int:
    email = _email(args.user)
    try:
        token_id = uuid.UUID(args.token_id)
    except ValueError:
        raise SystemExit(f"{args.token_id!r} is not a token id (see `engram token list --user {email}`)") from None
    async with database(settings) as db:
        engine = create_engine(db.runtime_url, pool_size=1)
        try:
            async with bound_session(session_factory(engine), Identity(email, "cli")) as session:
                record = await tokens.revoke(session, token_id)
        finally:
            await engine.dispose()
    print(f"Revoked token {record.id} ({record.name}).")
    return 0


# --- signing keys --------------------------------------------------------------------------------
async def _keys_rotate(settings: Settings, args: argparse.Namespace) -> int:
    from app.auth.kek import load_kek
    from app.auth.keys import KeyStore

    async with database(settings) as db:
        engine = create_engine(db.runtime_url, pool_size=1)
        try:
            keys = KeyStore(
                session_factory(engine),
                load_kek(settings),
                settings.signing_algorithm,
                settings.access_token_ttl_seconds,
            )
            kid = await keys.rotate()
        finally:
            await engine.dispose()
    print(f"New signing key {kid}; the previous one stays published until its tokens have expired.")
    return 0


async def _user_add(settings: Settings, args: argparse.Namespace) -> int:
    import getpass
    import secrets as _secrets

    from app.oauth.login import add_local_account
    from app.oauth.passwords import WeakPassword, check_strength, hash_password

    email = _email(args.email)
    generated = False
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif sys.stdin.isatty():
        password = getpass.getpass(f"Password for {email} (empty: generate one): ")
    else:
        password = ""
    if not password:
        password, generated = _secrets.token_urlsafe(15), True
    try:
        check_strength(password, email)
    except WeakPassword as exc:
        raise SystemExit(str(exc)) from None
    async with database(settings) as db:
        engine = create_engine(db.runtime_url, pool_size=1)
        try:
            await add_local_account(session_factory(engine), email, await hash_password(password), admin=args.admin)
        finally:
            await engine.dispose()
    if generated:
        print(password)
        print(f"(generated password for {email}; it is shown only once)", file=sys.stderr)
    else:
        print(f"Account {email} is ready.")
    return 0


# --- users ---------------------------------------------------------------------------------------
async def _user_list(settings: Settings, args: argparse.Namespace) -> int:
    async with database(settings) as db:
        if db.admin_url is None:
            raise SystemExit("Listing every user needs the owner role: set ENGRAM_DATABASE_ADMIN_URL.")
        engine = create_engine(db.admin_url, pool_size=1)
        try:
            async with engine.connect() as conn:
                rows = (
                    await conn.execute(
                        text("SELECT email, memory_count, created_at, last_seen_at FROM users ORDER BY email")
                    )
                ).all()
        finally:
            await engine.dispose()
    print(f"{'email':40}  {'memories':>8}  {'created':25}  last seen")
    for r in rows:
        print(f"{r.email:40}  {r.memory_count:>8}  {r.created_at.isoformat()[:25]:25}  {r.last_seen_at.isoformat()}")
    return 0


# --- reembed -------------------------------------------------------------------------------------
async def _reembed(settings: Settings, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from app.embeddings import create_embedder
    from app.memories.reembed import reembed

    embedder = create_embedder(settings)
    await embedder.start()
    bar = tqdm(unit="memories", desc=f"re-embedding with {embedder.model}", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        async with database(settings) as db:
            if db.admin_url is None:
                raise SystemExit("Re-embedding needs the owner role: set ENGRAM_DATABASE_ADMIN_URL.")
            engine = create_engine(db.admin_url, pool_size=1)
            try:
                report = await reembed(engine, embedder, batch=args.batch_size, force=args.force, progress=progress)
            finally:
                await engine.dispose()
    finally:
        bar.close()
        await embedder.aclose()
    if report.already_current:
        print(f"Every memory is already embedded with {report.model} ({report.dimensions} dimensions).")
    else:
        print(
            f"Re-embedded {report.reembedded} memories with {report.model} ({report.dimensions} dimensions). "
            "Restart Engram with the same embedding settings."
        )
    return 0


# --- connect -------------------------------------------------------------------------------------
def cmd_connect(settings: Settings, args: argparse.Namespace) -> int:
    from app.connect.command import run

    return run(settings, args)


# --- config --------------------------------------------------------------------------------------
def cmd_config_docs(settings: Settings | None, args: argparse.Namespace) -> int:
    sys.stdout.write(render_configuration_doc())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="engram", description="Multi-user memory for AI assistants.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="migrate (when the owner role is known) and serve HTTP with granian")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.set_defaults(sync_handler=cmd_serve)

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    up = db.add_parser("upgrade", help="apply migrations (as the owner role)")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(handler=_db_upgrade)
    down = db.add_parser("downgrade", help="revert migrations (as the owner role)")
    down.add_argument("revision")
    down.set_defaults(handler=_db_downgrade)
    db.add_parser("status", help="applied and latest revision").set_defaults(handler=_db_status)

    token = sub.add_parser("token", help="personal access tokens").add_subparsers(dest="token_command", required=True)
    create = token.add_parser("create", help="create a token and print it once")
    create.add_argument("--user", required=True, help="the owner's email")
    create.add_argument("--name", default="cli", help="a name to recognise it by")
    create.add_argument("--scope", action="append", choices=scopes.ALL_SCOPES, help="repeatable; default: all")
    create.add_argument("--days", type=int, help="lifetime in days (0 = never expires)")
    create.set_defaults(handler=_token_create)
    tlist = token.add_parser("list", help="a user's tokens")
    tlist.add_argument("--user", required=True)
    tlist.set_defaults(handler=_token_list)
    revoke = token.add_parser("revoke", help="revoke a token")
    revoke.add_argument("--user", required=True)
    revoke.add_argument("token_id")
    revoke.set_defaults(handler=_token_revoke)

    keys = sub.add_parser("keys", help="Engram's signing keys").add_subparsers(dest="keys_command", required=True)
    keys.add_parser("rotate", help="start signing with a new key").set_defaults(handler=_keys_rotate)

    user = sub.add_parser("user", help="users").add_subparsers(dest="user_command", required=True)
    user.add_parser("list", help="every user (owner role)").set_defaults(handler=_user_list)
    add = user.add_parser("add", help="create a local account, or set its password")
    add.add_argument("email")
    add.add_argument("--admin", action="store_true")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    add.set_defaults(handler=_user_add)

    re = sub.add_parser("reembed", help="move every memory to the configured embedding model")
    re.add_argument("--batch-size", type=int, default=128)
    re.add_argument("--force", action="store_true", help="re-embed even if the model looks unchanged")
    re.set_defaults(handler=_reembed)

    connect = sub.add_parser("connect", help="configure an MCP client on this machine to use Engram")
    connect.add_argument("client", help=f"one of: {', '.join(c.id for c in CLIENTS)}")
    connect.add_argument("--url", help="Engram's public URL (default: ENGRAM_PUBLIC_URL)")
    connect.add_argument("--token", action="store_true", help="use a new personal access token instead of OAuth")
    connect.add_argument("--user", help="the token's owner (email), with --token")
    connect.add_argument("--dry-run", action="store_true", help="print the change without writing anything")
    connect.set_defaults(sync_handler=cmd_connect)

    config = sub.add_parser("config", help="configuration").add_subparsers(dest="config_command", required=True)
    config.add_parser("docs", help="print docs/configuration.md").set_defaults(sync_handler=cmd_config_docs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"engram: {exc}", file=sys.stderr)
        return 2
    # SIGTERM ends a command the way Ctrl-C does, so `finally` blocks stop what they started.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        if hasattr(args, "sync_handler"):
            return int(args.sync_handler(settings, args))
        return int(asyncio.run(args.handler(settings, args)))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if os.environ.get("ENGRAM_DEBUG"):
            raise
        print(f"engram: {exc}", file=sys.stderr)
        return 1
