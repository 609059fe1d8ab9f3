"""Delivery routes: the Delta Sharing protocol under ``/delta-sharing`` (bearer = a sharing token, errors as
``{errorCode, message}``) and the management API under ``/v1/delivery`` (recipients, tokens, profiles,
leak tracing). Thin shells over :mod:`datavalley.delivery`; see docs/DELIVERY.md."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from datavalley.api.deps import Caller, Document, exchange_of, mutate, render
from datavalley.delivery import service
from datavalley.delivery.server import PREFIX, DeliveryNode, page
from datavalley.errors import (
    BudgetExhausted,
    Conflict,
    DatavalleyError,
    Forbidden,
    InvalidInput,
    NotFound,
    PolicyViolation,
    Unauthenticated,
)
from datavalley.identity.model import Principal

sharing = APIRouter(prefix=PREFIX, tags=["delta-sharing"])
router = APIRouter(prefix="/v1/delivery", tags=["delivery"])

NDJSON = "application/x-ndjson; charset=utf-8"

# OpenAPI for the protocol's routes: the Delta Sharing bearer (a sharing token) and its media types.
_BEARER: dict[str, Any] = {"security": [{"HTTPBearer": []}]}
_JSON: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {"schema": {"type": "object"}}}, "description": "JSON"}
}
_NDJSON: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/x-ndjson": {}}, "description": "NDJSON (Delta Sharing)"}
}
_EMPTY: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/plain": {}}, "description": "no body; Delta-Table-Version header"}
}
_FILE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/octet-stream": {}}, "description": "a Parquet file"}
}
MAX_TRACE_BYTES = 512 * 1024 * 1024


def node_of(request: Request) -> DeliveryNode:
    app = request.app
    node = getattr(app.state, "delivery_node", None)
    if node is None:
        node = app.state.delivery_node = DeliveryNode(exchange_of(request))
    return node


def _protocol_error(exc: DatavalleyError) -> JSONResponse:
    """Our error tree in the protocol's error format. Caps answer 403, not 429: clients retry 429."""
    status, code = {
        InvalidInput: (400, "INVALID_PARAMETER_VALUE"),
        Unauthenticated: (401, "UNAUTHENTICATED"),
        Forbidden: (403, "PERMISSION_DENIED"),
        PolicyViolation: (403, "PERMISSION_DENIED"),
        NotFound: (404, "RESOURCE_DOES_NOT_EXIST"),
        Conflict: (409, "FAILED_PRECONDITION"),
    }.get(type(exc), (500, "INTERNAL_ERROR"))
    if isinstance(exc, BudgetExhausted):
        status, code = 403, "RESOURCE_EXHAUSTED"
    return JSONResponse({"errorCode": code, "message": exc.message}, status_code=status)


def _bearer(request: Request) -> str | None:
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    return secret.strip() if scheme.lower() == "bearer" else None


