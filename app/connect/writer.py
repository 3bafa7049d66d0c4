"""Writing a client's configuration file: merge Engram's entry, keep the rest, back up, show a diff."""

from __future__ import annotations

import difflib
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError

from app.connect import jsonc
from app.connect.clients import SERVER_NAME, Client, Entry, Platform, config_entry

_BOM = "\ufeff"


class ConnectError(Exception):
    """A file Engram will not touch; the message says which and why."""


def current_platform() -> Platform:
    if sys.platform == "darwin":
        return "darwin"
    if sys.platform == "win32":
        return "win32"
    return "linux"


def config_path(client: Client, *, home: Path, platform: Platform, env: Mapping[str, str]) -> Path:
    """Where `client` keeps its configuration on this machine."""
    relative = client.file.path(platform) if client.file else None
    if relative is None:
        raise ConnectError(f"{client.name} has no configuration file on this platform ({platform})")
    xdg = env.get("XDG_CONFIG_HOME")
    if platform == "linux" and xdg and relative.startswith(".config/"):
        return Path(xdg) / relative.removeprefix(".config/")
    return home / relative


@dataclass(frozen=True)
class Plan:
    client: Client
    path: Path
    before: str | None  # None: the file does not exist yet
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


def _read(path: Path) -> str | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConnectError(f"{path}: cannot read it ({exc.strerror})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConnectError(f"{path} is not UTF-8 text; nothing was changed") from None


def _merge_json(text: str, entry: Entry) -> str:
    comments = entry.file.comments
    body = text.removeprefix(_BOM)
    kind = "JSON with comments" if comments else "JSON"
    try:
        after = jsonc.set_value(body, (entry.file.servers_key, SERVER_NAME), entry.value, comments=comments)
        for item in entry.inputs:
            after = jsonc.upsert_item(after, "inputs", ("id", item["id"]), item, comments=comments)
        if body.strip() and jsonc.loads(after, comments=comments) == jsonc.loads(body, comments=comments):
            return text  # already configured: keep the user's formatting of our entry too
    except jsonc.ParseError as exc:
        raise ConnectError(f"is not valid {kind} ({exc})") from None
    except jsonc.ShapeError as exc:
        raise ConnectError(f"has an unexpected shape: {exc}") from None
    return (_BOM if text.startswith(_BOM) else "") + after


def _merge_toml(text: str, entry: Entry) -> str:
    try:
        doc = tomlkit.parse(text)
    except TOMLKitError as exc:
        raise ConnectError(f"is not valid TOML ({exc})") from None
    key = entry.file.servers_key
    servers: Any = doc.get(key)
    if servers is None:
        servers = tomlkit.table(is_super_table=True)
        doc[key] = servers
    elif not isinstance(servers, dict):
        raise ConnectError(f"has an unexpected shape: “{key}” is not a table")
    existing = servers.get(SERVER_NAME)
    if isinstance(existing, dict):
        if existing == entry.value:
            return text
        # Update in place: the table keeps its position and the blank lines around it.
        for name in [name for name in existing if name not in entry.value]:
            del existing[name]
        for name, value in entry.value.items():
            existing[name] = value
    else:
        table = tomlkit.table()
        for name, value in entry.value.items():
            table.add(name, value)
        servers[SERVER_NAME] = table
        if list(doc.keys())[-1] != key or list(servers.keys())[-1] != SERVER_NAME:
            table.add(tomlkit.nl())  # a blank line before whatever follows
    return tomlkit.dumps(doc)


def plan(
    client: Client,
    *,
    url: str,
    token: str | None,
    home: Path,
    platform: Platform,
    env: Mapping[str, str],
) -> Plan:
    """What writing `client`'s entry would change; raises ConnectError for a file we will not touch."""
    path = config_path(client, home=home, platform=platform, env=env)
    if path.is_symlink():
        path = path.resolve()  # write through a dotfiles manager's link, not over it
    entry = config_entry(client, url=url, token=token, platform=platform)
    before = _read(path)
    try:
        after = _merge_toml(before or "", entry) if entry.file.format == "toml" else _merge_json(before or "", entry)
    except ConnectError as exc:
        raise ConnectError(f"{path} {exc}; nothing was changed") from None
    return Plan(client, path, before, after)


def diff(plan: Plan, *, secret: str | None = None) -> str:
    """A unified diff of the change, with `secret` (a token) shown only by its first characters."""
    name = str(plan.path)
    lines = difflib.unified_diff(
        (plan.before or "").splitlines(keepends=True),
        plan.after.splitlines(keepends=True),
        fromfile="/dev/null" if plan.before is None else name,
        tofile=name,
    )
    text = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
    if secret:
        text = text.replace(secret, secret[:8] + "…")
    return text


def _backup_path(path: Path, now: datetime) -> Path:
    stamp = now.strftime("%Y%m%d-%H%M%S")
    candidate = path.with_name(f"{path.name}.bak-{stamp}")
    counter = 1
    while candidate.exists():
        candidate = path.with_name(f"{path.name}.bak-{stamp}-{counter}")
        counter += 1
    return candidate


def apply(plan: Plan, *, private: bool = False, now: datetime | None = None) -> Path | None:
    """Write the planned file (atomically); returns the backup of the previous one, if there was one.

    `private`: the content holds a secret, so a newly created file is readable by its owner only.
    """
    if not plan.changed:
        return None
    path = plan.path
    path.parent.mkdir(parents=True, exist_ok=True)
    backup = None
    if plan.before is not None:
        backup = _backup_path(path, now or datetime.now())
        shutil.copy2(path, backup)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(plan.after)
            handle.flush()
            os.fsync(handle.fileno())
        if plan.before is not None:
            shutil.copymode(path, tmp)
        else:
            tmp.chmod(0o600 if private else 0o644 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return backup


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
