"""Fetching Client ID Metadata Documents without letting a client aim Engram at its own network.

A client whose `client_id` is an https URL makes Engram fetch that URL, so the URL is attacker
input. The fetch resolves the host once, refuses any address that is not publicly routable, and
then connects to exactly that checked address (sending the original Host and TLS server name), so a
DNS answer that changes between the check and the connection cannot redirect it. No redirects,
5 seconds in all, 5 KiB at most, JSON only.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import ipaddress
import json
import re
import socket
import ssl
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import certifi
import httpx

from app.settings import Settings

FETCH_TIMEOUT_SECONDS = 5.0
MAX_DOCUMENT_BYTES = 5 * 1024
MAX_URL_LENGTH = 2048
# HTTP caching decides how long a document is trusted, within these bounds: a client cannot make
# Engram refetch on every request, nor keep a changed document alive for days.
MIN_CACHE_SECONDS = 60
MAX_CACHE_SECONDS = 24 * 3600
DEFAULT_CACHE_SECONDS = 3600

LOOPBACK_NAMES = frozenset({"localhost"})
NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")
USER_AGENT = "Engram (client metadata fetch)"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class MetadataDocumentError(Exception):
    """The client's metadata document could not be used; the description says why (for logs and pages)."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


def is_metadata_document_url(client_id: str) -> bool:
    """Whether a client_id names a metadata document (rather than a dynamically registered client)."""
    return client_id.startswith("https://")


def address_refusal(address: IPAddress) -> str | None:
    """Why Engram will not connect to this address, or None when it is publicly routable."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in NAT64_PREFIX:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            inner = address_refusal(embedded)
            if inner is not None:
                return f"{inner} (embedded in an IPv6 address)"
    checks = (
        ("is_unspecified", "an unspecified address"),
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address"),
        ("is_multicast", "a multicast address"),
        ("is_private", "a private address"),
        ("is_reserved", "a reserved address"),
    )
    for attribute, label in checks:
        if getattr(address, attribute):
            return label
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "a site-local address"
    if not address.is_global:
        return "not a publicly routable address"
    return None


def _is_loopback_host(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_document_url(url: str, *, settings: Settings) -> httpx.URL:
    """The client_id URL's shape: https, a host, a path, no fragment, no credentials, no dot segments."""
    if len(url) > MAX_URL_LENGTH:
        raise MetadataDocumentError(f"the client_id URL is longer than {MAX_URL_LENGTH} characters")
    if not url.isascii() or any(c.isspace() or not c.isprintable() for c in url):
        raise MetadataDocumentError("the client_id URL must be plain ASCII without spaces")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise MetadataDocumentError(f"the client_id URL is not a valid URL: {exc}") from None
    host = parsed.host
    if not host:
        raise MetadataDocumentError("the client_id URL has no host")
    if parsed.scheme == "http":
        if not (settings.cimd_allow_private_addresses and _is_loopback_host(host)):
            raise MetadataDocumentError(
                "the client_id URL must use https (plain http is accepted only on loopback with "
                "ENGRAM_CIMD_ALLOW_PRIVATE_ADDRESSES, for development)"
            )
    elif parsed.scheme != "https":
        raise MetadataDocumentError("the client_id URL must use https")
    if "#" in url:
        raise MetadataDocumentError("the client_id URL must not contain a fragment")
    if parsed.userinfo:
        raise MetadataDocumentError("the client_id URL must not contain a user name or password")
    if parsed.path in ("", "/"):
        raise MetadataDocumentError("the client_id URL must have a path (not just a host)")
    # On the URL as written: the parser would already have removed the dot segments.
    segments = urlsplit(url).path.split("/")
    if any(segment.lower() in (".", "..", "%2e", "%2e%2e", ".%2e", "%2e.") for segment in segments):
        raise MetadataDocumentError("the client_id URL must not contain '.' or '..' path segments")
    return parsed


