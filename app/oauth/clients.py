"""OAuth clients: which redirect URIs a client may register, dynamic registration (RFC 7591), and
clients identified by a metadata document URL (fetched, validated and cached in `oauth_clients`).

Redirect URIs follow RFC 8252 for native apps: http on a loopback host (any port, matched
without the port), private-use schemes such as `cursor://`, and https. Web clients get https
(and loopback http for development). Nothing with a fragment or a wildcard is ever accepted.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
import secrets
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import SplitResult, urlsplit

import httpx
import structlog
from sqlalchemy import ARRAY, Column, DateTime, LargeBinary, MetaData, Table, Text, func, select, text, update
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from app.oauth.cimd import MetadataDocumentError, fetch_metadata_document, is_metadata_document_url
from app.settings import Settings

log = structlog.get_logger("engram.oauth.clients")

ApplicationType = Literal["native", "web"]
Kind = Literal["dynamic", "metadata_document"]

GRANT_TYPES = ("authorization_code", "refresh_token")
RESPONSE_TYPES = ("code",)
PUBLIC_METHOD = "none"
AUTH_METHODS = (PUBLIC_METHOD, "client_secret_basic", "client_secret_post")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
# Schemes that run code, read local files or leave the OAuth flow; never a redirect target.
FORBIDDEN_SCHEMES = frozenset(
    {
        "about",
        "blob",
        "chrome",
        "data",
        "file",
        "filesystem",
        "ftp",
        "intent",
        "jar",
        "javascript",
        "livescript",
        "mailto",
        "sms",
        "tel",
        "urn",
        "vbscript",
        "view-source",
        "ws",
        "wss",
    }
)
SCHEME = re.compile(r"[a-z][a-z0-9+.-]{2,63}")
HOSTNAME = re.compile(r"(?=.{1,253}\Z)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.?")
SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")  # RFC 6749 §3.3

MAX_REDIRECT_URIS = 20
MAX_URI_LENGTH = 2000
MAX_NAME_LENGTH = 200
MAX_SCOPE_LENGTH = 1000
MAX_SOFTWARE_LENGTH = 200
MAX_METADATA_BYTES = 16 * 1024
DEFAULT_CLIENT_NAME = "Unnamed client"
USE_RECORD_INTERVAL = timedelta(minutes=1)

oauth_clients = Table(
    "oauth_clients",
    MetaData(),
    Column("client_id", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("client_secret_hash", LargeBinary),
    Column("token_endpoint_auth_method", Text, nullable=False),
    Column("client_name", Text, nullable=False),
    Column("client_uri", Text),
    Column("logo_uri", Text),
    Column("redirect_uris", ARRAY(Text), nullable=False),
    Column("grant_types", ARRAY(Text), nullable=False),
    Column("response_types", ARRAY(Text), nullable=False),
    Column("scope", Text),
    Column("application_type", Text, nullable=False),
    Column("software_id", Text),
    Column("software_version", Text),
    Column("metadata", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("fetched_at", DateTime(timezone=True)),
    Column("expires_at", DateTime(timezone=True)),
    Column("last_used_at", DateTime(timezone=True)),
)


class RegistrationError(Exception):
    """Client metadata Engram refuses, with an RFC 7591 error code (`invalid_redirect_uri`,
    `invalid_client_metadata`) and a description the client's developer can act on."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


def _bad_redirect(description: str) -> RegistrationError:
    return RegistrationError("invalid_redirect_uri", description)


def _bad_metadata(description: str) -> RegistrationError:
    return RegistrationError("invalid_client_metadata", description)


@dataclass(frozen=True)
class ClientRecord:
    client_id: str
    kind: Kind
    client_secret_hash: bytes | None = field(repr=False)
    token_endpoint_auth_method: str
    client_name: str
    client_uri: str | None
    logo_uri: str | None
    redirect_uris: tuple[str, ...]
    grant_types: tuple[str, ...]
    response_types: tuple[str, ...]
    scope: str | None
    application_type: ApplicationType
    software_id: str | None
    software_version: str | None
    metadata: Mapping[str, Any] = field(compare=False)
    created_at: datetime
    updated_at: datetime
    fetched_at: datetime | None
    expires_at: datetime | None
    last_used_at: datetime | None

    @property
    def is_public(self) -> bool:
        """A client without a secret (native apps, metadata-document clients)."""
        return self.token_endpoint_auth_method == PUBLIC_METHOD

    @classmethod
    def from_row(cls, row: RowMapping) -> ClientRecord:
        values = dict(row)
        for name in ("redirect_uris", "grant_types", "response_types"):
            values[name] = tuple(values[name])
        return cls(**values)


