"""Client ID Metadata Documents: fetched over https from a local server whose throwaway CA the test
trusts, cached per HTTP caching, and refused for private addresses before any connection is made."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.session import bound_session
from app.oauth import cimd
from app.oauth.cimd import MetadataDocumentError, address_refusal, cache_seconds, fetch_metadata_document
from app.oauth.clients import get_client, redirect_uri_matches
from app.settings import Settings
from tests.oauth.https_peer import DocumentServer, Pki, claude_code_document, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def server(pki: Pki) -> Iterator[DocumentServer]:
    document_server = DocumentServer(pki)
    document_server.start()
    try:
        yield document_server
    finally:
        document_server.stop()


@pytest.fixture
def trusting(pki: Pki) -> Settings:
    """Settings for development: private addresses allowed and the test CA trusted."""
    return Settings(cimd_allow_private_addresses=True, cimd_ca_file=pki.ca_file)


@pytest.fixture
def strict(pki: Pki) -> Settings:
    """The production default (private addresses refused), with the test CA trusted."""
    return Settings(cimd_ca_file=pki.ca_file)


# --- fetching ---------------------------------------------------------------------------------------


async def test_fetch_returns_document_and_cache_lifetime(server: DocumentServer, trusting: Settings) -> None:
    url = server.serve(
        "/oauth/claude-code-client-metadata",
        headers={"Content-Type": "application/json; charset=utf-8", "Cache-Control": "public, max-age=120"},
    )
    document, max_age = await fetch_metadata_document(url, settings=trusting)
    assert document == claude_code_document(url)
    assert max_age == 120
    assert server.hits == {"/oauth/claude-code-client-metadata": 1}
    assert server.hosts == [f"127.0.0.1:{server.port}"]


async def test_pinned_connection_keeps_host_and_server_name(
    server: DocumentServer, trusting: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cimd.test` exists in no DNS: the fetch can only work by connecting to the checked address
    while presenting the original name for the Host header and the certificate check."""
    resolved: list[str] = []

    async def fake_resolve(host: str, port: int) -> list[Any]:
        resolved.append(host)
        return [ipaddress.ip_address("127.0.0.1")]

    monkeypatch.setattr(cimd, "_resolve", fake_resolve)
    server.serve("/client.json")
    url = f"https://cimd.test:{server.port}/client.json"
    server.routes["/client.json"].body = json.dumps(claude_code_document(url)).encode()
    document, _ = await fetch_metadata_document(url, settings=trusting)
    assert document["client_id"] == url
    assert resolved == ["cimd.test"]
    assert server.hosts == [f"cimd.test:{server.port}"]


async def test_untrusted_certificate_is_refused(server: DocumentServer) -> None:
    url = server.serve("/client.json")
    with pytest.raises(MetadataDocumentError, match="ENGRAM_CIMD_CA_FILE"):
        await fetch_metadata_document(url, settings=Settings(cimd_allow_private_addresses=True))


async def test_client_id_must_equal_the_url(server: DocumentServer, trusting: Settings) -> None:
    url = server.serve("/client.json", claude_code_document("https://elsewhere.example/client.json"))
    with pytest.raises(MetadataDocumentError, match="must be exactly its own URL"):
        await fetch_metadata_document(url, settings=trusting)
    trailing = server.serve("/trailing.json", claude_code_document(server.base + "/trailing.json/"))
    with pytest.raises(MetadataDocumentError, match="must be exactly its own URL"):
        await fetch_metadata_document(trailing, settings=trusting)


