"""The MCP clients Engram connects, as one table, and the snippets rendered from it.

Every per-client fact lives in `CLIENTS`; `snippet()` renders any row with a handful of shape
kinds, so correcting a client means editing its row. Sources: shared/design/clients.md and the
vendors' documentation linked from each row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import urlsplit

import tomlkit

Platform = Literal["linux", "darwin", "win32"]
SnippetKind = Literal["command", "json", "toml", "link"]

SERVER_NAME = "engram"
TOKEN_ENV = "ENGRAM_TOKEN"  # noqa: S105 - a variable name: Codex reads the token from it (it refuses inline ones)
BRIDGE_ENV = "ENGRAM_AUTH"  # mcp-remote expands ${ENGRAM_AUTH}: no space inside an argument
VSCODE_INPUT = "engram-token"
MCP_REMOTE = "mcp-remote@latest"
BRIDGE_DOCS = "https://github.com/geelen/mcp-remote"
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


class Connection(StrEnum):
    REMOTE = "remote"  # native Streamable HTTP; the client signs in with OAuth on first use
    BRIDGE = "bridge"  # the client runs stdio servers only: mcp-remote bridges to /mcp
    CONNECTOR = "connector"  # added in the client's own settings screen (OAuth)
    LINK = "link"  # any other client: the URL itself


class TokenStyle(StrEnum):
    """How a personal access token reaches Engram when OAuth is not used."""

    HEADERS = "headers"  # "headers": {"Authorization": "Bearer …"} beside the URL
    FLAG = "flag"  # the command takes --header "Authorization: Bearer …"
    ENV_VAR = "env_var"  # the file names an environment variable holding the token
    INPUT = "input"  # VS Code asks once (an `inputs` promptString with password: true)
    BRIDGE = "bridge"  # mcp-remote --header Authorization:${ENGRAM_AUTH}, the value in `env`
    NONE = "none"  # the client's own screen takes no token: fall back to the bridge file


@dataclass(frozen=True)
class ConfigFile:
    format: Literal["json", "toml"]
    comments: bool  # the client reads it as JSON with comments (JSONC)
    paths: tuple[tuple[Platform, str], ...]  # relative to HOME
    servers_key: str  # the top-level key the servers live under

    def path(self, platform: Platform) -> str | None:
        return dict(self.paths).get(platform)


@dataclass(frozen=True)
class Client:
    id: str
    name: str
    connection: Connection
    token: TokenStyle
    logo: str | None = None  # an SVG in logos/ (simple-icons); None: a monogram badge
    brand: str | None = None  # the logo's brand colour (simple-icons hex); None: the monogram picks one
    entry: tuple[tuple[str, str], ...] = ()  # the native entry's fields; "{url}" is the MCP URL
    file: ConfigFile | None = None
    command: str | None = None  # clients configured by a command; "{url}" is the MCP URL
    steps: str = ""  # what the user does besides pasting
    docs: str | None = None
    initials: str | None = None  # the monogram's letters when the name's initials read badly

    @property
    def kind(self) -> SnippetKind:
        if self.command:
            return "command"
        if self.file is None or self.connection in (Connection.CONNECTOR, Connection.LINK):
            return "link"
        return self.file.format


@dataclass(frozen=True)
class Snippet:
    kind: SnippetKind
    text: str  # ready to copy
    path: str | None  # where it goes ("~/.cursor/mcp.json"), None for commands and links
    instructions: str


@dataclass(frozen=True)
class Entry:
    """What goes into a client's file: the server entry, and VS Code's token prompt if any."""

    file: ConfigFile
    value: dict[str, Any]
    inputs: tuple[dict[str, Any], ...] = ()


class UnknownClient(LookupError):
    def __init__(self, client_id: str) -> None:
        super().__init__(f"unknown client {client_id!r}; choose one of: {', '.join(c.id for c in CLIENTS)}")
        self.client_id = client_id


def _everywhere(path: str) -> tuple[tuple[Platform, str], ...]:
    return (("linux", path), ("darwin", path), ("win32", path))


def _config_dir(path: str) -> tuple[tuple[Platform, str], ...]:
    """A file under the platform's configuration directory (Linux: ~/.config, see the writer)."""
    return (
        ("linux", f".config/{path}"),
        ("darwin", f"Library/Application Support/{path}"),
        ("win32", f"AppData/Roaming/{path}"),
    )


