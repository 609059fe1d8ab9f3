"""FastAPI application factory, authentication, error mapping and the mutation helper.

Errors: every :class:`datavalley.errors.DatavalleyError` becomes ``{error, message, details}`` with the
class's own HTTP status, here and only here. Request validation failures become ``invalid_input`` (422).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter

from datavalley import __version__
from datavalley.errors import DatavalleyError, InvalidInput
from datavalley.exchange import Exchange, Idempotency
from datavalley.identity.model import Principal


def exchange_of(request: Request) -> Exchange:
    ex: Exchange = request.app.state.exchange
    return ex


def principal(request: Request) -> Principal:
    """FastAPI dependency: the caller behind ``Authorization: Bearer <token>`` (401 otherwise)."""
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    token = secret.strip() if scheme.lower() == "bearer" else None
    return exchange_of(request).authenticate(token)


Caller = Depends(principal)


def render(value: Any) -> Any:
    """Domain values (frozen dataclasses, enums, datetimes) as JSON-ready data."""
    return TypeAdapter(type(value)).dump_python(value, mode="json")


async def _body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def mutate(
    request: Request,
    caller: Principal,
    fn: Callable[..., Any],
    *args: Any,
    body: Any = None,
    status: int = 200,
    shape: Callable[[Any], Any] = render,
    redact: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    **kwargs: Any,
) -> JSONResponse:
    """Run a state-changing service function and answer ``{data, receipts}``.

    Honours the ``Idempotency-Key`` header: a repeat replays the first answer (header
    ``Idempotent-Replayed: true``), a repeat with a different request is 409.
    """
    key = request.headers.get("idempotency-key")
    idem = Idempotency.of(key, request.method, request.url.path, body) if key is not None else None
    outcome = exchange_of(request).run(
        caller,
        fn,
        *args,
        render=lambda v: {"data": shape(v)},
        http_status=status,
        idempotency=idem,
        redact=redact,
        **kwargs,
    )
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else {}
    return JSONResponse({**outcome.body, "receipts": outcome.receipts}, outcome.status, headers=headers)


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
            service = getattr(app.state, "query_service", None)
            if service is not None:
                service.close()
            if (runner := getattr(app.state, "job_runner", None)) is not None:
                runner.pools.close()  # stops the local pool workers (datavalley.compute)

    app = FastAPI(
        title="datavalley exchange API",
        version=__version__,
        description="Identity, ledger and (later) registration, market and private analytics. "
        "See docs/PROTOCOL.md.",
        lifespan=lifespan,
    )
    app.state.exchange = exchange

    @app.exception_handler(DatavalleyError)
    async def _dv_error(_request: Request, exc: DatavalleyError) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=exc.http_status)

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

    @app.get("/v1/health", tags=["meta"])
    def health() -> dict[str, str]:
        """Liveness: no authentication, no data."""
        return {"status": "ok", "version": __version__}

    from datavalley.api import identity, ledger, market, registry

    app.include_router(identity.router, prefix="/v1")
    app.include_router(registry.router, prefix="/v1")
    app.include_router(market.router, prefix="/v1")
    app.include_router(ledger.router, prefix="/v1")
    from datavalley.api import compute

    app.include_router(compute.router, prefix="/v1")
    return app
