"""What each client's documentation says its entry looks like: restated here, not imported from the table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PUBLIC = "https://engram.example.com"
URL = PUBLIC + "/mcp"
TOKEN = "egm_TestTokenValue123"
BRIDGE_ARGS = ["-y", "mcp-remote@latest", URL]
BRIDGE_TOKEN_ARGS = ["--header", "Authorization:${ENGRAM_AUTH}"]


@dataclass(frozen=True)
class Expect:
    """What each client's documentation says its entry looks like (restated, not imported)."""

    kind: str  # snippet kind without a token
    path: str | None = None  # the file on Linux
    key: str = "mcpServers"
    fields: dict[str, Any] | None = None  # the native entry without a token; None: the bridge
    token: str = "headers"  # headers | input | env | bridge | flag | link
    command: tuple[str, ...] = ()


VSCODE_GLOBAL = "~/.config/Code/User/globalStorage"
EXPECTED: dict[str, Expect] = {
    "claude": Expect("link", "~/.config/Claude/claude_desktop_config.json", token="bridge"),
    "claude-code": Expect(
        "command",
        token="flag",
        command=("claude", "mcp", "add", "--transport", "http", "--scope", "user", "engram", URL),
    ),
    "cursor": Expect("json", "~/.cursor/mcp.json", fields={"url": URL}),
    "cline": Expect(
        "json",
        f"{VSCODE_GLOBAL}/saoudrizwan.claude-dev/settings/cline_mcp_settings.json",
        fields={"type": "streamableHttp", "url": URL},
    ),
    "roo-code": Expect(
        "json",
        f"{VSCODE_GLOBAL}/rooveterinaryinc.roo-cline/settings/mcp_settings.json",
        fields={"type": "streamable-http", "url": URL},
    ),
    "windsurf": Expect("json", "~/.codeium/windsurf/mcp_config.json", fields={"serverUrl": URL}),
    "vscode": Expect(
        "json", "~/.config/Code/User/mcp.json", key="servers", fields={"type": "http", "url": URL}, token="input"
    ),
    "codex": Expect("toml", "~/.codex/config.toml", key="mcp_servers", fields={"url": URL}, token="env"),
    "gemini-cli": Expect("json", "~/.gemini/settings.json", fields={"httpUrl": URL}),
    "factory-droid": Expect("command", token="flag", command=("droid", "mcp", "add", "engram", URL, "--type", "http")),
    "witsy": Expect("json", "~/.config/Witsy/settings.json", token="bridge"),
    "enconvo": Expect("json", "~/.config/enconvo/mcp_config.json", token="bridge"),
    "augment": Expect("json", "~/.augment/settings.json", token="bridge"),
    "mcp": Expect("link", token="link"),
}
