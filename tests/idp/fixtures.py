"""pytest fixtures for the test identity provider (tests/idp/provider.mjs, oidc-provider 9.13.3).

To use them in every test, add this line to tests/conftest.py:

    from tests.idp.fixtures import idp, idp_redirect_uris, spec_idp  # noqa: F401 (pytest fixtures)

`idp` is one Authentik-shaped provider for the whole session, started on first use: issuer
`http://127.0.0.1:PORT/application/o/engram/`, the confidential client `engram` (its secret is
`idp.client_secret`; `idp.engram_env()` gives the three ENGRAM_OIDC_* variables) whose redirect URI
is Engram's callback `http://127.0.0.1/oauth/callback` on any port. Logins: see
tests/idp/provider.mjs. Override `idp_redirect_uris` in a conftest to register other callbacks.

`spec_idp` is a spec-style MCP authorization server (open registration, PKCE required, RFC 8707
resource → JWT access token with `aud` = the resource) for tests that trust an external issuer
directly.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.idp.peer import Idp, start_idp


@pytest.fixture(scope="session")
def idp_redirect_uris() -> list[str]:
    # Without a port, a loopback redirect URI matches every port (the session's Engram servers pick theirs).
    return ["http://127.0.0.1/oauth/callback"]


@pytest.fixture(scope="session")
def idp(tmp_path_factory: pytest.TempPathFactory, idp_redirect_uris: list[str]) -> Iterator[Idp]:
    peer = start_idp(tmp_path_factory.mktemp("idp"), redirect_uris=idp_redirect_uris, loopback_any_port=True)
    try:
        yield peer
    finally:
        peer.stop()


@pytest.fixture(scope="session")
def spec_idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Idp]:
    peer = start_idp(tmp_path_factory.mktemp("spec-idp"), mode="spec")
    try:
        yield peer
    finally:
        peer.stop()
