"""What every page shares: sign-in and sign-out, one user's data invisible to another, messages instead of errors."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from playwright.async_api import expect

from tests.conftest import LiveServer
from tests.ui.conftest import Visitor
from tests.ui.helpers import ALICE, BOB, add_memory, create_token, csrf_of, marker


async def test_sign_out(visitor_factory: Any) -> None:
    alice: Visitor = await visitor_factory()
    await alice.sign_in("alice")
    session = next(c["value"] for c in await alice.context.cookies(alice.server.url) if c["name"] == "engram_session")
    await alice.page.click("button:has-text('Sign out')")
    await alice.page.wait_for_url(alice.url("/login?signed_out=1"))
    await expect(alice.page.get_by_role("status")).to_have_text("You are signed out.")
    await alice.check()
    cookies = {c["name"] for c in await alice.context.cookies(alice.server.url)}
    assert "engram_session" not in cookies
    response = await alice.page.request.get(alice.url("/memories"), max_redirects=0)
    assert response.status == 303
    assert response.headers["location"] == "/login?next=/memories"
    async with httpx.AsyncClient(base_url=alice.server.url, cookies={"engram_session": session}) as api:
        assert (await api.get("/memories")).status_code == 303  # the session ended on the server too
    alice.assert_clean()


async def test_bob_sees_none_of_alices_data(visitor_factory: Any) -> None:
    alice: Visitor = await visitor_factory()
    await alice.sign_in("alice")
    mark = marker()
    memory_id = await add_memory(alice, f"Alice's secret project is called Nightjar [{mark}]", f"secret-{mark}")
    token_name = f"Alice's token {mark}"
    await create_token(alice, token_name)
    alice_session = next(
        c["value"] for c in await alice.context.cookies(alice.server.url) if c["name"] == "engram_session"
    )

    bob: Visitor = await visitor_factory()
    await bob.sign_in("bob")
    page = bob.page
    await expect(page.get_by_test_id("signed-in-as")).to_have_text(BOB)
    assert alice_session not in {c["value"] for c in await bob.context.cookies(bob.server.url)}
    for path in ("/", "/memories", "/memories?state=all", "/clients", "/tokens", "/connect"):
        await bob.goto(path)
        body = await page.text_content("body") or ""
        assert mark not in body, path
        assert ALICE not in body, path
    await bob.goto(f"/memories?q=Nightjar+{mark}&state=all")
    # Semantic search always ranks bob's own memories (other tests may have given him some);
    # what must never appear is alice's.
    await expect(page.locator(".memory-item", has_text=mark)).to_have_count(0)
    await expect(page.locator(".memory-item", has_text="Nightjar")).to_have_count(0)
    await bob.goto("/memories")
    await expect(page.locator(f'#f-tag option[value="secret-{mark}"]')).to_have_count(0)
    assert await bob.goto(f"/memories/{memory_id}") == 404
    assert await bob.goto(f"/memories/{memory_id}/delete") == 404
    # Forms aimed at alice's memory change nothing.
    response = await page.request.post(
        bob.url(f"/memories/{memory_id}/delete"), form={"csrf_token": await csrf_of(bob)}, max_redirects=0
    )
    assert response.status == 404
    assert await alice.goto(f"/memories/{memory_id}") == 200
    bob.assert_clean()
    alice.assert_clean()


async def test_signed_out_visitors_are_sent_to_sign_in(ui_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=ui_server.url) as api:
        for path in ("/", "/memories?q=tea&size=10", "/connect", "/tokens", "/clients", "/memories/new"):
            response = await api.get(path)
            assert response.status_code == 303, path
            location = response.headers["location"]
            assert location.startswith("/login?next=")
            assert parse_qs(urlsplit(location).query)["next"] == [path]
        posted = await api.post("/memories/new", data={"content": "x"})
        assert posted.status_code == 303
        assert posted.headers["location"] == "/login?next=/"


async def test_bad_input_gets_a_clear_message_never_a_500(visitor_factory: Any) -> None:
    alice: Visitor = await visitor_factory()
    await alice.sign_in("alice")
    request = alice.page.request
    csrf = await csrf_of(alice)
    cases: list[tuple[str, str, dict[str, Any] | None, int, str]] = [
        ("GET", "/memories?date_from=yesterday", None, 400, "must be a date like"),
        ("GET", "/memories?date_from=2026-02-01&date_to=2026-01-01", None, 400, "is after"),
        ("GET", "/memories?app=not-an-id", None, 400, "not a valid client id"),
        ("GET", "/memories?cursor=garbage", None, 400, "cursor is not one this server issued"),
        ("GET", "/memories?size=7&sort=sideways&state=odd", None, 200, "Memories"),
        ("GET", "/memories/not-a-uuid", None, 404, "No memory with that id"),
        ("GET", "/connect?client=nope&os=beos", None, 200, "Claude Code"),
        ("POST", "/memories/new", {"content": "no csrf"}, 403, "This form expired"),
        ("POST", "/memories/new", {"csrf_token": csrf, "content": "   "}, 400, "A memory needs some text"),
        ("POST", "/memories/new", {"csrf_token": csrf, "content": "x", "metadata": "{nope"}, 400, "not valid JSON"),
        ("POST", "/memories/new", {"csrf_token": csrf, "content": "x", "metadata": "[1]"}, 400, "JSON object"),
        ("POST", "/memories/new", {"csrf_token": csrf, "content": "x", "tags": "a" * 65}, 400, "at most 64"),
        ("POST", "/memories/bulk", {"csrf_token": csrf, "action": "archive"}, 400, "Tick the memories"),
        ("POST", "/memories/bulk", {"csrf_token": csrf, "action": "explode"}, 400, "Pick what to do"),
        ("POST", "/tokens", {"csrf_token": csrf, "name": "t", "days": "30"}, 400, "at least one permission"),
        ("POST", "/tokens", {"csrf_token": csrf, "name": "t", "scopes": "memories:read", "days": "0"}, 400, "expiry"),
        ("POST", f"/tokens/{uuid.uuid4()}/revoke", {"csrf_token": csrf}, 404, "No token with that id"),
        ("POST", "/clients/nope/pause", {"csrf_token": csrf}, 404, "No client with that id"),
        ("POST", "/memories/import", {"csrf_token": csrf}, 400, "Choose a .jsonl file"),
    ]
    for method, path, form, status, text in cases:
        if method == "GET":
            response = await request.get(alice.url(path), max_redirects=0)
        else:
            response = await request.post(alice.url(path), form=form, max_redirects=0)
        body = await response.text()
        assert response.status == status, (path, response.status, body[:500])
        assert response.headers["content-type"].startswith("text/html"), path
        assert text in body, (path, body[:2000])
        assert "Content-Security-Policy" in {k.title() for k in response.headers}, path

    # Editing a memory into the exact text of another one: the form comes back with the reason.
    mark = marker()
    await add_memory(alice, f"The first of two [{mark}]")
    second = await add_memory(alice, f"The second of two [{mark}]")
    await alice.page.fill("#content", f"The first of two [{mark}]")
    await alice.page.click("button:has-text('Save changes')")
    await expect(alice.page.locator("#edit-heading ~ p.error")).to_contain_text(
        "already have a memory with exactly this text"
    )
    await expect(alice.page.locator("#content")).to_have_value(f"The first of two [{mark}]")
    await alice.goto(f"/memories/{second}")
    await expect(alice.page.get_by_test_id("memory-content")).to_have_text(f"The second of two [{mark}]")
    alice.assert_clean()
