"""The FastAPI application: `uvicorn --factory ingest.app:create_app`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from ingest import (
    routes_catalog,
    routes_dev,
    routes_export,
    routes_lti,
    routes_lti_admin,
    routes_matrix,
    routes_me,
    routes_poison,
    routes_progress,
    routes_service,
    routes_teacher,
)
from ingest.context import AppContext
from ingest.errors import BodyLimitMiddleware, install_error_handlers
from ingest.models import ErrorResponse
from ingest.progress_service import ProgressService
from ingest.request_log import RequestLogMiddleware
from ingest.routes_progress import add_status_route, answer_status
from ingest.routes_watch_time import add_watch_time_route, answer_watch_time
from ingest.shortcuts import Shortcuts
from ingest.web_edge import WebEdge, add_docs
from shared.clock import Clock
from shared.runtime.gc_tuning import settled_heap
from shared.runtime.logs import configure_logging
from shared.settings import Settings, get_settings

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (401, 403, 404, 413, 422, 429, 503)
}


def _frame_origins(app: FastAPI) -> tuple[str, ...]:
    """The registered LTI platforms' frame origins (none before the context is built)."""
    ctx: AppContext | None = getattr(app.state, "ctx", None)
    return ctx.lti_frame_origins.current() if ctx is not None else ()


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    """The service; `clock` replaces the system clock (tests move a MockedClock instead of
    sleeping)."""
    settings = settings or get_settings()
    configure_logging(json_lines=settings.environment == "production", level=settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx = AppContext.build(settings, clock)
        app.state.ctx = ctx
        app.state.progress = ProgressService(ctx)
        await ctx.start()
        with settled_heap():  # the collector's full passes were the ingest p99 (gc_tuning.py)
            yield
        await ctx.stop()

    app = FastAPI(
        title="Video progress tracking",
        version=version("videoprogress"),  # pyproject.toml's, as installed
        description="Heartbeats from course video players in, progress out. See API.md.",
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
        # Metrics are prometheus-client's; FastAPI's OpenTelemetry hooks cost every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        docs_url=None,  # add_docs serves it, with the policy its page needs
        redoc_url=None,
    )
    watch_time = add_watch_time_route(app)  # the hottest route, tried first
    status = add_status_route(app)  # the next: a player's status read as it loads
    add_docs(app, settings)
    install_error_handlers(app)
    app.include_router(routes_progress.router)
    app.include_router(routes_catalog.router)
    app.include_router(routes_teacher.router)
    app.include_router(routes_matrix.router)
    app.include_router(routes_me.router)
    app.include_router(routes_export.router)
    app.include_router(routes_poison.router)
    app.include_router(routes_service.router)
    app.include_router(routes_lti_admin.router)
    app.include_router(routes_lti.router)
    if settings.environment == "development":
        app.include_router(routes_dev.router)
    if settings.frontend_dist.is_dir():  # the built pages (frontend/: npm run build)
        app.mount("/", StaticFiles(directory=settings.frontend_dist, html=True), name="pages")
    shortcuts = [("POST", watch_time, answer_watch_time), ("GET", status, answer_status)]
    app.add_middleware(Shortcuts, routes=shortcuts)  # innermost: past the router
    # Ours, not FastAPI's max_body_size: that one answers in plain text, not the error shape.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestLogMiddleware)
    # Outermost (added last): every answer, the request log's 500s included, carries the CORS
    # and security headers.
    app.add_middleware(WebEdge, settings=settings, registered=lambda: _frame_origins(app))
    return app