@pytest.mark.parametrize("content_length", [True, False], ids=["declared", "streamed"])
async def test_oversize_document_is_refused(server: DocumentServer, trusting: Settings, content_length: bool) -> None:
    url = server.base + "/big.json"
    document = {**claude_code_document(url), "padding": "x" * 6000}
    server.serve("/big.json", document, content_length=content_length)
    with pytest.raises(MetadataDocumentError, match="5 KiB"):
        await fetch_metadata_document(url, settings=trusting)


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"<html>hello</html>", "text/html", "not application/json"),
        (b'{"client_id": ', "application/json", "valid JSON"),
        (b"\xff\xfe{}", "application/json", "valid JSON"),
        (b'["a", "b"]', "application/json", "JSON object"),
        (b"{}", "application/jsonp", "not application/json"),
    ],
)
async def test_non_json_is_refused(
    server: DocumentServer, trusting: Settings, body: bytes, content_type: str, message: str
) -> None:
    url = server.serve("/doc", body=body, headers={"Content-Type": content_type})
    with pytest.raises(MetadataDocumentError, match=message):
        await fetch_metadata_document(url, settings=trusting)


async def test_redirect_is_not_followed(server: DocumentServer, trusting: Settings) -> None:
    target = server.serve("/real.json")
    url = server.serve("/moved.json", body=b"", status=302, headers={"Location": target})
    with pytest.raises(MetadataDocumentError, match="redirect"):
        await fetch_metadata_document(url, settings=trusting)
    assert server.hits == {"/moved.json": 1}


async def test_error_status_is_refused(server: DocumentServer, trusting: Settings) -> None:
    with pytest.raises(MetadataDocumentError, match="HTTP 404"):
        await fetch_metadata_document(server.base + "/missing.json", settings=trusting)


async def test_slow_server_times_out(
    server: DocumentServer, trusting: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cimd, "FETCH_TIMEOUT_SECONDS", 0.5)
    url = server.serve("/slow.json", stall=True)
    with pytest.raises(MetadataDocumentError, match=r"within 0\.5 seconds"):
        await fetch_metadata_document(url, settings=trusting)


# --- refused before connecting ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("[::1]", "loopback"),
        ("localhost", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("169.254.169.254", "link-local"),
        ("[fe80::1]", "link-local"),
        ("[::ffff:127.0.0.1]", "loopback"),
        ("[::ffff:10.0.0.1]", "private"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 - a URL under test, nothing binds to it
        ("100.64.0.1", "not a publicly routable"),
    ],
)
async def test_private_addresses_are_refused_before_any_connection(
    server: DocumentServer, strict: Settings, host: str, reason: str
) -> None:
    server.serve("/client.json")
    url = f"https://{host}:{server.port}/client.json"
    with pytest.raises(MetadataDocumentError, match=reason) as refused:
        await fetch_metadata_document(url, settings=strict)
    assert "ENGRAM_CIMD_ALLOW_PRIVATE_ADDRESSES" in refused.value.description
    assert server.connections == 0
    assert server.requests() == 0


async def test_one_private_answer_among_public_ones_refuses(strict: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    async def fake_resolve(host: str, port: int) -> list[Any]:
        return [ipaddress.ip_address("93.184.215.14"), ipaddress.ip_address("10.0.0.7")]

    monkeypatch.setattr(cimd, "_resolve", fake_resolve)
    with pytest.raises(MetadataDocumentError, match=r"rebind\.example \(10\.0\.0\.7\), a private address"):
        await fetch_metadata_document("https://rebind.example/client.json", settings=strict)


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("8.8.8.8", False),
        ("2606:4700:4700::1111", False),
        ("127.0.0.2", True),
        ("0.0.0.0", True),  # noqa: S104 - an address under test
        ("::", True),
        ("172.16.0.1", True),
        ("192.0.2.10", True),
        ("224.0.0.1", True),
        ("255.255.255.255", True),
        ("fc00::1", True),
        ("fec0::1", True),
        ("ff02::1", True),
        ("::ffff:8.8.8.8", True),
        ("2002:7f00:1::", True),  # 6to4 around 127.0.0.1
        ("2002:0808:0808::", False),  # 6to4 around 8.8.8.8
        ("64:ff9b::a00:1", True),  # NAT64 around 10.0.0.1
    ],
)
def test_address_refusal(address: str, refused: bool) -> None:
    assert (address_refusal(ipaddress.ip_address(address)) is not None) is refused


