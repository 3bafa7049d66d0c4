"""The MCP SDK's flow through a Client ID Metadata Document, end to end over HTTP.

The client's metadata document is served over https from 127.0.0.1 by a server whose throwaway CA
this Engram is told to trust (ENGRAM_CIMD_CA_FILE) and whose address it is allowed to fetch from
(ENGRAM_CIMD_ALLOW_PRIVATE_ADDRESSES, for development). The default server refuses such a URL
without connecting to it.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.bootstrap import EmbeddedUrls
from app.oauth.login import add_local_account
from app.oauth.passwords import hash_password
from tests.conftest import LiveServer, start_server, stop_server
from tests.oauth.https_peer import DocumentServer, Pki, make_pki
from tests.oauth.person import SDK_REDIRECT, Person, sdk_client

PASSWORD = "correct horse battery staple"
DOCUMENT_PATH = "/oauth/mcp-client-metadata.json"
DOCUMENT_CLIENT_NAME = "Metadata document client"


def client_document(url: str) -> dict[str, Any]:
    return {
        "client_id": url,
        "client_name": DOCUMENT_CLIENT_NAME,
        "client_uri": "https://client.example",
        "redirect_uris": [SDK_REDIRECT],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("cimd-flow-pki"))


@pytest.fixture(scope="module")
def documents(pki: Pki) -> Iterator[DocumentServer]:
    server = DocumentServer(pki)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def trusting_engram(
    pki: Pki, db_urls: EmbeddedUrls, data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """Engram with local accounts that trusts the test CA and fetches from private addresses."""
    server = start_server(
        {
            "ENGRAM_DATABASE_URL": db_urls.runtime,
            "ENGRAM_DATA_DIR": str(data_dir),
            "ENGRAM_CIMD_CA_FILE": str(pki.ca_file),
            "ENGRAM_CIMD_ALLOW_PRIVATE_ADDRESSES": "true",
        },
        tmp_path_factory.mktemp("cimd-engram") / "engram.log",
    )
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture
async def people() -> AsyncIterator[list[Person]]:
    crowd: list[Person] = []
    yield crowd
    for person in crowd:
        await person.aclose()


async def test_sdk_client_signs_in_with_a_client_id_metadata_document(
    trusting_engram: LiveServer,
    documents: DocumentServer,
    sessions: async_sessionmaker[AsyncSession],
    people: list[Person],
) -> None:
    server = trusting_engram
    url = documents.base + DOCUMENT_PATH
    documents.serve(DOCUMENT_PATH, client_document(url))
    email = f"cimd-{uuid.uuid4().hex[:6]}@example.com"
    await add_local_account(sessions, email, await hash_password(PASSWORD))
    person = Person(server.url, email, PASSWORD)
    people.append(person)
    # The SDK's own name for itself is not what Engram shows: the document's is.
    client = sdk_client(server.url + "/api/v1", person, client_name="SDK's own name", client_metadata_url=url)
    try:
        me = await client.http.get(server.url + "/api/v1/me")
        assert me.status_code == 200, me.text
        assert me.json()["email"] == email
        assert me.json()["app_name"] == DOCUMENT_CLIENT_NAME
        note = f"written through a metadata-document client {uuid.uuid4()}"
        added = await client.http.post(server.url + "/api/v1/memories", json={"text": note})
        assert added.status_code == 201, added.text
        listed = await client.http.get(server.url + "/api/v1/memories")
        assert [item["content"] for item in listed.json()["items"]] == [note]
    finally:
        await client.aclose()

    # No registration: the URL is the client id, and Engram fetched the document from our server.
    assert client.storage.client is not None
    assert client.storage.client.client_id == url
    # (Reading first, then writing: the SDK steps the scope up with a second authorization.)
    assert client.authorizations
    assert all(urlencode({"client_id": url}) in authorization for authorization in client.authorizations)
    assert documents.hits.get(DOCUMENT_PATH, 0) >= 1
    assert set(documents.hosts) == {f"127.0.0.1:{documents.port}"}


async def test_a_metadata_document_on_a_private_address_is_refused_without_a_request(
    live_server: LiveServer, pki: Pki
) -> None:
    """The default server (private addresses not allowed) shows an error page and never connects."""
    documents = DocumentServer(pki)
    documents.start()
    try:
        url = documents.serve("/private-client.json")
        query = urlencode(
            {
                "response_type": "code",
                "client_id": url,
                "redirect_uri": "http://127.0.0.1/callback",
                "code_challenge": secrets.token_urlsafe(32),
                "code_challenge_method": "S256",
                "state": "st",
            }
        )
        async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as browser:
            response = await browser.get(f"/oauth/authorize?{query}")
        assert response.status_code == 400, response.text
        assert "location" not in response.headers
        assert response.headers["content-type"].startswith("text/html")
        assert "Application not usable" in response.text
        assert "a loopback address" in response.text
        assert documents.connections == 0
        assert documents.requests() == 0
    finally:
        documents.stop()
