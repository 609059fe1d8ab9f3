"""Canonical JSON (RFC 8785 JCS) for everything that is hashed or signed.

Objects with string keys, arrays, strings, integers, finite floats, booleans and null. Floats are
written as RFC 8785 section 3.2.2.3 requires (the ECMAScript Number-to-String algorithm over the
shortest round-trip digits), so ``3.0`` is ``3``, ``1e-7`` is ``1e-7`` and ``1e21`` is ``1e+21``; money is
never a float (integer minor units), floats appear only for measured quantities such as privacy costs.
Object keys are sorted by their UTF-16 code units, as RFC 8785 section 3.2.3 requires.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from datavalley.errors import InvalidInput

_MAX_SAFE_INT = 2**53 - 1


def es6_number(value: float) -> str:
    """ECMAScript Number::toString of a finite float (RFC 8785 section 3.2.2.3)."""
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    _, digits_t, exp = Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(map(str, digits_t))
    k = len(digits)
    n = k + int(exp)  # the decimal point sits after n digits
    if k <= n <= 21:
        out = digits + "0" * (n - k)
    elif 0 < n <= 21:
        out = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        out = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        out = digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + ("+" if e >= 0 else "-") + str(abs(e))
    return sign + out


def _check(value: Any, path: str, floats: dict[str, str] | None = None) -> Any:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        if abs(value) > _MAX_SAFE_INT:
            raise InvalidInput(f"canonical JSON: integer at {path} exceeds 2^53-1", field=path)
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"canonical JSON: {value} at {path} is not a JSON number", field=path)
        if floats is None:
            raise InvalidInput(f"canonical JSON: float at {path} is not allowed here", field=path)
        # a placeholder string, replaced by the number's canonical text after serialisation
        token = f"{floats['']}{len(floats)}"
        floats[token] = es6_number(value)
        return token
    if isinstance(value, Mapping):
        out = {}
        for key in sorted(value, key=lambda k: str(k).encode("utf-16-be")):
            if not isinstance(key, str):
                raise InvalidInput(f"canonical JSON: key {key!r} at {path} is not a string", field=path)
            out[key] = _check(value[key], f"{path}.{key}", floats)
        return out
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return [_check(v, f"{path}[{i}]", floats) for i, v in enumerate(value)]
    raise InvalidInput(f"canonical JSON: {type(value).__name__} at {path} is not JSON", field=path)


def canonical_json(value: Any) -> bytes:
    """Serialise ``value`` as RFC 8785 canonical JSON bytes (UTF-8).

    Raises :class:`InvalidInput` for NaN/infinity, non-string keys, unsafe integers and non-JSON types.
    """
    floats = {"": "\x00dvfloat" + secrets.token_hex(8) + ":"}
    checked = _check(value, "$", floats)
    # sort_keys=False: _check already ordered keys by UTF-16 code units.
    text = json.dumps(checked, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    if len(floats) > 1:
        marker = json.dumps(floats[""], ensure_ascii=False)[1:-1]
        for token, number in sorted(floats.items(), key=lambda kv: -len(kv[0])):
            if token:
                text = text.replace(json.dumps(token, ensure_ascii=False), number)
        if marker in text:
            raise AssertionError("canonical JSON: an unreplaced float placeholder remains")
    return text.encode("utf-8")


def digest(value: Any) -> str:
    """``sha256:<hex>`` of the canonical JSON of ``value``: what the ledger records instead of payloads."""
    return "sha256:" + hashlib.sha256(canonical_json(value)).hexdigest()
