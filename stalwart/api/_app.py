"""``create_app``: the FastAPI application serving the API, the console and ``/metrics``."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from stalwart.api._config import DEFAULT_ORG, ApiSettings
from stalwart.api._errors import install_error_handlers
from stalwart.api._governance import Governance
from stalwart.api._jwt import JwtVerifier
from stalwart.api._middleware import EdgeMiddleware
from stalwart.api._ops import ApiContext
from stalwart.api._ratelimit import RateLimiter
from stalwart.api._sessions import SessionStore
from stalwart.governance import KeyStore

__all__ = ["bootstrap_admin_key", "create_app"]

log = logging.getLogger("stalwart.api")


async def bootstrap_admin_key(app: Any, keys: KeyStore, settings: ApiSettings) -> str | None:
    """On first start (no key exists yet): the key in ``$STALWART_ADMIN_KEY`` (the variable named by
    ``server.admin_key_env``) becomes an admin key; without it one is generated, printed once to
    stderr, and returned. Later starts do nothing (an env key not yet known is still added)."""
    env_name = settings.admin_key_env or app.settings.server.admin_key_env
    given = os.environ.get(env_name) if env_name else None
    if given:
        if len(given) < 16:
            from stalwart.errors import ConfigError

            raise ConfigError(f"{env_name} must hold at least 16 characters to be used as an admin key")
        if await keys.verify(given) is None:
            await keys.create(
                org=DEFAULT_ORG,
                roles=["admin"],
                name="bootstrap (env)",
                subject="admin",
                created_by="bootstrap",
                token=given,
                actor="system:bootstrap",
            )
        return None
    if await keys.any():
        return None
    token, _rec = await keys.create(
        org=DEFAULT_ORG,
        roles=["admin"],
        name="bootstrap",
        subject="admin",
        created_by="bootstrap",
        actor="system:bootstrap",
    )
    if settings.print_bootstrap_key:
        print(
            f"\nstalwart: created the first admin API key (shown once, store it now):\n  {token}\n",
            file=sys.stderr,
            flush=True,
        )
    return token


def create_app(
    app: Any,
    settings: ApiSettings | None = None,
    *,
    embedded_worker: bool = False,
    worker_concurrency: int | None = None,
) -> FastAPI:
    """The HTTP application for ``app`` (a :class:`stalwart.App`).

    ``embedded_worker`` runs a worker in the same process (``stalwart server`` does by default);
    on shutdown it drains: in-flight runs finish their current step and release their leases.
    """
    s = settings or ApiSettings()
    redis_url = s.redis_url or app.settings.redis_url

    @contextlib.asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        store = await app.connect()
        gov = Governance(app)
        keys = KeyStore(store, audit=(await app.governance()).audit)
        api.state.stalwart = ApiContext(
            app=app,
            settings=s,
            keys=keys,
            jwt=JwtVerifier(s),
            sessions=SessionStore(store, s.session_ttl_s),
            limiter=RateLimiter(store, redis_url),
            gov=gov,
        )
        api.state.bootstrap_key = await bootstrap_admin_key(app, keys, s)
        worker = None
        if embedded_worker:
            worker = app.worker(concurrency=worker_concurrency)
            await worker.start()
        from stalwart.engine import start_fleet

        fleet = await start_fleet(app)  # the server stands for the fleet duties too
        from stalwart.api._mcp import mcp_lifespan

        try:
            async with mcp_lifespan(api, app):
                yield
        finally:
            if fleet is not None:
                await fleet.stop()
            if worker is not None:
                log.info("draining the embedded worker")
                await worker.stop()
            await api.state.stalwart.limiter.aclose()

    from prometheus_client import CollectorRegistry, Counter, Histogram

    from stalwart import __version__

    registry = CollectorRegistry(auto_describe=True)
    req_metrics = (
        Counter(
            "stalwart_http_requests_total",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=registry,
        ),
        Histogram(
            "stalwart_http_request_seconds",
            "HTTP request latency by route",
            ["method", "route"],
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        ),
    )
    api = FastAPI(
        title="Stalwart",
        version=__version__,
        description="Durable runtime for AI agents: runs, reviews, governance, and an OpenAI-compatible gateway.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    api.state.registry = registry
    install_error_handlers(api)
    from stalwart.api._chat import router as chat_router
    from stalwart.api._console import router as console_router
    from stalwart.api._console import static_app
    from stalwart.api._routes import router

    api.include_router(router)
    api.include_router(chat_router)
    api.include_router(console_router)
    from stalwart.api._mcp import router as mcp_router

    api.include_router(mcp_router)
    api.mount("/console/static", static_app(), name="console-static")
    if s.cors_origins:
        api.add_middleware(
            CORSMiddleware,
            allow_origins=s.cors_origins,
            allow_credentials=False,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-API-Key"],
        )
    api.add_middleware(
        EdgeMiddleware, max_body_bytes=s.max_body_bytes, metrics=req_metrics, hsts=s.cookie_secure
    )
    return api
