"""Our ASGI wrapper in front of the SDK's session manager: the resource server of /mcp.

In order: Host allow-list (DNS rebinding), Origin check, bearer token (audience = the /mcp
resource; tokens in the query string are never read), the scope of the tool being called (peeked
from the JSON-RPC body, which is then replayed to the SDK), and the caller bound for the tools.
Every refusal is a complete challenge a client can act on (RFC 6750, RFC 9728, MCP authorization).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import structlog
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.types import Message, Receive, Scope, Send

from app.auth.principal import Principal
from app.auth.verifier import AuthFailure
from app.mcp.context import McpCall, current_call
from app.mcp.tools import TOOL_SCOPES, scopes_for
from app.oauth.metadata import DEFAULT_CLIENT_SCOPES, prm_url
from app.services import Services
from app.settings import Settings

log = structlog.get_logger("engram.mcp")

MAX_BODY_BYTES = 2 * 1024 * 1024
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Origins:
    """Which Host and Origin headers this server answers, derived from ENGRAM_PUBLIC_URL."""

    hosts: frozenset[str]
    origins: frozenset[str]
    # A local server (bound to, or published at, a loopback address) also answers every loopback name
    # on any port: a DNS-rebinding page always sends its own host name, never one of these.
    loopback: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> Origins:
        public = urlsplit(settings.public_url)
        scheme = public.scheme.lower()
        name = (public.hostname or "").lower()
        if ":" in name:
            name = f"[{name}]"
        port = public.port or _DEFAULT_PORTS.get(scheme)
        hosts = {f"{name}:{port}"}
        origins = {f"{scheme}://{name}:{port}"}
        if public.port is None or public.port == _DEFAULT_PORTS.get(scheme):
            hosts.add(name)
            origins.add(f"{scheme}://{name}")
        local = settings.host.strip("[]").lower() in LOOPBACK_NAMES or name in LOOPBACK_NAMES
        return cls(frozenset(hosts), frozenset(origins), local)

    def host_allowed(self, host: str) -> bool:
        host = host.strip().lower()
        return host in self.hosts or (self.loopback and _split_port(host)[0] in LOOPBACK_NAMES)

    def origin_allowed(self, origin: str) -> bool:
        origin = origin.strip().lower()
        if origin in self.origins:
            return True
        if not self.loopback:
            return False
        scheme, sep, rest = origin.partition("://")
        return bool(sep) and scheme in _DEFAULT_PORTS and _split_port(rest)[0] in LOOPBACK_NAMES


def _split_port(host: str) -> tuple[str, str]:
    if host.startswith("["):
        name, _, rest = host.partition("]")
        return name + "]", rest.removeprefix(":")
    name, _, port = host.partition(":")
    return name, port


def _headers(scope: Scope, name: bytes) -> list[str]:
    return [v.decode("latin-1") for k, v in scope["headers"] if k == name]


class McpTransport:
    def __init__(self, settings: Settings, session_manager: StreamableHTTPSessionManager) -> None:
        self.settings = settings
        self.session_manager = session_manager
        self.allowed = Origins.from_settings(settings)
        self.resource_metadata = prm_url(settings, "/mcp")

    # --- responses ---------------------------------------------------------------------------
    def _challenge(self, *, scope: Iterable[str], error: str | None = None, description: str | None = None) -> str:
        parts = [f'Bearer resource_metadata="{self.resource_metadata}"', 'scope="{}"'.format(" ".join(scope))]
        if error:
            parts.append(f'error="{error}"')
        if description:
            parts.append('error_description="{}"'.format(description.replace('"', "'").replace("\\", "/")))
        return ", ".join(parts)

    @staticmethod
    async def _refuse(
        send: Send,
        status: int,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        request_id: Any = None,
    ) -> None:
        # A JSON-RPC error as the body: what MCP clients know how to show.
        error = {"code": -32600 if status < 500 else -32603, "message": message}
        body = json.dumps({"jsonrpc": "2.0", "id": request_id, "error": error}).encode()
        raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    # --- the request -------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        hosts = _headers(scope, b"host")
        if len(hosts) != 1 or not self.allowed.host_allowed(hosts[0]):
            log.info(
                "mcp request refused: host not allowed",
                host=",".join(hosts)[:100],
                hint="the Host header must match ENGRAM_PUBLIC_URL; a reverse proxy must pass it on "
                "(nginx: proxy_set_header Host $host)",
            )
            await self._refuse(send, 421, "This server does not answer for that Host name (ENGRAM_PUBLIC_URL).")
            return
        origins = _headers(scope, b"origin")
        if not all(self.allowed.origin_allowed(origin) for origin in origins):
            log.info("mcp request refused: origin not allowed", origin=",".join(origins)[:100])
            await self._refuse(send, 403, "Requests from this Origin are not allowed.")
            return

        services: Services = scope["app"].state.services
        principal = await self._authenticate(scope, send, services)
        if principal is None:
            return

        if scope.get("method") != "POST":
            # Stateless: no session to end (DELETE) and no server-initiated stream to open (GET); a GET
            # the SDK accepted would be held open with nothing ever to carry.
            message = "Engram's MCP endpoint is stateless: send every request as a POST."
            await self._refuse(send, 405, message, headers={"Allow": "POST"})
            return
        body, receive = await self._buffer_body(receive, send)
        if body is None:
            return
        if not await self._check_scope(send, principal, body):
            return

        state = scope.get("state") or {}
        request_id = state.get("request_id") if isinstance(state.get("request_id"), str) else None
        token = current_call.set(McpCall(principal, services, request_id))
        try:
            await self.session_manager.handle_request(scope, receive, send)
        finally:
            current_call.reset(token)

    async def _authenticate(self, scope: Scope, send: Send, services: Services) -> Principal | None:
        # Only the Authorization header counts: a token in the query string is never looked at.
        values = _headers(scope, b"authorization")
        scheme, _, token = (values[0] if len(values) == 1 else "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            await self._refuse(
                send,
                401,
                "Authentication required: send Authorization: Bearer <token>.",
                headers={"WWW-Authenticate": self._challenge(scope=DEFAULT_CLIENT_SCOPES)},
            )
            return None
        try:
            return await services.verifier.verify(token, audiences=[self.settings.mcp_resource])
        except AuthFailure as failure:
            headers: dict[str, str] = {}
            if failure.status == 401:
                headers["WWW-Authenticate"] = self._challenge(
                    error=failure.error, description=failure.description, scope=DEFAULT_CLIENT_SCOPES
                )
            elif failure.status == 503:
                headers["Retry-After"] = "5"
            await self._refuse(send, failure.status, failure.description, headers=headers)
            return None

    @staticmethod
    async def _buffer_body(receive: Receive, send: Send) -> tuple[bytes | None, Receive]:
        """Read the whole body (to look at it) and give the SDK a `receive` that replays it."""
        chunks: list[bytes] = []
        size = 0
        trailing: list[Message] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                trailing.append(message)
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                await McpTransport._refuse(send, 413, "The request body is too large.")
                return None, receive
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}, *trailing]

        async def replay() -> Message:
            return pending.pop(0) if pending else await receive()

        return body, replay

    async def _check_scope(self, send: Send, principal: Principal, body: bytes) -> bool:
        """A tools/call the token's scopes do not allow gets HTTP 403 with a step-up challenge."""
        try:
            message = json.loads(body) if body else None
        except (ValueError, RecursionError):
            return True  # the SDK answers malformed JSON with a parse error
        for item in message if isinstance(message, list) else [message]:
            if not isinstance(item, dict) or item.get("method") != "tools/call":
                continue
            params = item.get("params")
            name = params.get("name") if isinstance(params, dict) else None
            if not isinstance(name, str) or name not in TOOL_SCOPES or principal.has(TOOL_SCOPES[name]):
                continue
            needed = scopes_for(name)
            description = f"{name} needs the {TOOL_SCOPES[name]} scope"
            log.info("mcp tool call refused: insufficient scope", tool=name, client_id=principal.client_id)
            await self._refuse(
                send,
                403,
                f"{description}; the token has {' '.join(sorted(principal.scopes)) or 'none'}.",
                headers={
                    "WWW-Authenticate": self._challenge(
                        error="insufficient_scope", description=description, scope=needed
                    )
                },
                request_id=item.get("id"),
            )
            return False
        return True