def _mcp_servers(paths: tuple[tuple[Platform, str], ...], *, comments: bool = False) -> ConfigFile:
    return ConfigFile("json", comments, paths, "mcpServers")


_REMOTE_STEPS = "Restart {name}; it opens a browser to sign in to Engram the first time it connects."
_BRIDGE_STEPS = (
    "{name} runs local (stdio) servers only, so the mcp-remote bridge connects it to Engram (needs "
    "Node.js for npx). Restart {name}; the bridge opens a browser to sign in the first time."
)

CLIENTS: tuple[Client, ...] = (
    Client(
        id="claude",
        name="Claude",
        logo="claude.svg",
        brand="#D97757",
        connection=Connection.CONNECTOR,
        token=TokenStyle.NONE,
        file=_mcp_servers(_config_dir("Claude/claude_desktop_config.json")),
        steps="In claude.ai or Claude Desktop open Settings (or Customize) → Connectors → Add custom "
        "connector, name it Engram and paste this URL; Claude signs you in to Engram with OAuth. Claude "
        "connects from Anthropic's cloud, so this URL must be reachable from the internet.",
        docs="https://support.claude.com/en/articles/11175166-getting-started-with-custom-connectors-using-remote-mcp",
    ),
    Client(
        id="claude-code",
        name="Claude Code",
        logo="claudecode.svg",
        brand="#D97757",
        connection=Connection.REMOTE,
        token=TokenStyle.FLAG,
        command="claude mcp add --transport http --scope user engram {url}",
        steps="Run it in a terminal, then start `claude` and use /mcp to sign in to Engram.",
        docs="https://code.claude.com/docs/en/mcp",
    ),
    Client(
        id="cursor",
        name="Cursor",
        logo="cursor.svg",
        brand="#000000",
        connection=Connection.REMOTE,
        token=TokenStyle.HEADERS,
        entry=(("url", "{url}"),),
        file=_mcp_servers(_everywhere(".cursor/mcp.json")),
        steps=_REMOTE_STEPS,
        docs="https://cursor.com/docs/mcp",
    ),
    Client(
        id="cline",
        name="Cline",
        logo="cline.svg",
        brand="#18181B",
        connection=Connection.REMOTE,
        token=TokenStyle.HEADERS,
        # Without "type" Cline picks the legacy SSE transport for a URL.
        entry=(("type", "streamableHttp"), ("url", "{url}")),
        file=_mcp_servers(
            _config_dir("Code/User/globalStorage/saoudrizwan.claude-dev/settings/cline_mcp_settings.json")
        ),
        steps=_REMOTE_STEPS,
        docs="https://docs.cline.bot/mcp/configuring-mcp-servers",
    ),
    Client(
        id="roo-code",
        name="Roo Code",
        connection=Connection.REMOTE,
        token=TokenStyle.HEADERS,
        # Roo refuses a URL without an explicit type.
        entry=(("type", "streamable-http"), ("url", "{url}")),
        file=_mcp_servers(_config_dir("Code/User/globalStorage/rooveterinaryinc.roo-cline/settings/mcp_settings.json")),
        steps=_REMOTE_STEPS,
        docs="https://docs.roocode.com/features/mcp/using-mcp-in-roo",
    ),
    Client(
        id="windsurf",
        name="Windsurf",
        logo="windsurf.svg",
        brand="#0B100F",
        connection=Connection.REMOTE,
        token=TokenStyle.HEADERS,
        entry=(("serverUrl", "{url}"),),
        file=_mcp_servers(_everywhere(".codeium/windsurf/mcp_config.json")),
        steps=_REMOTE_STEPS,
        docs="https://docs.windsurf.com/windsurf/cascade/mcp",
    ),
    Client(
        id="vscode",
        name="VS Code",
        connection=Connection.REMOTE,
        token=TokenStyle.INPUT,
        entry=(("type", "http"), ("url", "{url}")),
        file=ConfigFile("json", True, _config_dir("Code/User/mcp.json"), "servers"),
        steps="Restart VS Code or run “MCP: List Servers” and start engram; it signs in to Engram the first time.",
        docs="https://code.visualstudio.com/docs/copilot/reference/mcp-configuration",
        initials="VS",
    ),
    Client(
        id="codex",
        name="Codex CLI",
        connection=Connection.REMOTE,
        token=TokenStyle.ENV_VAR,
        entry=(("url", "{url}"),),
        file=ConfigFile("toml", True, _everywhere(".codex/config.toml"), "mcp_servers"),
        steps="Sign in with `codex mcp login engram`, then start codex.",
        docs="https://developers.openai.com/codex/mcp",
        initials="Cx",
    ),
    Client(
        id="gemini-cli",
        name="Gemini CLI",
        logo="googlegemini.svg",
        brand="#8E75B2",
        connection=Connection.REMOTE,
        token=TokenStyle.HEADERS,
        entry=(("httpUrl", "{url}"),),  # "url" would mean the legacy SSE transport
        file=_mcp_servers(_everywhere(".gemini/settings.json"), comments=True),
        steps="Start gemini and run /mcp auth engram to sign in to Engram.",
        docs="https://geminicli.com/docs/tools/mcp-server/",
    ),
    Client(
        id="factory-droid",
        name="Factory Droid",
        connection=Connection.REMOTE,
        token=TokenStyle.FLAG,
        command="droid mcp add engram {url} --type http",
        steps="Run it in a terminal, then open /mcp in droid to sign in to Engram.",
        docs="https://docs.factory.ai/cli/configuration/mcp",
    ),
    Client(
        id="witsy",
        name="Witsy",
        connection=Connection.BRIDGE,
        token=TokenStyle.BRIDGE,
        file=_mcp_servers(_config_dir("Witsy/settings.json")),
        steps=_BRIDGE_STEPS,
        docs="https://github.com/nbonamy/witsy",
    ),
    Client(
        id="enconvo",
        name="Enconvo",
        connection=Connection.BRIDGE,
        token=TokenStyle.BRIDGE,
        file=_mcp_servers(_everywhere(".config/enconvo/mcp_config.json")),
        steps=_BRIDGE_STEPS,
        docs="https://docs.enconvo.ai/features/mcp",
    ),
    Client(
        id="augment",
        name="Augment",
        connection=Connection.BRIDGE,
        token=TokenStyle.BRIDGE,
        file=_mcp_servers(_everywhere(".augment/settings.json")),
        steps=_BRIDGE_STEPS + " In the Augment extension, Settings → MCP → Import from JSON takes the same block.",
        docs="https://docs.augmentcode.com/cli/integrations",
    ),
    Client(
        id="mcp",
        name="Any MCP client",
        logo="modelcontextprotocol.svg",
        brand="#000000",
        connection=Connection.LINK,
        token=TokenStyle.HEADERS,
        steps="Give this URL to any client that speaks Streamable HTTP; it signs in with OAuth (Engram "
        "is the authorization server). Clients limited to stdio can run `npx -y mcp-remote@latest "
        "<this URL>`.",
        docs="https://modelcontextprotocol.io",
    ),
)

