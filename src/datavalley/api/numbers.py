"""Numbers on the wire: every JSON number in a request body must be finite and every integer fit in 64 bits.

Python's JSON parser accepts ``NaN``, ``Infinity`` and ``-Infinity`` (not JSON at all) and turns ``1e999``
into ``inf``; integers are unbounded. Such values would reach the service layer as floats no comparison
handles (NaN is neither above nor below a budget) or as integers no database column holds. This ASGI
middleware reads each JSON request body once, refuses those values anywhere in it with 422
``invalid_input`` (naming the JSON path) before any route runs, and hands the unchanged body on.

Integer path parameters beyond the signed 64-bit range name nothing: :func:`check_id` turns them into
404 ``not_found`` (see the ledger routes).
"""

from __future__ import annotations

import json
import math

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from datavalley.errors import InvalidInput, NotFound

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
MAX_BODY = 64 * 1024 * 1024  # the largest body inspected; larger bodies are refused by the routes anyway


class _Bad(ValueError):
    pass


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Bad(f"number {text} is not finite")
    return value


def _int(text: str) -> int:
    value = int(text)
    if not INT64_MIN <= value <= INT64_MAX:
        raise _Bad(f"integer {text[:40]}{'…' if len(text) > 40 else ''} is outside the signed 64-bit range")
    return value


def _constant(text: str) -> float:
    raise _Bad(f"{text} is not a finite number (JSON has no NaN or Infinity)")


def check_json(raw: bytes) -> InvalidInput | None:
    """The error for a JSON body holding a non-finite number or an out-of-range integer, else None.

    Bodies that are not JSON are left to the route's own validation (which answers 422 as well).
    """
    try:
        json.loads(raw, parse_float=_float, parse_int=_int, parse_constant=_constant)
    except _Bad as exc:
        return InvalidInput(
            f"request body: {exc}; numbers must be finite and integers within ±2^63", field="body"
        )
    except (ValueError, RecursionError):
        return None
    return None


def check_id(value: int, what: str) -> int:
    """An integer identifier from a path: beyond 64 bits it names nothing (404, not a 500 from the DB)."""
    if not 0 <= value <= INT64_MAX:
        raise NotFound(f"{what} {value} does not exist", **{what.replace(" ", "_"): str(value)})
    return value


class FiniteNumbers:
    """ASGI middleware applying :func:`check_json` to POST, PUT and PATCH bodies."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        disconnected: Message | None = None
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnected = message
                break
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        if disconnected is None and body and size <= MAX_BODY:
            err = check_json(body)
            if err is not None:
                await JSONResponse(err.to_dict(), status_code=err.http_status)(scope, receive, send)
                return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                if disconnected is not None:
                    return disconnected
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


__all__ = ["FiniteNumbers", "check_id", "check_json"]
