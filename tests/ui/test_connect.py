"""The connect page in a browser: the fourteen tabs, copying a snippet, a token for setups without OAuth."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
from playwright.async_api import expect

from tests.ui.conftest import Visitor
from tests.ui.helpers import ALICE


async def test_alice_connects_a_client_and_copies_its_snippet(visitor_factory: Any) -> None:
    alice: Visitor = await visitor_factory()
    page = alice.page
    await alice.sign_in("alice")
    await alice.goto("/connect")
    tabs = page.get_by_role("tab")
    await expect(tabs).to_have_count(14)
    await expect(page.get_by_role("tab", selected=True)).to_contain_text("Claude Code")
    for tab in await tabs.all():
        assert await tab.locator("svg.logo").count() == 1
    mcp_url = alice.url("/mcp")
    await expect(page.get_by_test_id("mcp-url")).to_have_text(mcp_url)

    # Claude Code's command, copied with the button.
    await expect(page.get_by_test_id("snippet-claude-code")).to_have_text(
        f"claude mcp add --transport http --scope user engram {mcp_url}"
    )
    await page.click("#panel-claude-code button[data-copy]")
    await expect(page.locator("#panel-claude-code button[data-copy]")).to_have_text("Copied")
    assert await page.evaluate("navigator.clipboard.readText()") == (
        f"claude mcp add --transport http --scope user engram {mcp_url}"
    )

    # Cursor's JSON; the tab strip answers the arrow keys too.
    await page.click("#tab-cursor")
    await expect(page.locator("#panel-cursor")).to_be_visible()
    await expect(page.locator("#panel-claude-code")).to_be_hidden()
    assert "client=cursor" in page.url
    await page.click("#panel-cursor button[data-copy]")
    copied = json.loads(await page.evaluate("navigator.clipboard.readText()"))
    assert copied == {"mcpServers": {"engram": {"url": mcp_url}}}
    await page.focus("#tab-cursor")
    await page.keyboard.press("ArrowRight")
    await expect(page.locator("#tab-cline")).to_be_focused()
    await expect(page.locator("#tab-cline")).to_have_attribute("aria-selected", "true")
    await expect(page.locator("#panel-cline")).to_be_visible()

    # A token for a setup without OAuth: shown once, in every snippet, revocable from here.
    await page.click("#tab-cursor")
    await page.click("button:has-text('Create a token for this client')")
    token = (await page.text_content("#token-value") or "").strip()
    assert token.startswith("egm_")
    await expect(page.locator("#panel-cursor")).to_be_visible()
    with_token = json.loads(await page.text_content("#snippet-cursor") or "")
    assert with_token["mcpServers"]["engram"]["headers"] == {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=alice.server.url) as api:
        me = await api.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200
        assert me.json()["email"] == ALICE
        assert me.json()["app_name"] == "Cursor (from Connect)"
        await page.click("button:has-text('Revoke this token')")
        await page.wait_for_url(re.compile(r"/connect\?done=token-revoked"))
        assert (await api.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})).status_code == 401
    await alice.check()
    alice.assert_clean()