@pytest.mark.parametrize(
    ("url", "allow_private", "message"),
    [
        ("http://client.example/client.json", False, "must use https"),
        ("http://client.example/client.json", True, "must use https"),
        ("http://127.0.0.1:9/client.json", False, "must use https"),
        ("ftp://client.example/client.json", True, "must use https"),
        ("https://client.example/client.json#x", False, "fragment"),
        ("https://user:pw@client.example/client.json", False, "user name or password"),
        ("https://client.example", False, "must have a path"),
        ("https://client.example/", False, "must have a path"),
        ("https://client.example/a/../client.json", False, "path segments"),
        ("https://client.example/a/%2E%2E/client.json", False, "path segments"),
        ("https://client.example/ client.json", False, "ASCII without spaces"),
        ("https://clïent.example/client.json", False, "ASCII"),
        ("https://client.example/" + "a" * 2050, False, "longer than"),
    ],
)
async def test_url_shape_is_checked_first(url: str, allow_private: bool, message: str) -> None:
    with pytest.raises(MetadataDocumentError, match=message):
        await fetch_metadata_document(url, settings=Settings(cimd_allow_private_addresses=allow_private))


async def test_plain_http_only_on_loopback_when_private_addresses_are_allowed() -> None:
    plain = DocumentServer(None)
    plain.start()
    try:
        url = plain.serve("/client.json")
        document, _ = await fetch_metadata_document(url, settings=Settings(cimd_allow_private_addresses=True))
        assert document["client_id"] == url
        with pytest.raises(MetadataDocumentError, match="must use https"):
            await fetch_metadata_document(url, settings=Settings())
        assert plain.requests() == 1
    finally:
        plain.stop()


# --- HTTP caching -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, cimd.DEFAULT_CACHE_SECONDS),
        ({"Cache-Control": "max-age=600"}, 600),
        ({"Cache-Control": 'public, max-age="600"'}, 600),
        ({"Cache-Control": "max-age=600, s-maxage=900"}, 900),
        ({"Cache-Control": "max-age=600", "Age": "100"}, 500),
        ({"Cache-Control": "max-age=5"}, cimd.MIN_CACHE_SECONDS),
        ({"Cache-Control": "max-age=99999999"}, cimd.MAX_CACHE_SECONDS),
        ({"Cache-Control": "no-store"}, cimd.MIN_CACHE_SECONDS),
        ({"Cache-Control": "no-cache, max-age=600"}, cimd.MIN_CACHE_SECONDS),
        ({"Cache-Control": "max-age=banana"}, cimd.DEFAULT_CACHE_SECONDS),
        (
            {"Date": "Fri, 27 Nov 2026 10:00:00 GMT", "Expires": "Fri, 27 Nov 2026 12:00:00 GMT"},
            7200,
        ),
        ({"Date": "Fri, 27 Nov 2026 10:00:00 GMT", "Expires": "0"}, cimd.MIN_CACHE_SECONDS),
        (
            {"Cache-Control": "max-age=300", "Expires": "Fri, 27 Nov 2026 12:00:00 GMT"},
            300,
        ),
    ],
)
def test_cache_seconds(headers: dict[str, str], expected: int) -> None:
    assert cache_seconds(httpx.Headers(headers)) == expected


# --- resolving clients through the table ------------------------------------------------------------


async def _set_expiry(sessions: async_sessionmaker[AsyncSession], client_id: str, expires_at: datetime) -> None:
    async with bound_session(sessions, None) as session:
        await session.execute(
            text("UPDATE oauth_clients SET expires_at = :at WHERE client_id = :id"), {"at": expires_at, "id": client_id}
        )


