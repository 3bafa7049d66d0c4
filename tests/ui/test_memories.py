"""The memories pages in a browser: create, search, edit, archive, delete, bulk actions, export and import."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from playwright.async_api import expect

from tests.ui.conftest import Visitor
from tests.ui.helpers import ALICE, add_memory, marker


async def test_alice_creates_searches_edits_archives_and_deletes(visitor_factory: Any) -> None:
    alice: Visitor = await visitor_factory()
    page = alice.page
    await alice.sign_in("alice")
    await expect(page.get_by_test_id("signed-in-as")).to_have_text(ALICE)
    await expect(page.locator('nav a[aria-current="page"]')).to_have_text("Dashboard")
    # The first Tab reaches the skip link; following it moves focus to the page's content.
    await page.keyboard.press("Tab")
    await expect(page.locator(".skip-link")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("main#main")).to_be_focused()

    mark = marker()
    coffee = await add_memory(alice, f"Alice drinks an oat milk flat white every morning [{mark}]", "coffee, Habits")
    await expect(page.locator(".notice")).to_have_text("Memory saved.")
    await expect(page.locator(".tag")).to_have_text(["coffee", "habits"])
    await add_memory(alice, f"Alice's bicycle is a green steel touring bike [{mark}]", "bike")

    # The search box is the API's search: it finds the memory by meaning, not by its words.
    await alice.goto("/memories")
    await page.fill("#q", "which hot drink does she like before work?")
    await page.click("button:has-text('Search')")
    await page.wait_for_url(re.compile(r"/memories\?q="))
    first = page.locator(".memory-item").first
    await expect(first).to_contain_text("oat milk flat white")
    await expect(first).to_contain_text("similarity")

    # Edit: new text (re-embedded), tags and metadata; the history records the change.
    await alice.goto(f"/memories/{coffee}")
    await page.fill("#content", f"Alice switched to black filter coffee, no milk [{mark}]")
    await page.fill("#metadata", '{"source": "browser test"}')
    await page.click("button:has-text('Save changes')")
    await page.wait_for_url(re.compile(r"done=updated"))
    await expect(page.get_by_test_id("memory-content")).to_contain_text("black filter coffee")
    await expect(page.locator(".timeline")).to_contain_text("Updated")
    await expect(page.locator("pre.code")).to_contain_text('"source": "browser test"')
    await alice.goto("/memories?q=" + "black%20coffee%20without%20milk")
    await expect(page.locator(".memory-item").first).to_contain_text("black filter coffee")

    # Archive: out of searches, still listed under "Archived"; resume brings it back.
    await alice.goto(f"/memories/{coffee}")
    await page.click("button:has-text('Archive')")
    await page.wait_for_url(re.compile(r"done=state"))
    await expect(page.locator(".memory-detail .badge")).to_have_text("archived")
    await alice.goto(f"/memories?q=black+filter+coffee+{mark}")
    await expect(page.locator(".memory-list")).not_to_contain_text("black filter coffee")
    await alice.goto("/memories?state=archived")
    await expect(page.locator(".memory-list")).to_contain_text("black filter coffee")
    await alice.goto(f"/memories/{coffee}")
    await page.click("button:has-text('Resume')")
    await expect(page.locator(".memory-detail .badge")).to_have_text("active")

    # Delete, after a confirmation page.
    await page.click("a:has-text('Delete…')")
    await expect(page.locator("h1")).to_have_text("Delete this memory?")
    await page.click("button:has-text('Delete for good')")
    await page.wait_for_url(re.compile(r"/memories\?done=deleted"))
    assert await alice.goto(f"/memories/{coffee}") == 404
    await expect(page.locator("h1")).to_have_text("Not found")

    # Bulk: select the page's memories carrying the marker, archive them, then delete with confirmation.
    await add_memory(alice, f"Alice keeps her passport in the blue folder [{mark}]")
    await alice.goto(f"/memories?q={mark}&mode=keyword")
    items = page.locator(".memory-item")
    await expect(items).to_have_count(2)
    await page.check("#select-all")
    await page.select_option("#bulk-action", "archive")
    await page.click("button:has-text('Apply to selected')")
    await expect(page.locator(".notice")).to_have_text("2 memories changed.")
    await alice.goto(f"/memories?q={mark}&mode=keyword&state=all")
    await page.check("#select-all")
    await page.select_option("#bulk-action", "delete")
    await page.click("button:has-text('Apply to selected')")
    await expect(page.locator("h1")).to_have_text("Delete 2 memories?")
    await page.click("button:has-text('Delete for good')")
    await expect(page.locator(".notice")).to_have_text("2 memories deleted.")
    await alice.goto(f"/memories?q={mark}&mode=keyword&state=all")
    await expect(page.locator(".memory-item")).to_have_count(0)

    alice.assert_clean()


async def test_alice_exports_and_imports(visitor_factory: Any, tmp_path: Path) -> None:
    alice: Visitor = await visitor_factory()
    await alice.sign_in("alice")
    mark = marker()
    await add_memory(alice, f"Alice's export check [{mark}]", "export")
    await alice.goto("/memories/transfer")
    async with alice.page.expect_download() as download_info:
        await alice.page.click("a:has-text('Download')")
    download = await download_info.value
    exported = tmp_path / "export.jsonl"
    await download.save_as(exported)
    lines = [json.loads(line) for line in exported.read_text().splitlines()]
    assert any(line["content"] == f"Alice's export check [{mark}]" for line in lines)

    upload = tmp_path / "import.jsonl"
    upload.write_text(
        json.dumps({"content": f"Imported: Alice's favourite tea is genmaicha [{mark}]", "tags": ["tea"]})
        + "\nnot json\n"
        + json.dumps({"content": f"Alice's export check [{mark}]"})
        + "\n"
    )
    await alice.page.set_input_files("#file", str(upload))
    await alice.page.click("button:has-text('Import')")
    status = alice.page.locator(".notice")
    await expect(status).to_contain_text("1 imported, 1 already there, 1 lines refused")
    await expect(alice.page.locator(".errors")).to_contain_text("line 2")
    await alice.goto(f"/memories?q={mark}&mode=keyword")
    await expect(alice.page.locator(".memory-list")).to_contain_text("genmaicha")

    # Pages: twelve memories with one tag, ten to a page.
    tag = f"page-{mark}"
    upload.write_text(
        "".join(json.dumps({"content": f"Paged memory {i} [{mark}]", "tags": [tag]}) + "\n" for i in range(12))
    )
    await alice.goto("/memories/transfer")
    await alice.page.set_input_files("#file", str(upload))
    await alice.page.click("button:has-text('Import')")
    await expect(status).to_contain_text("12 imported")
    await alice.goto(f"/memories?tag={tag}&size=10&sort=created_asc")
    items = alice.page.locator(".memory-item")
    await expect(items).to_have_count(10)
    await expect(items.first).to_contain_text("Paged memory 0 ")
    await alice.page.click("a[rel=next]")
    await expect(items).to_have_count(2)
    await expect(alice.page.locator(".pager")).to_contain_text("Page 2")
    await expect(items.first).to_contain_text("Paged memory 10 ")
    await alice.page.click("a[rel=prev]")
    await expect(items).to_have_count(10)
    await expect(alice.page.locator("a[rel=prev]")).to_have_count(0)
    await alice.check()
    alice.assert_clean()
