"""FastAPI application factory: error mapping, request IDs and JSON logs, the routers.

Shared route helpers (the caller, ``mutate``, ``render``, answer shapes) live in :mod:`datavalley.api.deps`;
routers import them from there, and this module imports the routers. A new domain adds its router with
ONE line in :data:`ROUTERS`.

Errors: every :class:`datavalley.errors.DatavalleyError` becomes ``{error, message, details}`` with the
class's own HTTP status, here and only here. Request validation failures become ``invalid_input`` (422).
"""

from __future__ import annotations

import importlib
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel

from datavalley import __version__
from datavalley.api.deps import Caller, exchange_of, mutate, principal, render  # noqa: F401 (re-exported)
from datavalley.errors import DatavalleyError, InvalidInput
from datavalley.exchange import Exchange

#: The routers mounted under /v1, as "module:attribute". Add a domain's router with one line.
ROUTERS: tuple[str, ...] = (
    "datavalley.api.identity:router",
    "datavalley.api.registry:router",
    "datavalley.api.market:router",
    "datavalley.api.ledger:router",
    "datavalley.api.crossborder:router",
    "datavalley.api.compute:router",
)

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
access_log = logging.getLogger("datavalley.access")


class Health(BaseModel):
    status: str
    version: str


def _template(app: FastAPI, request: Request) -> str:
    """The matched route's path template (``/v1/participants/{participant_id}``): IDs never reach logs.

    Matched against the OpenAPI paths (compiled once per app), independent of the framework's internals.
    """
    from starlette.routing import compile_path

    compiled = getattr(app.state, "route_templates", None)
    if compiled is None:
        compiled = app.state.route_templates = [
            (compile_path(path)[0], path) for path in app.openapi().get("paths", {})
        ]
    path = request.url.path
    for regex, template in compiled:
        if regex.match(path):
            return str(template)
    return "unmatched"


def create_app(exchange: Exchange, *, publisher: bool = False) -> FastAPI:
    """Build the API for ``exchange``. With ``publisher``, a background thread checkpoints the ledger."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if publisher:
            exchange.ledger.start_publisher()
        try:
            yield
        finally:
            exchange.ledger.stop_publisher()
            # Close what this serving run opened and forget it: the same app object may be served again
            # (the demo serves it over HTTP for a while), and then opens fresh ones lazily.
            service = getattr(app.state, "query_service", None)
            if service is not None:
                app.state.query_service = None
                service.close()
            if (runner := getattr(app.state, "job_runner", None)) is not None:
                app.state.job_runner = None
                runner.pools.close()  # stops the local pool workers (datavalley.compute)

    app = FastAPI(
        title="datavalley exchange API",
        version=__version__,
        description="Identity, ledger and (later) registration, market and private analytics. "
        "See docs/PROTOCOL.md.",
        lifespan=lifespan,
    )
    app.state.exchange = exchange
    from datavalley.api.numbers import FiniteNumbers

    app.add_middleware(FiniteNumbers)  # NaN/±inf or >64-bit integers in a JSON body: 422 before any route

    @app.middleware("http")
    async def _request_id(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """Every answer carries ``X-Request-ID`` (the caller's, if well-formed, else a new one) and one
        JSON log line: method, route template (never IDs or query strings), status, duration."""
        given = request.headers.get(REQUEST_ID_HEADER, "")
        rid = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        request.state.request_id = rid
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
        finally:
            access_log.info(
                "request",
                extra={
                    "request_id": rid,
                    "method": request.method,
                    "route": _template(app, request),
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
        response.headers[REQUEST_ID_HEADER] = rid
        return response

    @app.exception_handler(DatavalleyError)
    async def _dv_error(_request: Request, exc: DatavalleyError) -> JSONResponse:
        retry = exc.details.get("retry_after")
        headers = {"Retry-After": str(retry)} if isinstance(retry, int) else None
        return JSONResponse(exc.to_dict(), status_code=exc.http_status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        msg = first.get("msg", "invalid request")
        err = InvalidInput(
            f"{where}: {msg}",
            field=where,
            errors=[{"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", "")} for e in errors],
        )
        return JSONResponse(err.to_dict(), status_code=err.http_status)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        """Until a console exists, the root is the interactive API documentation."""
        return RedirectResponse("/docs", status_code=307)

    @app.get("/v1/health", tags=["meta"], response_model=Health)
    def health() -> dict[str, str]:
        """Liveness: no authentication, no data."""
        return {"status": "ok", "version": __version__}

    for target in ROUTERS:
        module, _, attr = target.partition(":")
        app.include_router(getattr(importlib.import_module(module), attr), prefix="/v1")
    from datavalley.api import delivery  # Delta Sharing: its own prefix and token scheme (docs/DELIVERY.md)

    app.include_router(delivery.router)
    app.include_router(delivery.sharing)
    return app
