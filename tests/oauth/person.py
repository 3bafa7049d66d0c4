"""A person in a browser, played by an HTTP client: signs in, reads forms, clicks Allow or Deny.

Also the MCP SDK's `OAuthClientProvider` wired to such a person, for tests that run the whole flow
the way an MCP client does.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import httpx2
from mcp.client.auth import OAuthClientProvider
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from pydantic import AnyUrl

from tests.idp.peer import login_at_idp

_INPUT = re.compile(r'<input[^>]*name="(?P<name>[^"]+)"[^>]*value="(?P<value>[^"]*)"', re.IGNORECASE)
SDK_REDIRECT = "http://127.0.0.1:53682/callback"


def form_fields(page: str) -> dict[str, str]:
    return {m["name"]: html.unescape(m["value"]) for m in _INPUT.finditer(page)}


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


@dataclass
class Person:
    """Cookies persist across calls, like one browser profile.

    With `upstream` (the base URL of an OpenID Connect provider), the person signs in there as
    `upstream_login` (default: the local part of `email`) whenever Engram sends the browser to it.
    """

    base_url: str
    email: str
    password: str = ""
    decision: str = "allow"
    seen: list[str] = field(default_factory=list)
    upstream: str | None = None
    upstream_login: str | None = None

    def __post_init__(self) -> None:
        self.client = httpx.AsyncClient(base_url=self.base_url, timeout=30, follow_redirects=False)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def _get(self, url: str) -> httpx.Response:
        self.seen.append(url)
        return await self.client.get(url)

    async def authorize(self, authorize_url: str) -> dict[str, str]:
        """Follows the authorization request to the client's redirect; returns its query parameters."""
        outcome = await self.walk(authorize_url)
        if isinstance(outcome, httpx.Response):
            raise AssertionError(f"{outcome.status_code} at {outcome.url}: {outcome.text[:500]}")
        return outcome

    async def walk(self, url: str) -> dict[str, str] | httpx.Response:
        """Goes where `url` leads, signing in and answering the consent page on the way.

        Returns the query parameters of the first redirect that leaves Engram (and the upstream
        provider), or the first page this person cannot act on (an error page, a signed-in page).
        """
        response = await self._get(url)
        for _ in range(16):
            if response.is_redirect:
                location = urljoin(str(response.url), response.headers["location"])
                if self.upstream is not None and location.startswith(self.upstream + "/"):
                    login = self.upstream_login or self.email.split("@", 1)[0]
                    callback = await login_at_idp(self.client, location, login)
                    response = await self._get(callback)
                    continue
                if not location.startswith(self.base_url + "/"):
                    return query_of(location)
                response = await self._get(location)
                continue
            if response.status_code != 200:
                return response
            page = response.text
            if 'action="/login"' in page and self.password:
                fields = form_fields(page)
                response = await self.client.post(
                    "/login", data={**fields, "email": self.email, "password": self.password}
                )
            elif 'action="/oauth/consent"' in page:
                response = await self.client.post(
                    "/oauth/consent", data={**form_fields(page), "decision": self.decision}
                )
            else:
                return response
        raise AssertionError("too many steps: " + " → ".join(self.seen))


# --- the MCP SDK as the client ------------------------------------------------------------------------
class MemoryStorage:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


@dataclass
class SdkClient:
    """`http` sends requests with the SDK's OAuth flow; `authorizations` lists where it sent the browser."""

    http: httpx2.AsyncClient
    storage: MemoryStorage
    authorizations: list[str]

    async def aclose(self) -> None:
        await self.http.aclose()


def sdk_client(
    resource_url: str,
    person: Person,
    *,
    client_name: str = "SDK test client",
    client_metadata_url: str | None = None,
    redirect_uri: str = SDK_REDIRECT,
) -> SdkClient:
    """An MCP client for the resource at `resource_url` whose browser is `person`.

    It discovers, registers (or uses `client_metadata_url` as its client id), sends the person
    through the authorization, redeems the code and refreshes on its own.
    """
    result: dict[str, str] = {}
    authorizations: list[str] = []

    async def redirect_handler(url: str) -> None:
        authorizations.append(url)
        result.clear()
        result.update(await person.authorize(url))

    async def callback_handler() -> AuthorizationCodeResult:
        return AuthorizationCodeResult(code=result["code"], state=result.get("state"), iss=result.get("iss"))

    storage = MemoryStorage()
    provider = OAuthClientProvider(
        server_url=resource_url,
        client_metadata=OAuthClientMetadata(
            client_name=client_name,
            redirect_uris=[AnyUrl(redirect_uri)],
            grant_types=["authorization_code", "refresh_token"],
        ),
        storage=storage,
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
        client_metadata_url=client_metadata_url,
    )
    return SdkClient(httpx2.AsyncClient(auth=provider, timeout=30), storage, authorizations)
