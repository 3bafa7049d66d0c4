"""All settings, read from ENGRAM_* environment variables (and an optional `.env` file).

Each field carries its documentation; `engram config docs` renders docs/configuration.md from it
and a test keeps that file in sync.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec

ENV_PREFIX = "ENGRAM_"


class SettingsError(ValueError):
    """A setting has a value Engram cannot use; the message names the variable."""


class TrustedIssuer(msgspec.Struct, frozen=True, kw_only=True):
    """An external token issuer whose JWTs Engram accepts directly."""

    issuer: str
    audiences: list[str]
    jwks_url: str | None = None
    email_claim: str = "email"
    scope_claim: str = "scope"
    # Scopes granted when the token carries none (Authentik tokens have no scope claim). Deleting
    # is left out unless configured: a leaked token should not be able to wipe someone's memory.
    default_scopes: list[str] = msgspec.field(default_factory=lambda: ["memories:read", "memories:write"])


def setting(default: Any = None, *, doc: str, secret: bool = False, factory: Any = None) -> Any:
    metadata = {"doc": doc, "secret": secret}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Settings:
    # --- serving -------------------------------------------------------------------------------
    public_url: str = setting(
        "http://127.0.0.1:8765",
        doc="The URL people and MCP clients use to reach Engram (scheme, host, optional port and path "
        "prefix, no trailing slash). Every advertised URL (OAuth metadata, resource identifiers, "
        "connection snippets) is built from it, so set it when Engram runs behind a reverse proxy. "
        "Unset: `http://HOST:PORT` of the server itself.",
    )
    host: str = setting("127.0.0.1", doc="Address the HTTP server binds to.")
    port: int = setting(8765, doc="Port the HTTP server listens on.")
    workers: int = setting(1, doc="Number of granian worker processes.")
    data_dir: Path = setting(
        Path(".engram"),
        doc="Directory for local state: the embedded PostgreSQL cluster and the generated "
        "key-encryption key. Relative paths are resolved against the working directory.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = setting("info", doc="Minimum log level.")
    log_format: Literal["auto", "json", "console"] = setting(
        "auto", doc="`json` for machines, `console` for people; `auto` picks console on a terminal."
    )
    server_timing: bool = setting(
        False,
        doc="Send a `Server-Timing` header (auth, embed, search, … in ms) with every response. The access "
        "log carries the same phases either way; the header is off by default because it tells callers "
        "how the server spends its time.",
    )

    # --- database ------------------------------------------------------------------------------
    database_url: str | None = setting(
        None,
        doc="Runtime connection URL (`postgresql://user:pass@host:5432/db`) of a role that is not the "
        "tables' owner, not superuser and has NOBYPASSRLS. Unset: Engram starts an embedded "
        "PostgreSQL with pgvector under `ENGRAM_DATA_DIR`.",
        secret=True,
    )
    database_admin_url: str | None = setting(
        None,
        doc="Connection URL of the role that owns the tables; used only by migrations and maintenance "
        "commands (`engram db upgrade`, `engram reembed`, `engram user list`). Unset with an "
        "external database: `engram serve` expects the schema to be at the latest revision already.",
        secret=True,
    )
    database_pool_size: int = setting(10, doc="Connections kept open per worker process.")
    database_max_overflow: int = setting(10, doc="Extra connections a worker may open under load.")
    # --- embeddings ----------------------------------------------------------------------------
    embedding_provider: Literal["local", "openai"] = setting(
        "local",
        doc="`local` runs all-MiniLM-L6-v2 in-process (offline, 384 dimensions); `openai` calls any "
        "OpenAI-compatible `/v1/embeddings` endpoint (OpenAI, Ollama, vLLM, TEI, LM Studio, LiteLLM).",
    )
    embedding_model: str = setting(
        "all-MiniLM-L6-v2",
        doc="Model name. For `local`, a sentence-transformers model directory or the bundled "
        "`all-MiniLM-L6-v2`; for `openai`, the model the endpoint serves (e.g. `text-embedding-3-small`).",
    )
    embedding_dimensions: int | None = setting(
        None,
        doc="Vector size. Required for `openai` unless the endpoint is reachable at start-up (then it is "
        "measured); for `local` it is read from the model.",
    )
    embedding_api_url: str = setting(
        "https://api.openai.com/v1", doc="Base URL of the OpenAI-compatible API (ending in `/v1`)."
    )
    embedding_api_key: str | None = setting(None, doc="Bearer key for the embedding API.", secret=True)
    embedding_timeout: float = setting(30.0, doc="Seconds before an embedding API call is abandoned.")
    embedding_retries: int = setting(
        3, doc="Retries (with exponential back-off) for embedding API calls that time out or get 429/5xx."
    )
    embedding_batch_size: int = setting(64, doc="Most texts embedded in one model call or API request.")
    embedding_cache_size: int = setting(2048, doc="Query embeddings kept in memory (least recently used).")
    embedding_threads: int | None = setting(
        None,
        doc="CPU threads for local inference; unset lets torch decide. Engram also shortens the OpenMP "
        "threads' busy-wait after each inference (`GOMP_SPINCOUNT=30000`) unless `OMP_WAIT_POLICY` or "
        "`GOMP_SPINCOUNT` is set in the environment.",
    )

    # --- memories and search -------------------------------------------------------------------
    search_exact_max_rows: int = setting(
        25000,
        doc="Users with at most this many memories are searched with an exact scan of their own rows "
        "(recall 1.0; about 25 ms at 20,000 memories on 2 cores); larger users go through the HNSW index "
        "with an iterative scan (faster, but recall 0.87 measured for a 20,000-memory user at 1M rows; "
        "see docs/benchmarks.md).",
    )
    hnsw_ef_search: int = setting(
        1000, doc="`hnsw.ef_search` for users routed to the HNSW index (recall versus latency)."
    )
    near_duplicate_threshold: float = setting(
        0.92,
        doc="Cosine similarity at or above which an added memory is reported as a near duplicate of an existing one.",
    )
    merge_near_duplicates: bool = setting(
        False,
        doc="Merge a near duplicate into the existing memory (its text replaces the old one) instead of "
        "adding a second memory.",
    )
    max_memory_chars: int = setting(20000, doc="Longest memory text accepted, in characters.")

    # --- identity and tokens -------------------------------------------------------------------
    allowed_emails: list[str] = setting(
        factory=list,
        doc="Comma-separated email addresses allowed to use Engram. With neither this nor "
        "`ENGRAM_ALLOWED_DOMAINS` set, every authenticated email is allowed.",
    )
    allowed_domains: list[str] = setting(
        factory=list, doc="Comma-separated email domains allowed to use Engram (e.g. `example.com`)."
    )
    trusted_issuers: list[TrustedIssuer] = setting(
        factory=list,
        doc='JSON list of external issuers whose JWTs are accepted directly: `[{"issuer": '
        '"https://id.example.com/application/o/engram/", "audiences": ["<client id>"], '
        '"jwks_url": null, "email_claim": "email"}]`. Without `jwks_url` the issuer\'s OpenID '
        "discovery document names it.",
    )
    jwt_leeway_seconds: int = setting(30, doc="Clock skew tolerated on `exp`, `nbf` and `iat`.")
    jwks_min_refetch_seconds: int = setting(60, doc="An unknown `kid` refetches an issuer's JWKS at most this often.")
    jwks_cache_seconds: int = setting(3600, doc="How long a fetched JWKS is trusted before refetching.")
    key_encryption_key: str | None = setting(
        None,
        doc="Base64 of 32 random bytes that encrypts Engram's signing keys in the database. Unset: "
        "generated once into `ENGRAM_DATA_DIR/kek` (fine for one machine; set it for replicas).",
        secret=True,
    )
    signing_algorithm: Literal["ES256", "EdDSA"] = setting(
        "ES256", doc="Algorithm of the signing keys Engram generates for its own tokens."
    )
    access_token_ttl_seconds: int = setting(3600, doc="Lifetime of Engram-issued access tokens.")
    token_default_days: int = setting(90, doc="Default lifetime of personal access tokens, in days (0 = never expire).")

    # --- sign-in: Engram's authorization server --------------------------------------------------
    oidc_issuer: str | None = setting(
        None,
        doc="Issuer URL of the organisation's OpenID Connect provider (copy it exactly from the provider's "
        "discovery document; Authentik's ends with a slash: `https://id.example.com/application/o/engram/`). "
        "Unset: people sign in with local accounts.",
    )
    oidc_client_id: str | None = setting(None, doc="Client id of Engram's application at the provider.")
    oidc_client_secret: str | None = setting(
        None, doc="Client secret of Engram's application at the provider.", secret=True
    )
    oidc_scopes: str = setting(
        "openid email profile", doc="Scopes Engram asks the provider for (space-separated; add `groups` if needed)."
    )
    oidc_token_auth_method: Literal["auto", "client_secret_basic", "client_secret_post"] = setting(
        "auto",
        doc="How Engram authenticates at the provider's token endpoint. `auto`: HTTP Basic when the "
        "discovery document lists it, the form post when only that is listed. Set `client_secret_post` "
        "when the provider offers both but Engram's application there is set to post (Auth0's default).",
    )
    oidc_email_claim: str = setting("email", doc="ID-token (or userinfo) claim that holds the email address.")
    oidc_require_email_verified: bool = setting(
        False,
        doc="Refuse sign-ins whose `email_verified` claim is not true. Off by default: Authentik sends false "
        "unless a mapping sets it.",
    )
    oidc_allowed_groups: list[str] = setting(
        factory=list, doc="Comma-separated groups; when set, only members of one of them may sign in."
    )
    oidc_groups_claim: str = setting("groups", doc="Claim that lists the user's groups.")
    oidc_button_label: str = setting("Sign in with single sign-on", doc="Text of the sign-in button.")
    local_accounts: bool | None = setting(
        None,
        doc="Allow Engram's own accounts (`engram user add`). Unset: on when no OpenID Connect provider is "
        "configured, off otherwise.",
    )
    registration_redirect_patterns: list[str] = setting(
        factory=list,
        doc="Comma-separated regular expressions; when set, a client may only register redirect URIs that "
        "match one of them in full. Unset: the defaults that accept the MCP clients people use (loopback on "
        "any port, private-use schemes, https).",
    )
    registration_access_token: str | None = setting(
        None,
        doc="When set, dynamic client registration requires `Authorization: Bearer <this>`.",
        secret=True,
    )
    cimd_allow_private_addresses: bool = setting(
        False,
        doc="Let client metadata documents be fetched from private, loopback or link-local addresses (off: "
        "protects the network Engram sits in from request forgery).",
    )
    cimd_ca_file: Path | None = setting(
        None, doc="Extra CA certificates (PEM) trusted when fetching client metadata documents."
    )
    authorization_code_ttl_seconds: int = setting(60, doc="Lifetime of an authorization code.")
    refresh_token_ttl_days: int = setting(30, doc="Lifetime of a refresh token (each use issues a new one).")
    session_ttl_hours: int = setting(12, doc="How long a browser sign-in lasts.")
    login_max_failures: int = setting(
        5, doc="Failed local sign-ins per account (and per address) allowed within 15 minutes."
    )

    # ------------------------------------------------------------------------------------------
    @property
    def api_audience(self) -> str:
        return f"{self.public_url}/api/v1"

    @property
    def mcp_resource(self) -> str:
        return f"{self.public_url}/mcp"

    @property
    def issuer(self) -> str:
        return self.public_url

    @property
    def local_accounts_enabled(self) -> bool:
        return self.oidc_issuer is None if self.local_accounts is None else self.local_accounts

    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def env_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(Settings)


def _parse(name: str, raw: str, annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if raw.strip() == "":
            return None
        return _parse(name, raw, inner[0])
    if annotation is bool:
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise SettingsError(f"{env_name(name)} must be true or false, not {raw!r}")
    if annotation in (int, float):
        try:
            return annotation(raw)
        except ValueError:
            raise SettingsError(f"{env_name(name)} must be a number, not {raw!r}") from None
    if annotation is Path:
        return Path(raw)
    if origin is Literal:
        if raw not in args:
            raise SettingsError(f"{env_name(name)} must be one of {', '.join(args)}; got {raw!r}")
        return raw
    if origin is list and args and args[0] is str:
        return [item.strip() for item in raw.split(",") if item.strip()]
    if origin is list and args and args[0] is TrustedIssuer:
        try:
            return msgspec.json.decode(raw.encode(), type=list[TrustedIssuer])
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise SettingsError(f"{env_name(name)} is not a valid JSON list of issuers: {exc}") from None
    return raw


def read_dotenv(path: Path) -> dict[str, str]:
    """Minimal `.env` reader: KEY=VALUE lines, optional quotes, `#` comments."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or "=" not in stripped:
            continue
        key, _, value = stripped.partition("=")
        key = key.strip().removeprefix("export ").strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key] = value
    return values


