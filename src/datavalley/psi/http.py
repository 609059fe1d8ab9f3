"""The PSI routes a node mounts (docs/PSI.md section 5): ``app.include_router(psi_router(...), prefix=...)``.

Every request must be signed by a known peer; every answer (errors included) is signed by this node.
A :class:`~datavalley.errors.DatavalleyError` becomes ``{error, message, details}`` with its own status
here, because a router cannot install exception handlers on the app that mounts it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from datavalley.errors import DatavalleyError, InvalidInput
from datavalley.psi.model import PeerDirectory
from datavalley.psi.responder import PsiNode
from datavalley.psi.wire import HEADER_META, HEADER_SIGNATURE, SignedRequest, sign_response, verify_request

__all__ = ["psi_router", "signed_endpoint"]

log = logging.getLogger(__name__)

Handler = Callable[[SignedRequest, bytes], tuple[bytes | dict[str, Any], dict[str, int] | None]]


def _batch(value: str) -> int:
    if not value.isdigit() or len(value) > 9:
        raise InvalidInput(f"batch number must be a non-negative integer, got {value!r}", field="batch")
    return int(value)


def signed_endpoint(
    participant: str,
    *,
    signing_key: Ed25519PrivateKey,
    peers: PeerDirectory,
    skew: int = 300,
    now: Callable[[], float] = time.time,
) -> Callable[[Request, Handler], Awaitable[Response]]:
    """The request/answer wrapper of a node's PSI routes: verify the peer's signature, run the handler
    in a thread, sign the answer (errors included) with ``signing_key``."""

    async def call(request: Request, handler: Handler) -> Response:
        body = await request.body()
        request_signature = b""
        try:
            signed = verify_request(
                peers,
                local=participant,
                method=request.method,
                path=request.url.path,
                headers=request.headers,
                body=body,
                now=int(now()),
                skew=skew,
            )
            request_signature = signed.signature
            content, meta = await run_in_threadpool(handler, signed, body)
            status = 200
        except DatavalleyError as exc:
            content, meta, status = exc.to_dict(), None, exc.http_status
        except Exception:  # a bug: answer a signed error body, keep the traceback in the node's log
            log.exception("PSI request %s %s failed", request.method, request.url.path)
            error = DatavalleyError("internal error while handling the PSI request (see the node's log)")
            content, meta, status = error.to_dict(), None, error.http_status
        if isinstance(content, dict):
            payload, media = json.dumps(content).encode(), "application/json"
        else:
            payload, media = content, "application/octet-stream"
        meta_json = json.dumps(meta, sort_keys=True) if meta is not None else None
        headers = {
            HEADER_SIGNATURE: sign_response(signing_key, request_signature, status, meta_json, payload)
        }
        if meta_json is not None:
            headers[HEADER_META] = meta_json
        return Response(content=payload, status_code=status, media_type=media, headers=headers)

    return call


def psi_router(
    node: PsiNode,
    *,
    signing_key: Ed25519PrivateKey,
    peers: PeerDirectory,
    skew: int = 300,
    now: Callable[[], float] = time.time,
) -> APIRouter:
    """The router of ``node``: requests verified against ``peers``, answers signed with ``signing_key``."""
    router = APIRouter()
    call = signed_endpoint(node.participant, signing_key=signing_key, peers=peers, skew=skew, now=now)

    @router.post("/sessions")
    async def open_session(request: Request) -> Response:
        return await call(request, lambda s, b: (node.open(s.peer, s.seq, b), None))

    @router.post("/sessions/{session_id}/blinded/{k}")
    async def blinded(session_id: str, k: str, request: Request) -> Response:
        return await call(request, lambda s, b: (node.blinded(s.peer, session_id, s.seq, _batch(k), b), None))

    @router.post("/sessions/{session_id}/peer/{k}")
    async def peer_batch(session_id: str, k: str, request: Request) -> Response:
        return await call(request, lambda s, b: node.peer_batch(s.peer, session_id, s.seq, _batch(k)))

    @router.post("/sessions/{session_id}/tags/{k}")
    async def sorted_tags(session_id: str, k: str, request: Request) -> Response:
        return await call(request, lambda s, b: node.sorted_tags(s.peer, session_id, s.seq, _batch(k)))

    @router.post("/sessions/{session_id}/aggregate")
    async def aggregate(session_id: str, request: Request) -> Response:
        return await call(request, lambda s, b: (node.aggregate(s.peer, session_id, s.seq, b), None))

    @router.post("/sessions/{session_id}/finish")
    async def finish(session_id: str, request: Request) -> Response:
        return await call(request, lambda s, b: (node.finish(s.peer, session_id, s.seq, b), None))

    return router
