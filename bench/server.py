"""A live `engram serve` for the REST measurements: a subprocess connected to the benchmark's
database as the runtime role, on a free loopback port (the way tests/conftest.py starts one)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path


def start_server(runtime_url: str, data: Path, timeout: float = 180) -> Server:
    """Start and wait for /ready. The environment is inherited (ENGRAM_* settings apply, as they do
    to the benchmark process); the working directory is `data`, so a developer's .env in the
    repository does not change what is measured. The log goes to `data`/server.log."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    env = {
        **os.environ,
        "ENGRAM_DATABASE_URL": runtime_url,
        "ENGRAM_DATA_DIR": str(data / "server"),
        "ENGRAM_PORT": str(port),
        "ENGRAM_HOST": "127.0.0.1",
        "ENGRAM_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "ENGRAM_LOG_FORMAT": "json",
        "ENGRAM_SERVER_TIMING": "true",  # the server's own split of each request's time
    }
    env.pop("ENGRAM_DATABASE_ADMIN_URL", None)
    log_path = data / "server.log"
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "serve"], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=data
        )
    server = Server(f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"engram serve exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(server.url + "/ready", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    stop_server(server)
    raise RuntimeError(f"engram serve did not become ready:\n{log_path.read_text()[-3000:]}")


def stop_server(server: Server) -> None:
    """SIGTERM to the process we started, then wait; SIGKILL only if it will not stop."""
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(30)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(10)
