"""Run the test identity provider (tests/idp/provider.mjs) and sign in at it without a browser."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

IDP_DIR = Path(__file__).resolve().parent
PROVIDER = IDP_DIR / "provider.mjs"
DEFAULT_REDIRECT_URI = "http://127.0.0.1:8765/oauth/callback"
# oidc-provider's cookies; dropped before each login so that `login` is who signs in.
_IDP_COOKIE_PREFIXES = ("_session", "_interaction")


class IdpError(RuntimeError):
    """The provider did not start, or the sign-in at it did not go as a browser's would."""


@dataclass
class Idp:
    issuer: str
    base_url: str  # scheme://host:port
    port: int
    mode: str
    client_id: str
    client_secret: str
    redirect_uris: list[str]
    process: subprocess.Popen[bytes] = field(repr=False)
    log_path: Path

    @property
    def discovery_url(self) -> str:
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"

    def engram_env(self) -> dict[str, str]:
        """The three settings that point Engram at this provider."""
        return {
            "ENGRAM_OIDC_ISSUER": self.issuer,
            "ENGRAM_OIDC_CLIENT_ID": self.client_id,
            "ENGRAM_OIDC_CLIENT_SECRET": self.client_secret,
        }

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 10) -> int:
        """SIGTERM to the PID we started, then wait; SIGKILL only if it will not stop."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        return int(self.process.returncode)


def start_idp(
    tmp_path: Path,
    *,
    mode: str = "authentik",
    slug: str = "engram",
    client_id: str = "engram",
    client_secret: str | None = None,
    redirect_uris: Iterable[str] = (DEFAULT_REDIRECT_URI,),
    loopback_any_port: bool = False,
    extra_env: Mapping[str, str] | None = None,
    timeout: float = 30,
) -> Idp:
    """Start provider.mjs on a free 127.0.0.1 port and wait until its discovery document answers.

    `extra_env` sets the provider's other IDP_* knobs (see the top of provider.mjs), for example
    `{"IDP_ID_TOKEN_ALG": "HS256"}` or `{"IDP_SIGNING_KEY": "unpublished"}`. Without `client_secret`
    a random one is generated (read it back from `Idp.client_secret`).
    """
    node = shutil.which("node")
    if node is None:
        raise IdpError("node is not on PATH: the test identity provider needs Node.js 20 or later")
    if not (IDP_DIR / "node_modules" / "oidc-provider").is_dir():
        raise IdpError(f"oidc-provider is not installed: run `npm ci --prefix {IDP_DIR}`")
    secret = client_secret if client_secret is not None else secrets.token_urlsafe(32)
    uris = list(redirect_uris)
    env = {
        **os.environ,
        "IDP_MODE": mode,
        "IDP_PORT": "0",
        "IDP_SLUG": slug,
        "IDP_CLIENT_ID": client_id,
        "IDP_CLIENT_SECRET": secret,
        "IDP_REDIRECT_URIS": ",".join(uris),
        "IDP_LOOPBACK_ANY_PORT": "true" if loopback_any_port else "false",
        **(extra_env or {}),
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    stamp = f"{mode}-{time.monotonic_ns()}"
    out_path, log_path = tmp_path / f"idp-{stamp}.out", tmp_path / f"idp-{stamp}.log"
    with out_path.open("wb") as out, log_path.open("wb") as log:
        process = subprocess.Popen([node, str(PROVIDER)], env=env, stdout=out, stderr=log, cwd=IDP_DIR)
    announced = _wait_for_announcement(process, out_path, log_path, timeout)
    idp = Idp(
        issuer=announced["issuer"],
        base_url=f"http://127.0.0.1:{announced['port']}",
        port=int(announced["port"]),
        mode=mode,
        client_id=client_id,
        client_secret=secret,
        redirect_uris=uris,
        process=process,
        log_path=log_path,
    )
    try:
        _wait_for_discovery(idp, timeout)
    except BaseException:
        idp.stop()
        raise
    return idp


def _wait_for_announcement(
    process: subprocess.Popen[bytes], out_path: Path, log_path: Path, timeout: float
) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        first_line = out_path.read_text(errors="replace").partition("\n")
        if first_line[1]:
            return dict(json.loads(first_line[0]))
        if process.poll() is not None:
            log = log_path.read_text(errors="replace")
            raise IdpError(f"provider.mjs exited with {process.returncode}:\n{log[-3000:]}")
        time.sleep(0.05)
    process.kill()
    process.wait(10)
    raise IdpError(f"provider.mjs did not start listening within {timeout} s:\n{log_path.read_text()[-3000:]}")


def _wait_for_discovery(idp: Idp, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(idp.discovery_url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if idp.process.poll() is not None or time.monotonic() > deadline:
            raise IdpError(f"{idp.discovery_url} did not answer within {timeout} s:\n{idp.log()[-3000:]}")
        time.sleep(0.1)


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []  # (action, inputs)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append((values.get("action", ""), {}))
        elif tag in ("input", "button") and self.forms and values.get("name"):
            self.forms[-1][1].setdefault(values["name"], values.get("value", ""))


def _forget_idp_session(client: httpx.AsyncClient) -> None:
    for cookie in list(client.cookies.jar):
        if cookie.name.startswith(_IDP_COOKIE_PREFIXES):
            client.cookies.jar.clear(cookie.domain, cookie.path, cookie.name)


def _back_at_client(location: str) -> bool:
    query = parse_qs(urlsplit(location).query)
    return "code" in query or "error" in query


async def login_at_idp(
    client: httpx.AsyncClient, authorize_url: str, login: str, *, password: str = "any", max_steps: int = 20
) -> str:
    """Follow `authorize_url` through the provider's login (and consent) forms as `login`.

    Returns the redirect that carries the authorization response (`code` and `state`, or
    `error`) back to the relying party, without following it. `authorize_url` may also be a
    relying party's own URL that redirects to the provider. Requests go out with `auth=None`, so
    a client that carries an OAuth auth flow does not recurse into it.
    """
    _forget_idp_session(client)
    method, url, form = "GET", authorize_url, None
    for _ in range(max_steps):
        response = await client.request(method, url, data=form, follow_redirects=False, auth=None)
        if response.is_redirect:
            location = urljoin(str(response.url), response.headers["location"])
            if _back_at_client(location):
                return location
            method, url, form = "GET", location, None
            continue
        if response.status_code != 200 or "html" not in response.headers.get("content-type", ""):
            raise IdpError(f"{method} {url} answered {response.status_code}: {response.text[:1000]}")
        parser = _Forms()
        parser.feed(response.text)
        found = next(((action, inputs) for action, inputs in parser.forms if "prompt" in inputs), None)
        if found is None:
            raise IdpError(f"{url} shows no login or consent form: {response.text[:1000]}")
        action, inputs = found
        if inputs["prompt"] == "login":
            form = {**inputs, "login": login, "password": password}
        elif inputs["prompt"] == "consent":
            form = dict(inputs)
        else:
            raise IdpError(f"{url} shows a form for prompt {inputs['prompt']!r}, which this helper does not know")
        method, url = "POST", urljoin(str(response.url), action)
    raise IdpError(f"no redirect back to the client after {max_steps} steps from {authorize_url}")
