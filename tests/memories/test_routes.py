"""The REST API over real HTTP (granian), as alice and bob, through the restricted runtime role."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.conftest import make_token

PROBLEM = "application/problem+json"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}@example.com"


async def add(api: httpx.AsyncClient, token: str, content: str, **extra: object) -> dict:  # type: ignore[type-arg]
    response = await api.post("/api/v1/memories", json={"text": content, **extra}, headers=auth(token))
    assert response.status_code in (200, 201), response.text
    return response.json()  # type: ignore[no-any-return]


@pytest.fixture
async def alice(sessions: async_sessionmaker[AsyncSession]) -> str:
    return await make_token(sessions, uniq("alice"), name="alice laptop")


@pytest.fixture
async def bob(sessions: async_sessionmaker[AsyncSession]) -> str:
    return await make_token(sessions, uniq("bob"), name="bob laptop")


async def test_add_search_get_update_delete(api: httpx.AsyncClient, alice: str) -> None:
    created = await add(api, alice, "I prefer dark roast coffee", tags=["Coffee"], metadata={"source": "chat"})
    assert created["created"] is True
    memory = created["memory"]
    assert memory["tags"] == ["coffee"]
    assert memory["app"]["name"] == "alice laptop"
    await add(api, alice, "My cat is called Miso")
    await add(api, alice, "The quarterly report is due on Friday")

    for mode in ("hybrid", "semantic"):
        found = await api.post(
            "/api/v1/memories/search",
            json={"query": "what coffee do I like?", "mode": mode},
            headers=auth(alice),
        )
        assert found.status_code == 200, found.text
        hits = found.json()["hits"]
        assert hits[0]["memory"]["id"] == memory["id"]
        assert hits[0]["similarity"] > 0.5
    keyword = await api.post("/api/v1/memories/search", json={"query": "Miso", "mode": "keyword"}, headers=auth(alice))
    assert [h["memory"]["content"] for h in keyword.json()["hits"]] == ["My cat is called Miso"]

    got = await api.get(f"/api/v1/memories/{memory['id']}", headers=auth(alice))
    assert got.json()["metadata"] == {"source": "chat"}

    updated = await api.patch(
        f"/api/v1/memories/{memory['id']}", json={"text": "I prefer green tea now"}, headers=auth(alice)
    )
    assert updated.status_code == 200
    assert updated.json()["content"] == "I prefer green tea now"
    # Re-embedded: the new text is found by meaning.
    found = await api.post(
        "/api/v1/memories/search",
        json={"query": "which tea do I drink", "mode": "semantic"},
        headers=auth(alice),
    )
    assert found.json()["hits"][0]["memory"]["id"] == memory["id"]

    history = (await api.get(f"/api/v1/memories/{memory['id']}/history", headers=auth(alice))).json()
    assert [h["event"] for h in history] == ["created", "updated"]
    assert history[1]["old_content"] == "I prefer dark roast coffee"
    access = (await api.get(f"/api/v1/memories/{memory['id']}/access", headers=auth(alice))).json()
    assert {"search", "get"} <= {a["operation"] for a in access}

    deleted = await api.delete(f"/api/v1/memories/{memory['id']}", headers=auth(alice))
    assert deleted.status_code == 204
    assert (await api.get(f"/api/v1/memories/{memory['id']}", headers=auth(alice))).status_code == 404


async def test_exact_duplicates_return_the_existing_memory(api: httpx.AsyncClient, alice: str) -> None:
    first = await add(api, alice, "I live in Lisbon")
    again = await api.post("/api/v1/memories", json={"text": "  i live   in LISBON "}, headers=auth(alice))
    assert again.status_code == 200
    assert again.json()["created"] is False
    assert again.json()["deduplicated"] == "exact"
    assert again.json()["memory"]["id"] == first["memory"]["id"]


async def test_near_duplicates_are_reported_or_merged(api: httpx.AsyncClient, alice: str) -> None:
    first = await add(api, alice, "My favourite programming language is Python")
    near = await add(api, alice, "My favorite programming language is Python")
    assert near["created"] is True
    assert near["near_duplicates"][0]["id"] == first["memory"]["id"]
    assert near["near_duplicates"][0]["similarity"] >= 0.92
    merged = await add(api, alice, "My favourite programming language is Python!", merge_near_duplicate=True)
    assert merged["created"] is False
    assert merged["deduplicated"] == "merged"


async def test_state_changes_and_filters(api: httpx.AsyncClient, alice: str) -> None:
    a = (await add(api, alice, "Project Falcon uses Rust", tags=["work"]))["memory"]
    b = (await add(api, alice, "Project Heron uses Go", tags=["work", "old"]))["memory"]
    archived = await api.post(f"/api/v1/memories/{b['id']}/state", json={"state": "archived"}, headers=auth(alice))
    assert archived.json()["state"] == "archived"
    assert archived.json()["archived_at"] is not None

    listed = (await api.get("/api/v1/memories", params={"tag": "work"}, headers=auth(alice))).json()
    assert [m["id"] for m in listed["items"]] == [a["id"]]
    listed = (
        await api.get("/api/v1/memories", params={"tag": "work", "state": "archived"}, headers=auth(alice))
    ).json()
    assert [m["id"] for m in listed["items"]] == [b["id"]]
    search = (await api.post("/api/v1/memories/search", json={"query": "Project Heron"}, headers=auth(alice))).json()
    assert b["id"] not in [h["memory"]["id"] for h in search["hits"]]
    history = (await api.get(f"/api/v1/memories/{b['id']}/history", headers=auth(alice))).json()
    assert history[-1] == {**history[-1], "event": "state", "from_state": "active", "to_state": "archived"}
    bad = await api.post(f"/api/v1/memories/{b['id']}/state", json={"state": "deleted"}, headers=auth(alice))
    assert bad.status_code == 400
    assert bad.headers["content-type"].startswith(PROBLEM)


async def test_cursor_pagination_walks_every_memory_once(api: httpx.AsyncClient, alice: str) -> None:
    ids = [(await add(api, alice, f"Numbered fact {i} about pagination"))["memory"]["id"] for i in range(7)]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (await api.get("/api/v1/memories", params=params, headers=auth(alice))).json()
        seen += [m["id"] for m in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids))
    bad = await api.get("/api/v1/memories", params={"cursor": "garbage!"}, headers=auth(alice))
    assert bad.status_code == 400
    assert bad.json()["type"] == "urn:engram:problem:invalid-request"


async def test_bulk_delete_and_delete_all(api: httpx.AsyncClient, alice: str) -> None:
    ids = [(await add(api, alice, f"Disposable fact number {i}"))["memory"]["id"] for i in range(3)]
    missing = str(uuid.uuid4())
    result = await api.post("/api/v1/memories/delete", json={"ids": [ids[0], ids[1], missing]}, headers=auth(alice))
    assert result.json() == {"deleted": 2, "not_found": [missing]}
    refused = await api.delete("/api/v1/memories", headers=auth(alice))
    assert refused.status_code == 400
    everything = await api.delete("/api/v1/memories", params={"confirm": "all"}, headers=auth(alice))
    assert everything.json()["deleted"] >= 1
    assert (await api.get("/api/v1/memories", headers=auth(alice))).json()["items"] == []


async def test_users_cannot_reach_each_others_memories(api: httpx.AsyncClient, alice: str, bob: str) -> None:
    secret = (await add(api, alice, "Alice's bank PIN hint is the cat's birthday"))["memory"]
    path = f"/api/v1/memories/{secret['id']}"
    for method, url, body in [
        ("GET", path, None),
        ("PATCH", path, {"text": "hijacked"}),
        ("POST", path + "/state", {"state": "archived"}),
        ("DELETE", path, None),
        ("GET", path + "/history", None),
        ("GET", path + "/access", None),
    ]:
        response = await api.request(method, url, json=body, headers=auth(bob))
        # Exactly the answer for an id that does not exist: existence never leaks.
        assert response.status_code == 404, (method, url, response.text)
        assert response.json()["detail"] == "No memory with that id exists for you."
    bulk = await api.post("/api/v1/memories/delete", json={"ids": [secret["id"]]}, headers=auth(bob))
    assert bulk.json() == {"deleted": 0, "not_found": [secret["id"]]}
    await api.delete("/api/v1/memories", params={"confirm": "all"}, headers=auth(bob))
    search = await api.post("/api/v1/memories/search", json={"query": "bank PIN hint"}, headers=auth(bob))
    assert secret["id"] not in [h["memory"]["id"] for h in search.json()["hits"]]
    listed = await api.get("/api/v1/memories", params={"state": ["active", "paused", "archived"]}, headers=auth(bob))
    assert secret["id"] not in [m["id"] for m in listed.json()["items"]]
    export = await api.get("/api/v1/export", headers=auth(bob))
    assert secret["id"] not in export.text
    # Bob's identical text is his own memory, not a duplicate of Alice's.
    twin = await add(api, bob, "Alice's bank PIN hint is the cat's birthday")
    assert twin["created"] is True
    # And Alice still has hers, untouched.
    mine = await api.get(path, headers=auth(alice))
    assert mine.json()["content"] == "Alice's bank PIN hint is the cat's birthday"


async def test_users_cannot_touch_each_others_apps_and_tokens(api: httpx.AsyncClient, alice: str, bob: str) -> None:
    alice_app = (await api.get("/api/v1/me", headers=auth(alice))).json()["app_id"]
    assert (await api.patch(f"/api/v1/apps/{alice_app}", json={"paused": True}, headers=auth(bob))).status_code == 404
    alice_tokens = (await api.get("/api/v1/tokens", headers=auth(alice))).json()
    assert (await api.delete(f"/api/v1/tokens/{alice_tokens[0]['id']}", headers=auth(bob))).status_code == 404
    assert alice_tokens[0]["id"] not in [t["id"] for t in (await api.get("/api/v1/tokens", headers=auth(bob))).json()]


async def test_scopes_are_enforced_per_route(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    email = uniq("scoped")
    reader = await make_token(sessions, email, ["memories:read"])
    writer = await make_token(sessions, email, ["memories:write"])
    assert (await api.get("/api/v1/memories", headers=auth(reader))).status_code == 200
    refused = await api.post("/api/v1/memories", json={"text": "nope"}, headers=auth(reader))
    assert refused.status_code == 403
    assert refused.json()["type"] == "urn:engram:problem:insufficient-scope"
    challenge = refused.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="memories:write"' in challenge
    memory = (await add(api, writer, "Writers can add"))["memory"]
    assert (await api.get(f"/api/v1/memories/{memory['id']}", headers=auth(writer))).status_code == 200
    no_delete = await api.delete(f"/api/v1/memories/{memory['id']}", headers=auth(writer))
    assert no_delete.status_code == 403
    assert 'scope="memories:delete"' in no_delete.headers["www-authenticate"]


async def test_missing_invalid_revoked_and_expired_tokens(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], admin_engine: AsyncEngine
) -> None:
    missing = await api.get("/api/v1/me")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith('Bearer resource_metadata="')
    assert "error=" not in missing.headers["www-authenticate"]
    for bad in ("egm_not-a-real-token", "not.a.jwt", "Basic abc"):
        response = await api.get("/api/v1/me", headers=auth(bad))
        assert response.status_code == 401, bad
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
        assert response.headers["content-type"].startswith(PROBLEM)
    email = uniq("revoked")
    token = await make_token(sessions, email)
    token_id = (await api.get("/api/v1/tokens", headers=auth(token))).json()[0]["id"]
    assert (await api.delete(f"/api/v1/tokens/{token_id}", headers=auth(token))).json()["revoked_at"]
    assert (await api.get("/api/v1/me", headers=auth(token))).status_code == 401
    expiring = await make_token(sessions, uniq("expired"), days=1)
    async with admin_engine.begin() as conn:
        await conn.execute(
            text("UPDATE personal_access_tokens SET expires_at = now() - interval '1 second' WHERE token_prefix = :p"),
            {"p": expiring[:12]},
        )
    assert (await api.get("/api/v1/me", headers=auth(expiring))).status_code == 401
    # A token in the query string is never read.
    assert (await api.get("/api/v1/me", params={"access_token": token})).status_code == 401


async def test_a_paused_app_can_neither_read_nor_write(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    email = uniq("paused")
    laptop = await make_token(sessions, email, name="laptop")
    phone = await make_token(sessions, email, name="phone")
    await add(api, laptop, "Laptop wrote this")
    laptop_app = (await api.get("/api/v1/me", headers=auth(laptop))).json()["app_id"]
    paused = await api.patch(f"/api/v1/apps/{laptop_app}", json={"paused": True}, headers=auth(phone))
    assert paused.json()["paused"] is True
    for response in (
        await api.get("/api/v1/memories", headers=auth(laptop)),
        await api.post("/api/v1/memories", json={"text": "still here?"}, headers=auth(laptop)),
        await api.post("/api/v1/memories/search", json={"query": "laptop"}, headers=auth(laptop)),
    ):
        assert response.status_code == 403
        assert response.json()["type"] == "urn:engram:problem:app-paused"
    apps = {a["name"]: a for a in (await api.get("/api/v1/apps", headers=auth(phone))).json()}
    assert apps["laptop"]["memories_written"] == 1
    await api.patch(f"/api/v1/apps/{laptop_app}", json={"paused": False}, headers=auth(phone))
    assert (await api.get("/api/v1/memories", headers=auth(laptop))).status_code == 200


async def test_fifty_concurrent_first_requests_create_one_user(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], admin_engine: AsyncEngine
) -> None:
    email = uniq("burst")
    token = await make_token(sessions, email)
    async with admin_engine.begin() as conn:  # the token exists; make the user brand new again
        await conn.execute(text("DELETE FROM apps WHERE owner_email = :e"), {"e": email})
    responses = await asyncio.gather(*(api.get("/api/v1/me", headers=auth(token)) for _ in range(50)))
    assert [r.status_code for r in responses] == [200] * 50
    async with admin_engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM users WHERE email = :e"), {"e": email}) == 1
        assert await conn.scalar(text("SELECT count(*) FROM apps WHERE owner_email = :e"), {"e": email}) == 1


async def test_bad_input_gets_problem_details_not_500(api: httpx.AsyncClient, alice: str) -> None:
    cases = [
        ("POST", "/api/v1/memories", b"{not json", 400),
        ("POST", "/api/v1/memories", json.dumps({"text": ""}).encode(), 400),
        ("POST", "/api/v1/memories", json.dumps({"text": "x" * 20001}).encode(), 400),
        ("POST", "/api/v1/memories", json.dumps({"text": "ok", "id": str(uuid.uuid4())}).encode(), 400),
        ("POST", "/api/v1/memories", json.dumps({"text": "ok", "tags": ["x" * 65]}).encode(), 400),
        (
            "POST",
            "/api/v1/memories",
            json.dumps({"text": "ok", "metadata": {"k": "v" * 20000}}).encode(),
            400,
        ),
        ("POST", "/api/v1/memories/search", json.dumps({"query": "x", "limit": 1000}).encode(), 400),
        ("POST", "/api/v1/memories/search", json.dumps({"query": "   "}).encode(), 400),
        ("POST", "/api/v1/memories/delete", json.dumps({"ids": ["nope"]}).encode(), 400),
        ("GET", "/api/v1/memories/not-a-uuid", b"", 404),
        ("GET", "/api/v1/memories?limit=0", b"", 400),
        ("GET", "/api/v1/memories?sort=sideways", b"", 400),
        ("PUT", "/api/v1/memories", b"", 405),
    ]
    for method, url, body, status in cases:
        response = await api.request(
            method, url, content=body, headers={**auth(alice), "content-type": "application/json"}
        )
        assert response.status_code == status, (method, url, response.status_code, response.text)
        problem = response.json()
        assert problem["type"].startswith("urn:engram:problem:"), problem
        assert problem["detail"], problem
        assert response.headers["content-type"].startswith(PROBLEM)


async def test_export_then_import_round_trip(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    source = await make_token(sessions, uniq("export"))
    await add(api, source, "Export me: the wifi password is on the fridge", tags=["home"], metadata={"k": 1})
    await add(api, source, "Export me too: dentist on Tuesday")
    exported = await api.get("/api/v1/export", headers=auth(source))
    assert exported.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in exported.text.splitlines()]
    assert {line["content"] for line in lines} == {
        "Export me: the wifi password is on the fridge",
        "Export me too: dentist on Tuesday",
    }
    target = await make_token(sessions, uniq("import"))
    body = exported.text + "\n{broken json\n" + json.dumps({"content": ""}) + "\n"
    report = await api.post("/api/v1/import", content=body.encode(), headers=auth(target))
    assert report.status_code == 200, report.text
    result = report.json()
    assert result["imported"] == 2
    assert len(result["errors"]) == 2
    again = (await api.post("/api/v1/import", content=exported.text.encode(), headers=auth(target))).json()
    assert again == {"imported": 0, "skipped_duplicates": 2, "errors": []}
    found = await api.post(
        "/api/v1/memories/search", json={"query": "where is the wifi password"}, headers=auth(target)
    )
    hit = found.json()["hits"][0]["memory"]
    assert hit["tags"] == ["home"]
    assert hit["metadata"] == {"k": 1}


async def test_categories_stats_and_me(api: httpx.AsyncClient, alice: str) -> None:
    await add(api, alice, "Tagged one", tags=["alpha", "beta"])
    await add(api, alice, "Tagged two", tags=["alpha"])
    categories = (await api.get("/api/v1/categories", headers=auth(alice))).json()
    assert categories[:2] == [{"name": "alpha", "count": 2}, {"name": "beta", "count": 1}]
    stats = (await api.get("/api/v1/stats", headers=auth(alice))).json()
    assert stats["total"] == 2
    assert len(stats["last_30_days"]) == 30
    assert stats["last_30_days"][-1]["added"] == 2
    me = (await api.get("/api/v1/me", headers=auth(alice))).json()
    assert me["memory_count"] == 2
    assert me["scopes"] == ["memories:delete", "memories:read", "memories:write"]


async def test_tokens_api_shows_the_secret_once_and_never_widens_scopes(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    email = uniq("tokens")
    writer = await make_token(sessions, email, ["memories:write"])
    created = await api.post(
        "/api/v1/tokens",
        json={"name": "cursor", "scopes": ["memories:read"], "expires_in_days": 7},
        headers=auth(writer),
    )
    assert created.status_code == 201
    secret = created.json()["token"]
    assert secret.startswith("egm_")
    listed = (await api.get("/api/v1/tokens", headers=auth(writer))).json()
    assert secret not in json.dumps(listed)
    assert {t["name"] for t in listed} == {"test token", "cursor"}
    assert (await api.get("/api/v1/memories", headers=auth(secret))).status_code == 200
    wider = await api.post("/api/v1/tokens", json={"name": "x", "scopes": ["memories:delete"]}, headers=auth(writer))
    assert wider.status_code == 403


async def test_openapi_and_its_ui_are_served_without_a_cdn(api: httpx.AsyncClient) -> None:
    schema = (await api.get("/schema/openapi.json")).json()
    assert "/api/v1/memories/search" in schema["paths"]
    page = (await api.get("/schema/")).text
    assert "https://" not in page
    assert "http://" not in page.replace("http://127.0.0.1", "")
    asset = await api.get("/static/swagger/swagger-ui-bundle.js")
    assert asset.status_code == 200
    assert len(asset.content) > 100_000


async def test_health_and_readiness(api: httpx.AsyncClient) -> None:
    assert (await api.get("/health")).json() == {"status": "ok"}
    ready = await api.get("/ready")
    assert ready.json() == {"status": "ok", "database": "ok", "migrations": "ok", "embedder": "ok"}
    assert ready.headers["x-request-id"]
