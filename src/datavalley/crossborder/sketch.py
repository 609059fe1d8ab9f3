"""HLL sketches of salted identifier hashes: distinct individuals per exporter and calendar year.

The node hashes each identifier with HMAC-SHA256 under the exporter's secret salt (which never leaves the
node) and feeds the digests into an Apache DataSketches HLL sketch (``lg_k`` = 14, 8-bit registers,
16 KiB). The exchange only ever sees sketches: it unions a resource's sketch into the exporter's
sketch for the year when personal information of that resource crosses a border, so a person exported
under ten contracts counts once.

Error bound: HLL's relative standard error is about 1.04/sqrt(2^lg_k) = 0.81 % at lg_k 14. Thresholds are
decided on the sketch's upper bound at 3 standard deviations (``get_upper_bound(3)``, ≈ 99.7 %
one-sided confidence), never on the estimate — so a count is only ever over-stated: near 100,000 the
exchange switches to the stricter pathway from about 97,600 true individuals. Below roughly 1,000 items
the sketch is in exact list/set mode and the bound is tight.

Malformed sketch bytes (an attacker may send any) are refused with :class:`InvalidInput`; they are
checked for the HLL family, serial version and ``lg_k`` before the library parses them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
from collections.abc import Iterable
from typing import Any

from datavalley.errors import InvalidInput, Unavailable

LG_K = 14
NUM_STD_DEV = 3
_FAMILY_HLL = 7
_MAX_BYTES = 40 + (1 << LG_K)  # HLL_8 compact image: header + one byte per register


def _ds() -> Any:
    try:
        import datasketches  # type: ignore[import-untyped,unused-ignore]
    except ImportError:  # pragma: no cover - the extra is installed wherever tests run
        raise Unavailable(
            "counting individuals across borders needs Apache DataSketches: "
            "pip install 'datavalley[crossborder]'"
        ) from None
    return datasketches


def _empty() -> Any:
    ds = _ds()
    return ds.hll_sketch(LG_K, ds.tgt_hll_type.HLL_8)


def normalise(value: str) -> str:
    """An identifier in one canonical spelling: trimmed, inner spaces/dashes removed, upper-case."""
    return "".join(ch for ch in value.strip() if ch not in " -\t").upper()


def salted(kind: str, value: str, salt: bytes) -> str:
    """HMAC-SHA256(salt, kind:value) as hex: what enters the sketch (never the identifier itself)."""
    return hmac.new(salt, f"{kind}:{normalise(value)}".encode(), hashlib.sha256).hexdigest()


def build(kind: str, values: Iterable[Any], salt: bytes) -> bytes:
    """The sketch of the salted hashes of ``values`` (None and blanks skipped), serialized compactly."""
    if len(salt) < 16:
        raise InvalidInput("the identifier salt must be at least 16 bytes", field="salt")
    sk = _empty()
    for v in values:
        if v is None:
            continue
        text = str(v)
        if normalise(text):
            sk.update(salted(kind, text, salt))
    return bytes(sk.serialize_compact())


def load(data: bytes) -> Any:
    """Parse sketch bytes, refusing anything that is not an HLL sketch with our ``lg_k``."""
    if not isinstance(data, bytes | bytearray) or not 8 <= len(data) <= _MAX_BYTES:
        raise InvalidInput(f"a sketch must be 8 to {_MAX_BYTES} bytes", field="sketch")
    if data[1] != 1 or data[2] != _FAMILY_HLL or data[3] != LG_K:
        raise InvalidInput(
            f"not an HLL sketch with lg_k {LG_K} (DataSketches serial version 1)", field="sketch"
        )
    try:
        sk = _ds().hll_sketch.deserialize(bytes(data))
        est = sk.get_estimate()
        ub = sk.get_upper_bound(NUM_STD_DEV)
    except (ValueError, RuntimeError, IndexError) as exc:
        raise InvalidInput(f"the sketch does not parse: {exc}", field="sketch") from None
    if not (math.isfinite(est) and math.isfinite(ub)) or est < 0 or ub < est:
        raise InvalidInput("the sketch does not parse: impossible estimate", field="sketch")
    return sk


def decode(text: str) -> bytes:
    """Base64 sketch text from the wire → checked bytes."""
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise InvalidInput("sketch is not valid base64", field="sketch") from None
    load(data)
    return data


def encode(data: bytes) -> str:
    return base64.b64encode(data).decode()


def bounds(data: bytes | None) -> tuple[float, int]:
    """(estimate, conservative upper bound) of a sketch; (0, 0) for none."""
    if data is None:
        return 0.0, 0
    sk = load(data)
    return float(sk.get_estimate()), math.ceil(sk.get_upper_bound(NUM_STD_DEV))


def union(*sketches: bytes | None) -> bytes:
    """The union of sketches (None entries ignored), serialized compactly."""
    ds = _ds()
    u = ds.hll_union(LG_K)
    for s in sketches:
        if s is not None:
            u.update(load(s))
    return bytes(u.get_result(ds.tgt_hll_type.HLL_8).serialize_compact())
