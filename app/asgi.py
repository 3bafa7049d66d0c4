"""create_app(): the one place where plugins, middleware, routes and the lifespan meet."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from os import PathLike
from pathlib import Path
from typing import Any

import httpx
import structlog
from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig, SQLAlchemyPlugin
from litestar import Litestar
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from app.apps.routes import AccountController
from app.auth.deps import provide_memory_context, provide_principal
from app.auth.jwt import JWTVerifier
from app.auth.kek import load_kek
from app.auth.keys import KeyStore
from app.auth.routes import jwks
from app.auth.verifier import TokenVerifier
from app.db.checks import (
    SchemaMismatch,
    check_embedding_model,
    check_runtime_role,
    stored_embedding_dimensions,
    stored_embedding_model,
)
from app.db.migrate import current_revision, head_revision
from app.db.session import create_engine, session_factory
from app.embeddings import Embedder, create_embedder
from app.mcp.endpoint import create_endpoint
from app.memories.routes import MemoryController, OverviewController
from app.oauth.authorize import authorize, consent, continue_authorization
from app.oauth.login import (
    login_page,
    login_submit,
    logout,
    password_page,
    password_submit,
    setup_page,
    setup_submit,
    sso_callback,
    sso_start,
)
from app.oauth.metadata import api_resource_metadata, authorization_server_metadata, mcp_resource_metadata
from app.oauth.registration import register_client
from app.oauth.tokens import revoke_endpoint, token_endpoint
from app.oauth.upstream import UpstreamOIDC
from app.problems import EXCEPTION_HANDLERS
from app.services import Services
from app.settings import Settings, load_settings
from app.system.logging import RequestLogMiddleware, configure_logging
from app.system.routes import health, ready
from app.ui import templating
from app.ui.routes import ui_router

log = structlog.get_logger("engram")
APP_DIR = Path(__file__).resolve().parent
STATIC_DIR = APP_DIR / "static"
TEMPLATE_DIRS: list[Path | PathLike[Any] | str] = [APP_DIR / "oauth" / "templates", APP_DIR / "ui" / "templates"]
VERSION = "0.1.0"


def _swagger_assets() -> Path:
    import swagger_ui_bundle

    return Path(swagger_ui_bundle.swagger_ui_path)


def create_app(settings: Settings | None = None, *, embedder: Embedder | None = None) -> Litestar:
    settings = settings or load_settings()
    configure_logging(settings)
    if settings.database_url is None:
        raise SystemExit(
            "ENGRAM_DATABASE_URL is not set. `engram serve` starts the embedded PostgreSQL and sets it; "
            "when running the ASGI app yourself, point it at your database."
        )
    engine = create_engine(
        settings.database_url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
    )
    sessions = session_factory(engine)
    the_embedder = embedder or create_embedder(settings)
    owns_embedder = embedder is None
    mcp = create_endpoint(settings, VERSION)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await check_runtime_role(engine)
        revision = await current_revision(engine)
        if revision != head_revision():
            raise SchemaMismatch(
                f"The database schema is at revision {revision}, this Engram needs {head_revision()}: "
                "run `engram db upgrade` (with ENGRAM_DATABASE_ADMIN_URL set to the owner role)."
            )
        await the_embedder.start()
        check_embedding_model(
            await stored_embedding_model(engine),
            await stored_embedding_dimensions(engine),
            the_embedder.dimensions,
            the_embedder.model,
        )
        http = httpx.AsyncClient(timeout=httpx.Timeout(10.0), follow_redirects=False)
        keys = KeyStore(sessions, load_kek(settings), settings.signing_algorithm, settings.access_token_ttl_seconds)
        await keys.ensure_active_key()
        jwt = JWTVerifier(settings, keys, http)
        app.state.services = Services(
            settings=settings,
            engine=engine,
            sessions=sessions,
            embedder=the_embedder,
            keys=keys,
            jwt=jwt,
            verifier=TokenVerifier(settings, sessions, jwt),
            http=http,
            upstream=UpstreamOIDC(settings, http) if settings.oidc_issuer else None,
        )
        log.info("engram ready", public_url=settings.public_url, embedder=the_embedder.model)
        try:
            yield
        finally:
            await http.aclose()
            if owns_embedder:
                await the_embedder.aclose()

    db_config = SQLAlchemyAsyncConfig(
        engine_instance=engine,
        session_maker=sessions,
        before_send_handler="autocommit_include_redirects",
        set_default_exception_handler=False,
    )
    openapi = OpenAPIConfig(
        title="Engram",
        version=VERSION,
        description="Multi-user memory for AI assistants. Authenticate with a bearer token.",
        path="/schema",
        render_plugins=[
            SwaggerRenderPlugin(
                js_url="/static/swagger/swagger-ui-bundle.js",
                css_url="/static/swagger/swagger-ui.css",
                standalone_preset_js_url="/static/swagger/swagger-ui-standalone-preset.js",
                path="/",
                favicon="<link rel='icon' href='data:,'>",
            )
        ],
        components=Components(
            security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="token")}
        ),
        security=[{"bearer": []}],
    )
    return Litestar(
        route_handlers=[
            MemoryController,
            OverviewController,
            AccountController,
            health,
            ready,
            jwks,
            mcp_resource_metadata,
            api_resource_metadata,
            authorization_server_metadata,
            register_client,
            authorize,
            continue_authorization,
            consent,
            token_endpoint,
            revoke_endpoint,
            login_page,
            login_submit,
            sso_start,
            sso_callback,
            logout,
            setup_page,
            setup_submit,
            password_page,
            password_submit,
            ui_router,
            create_static_files_router(path="/static", directories=[STATIC_DIR], include_in_schema=False),
            mcp.handler,
            create_static_files_router(
                path="/static/swagger", directories=[_swagger_assets()], include_in_schema=False
            ),
        ],
        dependencies={"principal": Provide(provide_principal), "ctx": Provide(provide_memory_context)},
        plugins=[SQLAlchemyPlugin(config=db_config)],
        lifespan=[mcp.lifespan, lifespan],
        middleware=[DefineMiddleware(RequestLogMiddleware, server_timing=settings.server_timing)],
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=openapi,
        logging_config=None,  # configure_logging() owns the root logger
        template_config=TemplateConfig(
            directory=TEMPLATE_DIRS, engine=JinjaTemplateEngine, engine_callback=templating.configure
        ),
        request_max_body_size=2 * 1024 * 1024,
    )