_BY_ID = {c.id: c for c in CLIENTS}


def get(client_id: str) -> Client:
    try:
        return _BY_ID[client_id]
    except KeyError:
        raise UnknownClient(client_id) from None


def mcp_url(url: str) -> str:
    """Engram's MCP endpoint from its public URL (a URL already ending in /mcp is kept)."""
    base = url.strip().rstrip("/")
    return base if base.endswith("/mcp") else f"{base}/mcp"


def _bridge(url: str, token: str | None, platform: Platform) -> dict[str, Any]:
    args = ["-y", MCP_REMOTE, url]
    parts = urlsplit(url)
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
        args.append("--allow-http")  # mcp-remote refuses plain HTTP beyond loopback otherwise
    value: dict[str, Any] = {"command": "npx", "args": args}
    if platform == "win32":
        value = {"command": "cmd", "args": ["/c", "npx", *args]}
    if token is not None:
        value["args"] += ["--header", f"Authorization:${{{BRIDGE_ENV}}}"]
        value["env"] = {BRIDGE_ENV: f"Bearer {token}"}
    return value


def config_entry(client: Client, *, url: str, token: str | None = None, platform: Platform = "linux") -> Entry:
    """The server entry `client` keeps in its file, for Engram at `url` (public or /mcp URL)."""
    if client.file is None:
        raise ValueError(f"{client.name} is not configured through a file")
    endpoint = mcp_url(url)
    if client.connection in (Connection.BRIDGE, Connection.CONNECTOR):
        return Entry(client.file, _bridge(endpoint, token, platform))
    value: dict[str, Any] = {key: template.format(url=endpoint) for key, template in client.entry}
    inputs: tuple[dict[str, Any], ...] = ()
    if token is not None:
        if client.token is TokenStyle.HEADERS:
            value["headers"] = {"Authorization": f"Bearer {token}"}
        elif client.token is TokenStyle.ENV_VAR:
            value["bearer_token_env_var"] = TOKEN_ENV
        elif client.token is TokenStyle.INPUT:
            value["headers"] = {"Authorization": f"Bearer ${{input:{VSCODE_INPUT}}}"}
            inputs = (
                {
                    "type": "promptString",
                    "id": VSCODE_INPUT,
                    "description": "Engram personal access token",
                    "password": True,
                },
            )
    return Entry(client.file, value, inputs)


