"""Every page at 360 px and on a desktop: no sideways overflow (but the tab strip), screenshots, no errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.async_api import expect

from tests.ui.conftest import DESKTOP, PHONE, Visitor
from tests.ui.helpers import add_memory, marker

# Every page measured at 360 px: nothing but the client tab strip may be wider than the screen.
OVERFLOW = """
() => {
  const width = document.documentElement.clientWidth;
  const offenders = [];
  for (const el of document.body.querySelectorAll('*')) {
    if (el.closest('[role="tablist"]')) continue;
    const box = el.getBoundingClientRect();
    if (box.width <= 1 || box.height <= 1) continue;
    if (box.right > width + 0.5 || box.left < -0.5) {
      offenders.push(`${el.tagName.toLowerCase()}.${el.className} (${Math.round(box.left)}..${Math.round(box.right)})`);
    }
  }
  return {scrollWidth: document.documentElement.scrollWidth, width, offenders: offenders.slice(0, 8)};
}
"""


PAGES = {
    "dashboard": "/",
    "memories": "/memories",
    "memories-search": "/memories?q=coffee",
    "memory-new": "/memories/new",
    "transfer": "/memories/transfer",
    "clients": "/clients",
    "connect": "/connect",
    "tokens": "/tokens",
    "not-found": "/memories/00000000-0000-0000-0000-000000000000",
}


async def test_every_page_fits_a_phone_and_a_desktop(visitor_factory: Any, artifacts: Path) -> None:
    phone: Visitor = await visitor_factory(PHONE)
    await phone.sign_in("alice")
    mark = marker()
    memory_id = await add_memory(
        phone,
        f"Alice prefers window seats on long flights and an aisle seat on short hops [{mark}]",
        "travel, preferences",
    )
    await phone.page.fill("#metadata", '{"source": "screenshot", "confidence": 0.9}')
    await phone.page.click("button:has-text('Save changes')")
    await phone.page.wait_for_url(re.compile("done=updated"))
    pages = {**PAGES, "memory": f"/memories/{memory_id}", "memory-delete": f"/memories/{memory_id}/delete"}
    desktop: Visitor = await visitor_factory(DESKTOP)
    await desktop.sign_in("alice")
    for name, path in pages.items():
        for visitor, size in ((phone, "360"), (desktop, "desktop")):
            await visitor.goto(path)
            await visitor.page.screenshot(path=str(artifacts / f"{name}-{size}.png"), full_page=True)
        measured = await phone.page.evaluate(OVERFLOW)
        assert measured["scrollWidth"] <= measured["width"], (name, measured)
        assert measured["offenders"] == [], (name, measured)
    # Pages that only a form leads to: a new token on the connect page, the bulk-delete confirmation.
    await phone.goto("/connect?client=cursor")
    await phone.page.click("button:has-text('Create a token for this client')")
    await phone.check()
    await phone.page.screenshot(path=str(artifacts / "connect-token-360.png"), full_page=True)
    assert (await phone.page.evaluate(OVERFLOW))["offenders"] == []
    await phone.goto(f"/memories?q={mark}&mode=keyword")
    await phone.page.check("#select-all")
    await phone.page.select_option("#bulk-action", "delete")
    await phone.page.click("button:has-text('Apply to selected')")
    await expect(phone.page.locator("h1")).to_have_text("Delete 1 memory?")
    await phone.check()
    await phone.page.screenshot(path=str(artifacts / "bulk-delete-360.png"), full_page=True)
    assert (await phone.page.evaluate(OVERFLOW))["offenders"] == []
    # The tab strip is the one thing allowed to be wider than a phone: it scrolls sideways.
    await phone.goto("/connect?client=mcp")
    strip = await phone.page.get_by_test_id("tab-strip").evaluate("s => [s.scrollWidth, s.clientWidth, s.scrollLeft]")
    assert strip[0] > strip[1], "the strip is wider than the phone"
    assert strip[2] > 0, "the selected last tab was scrolled into view"
    await phone.page.screenshot(path=str(artifacts / "connect-last-tab-360.png"), full_page=True)
    phone.assert_clean()
    desktop.assert_clean()