# --- redirect URIs ------------------------------------------------------------------------------

UriKind = Literal["loopback", "https", "private_use"]


def _is_loopback(parts: SplitResult) -> bool:
    return parts.scheme == "http" and (parts.hostname or "") in LOOPBACK_HOSTS


def _valid_port(parts: SplitResult) -> bool:
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError:
        return False
    return True


def classify_redirect_uri(uri: object) -> UriKind:
    """What kind of redirect URI this is, or RegistrationError when it is never acceptable."""
    if not isinstance(uri, str) or not uri:
        raise _bad_redirect("Every redirect URI must be a non-empty string.")
    if len(uri) > MAX_URI_LENGTH:
        raise _bad_redirect(f"Redirect URIs may be at most {MAX_URI_LENGTH} characters.")
    if not all(0x21 <= ord(c) <= 0x7E for c in uri) or "\\" in uri:
        raise _bad_redirect(f"{uri!r}: a redirect URI must be printable ASCII without spaces or backslashes.")
    if "#" in uri:
        raise _bad_redirect(f"{uri}: a redirect URI must not contain a fragment (RFC 6749 §3.1.2).")
    if "*" in uri:
        raise _bad_redirect(f"{uri}: wildcards are not allowed; register each redirect URI exactly.")
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if not scheme:
        raise _bad_redirect(f"{uri}: a redirect URI must be absolute (with a scheme).")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise _bad_redirect(f"{uri}: a redirect URI must not contain a user name or password.")
    if not _valid_port(parts):
        raise _bad_redirect(f"{uri}: the port is not a valid number.")
    if scheme in ("http", "https"):
        host = parts.hostname or ""
        if not host:
            raise _bad_redirect(f"{uri}: an {scheme} redirect URI needs a host.")
        if scheme == "http":
            if host not in LOOPBACK_HOSTS:
                raise _bad_redirect(
                    f"{uri}: plain http is allowed only on loopback (127.0.0.1, [::1] or localhost); use https."
                )
            return "loopback"
        if not (HOSTNAME.fullmatch(host) or _is_ip_literal(host)):
            raise _bad_redirect(f"{uri}: {host!r} is not a valid host name.")
        return "https"
    if scheme in FORBIDDEN_SCHEMES or not SCHEME.fullmatch(scheme):
        raise _bad_redirect(f"{uri}: the scheme {parts.scheme!r} cannot be a redirect target.")
    if not uri[len(scheme) + 1 :].strip("/"):
        raise _bad_redirect(f"{uri}: a private-use scheme redirect URI needs a path.")
    return "private_use"


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class RedirectPolicy:
    """Which redirect URIs a client may register, given its application type and the operator's patterns."""

    def __init__(self, settings: Settings) -> None:
        self.patterns = [re.compile(p) for p in settings.registration_redirect_patterns]

    @staticmethod
    def classify(uris: Sequence[str]) -> ApplicationType:
        """The application type of a client that did not state one, judged by its redirect URIs.

        A private-use scheme only makes sense for an app installed on a device, so one such URI
        makes the client native (Cursor registers `cursor://…`, https and loopback together); so
        does using loopback alone. Anything else is a web client.
        """
        kinds = {classify_redirect_uri(uri) for uri in uris}
        if "private_use" in kinds or kinds == {"loopback"}:
            return "native"
        return "web"

    def check(self, uri: str, application_type: ApplicationType) -> None:
        kind = classify_redirect_uri(uri)
        if kind == "private_use" and application_type == "web":
            raise _bad_redirect(
                f"{uri}: web clients must use https redirect URIs; private-use schemes are for native apps "
                '(register with "application_type": "native").'
            )
        if self.patterns and not any(p.fullmatch(uri) for p in self.patterns):
            raise _bad_redirect(f"{uri}: this server's operator does not allow this redirect URI.")

    def is_acceptable(self, uri: str, application_type: ApplicationType) -> bool:
        try:
            self.check(uri, application_type)
        except RegistrationError:
            return False
        return True

    def validate(self, uris: Sequence[str], application_type: ApplicationType | None) -> ApplicationType:
        """Checks every URI (one refused URI refuses the registration); returns the application type."""
        resolved = application_type or self.classify(uris)
        for uri in uris:
            self.check(uri, resolved)
        return resolved