async def test_get_client_fetches_caches_and_refetches(
    server: DocumentServer, trusting: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    url = server.serve(
        "/oauth/claude-code-client-metadata",
        headers={
            "Content-Type": "application/json",
            "Cache-Control": "max-age=300",
        },
    )
    async with bound_session(sessions, None) as session:
        record = await get_client(session, url, settings=trusting)
    assert record is not None
    assert record.kind == "metadata_document"
    assert record.is_public
    assert record.client_name == "Claude Code"
    assert record.application_type == "native"
    assert record.fetched_at is not None
    assert record.expires_at is not None
    assert timedelta(seconds=290) < record.expires_at - record.fetched_at <= timedelta(seconds=300)
    # Claude Code lists a port-less loopback URI and listens on an ephemeral port.
    assert redirect_uri_matches(record.redirect_uris, "http://localhost:61234/callback")

    async with bound_session(sessions, None) as session:
        again = await get_client(session, url, settings=trusting)
    assert again == record
    assert server.requests() == 1

    changed = {**claude_code_document(url), "client_name": "Claude Code 2"}
    server.routes["/oauth/claude-code-client-metadata"].body = json.dumps(changed).encode()
    await _set_expiry(sessions, url, datetime.now(UTC) - timedelta(seconds=1))
    async with bound_session(sessions, None) as session:
        refreshed = await get_client(session, url, settings=trusting)
    assert server.requests() == 2
    assert refreshed is not None
    assert refreshed.client_name == "Claude Code 2"
    assert refreshed.created_at == record.created_at
    assert refreshed.updated_at > record.updated_at


async def test_vscode_document_is_accepted(
    server: DocumentServer, trusting: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    url = server.base + "/oauth/client-metadata.json"
    server.serve(
        "/oauth/client-metadata.json",
        {
            "client_id": url,
            "client_name": "Visual Studio Code",
            "client_uri": "https://code.visualstudio.com",
            "redirect_uris": [
                "https://vscode.dev/redirect",
                "https://insiders.vscode.dev/redirect",
                "http://127.0.0.1/",
                "http://127.0.0.1:33418/",
            ],
            "grant_types": ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "application_type": "native",
        },
    )
    async with bound_session(sessions, None) as session:
        record = await get_client(session, url, settings=trusting)
    assert record is not None
    assert record.grant_types == ("authorization_code", "refresh_token")
    assert redirect_uri_matches(record.redirect_uris, "http://127.0.0.1:50000/")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"redirect_uris": ["javascript:alert(1)"]}, "scheme"),
        ({"redirect_uris": ["http://attacker.example/callback"]}, "loopback"),
        ({"redirect_uris": []}, "redirect_uris"),
        ({"token_endpoint_auth_method": "client_secret_basic"}, '"none"'),
        ({"token_endpoint_auth_method": "private_key_jwt"}, '"none"'),
        ({"client_secret": "shh"}, "client secret"),
        ({"grant_types": ["client_credentials"]}, "authorization_code"),
    ],
)
async def test_unacceptable_documents_are_refused(
    server: DocumentServer,
    trusting: Settings,
    sessions: async_sessionmaker[AsyncSession],
    changes: dict[str, Any],
    message: str,
) -> None:
    url = server.base + "/bad.json"
    server.serve("/bad.json", {**claude_code_document(url), **changes})
    async with bound_session(sessions, None) as session:
        with pytest.raises(MetadataDocumentError, match=message):
            await get_client(session, url, settings=trusting)
        stored = await session.execute(text("SELECT count(*) FROM oauth_clients WHERE client_id = :id"), {"id": url})
        assert stored.scalar_one() == 0


async def test_operator_patterns_apply_to_documents(
    server: DocumentServer, trusting: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    url = server.serve("/patterned.json")
    restricted = trusting.replace(registration_redirect_patterns=[r"https://claude\.ai/.*"])
    async with bound_session(sessions, None) as session:
        with pytest.raises(MetadataDocumentError, match="operator"):
            await get_client(session, url, settings=restricted)


async def test_get_client_refuses_private_document_urls(
    server: DocumentServer, strict: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    url = server.serve("/private.json")
    async with bound_session(sessions, None) as session:
        with pytest.raises(MetadataDocumentError, match="loopback"):
            await get_client(session, url, settings=strict)
    assert server.connections == 0