async def _resolve(host: str, port: int) -> list[IPAddress]:
    """Every address the host resolves to (an IP literal resolves to itself)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise MetadataDocumentError(
            f"the host {host!r} of the client_id URL does not resolve: {exc.strerror}"
        ) from None
    addresses: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise MetadataDocumentError(f"the host {host!r} of the client_id URL has no address")
    return addresses


async def checked_addresses(url: httpx.URL, *, settings: Settings) -> list[IPAddress]:
    """The addresses to connect to; refuses the URL if any answer is not publicly routable.

    All answers are checked, not just the first: a name that resolves to one public and one
    private address could otherwise reach the private one on a retry.
    """
    host = url.host
    port = url.port or (443 if url.scheme == "https" else 80)
    addresses = await _resolve(host, port)
    if not settings.cimd_allow_private_addresses:
        for address in addresses:
            reason = address_refusal(address)
            if reason is not None:
                shown = host if host == str(address) else f"{host} ({address})"
                raise MetadataDocumentError(
                    f"the client_id URL points at {shown}, {reason}; Engram fetches client metadata only from "
                    "public addresses (ENGRAM_CIMD_ALLOW_PRIVATE_ADDRESSES allows others)"
                )
    return addresses


@functools.lru_cache(maxsize=8)
def _ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context()  # the system store
    context.load_verify_locations(cafile=certifi.where())
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise MetadataDocumentError(
                f"ENGRAM_CIMD_CA_FILE {str(ca_file)!r} cannot be loaded as PEM certificates: {exc}"
            ) from None
    return context


def cache_seconds(headers: httpx.Headers, *, now: datetime | None = None) -> int:
    """How long the document stays fresh per RFC 9111 (s-maxage, max-age minus Age, Expires), bounded."""
    directives: dict[str, str | None] = {}
    for part in headers.get_list("cache-control", split_commas=True):
        name, _, value = part.strip().partition("=")
        directives[name.strip().lower()] = value.strip().strip('"') if value else None
    lifetime: float | None = None
    if "no-store" in directives or "no-cache" in directives:
        lifetime = 0
    else:
        for directive in ("s-maxage", "max-age"):
            seconds = directives.get(directive)
            if seconds is not None and re.fullmatch(r"\d{1,10}", seconds):
                lifetime = int(seconds)
                break
        if lifetime is None and "expires" in headers:
            expires = _http_date(headers["expires"])
            date = _http_date(headers.get("date", "")) or now or datetime.now(UTC)
            lifetime = (expires - date).total_seconds() if expires is not None else 0
        if lifetime is not None and re.fullmatch(r"\d{1,10}", headers.get("age", "")):
            lifetime -= int(headers["age"])
    if lifetime is None:
        return DEFAULT_CACHE_SECONDS
    return int(min(max(lifetime, MIN_CACHE_SECONDS), MAX_CACHE_SECONDS))


def _http_date(value: str) -> datetime | None:
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


async def fetch_metadata_document(
    url: str, *, settings: Settings, http: httpx.AsyncClient | None = None
) -> tuple[dict[str, Any], int]:
    """The client metadata document at `url` and how many seconds it may be cached.

    `http` is for tests that bring their own client (its TLS settings then apply); by default each
    fetch uses its own client that trusts the system store, certifi and ENGRAM_CIMD_CA_FILE, and
    ignores proxy environment variables (a proxy would resolve the name itself, undoing the pinning).
    Raises MetadataDocumentError with a reason an operator can act on.
    """
    parsed = check_document_url(url, settings=settings)
    try:
        async with asyncio.timeout(FETCH_TIMEOUT_SECONDS):
            addresses = await checked_addresses(parsed, settings=settings)
            if http is not None:
                return await _fetch_pinned(http, url, parsed, addresses)
            context = _ssl_context(settings.cimd_ca_file)
            async with httpx.AsyncClient(
                verify=context, trust_env=False, follow_redirects=False, timeout=FETCH_TIMEOUT_SECONDS
            ) as client:
                return await _fetch_pinned(client, url, parsed, addresses)
    except TimeoutError:
        raise MetadataDocumentError(
            f"{url} did not answer with its metadata document within {FETCH_TIMEOUT_SECONDS:g} seconds"
        ) from None


async def _fetch_pinned(
    client: httpx.AsyncClient, url: str, parsed: httpx.URL, addresses: list[IPAddress]
) -> tuple[dict[str, Any], int]:
    host = parsed.host
    default_port = 443 if parsed.scheme == "https" else 80
    host_header = f"[{host}]" if ":" in host else host
    if parsed.port is not None and parsed.port != default_port:
        host_header += f":{parsed.port}"
    headers = {
        "Host": host_header,
        "Accept": "application/json",
        # Compressed bodies would be inflated before the size check could stop them.
        "Accept-Encoding": "identity",
        "User-Agent": USER_AGENT,
    }
    # The TLS server name and certificate check use the name from the URL; the TCP connection goes to
    # the address that was checked above, whatever DNS says now.
    extensions = {"sni_hostname": host} if parsed.scheme == "https" else {}
    last_error: Exception | None = None
    for address in addresses:
        target = parsed.copy_with(host=str(address), fragment=None)
        try:
            async with client.stream(
                "GET", target, headers=headers, extensions=extensions, follow_redirects=False
            ) as response:
                body = await _read_limited(response, url)
                return _parse_document(body, url), cache_seconds(response.headers)
        except httpx.ConnectError as exc:
            last_error = exc  # another address of the same name may answer
            continue
        except httpx.HTTPError as exc:
            raise MetadataDocumentError(f"fetching {url} failed: {_describe(exc)}") from None
    raise MetadataDocumentError(f"fetching {url} failed: cannot connect ({_describe(last_error)})")


def _describe(exc: Exception | None) -> str:
    if exc is None:
        return "no address"
    text = str(exc) or type(exc).__name__
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return f"its TLS certificate is not trusted ({text}); ENGRAM_CIMD_CA_FILE adds a CA"
    return text


async def _read_limited(response: httpx.Response, url: str) -> bytes:
    if 300 <= response.status_code < 400:
        raise MetadataDocumentError(
            f"{url} answered with a redirect (HTTP {response.status_code}); client metadata documents must be "
            "served at their client_id URL itself, redirects are not followed"
        )
    if response.status_code != 200:
        raise MetadataDocumentError(f"{url} answered HTTP {response.status_code}, not 200")
    media_type = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise MetadataDocumentError(f"{url} served {media_type or 'no content type'}, not application/json")
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise MetadataDocumentError(f"{url} served a {encoding}-encoded body although Engram asked for none")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_DOCUMENT_BYTES:
        raise MetadataDocumentError(f"{url} is {declared} bytes; client metadata documents may be at most 5 KiB")
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > MAX_DOCUMENT_BYTES:
            raise MetadataDocumentError(f"{url} is larger than 5 KiB, the most a client metadata document may be")
    return bytes(body)


def _parse_document(body: bytes, url: str) -> dict[str, Any]:
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise MetadataDocumentError(f"{url} did not serve valid JSON") from None
    if not isinstance(document, dict):
        raise MetadataDocumentError(f"{url} must serve a JSON object")
    if document.get("client_id") != url:
        raise MetadataDocumentError(
            f"the document at {url} names client_id {document.get('client_id')!r}; it must be exactly its own URL"
        )
    return document
