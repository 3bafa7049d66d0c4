"""One embedded PostgreSQL for the whole test session, migrated with our migrations.

Tests reach it through the restricted runtime role (`runtime_engine`), exactly as the server
does; the owner role is only used where a test plays the DBA or the migrator.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db import migrate
from app.db.bootstrap import AUDITOR_ROLE, RUNTIME_ROLE, EmbeddedUrls, bootstrap
from app.db.embedded import EmbeddedPostgres
from app.db.session import Identity, bound_session, create_engine, session_factory
from app.embeddings import Embedder, create_embedder
from app.settings import Settings
from app.tokens import service as tokens
from app.users.service import ensure_user
from tests.idp.fixtures import idp, idp_redirect_uris, spec_idp  # noqa: F401 - pytest fixtures

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

EMBEDDING_DIMENSIONS = 384
MIGRATION_CONTEXT = migrate.MigrationContext(
    runtime_role=RUNTIME_ROLE,
    auditor_role=AUDITOR_ROLE,
    embedding_dimensions=EMBEDDING_DIMENSIONS,
    embedding_model="all-MiniLM-L6-v2",
)


@pytest.fixture(scope="session")
def embedded_pg() -> Iterator[EmbeddedPostgres]:
    # Outside pytest's own temporary tree: another pytest session resets that tree's permissions,
    # which would lock the postgres system user out of a running cluster.
    root = Path(tempfile.mkdtemp(prefix="engram-test-pg-"))
    pg = EmbeddedPostgres(root)
    pg.start()
    try:
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
async def db_urls(embedded_pg: EmbeddedPostgres) -> EmbeddedUrls:
    urls = await bootstrap(embedded_pg)
    await migrate.upgrade(urls.admin, MIGRATION_CONTEXT)
    return urls


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def settings(db_urls: EmbeddedUrls, data_dir: Path) -> Settings:
    return Settings(database_url=db_urls.runtime, database_admin_url=db_urls.admin, data_dir=data_dir)


@pytest.fixture(scope="session")
async def runtime_engine(db_urls: EmbeddedUrls) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(db_urls.runtime, pool_size=4)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
async def admin_engine(db_urls: EmbeddedUrls) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(db_urls.admin, pool_size=2)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def sessions(runtime_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(runtime_engine)


@pytest.fixture(scope="session")
async def embedder(settings: Settings) -> AsyncIterator[Embedder]:
    """The real local model, loaded once for every in-process test."""
    model = create_embedder(settings)
    await model.start()
    yield model
    await model.aclose()


async def make_token(
    sessions: async_sessionmaker[AsyncSession],
    email: str,
    scopes: list[str] | None = None,
    *,
    name: str = "test token",
    days: int | None = None,
) -> str:
    """A personal access token, created the way `engram token create` does."""
    async with bound_session(sessions, Identity(email, "test")) as session:
        await ensure_user(session, email)
        created = await tokens.create(
            session, email, name, scopes or ["memories:read", "memories:write", "memories:delete"], days
        )
    return created.token


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(
    env: dict[str, str],
    log_path: Path,
    *,
    wait_ready: bool = True,
    timeout: float = 120,
    clean: bool = False,
    cwd: Path | None = None,
) -> LiveServer:
    """`engram serve` in a subprocess on a free loopback port; waits for /ready.

    With `clean`, `env` replaces the test process's environment instead of extending it.
    """
    port = free_port()
    full_env = {
        **({} if clean else os.environ),
        "ENGRAM_PORT": str(port),
        "ENGRAM_HOST": "127.0.0.1",
        "ENGRAM_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "ENGRAM_LOG_FORMAT": "json",
        **env,
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "serve"], env=full_env, stdout=log, stderr=subprocess.STDOUT, cwd=cwd
        )
    server = LiveServer(f"http://127.0.0.1:{port}", process, log_path)
    if not wait_ready:
        return server
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"engram serve exited with {process.returncode}:\n{server.log()[-3000:]}")
        try:
            if httpx.get(server.url + "/ready", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    stop_server(server)
    raise RuntimeError(f"engram serve did not become ready:\n{server.log()[-3000:]}")


def stop_server(server: LiveServer, timeout: float = 30) -> int:
    """SIGTERM to the PID we started, then wait; SIGKILL only if it will not stop."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(10)
    return int(server.process.returncode)


@pytest.fixture(scope="session")
def live_server(
    db_urls: EmbeddedUrls, data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """Engram served by granian over real HTTP, connected as the restricted runtime role."""
    log_path = tmp_path_factory.mktemp("server") / "engram.log"
    server = start_server({"ENGRAM_DATABASE_URL": db_urls.runtime, "ENGRAM_DATA_DIR": str(data_dir)}, log_path)
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture
async def api(live_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as client:
        yield client
