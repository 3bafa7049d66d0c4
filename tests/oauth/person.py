"""A person in a browser, played by an HTTP client: signs in, reads forms, clicks Allow or Deny."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

_INPUT = re.compile(r'<input[^>]*name="(?P<name>[^"]+)"[^>]*value="(?P<value>[^"]*)"', re.IGNORECASE)


def form_fields(page: str) -> dict[str, str]:
    return {m["name"]: html.unescape(m["value"]) for m in _INPUT.finditer(page)}


@dataclass
class Person:
    """Cookies persist across calls, like one browser profile."""

    base_url: str
    email: str
    password: str
    decision: str = "allow"
    seen: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.client = httpx.AsyncClient(base_url=self.base_url, timeout=30, follow_redirects=False)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def _get(self, url: str) -> httpx.Response:
        self.seen.append(url)
        return await self.client.get(url)

    async def authorize(self, authorize_url: str) -> dict[str, str]:
        """Follows the authorization request to the client's redirect; returns its query parameters."""
        response = await self._get(authorize_url)
        for _ in range(12):
            if response.status_code in (302, 303):
                location = urljoin(str(response.url), response.headers["location"])
                if not location.startswith(self.base_url):
                    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
                response = await self._get(location)
                continue
            if response.status_code != 200:
                raise AssertionError(f"{response.status_code} at {response.url}: {response.text[:500]}")
            page = response.text
            if 'action="/login"' in page:
                fields = form_fields(page)
                response = await self.client.post(
                    "/login", data={**fields, "email": self.email, "password": self.password}
                )
            elif 'action="/oauth/consent"' in page:
                response = await self.client.post(
                    "/oauth/consent", data={**form_fields(page), "decision": self.decision}
                )
            else:
                raise AssertionError(f"unexpected page at {response.url}: {page[:500]}")
        raise AssertionError("too many steps: " + " → ".join(self.seen))