def load_settings(environ: typing.Mapping[str, str] | None = None, dotenv: Path | None = None) -> Settings:
    """Settings from the environment; a `.env` file fills in what the environment does not set."""
    env = dict(read_dotenv(dotenv if dotenv is not None else Path(".env")))
    env.update(os.environ if environ is None else environ)
    hints = _field_types()
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        raw = env.get(env_name(f.name))
        if raw is not None:
            values[f.name] = _parse(f.name, raw, hints[f.name])
    if "public_url" not in values:
        # Follow the address actually served, so a changed port needs no second setting.
        host = values.get("host", Settings.host)
        host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - comparing, not binding
        values["public_url"] = f"http://{host}:{values.get('port', Settings.port)}"
    settings = Settings(**values)
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    if settings.public_url.endswith("/"):
        raise SettingsError("ENGRAM_PUBLIC_URL must not end with a slash")
    if not settings.public_url.startswith(("http://", "https://")):
        raise SettingsError("ENGRAM_PUBLIC_URL must start with http:// or https://")
    if not 1 <= settings.hnsw_ef_search <= 1000:
        # pgvector refuses larger values, which would fail every transaction's binding statement.
        raise SettingsError("ENGRAM_HNSW_EF_SEARCH must be between 1 and 1000 (pgvector's limit)")
    if not 0 < settings.near_duplicate_threshold <= 1:
        raise SettingsError("ENGRAM_NEAR_DUPLICATE_THRESHOLD must be in (0, 1]")
    if settings.oidc_issuer and not (settings.oidc_client_id and settings.oidc_client_secret):
        raise SettingsError("ENGRAM_OIDC_ISSUER needs ENGRAM_OIDC_CLIENT_ID and ENGRAM_OIDC_CLIENT_SECRET too")
    for pattern in settings.registration_redirect_patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise SettingsError(f"ENGRAM_REGISTRATION_REDIRECT_PATTERNS: {pattern!r} is not a regex: {exc}") from None
    if settings.database_url is None and settings.database_admin_url is not None:
        raise SettingsError("ENGRAM_DATABASE_ADMIN_URL is set but ENGRAM_DATABASE_URL is not; set both")


