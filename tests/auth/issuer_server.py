"""A real HTTP server on 127.0.0.1 playing an Authentik-shaped trusted issuer.

It serves the discovery document and the JWKS of keys the test generates, counts the requests per
path, and can be told to fail (status, body) or to stall until it is stopped.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

CLIENT_ID = "engram-client"
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def generate_key(alg: str) -> PrivateKey:
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def public_jwk(key: PrivateKey) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        return RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return OKPAlgorithm.to_jwk(key.public_key(), as_dict=True)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up on a stalled answer closes its socket; nothing to report


class IssuerServer:
    def __init__(self, slug: str = "engram") -> None:
        self.hits: Counter[str] = Counter()
        self.keys: dict[str, tuple[str, PrivateKey]] = {}  # kid -> (alg, key)
        self.published: set[str] = set()
        self.status = 200
        self.body: bytes | None = None  # replaces the JWKS when set
        self.discovery_issuer: str | None = None  # replaces the issuer named by discovery when set
        self.stall = False
        self._released = threading.Event()
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.issuer = f"{self.base}/application/o/{slug}/"
        self.discovery_path = f"/application/o/{slug}/.well-known/openid-configuration"
        self.jwks_path = f"/application/o/{slug}/jwks/"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def add_key(self, alg: str, kid: str, *, publish: bool = True) -> str:
        self.keys[kid] = (alg, generate_key(alg))
        if publish:
            self.published.add(kid)
        return kid

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": CLIENT_ID,
            "sub": "hashed-subject-1",
            "email": "Alice@Example.com",
            "azp": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
        }
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not None}

    def token(self, kid: str, **overrides: Any) -> str:
        alg, key = self.keys[kid]
        return jwt.encode(self.claims(**overrides), key, algorithm=alg, headers={"kid": kid})

    def jwks(self) -> dict[str, Any]:
        keys = [
            {**public_jwk(key), "kid": kid, "alg": alg, "use": "sig"}
            for kid, (alg, key) in self.keys.items()
            if kid in self.published
        ]
        # A symmetric key in the set must simply be ignored.
        keys.append({"kty": "oct", "kid": "shared", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"})
        return {"keys": keys}

    def _respond(self, path: str) -> tuple[int, bytes]:
        with self._lock:
            self.hits[path] += 1
        if self.stall:
            self._released.wait(timeout=10)
        if self.status != 200:
            return self.status, b'{"error": "server_error"}'
        if path == self.discovery_path:
            document = {
                "issuer": self.discovery_issuer or self.issuer,
                "jwks_uri": self.base + self.jwks_path,
            }
            return 200, json.dumps(document).encode()
        if path == self.jwks_path:
            return 200, self.body if self.body is not None else json.dumps(self.jwks()).encode()
        return 404, b"{}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = server._respond(self.path)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
