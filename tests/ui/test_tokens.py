"""Tokens and clients in a browser: personal access tokens, pausing a client, revoking OAuth grants."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from playwright.async_api import Route, expect

from tests.ui.conftest import Visitor
from tests.ui.helpers import create_token, marker


async def test_alice_creates_and_revokes_a_token_and_manages_its_client(visitor_factory: Any) -> None:
    alice: Visitor = await visitor_factory()
    page = alice.page
    await alice.sign_in("alice")
    name = f"Script {marker()}"
    token = await create_token(alice, name, ("memories:read", "memories:write"))
    row = page.get_by_test_id("token-table").locator("tr", has_text=name)
    await expect(row).to_contain_text("active")
    await expect(row).to_contain_text("read, write")
    await alice.goto("/tokens")
    await expect(page.get_by_test_id("new-token")).to_have_count(0)  # shown once

    bearer = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=alice.server.url) as api:
        assert (await api.get("/api/v1/memories", headers=bearer)).status_code == 200
        await alice.goto("/tokens")
        await expect(row).not_to_contain_text("never")  # last use recorded

        # The client the token acts as: listed, pausable, revocable.
        await alice.goto("/clients")
        card = page.get_by_test_id("client").filter(has_text=name)
        await expect(card).to_contain_text("Personal access token")
        await card.get_by_role("button", name=re.compile("^Pause")).click()
        await expect(page.locator(".notice")).to_contain_text("Client paused")
        paused = await api.get("/api/v1/memories", headers=bearer)
        assert paused.status_code == 403
        assert paused.json()["type"].endswith("app-paused")
        await card.get_by_role("button", name=re.compile("^Resume")).click()
        assert (await api.get("/api/v1/memories", headers=bearer)).status_code == 200

        await alice.goto("/tokens")
        await row.get_by_role("button", name=re.compile("^Revoke")).click()
        await expect(page.locator(".notice")).to_have_text("Token revoked.")
        await expect(row).to_contain_text("revoked")
        assert (await api.get("/api/v1/memories", headers=bearer)).status_code == 401
    alice.assert_clean()


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


async def _authorize(
    v: Visitor, api: httpx.AsyncClient, client_id: str, redirect_uri: str
) -> tuple[dict[str, Any], bool]:
    """One authorization-code flow in the browser; the tokens, and whether the consent page was shown."""
    verifier, challenge = _pkce()
    codes: list[str] = []

    async def callback(route: Route) -> None:
        codes.extend(parse_qs(urlsplit(route.request.url).query).get("code", []))
        await route.fulfill(status=200, content_type="text/html", body="<p>done</p>")

    await v.page.route(redirect_uri + "*", callback)
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": "s",
        "resource": v.url("/api/v1"),
    }
    await v.page.goto(v.url("/oauth/authorize?" + urlencode(query)))
    asked = "/oauth/authorize/continue" in v.page.url and await v.page.locator("button:has-text('Allow')").count() == 1
    if asked:
        await v.page.click("button:has-text('Allow')")
    await v.page.wait_for_url(redirect_uri + "*")
    await v.page.unroute(redirect_uri + "*")
    tokens = await api.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": codes[0],
            "redirect_uri": redirect_uri,
            "client_id": client_id,
            "code_verifier": verifier,
        },
    )
    assert tokens.status_code == 200, tokens.text
    return tokens.json(), asked


async def test_alice_revokes_an_oauth_grant_on_the_tokens_and_the_clients_page(visitor_factory: Any) -> None:
    alice: Visitor = await visitor_factory()
    page = alice.page
    await alice.sign_in("alice")
    redirect_uri = "http://127.0.0.1:53999/callback"
    client_name = f"Grant test {marker()}"
    async with httpx.AsyncClient(base_url=alice.server.url) as api:
        registered = await api.post(
            "/oauth/register",
            json={"client_name": client_name, "redirect_uris": [redirect_uri], "token_endpoint_auth_method": "none"},
        )
        assert registered.status_code == 201, registered.text
        client_id = registered.json()["client_id"]

        async def refresh_fails(tokens: dict[str, Any]) -> bool:
            refreshed = await api.post(
                "/oauth/token",
                data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": client_id},
            )
            return bool(refreshed.json().get("error") == "invalid_grant")

        tokens, asked = await _authorize(alice, api, client_id, redirect_uri)
        assert asked
        await alice.goto("/tokens")
        grant = page.get_by_test_id("grant").filter(has_text=client_name)
        await expect(grant.get_by_test_id("live-tokens")).to_have_text("1")
        await grant.get_by_role("button", name=re.compile("^Revoke")).click()
        await expect(page.locator(".notice")).to_have_text("Access revoked.")
        await expect(page.get_by_test_id("grant").filter(has_text=client_name)).to_have_count(0)
        assert await refresh_fails(tokens)

        # The consent went with it: the next sign-in asks again. Then revoke from the clients page.
        tokens, asked = await _authorize(alice, api, client_id, redirect_uri)
        assert asked
        me = await api.get("/api/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
        assert me.status_code == 200, me.text
        await alice.goto("/clients")
        card = page.get_by_test_id("client").filter(has_text=client_name)
        await expect(card).to_contain_text("Signed in with OAuth")
        await card.get_by_role("button", name=re.compile("^Revoke access")).click()
        await expect(page.locator(".notice")).to_have_text("Access revoked.")
        await expect(card.get_by_role("button", name=re.compile("^Revoke access"))).to_have_count(0)
        assert await refresh_fails(tokens)
        _, asked = await _authorize(alice, api, client_id, redirect_uri)
        assert asked
    alice.assert_clean()
