"""Canonical JSON (RFC 8785 JCS) for everything that is hashed or signed.

Only the JSON subset datavalley signs is accepted: objects with string keys, arrays, strings, integers,
booleans and null. Floats are refused, because their canonical form (ECMAScript number formatting) is a
classic source of verifier disagreement; amounts are integer minor units and ratios are strings.
Object keys are sorted by their UTF-16 code units, as RFC 8785 section 3.2.3 requires.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from datavalley.errors import InvalidInput

_MAX_SAFE_INT = 2**53 - 1


def _check(value: Any, path: str) -> Any:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        if abs(value) > _MAX_SAFE_INT:
            raise InvalidInput(f"canonical JSON: integer at {path} exceeds 2^53-1", field=path)
        return value
    if isinstance(value, float):
        raise InvalidInput(
            f"canonical JSON: float at {path} is not allowed (use integers or strings)", field=path
        )
    if isinstance(value, Mapping):
        out = {}
        for key in sorted(value, key=lambda k: str(k).encode("utf-16-be")):
            if not isinstance(key, str):
                raise InvalidInput(f"canonical JSON: key {key!r} at {path} is not a string", field=path)
            out[key] = _check(value[key], f"{path}.{key}")
        return out
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return [_check(v, f"{path}[{i}]") for i, v in enumerate(value)]
    raise InvalidInput(f"canonical JSON: {type(value).__name__} at {path} is not JSON", field=path)


def canonical_json(value: Any) -> bytes:
    """Serialise ``value`` as RFC 8785 canonical JSON bytes (UTF-8).

    Raises :class:`InvalidInput` for floats, non-string keys, unsafe integers and non-JSON types.
    """
    checked = _check(value, "$")
    # sort_keys=False: _check already ordered keys by UTF-16 code units.
    return json.dumps(checked, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def digest(value: Any) -> str:
    """``sha256:<hex>`` of the canonical JSON of ``value``: what the ledger records instead of payloads."""
    return "sha256:" + hashlib.sha256(canonical_json(value)).hexdigest()