def redirect_uri_matches(registered: Sequence[str], presented: str) -> bool:
    """Whether `presented` is one of the registered redirect URIs.

    Exact string comparison, with one exception from RFC 8252 §7.3: a registered loopback http
    URI matches on any port (native apps listen on an ephemeral one), while scheme, host, path and
    query must still be identical.
    """
    if presented in registered:
        return True
    if not presented.startswith("http://") or not all(0x21 <= ord(c) <= 0x7E for c in presented):
        return False
    if "#" in presented or "\\" in presented:
        return False
    actual = urlsplit(presented)
    if "@" in actual.netloc or not _valid_port(actual) or not _is_loopback(actual):
        return False
    for uri in registered:
        expected = urlsplit(uri)
        if (
            _is_loopback(expected)
            and "@" not in expected.netloc
            and expected.hostname == actual.hostname
            and _netloc_host(expected) == _netloc_host(actual)
            and expected.path == actual.path
            and expected.query == actual.query
            and expected.fragment == actual.fragment == ""
        ):
            return True
    return False


def _netloc_host(parts: SplitResult) -> str:
    """The host as written (brackets kept, port dropped): `localhost` ≠ `LOCALHOST` stays exact."""
    netloc = parts.netloc
    if netloc.startswith("["):
        return netloc[: netloc.find("]") + 1]
    return netloc.rsplit(":", 1)[0] if ":" in netloc else netloc


# --- metadata validation ------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientMetadata:
    """Validated, normalised client metadata, common to both kinds of client."""

    redirect_uris: list[str]
    grant_types: list[str]
    response_types: list[str]
    token_endpoint_auth_method: str
    application_type: ApplicationType
    client_name: str
    client_uri: str | None
    logo_uri: str | None
    scope: str | None
    software_id: str | None
    software_version: str | None


def _optional(document: Mapping[str, Any], name: str) -> Any:
    # Clients send null or "" for members they have no value for; both mean "absent".
    value = document.get(name)
    return None if value is None or value == "" else value


def _string(document: Mapping[str, Any], name: str, limit: int) -> str | None:
    value = _optional(document, name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _bad_metadata(f"{name} must be a string.")
    value = value.strip()
    if len(value) > limit:
        raise _bad_metadata(f"{name} may be at most {limit} characters.")
    # Control and format characters (including bidi overrides) could disguise a name on the consent page.
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in value):
        raise _bad_metadata(f"{name} must not contain control or formatting characters.")
    return value or None


def _string_list(document: Mapping[str, Any], name: str, default: list[str]) -> list[str]:
    value = _optional(document, name)
    if value is None:
        return list(default)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad_metadata(f"{name} must be a list of strings.")
    return list(dict.fromkeys(value))


