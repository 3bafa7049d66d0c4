"""One Engram signed in through the Authentik-shaped provider, and one headless Chromium for the session.

The browser is Debian's Chromium driven by the PyPI `playwright` package (no browser download).
Every page a test opens records its console errors, uncaught exceptions and Content-Security-Policy
violations; a test ends by asserting there were none.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, async_playwright

from app.db.bootstrap import EmbeddedUrls
from tests.conftest import LiveServer, start_server, stop_server
from tests.idp.peer import Idp

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
PHONE = {"width": 360, "height": 780}
DESKTOP = {"width": 1280, "height": 900}
# Collected in the page before any of its scripts run: CSP violations are events, not always console lines.
CSP_LISTENER = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__cspViolations.push(e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline') + ' at ' + e.sourceFile);
});
"""


@pytest.fixture(scope="session")
def ui_server(
    db_urls: EmbeddedUrls, data_dir: Path, idp: Idp, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    log_path = tmp_path_factory.mktemp("ui-server") / "engram.log"
    env = {"ENGRAM_DATABASE_URL": db_urls.runtime, "ENGRAM_DATA_DIR": str(data_dir), **idp.engram_env()}
    server = start_server(env, log_path)
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    return CHROMIUM


@pytest.fixture(scope="session")
async def browser(chromium_path: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@dataclass
class Visitor:
    """One browser profile (a context) on Engram, and everything that went wrong in its pages."""

    server: LiveServer
    context: BrowserContext
    page: Page
    problems: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.server.url + path

    def _ours(self, url: str) -> bool:
        return url.startswith(self.server.url)

    def _console(self, message: ConsoleMessage) -> None:
        source = message.location.get("url", "") or self.page.url
        if message.type != "error" or not self._ours(source):
            return
        if message.text.startswith("Failed to load resource") and source == self.page.url:
            return  # the page itself answered 4xx: the tests that go there expect it
        self.problems.append(f"console error on {self.page.url}: {message.text} ({source})")

    def _page_error(self, error: Any) -> None:
        if self._ours(self.page.url):
            self.problems.append(f"uncaught exception on {self.page.url}: {error}")

    async def csp_violations(self) -> list[str]:
        if not self._ours(self.page.url):
            return []
        found: list[str] = await self.page.evaluate("window.__cspViolations || []")
        return found

    async def goto(self, path: str) -> int:
        response = await self.page.goto(self.url(path))
        assert response is not None
        await self.check()
        return response.status

    async def check(self) -> None:
        """Records the CSP violations of the current page (the listener lives as long as the page)."""
        for violation in await self.csp_violations():
            entry = f"CSP violation on {self.page.url}: {violation}"
            if entry not in self.problems:
                self.problems.append(entry)

    async def sign_in(self, login: str) -> None:
        """Engram → the provider's login form (and its consent form, when it shows one) → Engram's
        callback → the dashboard."""
        await self.page.goto(self.url("/"))
        for _ in range(3):
            if self.page.url == self.url("/"):
                break
            prompt = await self.page.get_attribute('input[name="prompt"]', "value")
            if prompt == "login":
                await self.page.fill('input[name="login"]', login)
                await self.page.fill('input[name="password"]', "any password")
            async with self.page.expect_navigation():
                await self.page.click('button[type="submit"]')
        if self.page.url != self.url("/"):
            text = (await self.page.text_content("body") or "")[:1000]
            raise AssertionError(f"sign-in as {login} ended at {self.page.url}: {text}")
        await self.check()

    def assert_clean(self) -> None:
        assert self.problems == [], "\n".join(self.problems)


@pytest.fixture
async def visitor_factory(browser: Browser, ui_server: LiveServer) -> AsyncIterator[Any]:
    visitors: list[Visitor] = []

    async def make(viewport: dict[str, int] | None = None) -> Visitor:
        context = await browser.new_context(viewport=viewport or DESKTOP)  # type: ignore[arg-type]
        await context.add_init_script(CSP_LISTENER)
        await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=ui_server.url)
        page = await context.new_page()
        page.set_default_timeout(15_000)
        visitor = Visitor(ui_server, context, page)
        page.on("console", visitor._console)
        page.on("pageerror", visitor._page_error)
        visitors.append(visitor)
        return visitor

    yield make
    for visitor in visitors:
        await visitor.context.close()
