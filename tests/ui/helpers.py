"""What the browser tests do again and again: add a memory, create a token, read the CSRF cookie."""

from __future__ import annotations

import re
import uuid

from tests.ui.conftest import Visitor

ALICE, BOB = "alice@example.com", "bob@example.com"
MEMORY_ID = re.compile(r"/memories/([0-9a-f-]{36})")


def marker() -> str:
    return uuid.uuid4().hex[:8]


async def add_memory(v: Visitor, content: str, tags: str = "") -> str:
    await v.goto("/memories/new")
    await v.page.fill("#content", content)
    await v.page.fill("#tags", tags)
    await v.page.click("button:has-text('Save memory')")
    await v.page.wait_for_url(re.compile(r"/memories/[0-9a-f-]{36}\?done="))
    await v.check()
    match = MEMORY_ID.search(v.page.url)
    assert match, v.page.url
    return match.group(1)


async def csrf_of(v: Visitor) -> str:
    cookies = await v.context.cookies(v.server.url)
    return next(c["value"] for c in cookies if c["name"] == "engram_csrf")


async def create_token(v: Visitor, name: str, scopes: tuple[str, ...] = ("memories:read",)) -> str:
    await v.goto("/tokens")
    await v.page.fill("#token-name", name)
    for box in await v.page.locator('input[name="scopes"]').all():
        if await box.get_attribute("value") in scopes:
            await box.check()
        else:
            await box.uncheck()
    await v.page.select_option("#token-days", "30")
    await v.page.click("button:has-text('Create token')")
    await v.check()
    token = (await v.page.text_content("#token-value") or "").strip()
    assert token.startswith("egm_")
    return token