def _guard(request: Request, fn: Callable[[DeliveryNode, Any], Response]) -> Response:
    node = node_of(request)
    try:
        grant = node.grant(_bearer(request))
        return fn(node, grant)
    except DatavalleyError as exc:
        return _protocol_error(exc)


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _ndjson(version: int, lines: list[dict[str, Any]], extra: dict[str, str] | None = None) -> Response:
    body = "".join(json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n" for line in lines)
    headers = {"Delta-Table-Version": str(version), **(extra or {})}
    return Response(body, media_type=NDJSON, headers=headers)


@sharing.get("/shares", responses=_JSON, openapi_extra=_BEARER)
def list_shares(request: Request, maxResults: str | None = None, pageToken: str | None = None) -> Response:
    def run(node: DeliveryNode, grant: Any) -> Response:
        items = [{"name": node.share_name(grant), "id": grant.contract_id}]
        return JSONResponse(page(items, maxResults, pageToken))

    return _guard(request, run)


@sharing.get("/shares/{share}", responses=_JSON, openapi_extra=_BEARER)
def get_share(request: Request, share: str) -> Response:
    def run(node: DeliveryNode, grant: Any) -> Response:
        node.check_share(grant, share)
        return JSONResponse({"share": {"name": node.share_name(grant), "id": grant.contract_id}})

    return _guard(request, run)


@sharing.get("/shares/{share}/schemas", responses=_JSON, openapi_extra=_BEARER)
def list_schemas(
    request: Request, share: str, maxResults: str | None = None, pageToken: str | None = None
) -> Response:
    def run(node: DeliveryNode, grant: Any) -> Response:
        node.check_share(grant, share)
        items = [{"name": node.schema_name(grant), "share": node.share_name(grant)}]
        return JSONResponse(page(items, maxResults, pageToken))

    return _guard(request, run)


def _table_items(node: DeliveryNode, grant: Any) -> list[dict[str, Any]]:
    return [
        {
            "name": t.name,
            "schema": node.schema_name(grant),
            "share": node.share_name(grant),
            "shareId": grant.contract_id,
            "id": t.resource_id,
        }
        for t in node.tables(grant)
    ]


@sharing.get("/shares/{share}/schemas/{schema}/tables", responses=_JSON, openapi_extra=_BEARER)
def list_tables(
    request: Request,
    share: str,
    schema: str,
    maxResults: str | None = None,
    pageToken: str | None = None,
) -> Response:
    def run(node: DeliveryNode, grant: Any) -> Response:
        node.check_share(grant, share, schema)
        return JSONResponse(page(_table_items(node, grant), maxResults, pageToken))

    return _guard(request, run)


@sharing.get("/shares/{share}/all-tables", responses=_JSON, openapi_extra=_BEARER)
def list_all_tables(
    request: Request, share: str, maxResults: str | None = None, pageToken: str | None = None
) -> Response:
    def run(node: DeliveryNode, grant: Any) -> Response:
        node.check_share(grant, share)
        return JSONResponse(page(_table_items(node, grant), maxResults, pageToken))

    return _guard(request, run)


def _version_response(
    request: Request, share: str, schema: str, table: str, starting: str | None
) -> Response:
    def run(node: DeliveryNode, grant: Any) -> Response:
        ref = node.table(grant, share, schema, table)
        if starting:
            version = node.version_at(ref.resource_id, starting, "startingTimestamp", at_or_after=True)
        else:
            version = node.current_version(ref.resource_id)
        return Response(status_code=200, headers={"Delta-Table-Version": str(version)})

    return _guard(request, run)


@sharing.get(
    "/shares/{share}/schemas/{schema}/tables/{table}/version", responses=_EMPTY, openapi_extra=_BEARER
)
def table_version(
    request: Request,
    share: str,
    schema: str,
    table: str,
    startingTimestamp: str | None = None,
) -> Response:
    return _version_response(request, share, schema, table, startingTimestamp)


@sharing.head("/shares/{share}/schemas/{schema}/tables/{table}", responses=_EMPTY, openapi_extra=_BEARER)
def table_version_head(request: Request, share: str, schema: str, table: str) -> Response:
    return _version_response(request, share, schema, table, None)


@sharing.get(
    "/shares/{share}/schemas/{schema}/tables/{table}/metadata", responses=_NDJSON, openapi_extra=_BEARER
)
def table_metadata(request: Request, share: str, schema: str, table: str) -> Response:
    def run(node: DeliveryNode, grant: Any) -> Response:
        version, lines = node.metadata(grant, share, schema, table)
        return _ndjson(version, lines)

    return _guard(request, run)


@sharing.post(
    "/shares/{share}/schemas/{schema}/tables/{table}/query", responses=_NDJSON, openapi_extra=_BEARER
)
async def table_query(request: Request, share: str, schema: str, table: str) -> Response:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return _protocol_error(InvalidInput("the request body must be a JSON object"))
    base = _base(request)

    def run(node: DeliveryNode, grant: Any) -> Response:
        served = node.query(grant, share, schema, table, body, base)
        return _served(served)

    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(_guard, request, run)


def _served(served: Any) -> Response:
    extra = {}
    if served.read is not None:
        extra["X-Datavalley-Use"] = served.read.use_id
        extra["X-Datavalley-Read"] = served.read.id
    if served.receipt_index is not None:
        extra["X-Datavalley-Receipt-Index"] = str(served.receipt_index)
    return _ndjson(served.version, served.lines, extra)


@sharing.get(
    "/shares/{share}/schemas/{schema}/tables/{table}/changes", responses=_NDJSON, openapi_extra=_BEARER
)
def table_changes(request: Request, share: str, schema: str, table: str) -> Response:
    params = dict(request.query_params)
    base = _base(request)

    def run(node: DeliveryNode, grant: Any) -> Response:
        return _served(node.changes(grant, share, schema, table, params, base))

    return _guard(request, run)


def _file(request: Request, entry: str, name: str, exp: str, tok: str, sig: str) -> Response:
    try:
        path = node_of(request).verify_url(entry, name, exp, tok, sig)
    except DatavalleyError as exc:
        return _protocol_error(exc)
    return FileResponse(path, media_type="application/octet-stream")


@sharing.get("/files/{entry}/{name}", responses=_FILE)
def get_file(
    request: Request, entry: str, name: str, exp: str = "", tok: str = "", sig: str = ""
) -> Response:
    """A cached Parquet file under a signed URL (no bearer: the URL is the credential, ≤ 15 minutes);
    ``Range`` requests are answered with 206."""
    return _file(request, entry, name, exp, tok, sig)


@sharing.head("/files/{entry}/{name}", responses=_FILE)
def head_file(
    request: Request, entry: str, name: str, exp: str = "", tok: str = "", sig: str = ""
) -> Response:
    """The file's ``Content-Length`` (fsspec readers ask first)."""
    return _file(request, entry, name, exp, tok, sig)


# --- management: recipients, tokens, profiles, tracing ---------------------------------------------


def _profile(request: Request, issued: Any, endpoint: str | None) -> dict[str, Any]:
    ep = endpoint or f"{_base(request)}{PREFIX}/"
    return {
        "shareCredentialsVersion": 1,
        "endpoint": ep,
        "bearerToken": issued.secret,
        "expirationTime": issued.expires_at.isoformat().replace("+00:00", "Z"),
    }


@router.post("/contracts/{contract_id}/tokens", status_code=201, response_model=Document)
async def issue_token(request: Request, contract_id: str, caller: Principal = Caller) -> JSONResponse:
    """A new sharing token for a recipient of the contract, with its Delta Sharing profile (shown once)."""
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object")
    unknown = sorted(set(body) - {"recipient", "rotate", "ttl_days", "endpoint"})
    if unknown:
        raise InvalidInput(f"unknown fields {unknown}", field=unknown[0])
    endpoint = body.get("endpoint")
    if endpoint is not None and (
        not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://"))
    ):
        raise InvalidInput("endpoint must be an http(s) URL", field="endpoint")
    rotate = body.get("rotate", False)
    if not isinstance(rotate, bool):
        raise InvalidInput("rotate must be true or false", field="rotate")

    def shape(issued: Any) -> dict[str, Any]:
        return {
            "token_id": issued.id,
            "recipient_id": issued.recipient_id,
            "contract_id": issued.contract_id,
            "expires_at": issued.expires_at.isoformat(),
            "revoked_token_ids": list(issued.revoked_token_ids),
            "profile": _profile(request, issued, endpoint),
        }

    def redact(stored: dict[str, Any]) -> dict[str, Any]:
        data = dict(stored["data"])
        data["profile"] = {**data["profile"], "bearerToken": "(shown once)"}
        return {**stored, "data": data}

    return mutate(
        request,
        caller,
        service.issue_token,
        contract_id,
        body=body,
        status=201,
        shape=shape,
        redact=redact,
        recipient=body.get("recipient", "default"),
        rotate=rotate,
        ttl_days=body.get("ttl_days"),
    )


@router.get("/contracts/{contract_id}/recipients")
def list_recipients(request: Request, contract_id: str, caller: Principal = Caller) -> dict[str, Any]:
    items = exchange_of(request).read(caller, service.list_recipients, contract_id)
    return {"items": [render(i) for i in items]}


@router.post("/contracts/{contract_id}/recipients/{recipient}/revoke", response_model=Document)
def revoke_recipient(
    request: Request, contract_id: str, recipient: str, caller: Principal = Caller
) -> JSONResponse:
    return mutate(request, caller, service.revoke_recipient, contract_id, recipient=recipient)


@router.post("/tokens/{token_id}/revoke", response_model=Document)
def revoke_token(request: Request, token_id: str, caller: Principal = Caller) -> JSONResponse:
    def shape(t: Any) -> dict[str, Any]:
        return {"token_id": t.id, "contract_id": t.contract_id, "recipient_id": t.recipient_id}

    return mutate(request, caller, service.revoke_token, token_id, shape=shape)


@router.post("/trace")
async def trace(request: Request, filename: str = "leaked.csv", caller: Principal = Caller) -> dict[str, Any]:
    """Trace a leaked copy (the request body is the file) to the recipient whose watermark it carries."""
    from starlette.concurrency import run_in_threadpool

    from datavalley.delivery.tracing import trace_file

    # authorise before judging the input: a caller who may not trace learns nothing from validation
    await run_in_threadpool(exchange_of(request).read, caller, service.trace_candidates)
    suffix = Path(filename).suffix.lower()
    if suffix not in (".csv", ".parquet", ".jsonl", ".ndjson", ".tsv", ".txt", ".json"):
        raise InvalidInput("filename must end in .csv, .parquet or .jsonl", field="filename")
    data = await request.body()
    if not data:
        raise InvalidInput("the request body must be the suspect file", field="body")
    if len(data) > MAX_TRACE_BYTES:
        raise InvalidInput("the suspect file is larger than 512 MiB", field="body")
    with tempfile.TemporaryDirectory(prefix="dv-trace-") as tmp:
        path = Path(tmp) / f"suspect{suffix}"
        path.write_bytes(data)
        report = await run_in_threadpool(trace_file, exchange_of(request), node_of(request), caller, path)
    return {"data": render(report)}