def _type_label(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _type_label(inner[0]) + " (optional)"
    if origin is Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin is list:
        return "JSON list" if args and args[0] is TrustedIssuer else "comma-separated list"
    return {int: "integer", float: "number", bool: "boolean", str: "string", Path: "path"}.get(
        annotation, str(annotation)
    )


def _default_label(f: dataclasses.Field[Any]) -> str:
    if f.default_factory is not dataclasses.MISSING:
        return "(empty)"
    if f.default is None:
        return "(unset)"
    if isinstance(f.default, bool):
        return "`true`" if f.default else "`false`"
    return f"`{f.default}`"


def render_configuration_doc() -> str:
    """docs/configuration.md, generated from the fields above."""
    hints = _field_types()
    lines = [
        "# Configuration reference",
        "",
        "Engram reads these environment variables at start-up (a `.env` file in the working directory",
        "fills in any that the environment does not set). This page is generated from `app/settings.py`",
        "by `engram config docs > docs/configuration.md`; a test fails when the two disagree.",
        "",
        "| variable | type | default | meaning |",
        "|---|---|---|---|",
    ]
    for f in dataclasses.fields(Settings):
        doc = f.metadata["doc"].replace("|", "\\|")
        if f.metadata.get("secret"):
            doc += " *Secret: keep it out of logs and version control.*"
        lines.append(f"| `{env_name(f.name)}` | {_type_label(hints[f.name])} | {_default_label(f)} | {doc} |")
    lines.append("")
    return "\n".join(lines)


def json_dump_issuers(issuers: list[TrustedIssuer]) -> str:
    return json.dumps([msgspec.to_builtins(i) for i in issuers])
