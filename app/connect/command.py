"""`engram connect CLIENT`: configure an MCP client on this machine to use Engram.

File-based clients get their file edited (with a backup and a diff). Clients configured by their
own command (Claude Code, Factory Droid) or their own settings screen (Claude) get the command or
steps printed: their files belong to them, and running their binary here could not be checked.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from app.auth import scopes
from app.connect.clients import TOKEN_ENV, Client, TokenStyle, UnknownClient, get, snippet
from app.connect.writer import ConnectError, Plan, apply, current_platform, diff, plan
from app.db.provision import database
from app.db.session import Identity, bound_session, create_engine, session_factory
from app.settings import Settings
from app.tokens import service as tokens
from app.users.service import ensure_user

# Read and write: a token sitting in a configuration file should not be able to wipe the memory.
TOKEN_SCOPES = [scopes.READ, scopes.WRITE]
PLACEHOLDER = "egm_<new-token>"  # what --dry-run shows where the token would go


def _err(message: str) -> None:
    print(f"engram: {message}", file=sys.stderr)


async def _create_token(settings: Settings, email: str, client: Client) -> str:
    """A personal access token for `email`, created as `engram token create` does."""
    days = settings.token_default_days
    async with database(settings) as db:
        engine = create_engine(db.runtime_url, pool_size=1)
        try:
            async with bound_session(session_factory(engine), Identity(email, "cli")) as session:
                await ensure_user(session, email)
                created = await tokens.create(session, email, f"engram connect {client.id}", TOKEN_SCOPES, days or None)
        finally:
            await engine.dispose()
    return created.token


def _writes_file(client: Client, with_token: bool) -> bool:
    # Claude's connector screen takes no token: with one, Claude Desktop gets the bridge file.
    return client.kind in ("json", "toml") or (client.token is TokenStyle.NONE and with_token)


def _next_steps(client: Client) -> str:
    if client.token is TokenStyle.NONE:
        return f"Restart {client.name} Desktop; it starts the mcp-remote bridge to Engram."
    return client.steps.format(name=client.name)


def _token_note(client: Client, token: str, email: str) -> str:
    if client.token is TokenStyle.INPUT:
        return f"Personal access token for {email}, shown only once; paste it when VS Code asks:\n{token}"
    if client.token is TokenStyle.ENV_VAR:
        return f"Personal access token for {email}, shown only once; run codex after:\nexport {TOKEN_ENV}={token}"
    return (
        f"The file holds a new personal access token for {email} ({token[:8]}…, {' '.join(TOKEN_SCOPES)}); "
        "`engram token list` shows it and `engram token revoke` ends it."
    )


def _print_plan(planned: Plan, *, token: str | None) -> None:
    if planned.changed:
        sys.stdout.write(diff(planned, secret=token))
    else:
        print(f"{planned.path} already connects {planned.client.name} to Engram; nothing to change.")


def run(settings: Settings, args: argparse.Namespace) -> int:
    try:
        client = get(args.client)
    except UnknownClient as exc:
        _err(str(exc))
        return 2
    email = (args.user or "").strip().lower()
    if args.token and "@" not in email:
        _err("--token creates a personal access token, which needs its owner: add --user EMAIL")
        return 2
    url = args.url or settings.public_url
    if not url.startswith(("http://", "https://")):
        _err(f"--url needs Engram's public URL, starting with https:// (or http://), not {url!r}")
        return 2
    platform = current_platform()

    def new_token() -> str:
        return asyncio.run(_create_token(settings, email, client))

    if not _writes_file(client, args.token):
        token = (PLACEHOLDER if args.dry_run else new_token()) if args.token else None
        shown = snippet(client.id, url=url, token=token, platform=platform)
        print(shown.text)
        print(shown.instructions, file=sys.stderr)
        return 0

    home = Path(os.path.expanduser("~"))
    env = dict(os.environ)
    try:
        # Check the file before creating anything: a file we will not edit never costs a token.
        preview = plan(
            client, url=url, token=PLACEHOLDER if args.token else None, home=home, platform=platform, env=env
        )
        if args.dry_run:
            _print_plan(preview, token=None)
            print(f"(dry run: nothing was written{', and no token was created' if args.token else ''})")
            return 0
        token = new_token() if args.token else None
        final = plan(client, url=url, token=token, home=home, platform=platform, env=env) if token else preview
        backup = apply(final, private=token is not None and client.token is not TokenStyle.ENV_VAR)
    except ConnectError as exc:
        _err(str(exc))
        return 1
    _print_plan(final, token=token)
    if backup is not None:
        print(f"Backup of the previous file: {backup}")
    if final.changed:
        print(f"Wrote {final.path}.")
    print(_next_steps(client))
    if token:
        print(_token_note(client, token, email))
    return 0