def render_fragment(entry: Entry) -> str:
    """The entry as the client's file would hold it, alone: ready to paste or merge."""
    if entry.file.format == "toml":
        doc = tomlkit.document()
        servers = tomlkit.table(is_super_table=True)
        servers[SERVER_NAME] = entry.value
        doc[entry.file.servers_key] = servers
        return tomlkit.dumps(doc)
    fragment: dict[str, Any] = {}
    if entry.inputs:
        fragment["inputs"] = list(entry.inputs)
    fragment[entry.file.servers_key] = {SERVER_NAME: entry.value}
    return json.dumps(fragment, indent=2, ensure_ascii=False) + "\n"


def display_path(relative: str) -> str:
    return f"~/{relative}"


def _token_note(client: Client, token: str | None) -> str:
    if token is None:
        return ""
    if client.token is TokenStyle.ENV_VAR:
        return (
            f" Codex reads the token from {TOKEN_ENV}: start it from a shell where "
            f"`export {TOKEN_ENV}={token}` has run; `codex mcp login` is then not needed."
        )
    if client.token is TokenStyle.INPUT:
        return f" VS Code asks for the token once when engram starts; paste {token} there."
    return " The personal access token is sent instead of signing in; keep this file private."


def snippet(client_id: str, *, url: str, token: str | None = None, platform: Platform = "linux") -> Snippet:
    """The ready-to-copy configuration of `client_id` for Engram at `url`.

    `url` is Engram's public URL (or its /mcp endpoint). Without `token` the client signs in with
    OAuth; with one it sends `Authorization: Bearer <token>` in the client's own way.
    """
    client = get(client_id)
    endpoint = mcp_url(url)
    if client.command:
        text = client.command.format(url=endpoint)
        if token is not None:
            text += f' --header "Authorization: Bearer {token}"'
        note = " The personal access token replaces signing in." if token is not None else ""
        return Snippet("command", text, None, client.steps + note)
    needs_file = client.token is TokenStyle.NONE and token is not None
    if client.kind == "link" and not needs_file:
        steps = client.steps
        if token is not None:
            steps += f" Without OAuth, send the header `Authorization: Bearer {token}`."
        return Snippet("link", endpoint, None, steps)
    entry = config_entry(client, url=url, token=token, platform=platform)
    path = entry.file.path(platform)
    where = display_path(path) if path else "the client's configuration file"
    intro = f"Add this to {where} (merge it into the existing “{entry.file.servers_key}” if there is one)."
    if needs_file:
        intro = (
            f"Custom connectors take no token, so with one Claude Desktop runs the mcp-remote bridge. {intro} "
            "Restart Claude Desktop."
        )
        steps = ""
    else:
        steps = " " + client.steps.format(name=client.name)
    return Snippet(
        entry.file.format,
        render_fragment(entry),
        display_path(path) if path else None,
        intro + steps + _token_note(client, token),
    )
