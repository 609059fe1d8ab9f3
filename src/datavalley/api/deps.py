"""What every router needs: the caller, the exchange, rendering, the mutation helper, the answer shapes.

Routers import from here (never from ``api/app.py``), and ``api/app.py`` imports the routers: no circle.

Conventions (docs/PROTOCOL.md, "API conventions"): every list answers ``{items, next_cursor}``
(:class:`Page`) and takes ``limit``/``cursor``; every state change answers ``{data, receipts}``
(:class:`Mutation`); field names are snake_case; authentication is ``Authorization: Bearer <token>``
(the OpenAPI ``HTTPBearer`` scheme); every route declares a response model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from datavalley.errors import InvalidInput
from datavalley.exchange import Exchange, Idempotency
from datavalley.identity.model import Principal

T = TypeVar("T")

#: The OpenAPI security scheme (Swagger's "Authorize" button); a missing header is answered by the
#: exchange's own 401, not FastAPI's 403.
bearer = HTTPBearer(auto_error=False, description="An API token: `Authorization: Bearer dvt_…`.")


def exchange_of(request: Request) -> Exchange:
    ex: Exchange = request.app.state.exchange
    return ex


def principal(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> Principal:
    """FastAPI dependency: the caller behind ``Authorization: Bearer <token>`` (401 otherwise)."""
    token = credentials.credentials.strip() if credentials is not None else None
    return exchange_of(request).authenticate(token or None)


Caller = Depends(principal)


def render(value: Any) -> Any:
    """Domain values (frozen dataclasses, enums, datetimes) as JSON-ready data."""
    return TypeAdapter(type(value)).dump_python(value, mode="json")


async def body_of(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def page(result: Any) -> dict[str, Any]:
    """A store page as the list shape ``{items, next_cursor}``."""
    return {"items": [render(i) for i in result.items], "next_cursor": result.next_cursor}


def paged(items: list[Any], limit: int, cursor: str | None) -> dict[str, Any]:
    """``{items, next_cursor}`` over a short list a service returns whole (rights of a resource, versions):
    the cursor is an opaque offset (``o`` + decimal)."""
    start = 0
    if cursor:
        if not re.fullmatch(r"o\d{1,9}", cursor):
            raise InvalidInput("cursor is not a cursor this list issued", field="cursor")
        start = int(cursor[1:])
    chunk = items[start : start + limit]
    more = start + limit < len(items)
    return {
        "items": [i if isinstance(i, dict) else render(i) for i in chunk],
        "next_cursor": f"o{start + limit}" if more else None,
    }


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


# --- answer shapes (response models) ---------------------------------------------------------------


class Receipt(BaseModel):
    """A ledger receipt: the entry, its leaf hash, a signed checkpoint and the inclusion proof."""

    model_config = ConfigDict(extra="allow")
    format: str
    index: int = Field(ge=0)
    entry: str
    leaf_hash: str
    checkpoint: str
    inclusion_proof: list[str]


class Mutation(BaseModel, Generic[T]):
    """The answer to every state change: the new state and the ledger receipts of its events."""

    data: T
    receipts: list[Receipt]


class Page(BaseModel, Generic[T]):
    """The answer to every list: one page of items and the cursor of the next (null on the last page)."""

    items: list[T]
    next_cursor: str | None = None


#: A JSON object whose fields are documented in docs/PROTOCOL.md (used where the shape is open).
Document = dict[str, Any]
