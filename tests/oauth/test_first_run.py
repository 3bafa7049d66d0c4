"""The first run on embedded defaults: `engram serve` in an empty directory with a clean environment
prints a one-time link that creates the administrator account; `engram user add` makes more.

One server for the module (its own embedded PostgreSQL under a temporary directory); the last
test restarts it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, start_server, stop_server
from tests.oauth.person import Person, form_fields, sdk_client

SETUP_LINE = re.compile(r"No accounts yet\. Create the administrator account \(once, within 24 hours\): (\S+)")
PASSWORD = "a first-run password"


@dataclass
class FirstRun:
    directory: Path
    env: dict[str, str]
    server: LiveServer
    first_log: str


def _clean_env(directory: Path) -> dict[str, str]:
    """A fresh checkout's environment: no ENGRAM_* settings from the test session, state under `directory`."""
    return {key: value for key, value in os.environ.items() if not key.startswith("ENGRAM_")} | {
        "ENGRAM_DATA_DIR": str(directory / "state"),
        "ENGRAM_LOG_FORMAT": "json",
    }


def engram(*args: str, run: FirstRun, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        env=run.env,
        cwd=run.directory,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def first_run() -> Iterator[FirstRun]:
    # Outside pytest's temporary tree: another pytest session starting meanwhile makes that tree
    # private again, locking the postgres system user out of the embedded cluster.
    directory = Path(tempfile.mkdtemp(prefix="engram-first-run-"))
    env = _clean_env(directory)
    try:
        server = start_server(env, directory / "first.log", clean=True, cwd=directory)
        run = FirstRun(directory, env, server, server.log())
        try:
            yield run
        finally:
            stop_server(run.server)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
async def people() -> AsyncIterator[list[Person]]:
    crowd: list[Person] = []
    yield crowd
    for person in crowd:
        await person.aclose()


def _setup_link(log: str) -> str:
    found = SETUP_LINE.search(log)
    assert found is not None, log[-3000:]
    return found[1]


async def test_the_set_up_link_creates_the_administrator_once(first_run: FirstRun, people: list[Person]) -> None:
    server = first_run.server
    link = _setup_link(first_run.first_log)
    assert link.startswith(server.url + "/setup?token=")
    email = f"admin-{uuid.uuid4().hex[:6]}@example.com"
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as browser:
        form = await browser.get(link)
        assert form.status_code == 200, form.text
        assert 'action="/setup"' in form.text
        assert "engram_csrf" in browser.cookies
        fields = form_fields(form.text)
        assert {"csrf_token", "token"} <= set(fields)

        without_csrf = await browser.post(
            "/setup", data={"token": fields["token"], "email": email, "password": PASSWORD}
        )
        assert without_csrf.status_code == 403
        assert "The form expired" in without_csrf.text
        too_short = await browser.post("/setup", data={**fields, "email": email, "password": "short"})
        assert too_short.status_code == 400
        assert "Use at least 10 characters." in too_short.text
        assert "engram_session" not in browser.cookies
        assert (await browser.get(link)).status_code == 200  # refusals do not use the link up

        created = await browser.post("/setup", data={**fields, "email": email, "password": PASSWORD})
        assert created.status_code == 303, created.text
        assert created.headers["location"] == "/"
        assert "engram_session" in browser.cookies
        landing = await browser.get("/")
        assert landing.status_code == 200
        assert email in landing.text

        # Single use: the page and the form both say so now.
        again = await browser.get(link)
        assert again.status_code == 404
        assert "already used" in again.text
        reused = await browser.post("/setup", data={**fields, "email": "mallory@example.com", "password": PASSWORD})
        assert reused.status_code == 404

    # The new administrator authorizes an MCP client with the password chosen on the set-up page.
    person = Person(server.url, email, PASSWORD)
    people.append(person)
    client = sdk_client(server.url + "/api/v1", person)
    try:
        me = await client.http.get(server.url + "/api/v1/me")
        assert me.status_code == 200, me.text
        assert me.json()["email"] == email
    finally:
        await client.aclose()
    assert any("/login?" in url for url in person.seen)


async def test_engram_user_add_creates_an_account_that_can_sign_in(first_run: FirstRun, people: list[Person]) -> None:
    password = "someone's long password"
    added = engram("user", "add", "someone@example.com", "--password-stdin", run=first_run, stdin=password + "\n")
    assert added.returncode == 0, added.stderr
    assert "Account someone@example.com is ready." in added.stdout
    assert password not in added.stdout + added.stderr

    person = Person(first_run.server.url, "someone@example.com", password)
    people.append(person)
    home = await person.walk("/")
    assert isinstance(home, httpx.Response), home
    assert home.status_code == 200, home.text
    assert home.url.path == "/"
    assert "someone@example.com" in home.text

    stranger = Person(first_run.server.url, "someone@example.com", "not the password at all")
    people.append(stranger)
    refused = await stranger.walk("/")
    assert isinstance(refused, httpx.Response), refused
    assert refused.status_code == 401

    weak = engram("user", "add", "weak@example.com", "--password-stdin", run=first_run, stdin="short\n")
    assert weak.returncode == 1
    assert "Use at least 10 characters." in weak.stderr
    assert "Traceback" not in weak.stderr


def test_a_second_start_prints_no_set_up_link(first_run: FirstRun) -> None:
    assert SETUP_LINE.search(first_run.first_log)
    # An account exists (added here too, so that this test stands on its own).
    added = engram("user", "add", "restart@example.com", "--password-stdin", run=first_run, stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    assert stop_server(first_run.server) == 0, first_run.server.log()[-3000:]
    first_run.server = start_server(
        first_run.env, first_run.directory / "second.log", clean=True, cwd=first_run.directory
    )
    log = first_run.server.log()
    assert "Engram serves on" in log
    assert "No accounts yet" not in log
    assert "/setup?token=" not in log
    token = _setup_link(first_run.first_log).split("token=", 1)[1]
    assert httpx.get(first_run.server.url + "/setup", params={"token": token}).status_code == 404