def _web_url(document: Mapping[str, Any], name: str) -> str | None:
    value = _optional(document, name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_URI_LENGTH:
        raise _bad_metadata(f"{name} must be a URL of at most {MAX_URI_LENGTH} characters.")
    try:
        kind = classify_redirect_uri(value.split("#", 1)[0])
    except RegistrationError:
        kind = None
    if kind not in ("https", "loopback"):
        raise _bad_metadata(f"{name} must be an https URL.")
    return value


def _scope(document: Mapping[str, Any]) -> str | None:
    value = _optional(document, "scope")
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_SCOPE_LENGTH:
        raise _bad_metadata(f"scope must be a string of at most {MAX_SCOPE_LENGTH} characters.")
    tokens = value.split()
    if not all(SCOPE_TOKEN.fullmatch(t) for t in tokens):
        raise _bad_metadata("scope must be space-separated scope tokens (RFC 6749 §3.3).")
    # Kept as asked: the authorization request decides which scopes a user grants.
    return " ".join(dict.fromkeys(tokens)) or None


def validate_metadata(document: object, policy: RedirectPolicy, *, kind: Kind) -> ClientMetadata:
    """RFC 7591 §2 metadata (for a metadata document: the same, public clients only)."""
    if not isinstance(document, dict):
        raise _bad_metadata("Client metadata must be a JSON object.")
    if len(json.dumps(document)) > MAX_METADATA_BYTES:
        raise _bad_metadata(f"Client metadata may be at most {MAX_METADATA_BYTES // 1024} KiB.")

    uris = _optional(document, "redirect_uris")
    if uris is None or uris == []:
        raise _bad_redirect("redirect_uris is required and must list at least one URI.")
    if not isinstance(uris, list):
        raise _bad_redirect("redirect_uris must be a list of strings.")
    if len(uris) > MAX_REDIRECT_URIS:
        raise _bad_redirect(f"At most {MAX_REDIRECT_URIS} redirect URIs may be registered.")
    for uri in uris:
        classify_redirect_uri(uri)
    redirect_uris = list(dict.fromkeys(uris))

    application_type = _optional(document, "application_type")
    if application_type not in (None, "native", "web"):
        raise _bad_metadata('application_type must be "native" or "web".')
    resolved_type = policy.validate(redirect_uris, application_type)

    # RFC 7591 §3.2.1 lets the server narrow what a client asked for; the response shows the result.
    # Clients ask for more than they need (VS Code adds the device-code grant), so extra grant and
    # response types are dropped rather than failing the registration.
    requested_grants = _string_list(document, "grant_types", ["authorization_code"])
    if "authorization_code" not in requested_grants:
        raise _bad_metadata(
            "grant_types must include authorization_code (and may add refresh_token); Engram supports no other flow."
        )
    grant_types = [g for g in requested_grants if g in GRANT_TYPES]
    if "code" not in _string_list(document, "response_types", ["code"]):
        raise _bad_metadata('response_types must include "code": only the authorization code flow is supported.')
    response_types = list(RESPONSE_TYPES)

    if kind == "metadata_document":
        if "client_secret" in document or "client_secret_expires_at" in document:
            raise _bad_metadata("A client metadata document must not contain a client secret.")
        method = _optional(document, "token_endpoint_auth_method") or "none"
        if method != "none":
            raise _bad_metadata(
                f'token_endpoint_auth_method {method!r} is not supported for metadata-document clients; use "none".'
            )
    else:
        # RFC 7591 §2: absent means client_secret_basic.
        method = _optional(document, "token_endpoint_auth_method") or "client_secret_basic"
        if method not in AUTH_METHODS:
            raise _bad_metadata(
                f"token_endpoint_auth_method {method!r} is not supported; use one of {', '.join(AUTH_METHODS)}."
            )

    return ClientMetadata(
        redirect_uris=redirect_uris,
        grant_types=grant_types,
        response_types=response_types,
        token_endpoint_auth_method=str(method),
        application_type=resolved_type,
        client_name=_string(document, "client_name", MAX_NAME_LENGTH) or DEFAULT_CLIENT_NAME,
        client_uri=_web_url(document, "client_uri"),
        logo_uri=_web_url(document, "logo_uri"),
        scope=_scope(document),
        software_id=_string(document, "software_id", MAX_SOFTWARE_LENGTH),
        software_version=_string(document, "software_version", MAX_SOFTWARE_LENGTH),
    )


# --- persistence --------------------------------------------------------------------------------


def hash_client_secret(secret: str) -> bytes:
    # 256 random bits: a fast hash is enough, nobody can enumerate the input space.
    return hashlib.sha256(secret.encode()).digest()


def verify_client_secret(record: ClientRecord, secret: str | None) -> bool:
    """Constant-time check of a presented client secret (False for clients without one)."""
    if record.client_secret_hash is None or not secret:
        return False
    return hmac.compare_digest(hash_client_secret(secret), record.client_secret_hash)


def _values(metadata: ClientMetadata) -> dict[str, Any]:
    return {
        "token_endpoint_auth_method": metadata.token_endpoint_auth_method,
        "client_name": metadata.client_name,
        "client_uri": metadata.client_uri,
        "logo_uri": metadata.logo_uri,
        "redirect_uris": metadata.redirect_uris,
        "grant_types": metadata.grant_types,
        "response_types": metadata.response_types,
        "scope": metadata.scope,
        "application_type": metadata.application_type,
        "software_id": metadata.software_id,
        "software_version": metadata.software_version,
    }


async def register_dynamic(
    session: AsyncSession, document: object, policy: RedirectPolicy
) -> tuple[ClientRecord, str | None]:
    """Registers a client (RFC 7591) and records the audit event; returns it and its secret, if any.

    The secret is shown to the client once and stored only as a hash. Raises RegistrationError.
    """
    metadata = validate_metadata(document, policy, kind="dynamic")
    assert isinstance(document, dict)
    secret = None if metadata.token_endpoint_auth_method == PUBLIC_METHOD else secrets.token_urlsafe(32)
    statement = insert(oauth_clients).values(
        client_id=secrets.token_urlsafe(18),
        kind="dynamic",
        client_secret_hash=hash_client_secret(secret) if secret else None,
        metadata=document,
        **_values(metadata),
    )
    record = ClientRecord.from_row((await session.execute(statement.returning(*oauth_clients.c))).mappings().one())
    await session.execute(
        text("SELECT engram_audit_event('OAUTH_CLIENT_REGISTERED', NULL, :client_id, CAST(:detail AS jsonb))"),
        {
            "client_id": record.client_id,
            "detail": json.dumps(
                {
                    "client_name": record.client_name,
                    "redirect_uris": list(record.redirect_uris),
                    "application_type": record.application_type,
                    "token_endpoint_auth_method": record.token_endpoint_auth_method,
                }
            ),
        },
    )
    log.info(
        "oauth client registered",
        client_id=record.client_id,
        client_name=record.client_name,
        redirect_uris=list(record.redirect_uris),
    )
    return record, secret


async def _load(session: AsyncSession, client_id: str) -> ClientRecord | None:
    statement = select(oauth_clients).where(oauth_clients.c.client_id == client_id)
    row = (await session.execute(statement)).mappings().one_or_none()
    return ClientRecord.from_row(row) if row is not None else None


async def get_client(
    session: AsyncSession, client_id: str, *, settings: Settings, http: httpx.AsyncClient | None = None
) -> ClientRecord | None:
    """The client named by `client_id`, or None when there is no such client.

    An https client_id is a Client ID Metadata Document: served from the table while its HTTP
    caching allows, otherwise fetched (SSRF-safe), validated like a registration and stored.
    Raises MetadataDocumentError when such a document cannot be fetched or is not acceptable,
    so the caller can tell the user and the operator why.
    """
    if not client_id or len(client_id) > 2048:
        return None
    if not is_metadata_document_url(client_id):
        record = await _load(session, client_id)
        return record if record is not None and record.kind == "dynamic" else None

    cached = await _load(session, client_id)
    now = datetime.now(UTC)
    if cached is not None and cached.expires_at is not None and cached.expires_at > now:
        return cached
    document, max_age = await fetch_metadata_document(client_id, settings=settings, http=http)
    try:
        metadata = validate_metadata(document, RedirectPolicy(settings), kind="metadata_document")
    except RegistrationError as exc:
        raise MetadataDocumentError(f"the client metadata document at {client_id} is not acceptable: {exc}") from None
    values = {
        **_values(metadata),
        "metadata": document,
        "fetched_at": now,
        "expires_at": now + timedelta(seconds=max_age),
    }
    statement = (
        insert(oauth_clients)
        .values(client_id=client_id, kind="metadata_document", client_secret_hash=None, **values)
        .on_conflict_do_update(index_elements=[oauth_clients.c.client_id], set_={**values, "updated_at": func.now()})
        .returning(*oauth_clients.c)
    )
    row = (await session.execute(statement)).mappings().one()
    if cached is None or cached.redirect_uris != tuple(metadata.redirect_uris):
        log.info(
            "oauth client metadata document fetched",
            client_id=client_id,
            client_name=metadata.client_name,
            redirect_uris=metadata.redirect_uris,
            cache_seconds=max_age,
        )
    return ClientRecord.from_row(row)


async def record_use(session: AsyncSession, client_id: str) -> None:
    """Notes that a client was used (at most one write a minute per client)."""
    await session.execute(
        update(oauth_clients)
        .where(
            oauth_clients.c.client_id == client_id,
            (oauth_clients.c.last_used_at.is_(None))
            | (oauth_clients.c.last_used_at < func.now() - USE_RECORD_INTERVAL),
        )
        .values(last_used_at=func.now())
    )
