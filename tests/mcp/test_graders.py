"""Third-party graders from PyPI against the live server: mcp-authlab (authorization) and mcpcheck
(jbt-mcpcheck: the 2026-07-28 Streamable HTTP transport)."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.oauth.login import add_local_account
from app.oauth.passwords import hash_password
from tests.conftest import LiveServer, make_token
from tests.mcp.conftest import READ, WRITE, Minter, uniq
from tests.mcp.external import browser_env, isolated_env, python_tool, run

PASSWORD = "correct horse battery staple"

# Every resource-server check mcp-authlab has. TLS-01 can only warn on plain http over loopback; the
# SESS checks do not apply to a stateless server (it issues no Mcp-Session-Id to attack).
RESOURCE_SERVER_CHECKS = {
    "TLS-01": "warn",
    **dict.fromkeys(["CHAL-01", "CHAL-02", "CHAL-03"], "pass"),
    **dict.fromkeys(["PRM-01", "PRM-02", "PRM-03", "PRM-04", "PRM-05", "PRM-06"], "pass"),
    **dict.fromkeys(["TOK-01", "TOK-02", "TOK-03", "TOK-04", "TOK-05", "TOK-06"], "pass"),
    "SCOPE-01": "pass",
    "SESS-01": "skip",
    "SESS-02": "skip",
    "ORIG-01": "pass",
    "VER-01": "pass",
}


async def test_mcp_authlab_passes_every_resource_server_check(mcp_url: str, mint: Minter, tmp_path: Path) -> None:
    email = uniq("authlab")
    # What a client gets by default (read + write), and a token for the REST API: same issuer, other audience.
    token = await mint(email, [READ, WRITE], client_id="mcp-authlab", client_name="mcp-authlab")
    foreign = await mint(email, [READ, WRITE], aud="/api/v1")
    completed = await run(
        [
            python_tool("mcp-authlab", "mcp-authlab"),
            "scan",
            mcp_url,
            "--token",
            token,
            "--foreign-token",
            foreign,
            "--tool",
            "delete_memories",  # beyond the token's scope: the step-up challenge is what SCOPE-01 grades
            "--no-login",
            "--format",
            "json",
        ],
        isolated_env(tmp_path),
    )
    report = json.loads(completed.stdout)
    results = {r["id"]: r for r in report["results"]}
    got = {check: results[check]["status"] for check in RESOURCE_SERVER_CHECKS}
    assert got == RESOURCE_SERVER_CHECKS, {c: results[c]["message"] for c in got if got[c] != RESOURCE_SERVER_CHECKS[c]}
    assert results["TLS-01"]["message"].startswith("plain http on loopback")
    assert results["SCOPE-01"]["message"] == (
        "403 for 'delete_memories' asks for scope='memories:read memories:write memories:delete'"
    )
    assert not results["SESS-01"]["applicable"]
    assert not results["SESS-02"]["applicable"]
    assert report["critical_failures"] == []


async def test_mcp_authlab_after_a_real_sign_in_passes_everything(
    mcp_url: str, live_server: LiveServer, tmp_path: Path, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """`mcp-authlab login` through Engram's authorization server (a scripted browser signs in and
    consents), then a scan with its tokens: the authorization server's checks run too."""
    email = uniq("authlab-login")
    await add_local_account(sessions, email, await hash_password(PASSWORD))
    env = browser_env(tmp_path, email, PASSWORD)
    authlab = python_tool("mcp-authlab", "mcp-authlab")
    login = await run([authlab, "login", mcp_url, "--foreign-resource", live_server.url + "/api/v1", "--no-color"], env)
    assert login.returncode == 0, login.stdout + login.stderr
    scan = await run([authlab, "scan", mcp_url, "--tool", "delete_memories", "--format", "json"], env)
    report = json.loads(scan.stdout)
    results = {r["id"]: r["status"] for r in report["results"]}
    expected = dict.fromkeys(results, "pass") | {"TLS-01": "warn", "SESS-01": "skip", "SESS-02": "skip"}
    assert results == expected
    assert len(results) == 33
    assert report["grade"] == "A"
    assert report["coverage"]["line"] == "coverage 31/31"


async def test_mcpcheck_passes_all_eight_checks(
    mcp_url: str, tmp_path: Path, sessions: async_sessionmaker[AsyncSession]
) -> None:
    token = await make_token(sessions, uniq("mcpcheck"), name="mcpcheck")
    completed = await run(
        [python_tool("mcpcheck", "jbt-mcpcheck"), mcp_url, "--token", token, "--strict", "--legacy-probes", "--json"],
        isolated_env(tmp_path),
    )
    report = json.loads(completed.stdout)
    statuses = {check["name"]: check["status"] for check in report["checks"]}
    assert statuses == dict.fromkeys(
        ["handshake", "session", "discover", "protocol", "schemas", "errors", "cache", "origin"], "pass"
    ), [(c["name"], c["summary"]) for c in report["checks"] if c["status"] != "pass"]
    assert report["summary"]["exit_code"] == 0
    assert completed.returncode == 0
