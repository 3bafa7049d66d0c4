"""A scripted browser for tools that open one to sign in (`BROWSER="python -m tests.mcp.browser %s"`).

Signs in to Engram as ENGRAM_TEST_EMAIL / ENGRAM_TEST_PASSWORD, allows the consent page, and
delivers the authorization response to the tool's loopback redirect URI, as a person would.
"""

from __future__ import annotations

import asyncio
import os
import sys
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from tests.oauth.person import Person


async def browse(url: str) -> None:
    parts = urlsplit(url)
    redirect_uri = parse_qs(parts.query)["redirect_uri"][0]
    email, password = os.environ["ENGRAM_TEST_EMAIL"], os.environ["ENGRAM_TEST_PASSWORD"]
    person = Person(f"{parts.scheme}://{parts.netloc}", email, password)
    try:
        outcome = await person.authorize(url)
        async with httpx.AsyncClient(timeout=30) as tab:
            await tab.get(f"{redirect_uri}?{urlencode(outcome)}")
    finally:
        await person.aclose()


if __name__ == "__main__":
    asyncio.run(browse(sys.argv[1]))
