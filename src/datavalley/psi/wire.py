"""Signed requests and answers, and the JSON control messages of a PSI session (docs/PSI.md section 5)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from datavalley.canonical import canonical_json
from datavalley.errors import InvalidInput, Unauthenticated
from datavalley.psi.model import Mode, PeerDirectory
from datavalley.psi.normalise import IdKind
from datavalley.psi.suites import Suite

__all__ = [
    "HEADER_META",
    "HEADER_PEER",
    "HEADER_SEQ",
    "HEADER_SIGNATURE",
    "HEADER_TIME",
    "PROTOCOL",
    "OpenRequest",
    "SignedRequest",
    "sha256",
    "sign_request",
    "sign_response",
    "verify_request",
    "verify_response",
]

PROTOCOL = "dv-psi/1"
HEADER_PEER = "DV-Peer"
HEADER_TIME = "DV-Time"
HEADER_SEQ = "DV-Seq"
HEADER_SIGNATURE = "DV-Signature"
HEADER_META = "DV-Meta"
_REQUEST_ID = re.compile(r"[0-9a-f]{32}")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _request_message(method: str, path: str, peer: str, to: str, time: int, seq: int, body: bytes) -> bytes:
    return canonical_json(
        {
            "v": "dv-psi-request/1",
            "method": method,
            "path": path,
            "peer": peer,
            "to": to,
            "time": time,
            "seq": seq,
            "body": sha256(body),
        }
    )


def sign_request(
    key: Ed25519PrivateKey, *, method: str, path: str, peer: str, to: str, time: int, seq: int, body: bytes
) -> dict[str, str]:
    """The authentication headers of a request from ``peer`` to ``to``."""
    signature = key.sign(_request_message(method, path, peer, to, time, seq, body))
    return {
        HEADER_PEER: peer,
        HEADER_TIME: str(time),
        HEADER_SEQ: str(seq),
        HEADER_SIGNATURE: base64.b64encode(signature).decode("ascii"),
    }


@dataclass(frozen=True)
class SignedRequest:
    """A request whose signature verified: who sent it, its sequence number and its signature."""

    peer: str
    seq: int
    signature: bytes


def _int_header(headers: Mapping[str, str], name: str) -> int:
    value = headers.get(name)
    if value is None or not re.fullmatch(r"-?[0-9]{1,19}", value):
        raise Unauthenticated(f"header {name} is missing or not an integer", header=name)
    return int(value)


def verify_request(
    peers: PeerDirectory,
    *,
    local: str,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    now: int,
    skew: int,
) -> SignedRequest:
    """Check a request's signature, addressee and clock; raises :class:`Unauthenticated`."""
    peer = headers.get(HEADER_PEER)
    if not peer:
        raise Unauthenticated(
            f"header {HEADER_PEER} is missing: PSI requests must be signed", header=HEADER_PEER
        )
    time = _int_header(headers, HEADER_TIME)
    seq = _int_header(headers, HEADER_SEQ)
    try:
        signature = base64.b64decode(headers.get(HEADER_SIGNATURE, ""), validate=True)
    except ValueError:
        raise Unauthenticated(f"header {HEADER_SIGNATURE} is not base64", header=HEADER_SIGNATURE) from None
    if abs(now - time) > skew:
        raise Unauthenticated(
            f"request time {time} is {abs(now - time)} s from this node's clock (allowed: {skew} s)",
            peer=peer,
        )
    key = peers.public_key(peer)
    try:
        key.verify(signature, _request_message(method, path, peer, local, time, seq, body))
    except InvalidSignature:
        raise Unauthenticated(f"signature of {peer}'s {method} {path} does not verify", peer=peer) from None
    return SignedRequest(peer, seq, signature)


def _response_message(request_signature: bytes, status: int, meta: str | None, body: bytes) -> bytes:
    return canonical_json(
        {
            "v": "dv-psi-response/1",
            "request": sha256(request_signature),
            "status": status,
            "meta": meta,
            "body": sha256(body),
        }
    )


def sign_response(
    key: Ed25519PrivateKey, request_signature: bytes, status: int, meta: str | None, body: bytes
) -> str:
    return base64.b64encode(key.sign(_response_message(request_signature, status, meta, body))).decode(
        "ascii"
    )


def verify_response(
    key: Ed25519PublicKey,
    request_signature: bytes,
    status: int,
    meta: str | None,
    body: bytes,
    signature: str,
) -> None:
    """Check that the responder signed this answer to this request (raises :class:`Unauthenticated`)."""
    try:
        key.verify(
            base64.b64decode(signature, validate=True),
            _response_message(request_signature, status, meta, body),
        )
    except (InvalidSignature, ValueError):
        raise Unauthenticated("the responder's answer is not signed by its registered key") from None


def _field(body: Mapping[str, Any], name: str, kind: type) -> Any:
    value = body.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidInput(f"open request: {name} must be a {kind.__name__}, got {value!r}", field=name)
    return value


def _enum(cls: type[Any], body: Mapping[str, Any], name: str) -> Any:
    value = _field(body, name, str)
    try:
        return cls(value)
    except ValueError:
        allowed = [m.value for m in cls]
        raise InvalidInput(f"open request: {name} {value!r} is not one of {allowed}", field=name) from None


@dataclass(frozen=True)
class OpenRequest:
    """The initiator's proposal (docs/PSI.md section 5)."""

    request_id: str
    contract_id: str
    mode: Mode
    suite: Suite
    id_kind: IdKind
    set_size: int
    columns: tuple[str, ...] = ()

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "v": PROTOCOL,
                "request_id": self.request_id,
                "contract_id": self.contract_id,
                "mode": self.mode.value,
                "suite": self.suite.value,
                "id_kind": self.id_kind.value,
                "set_size": self.set_size,
                "columns": list(self.columns),
            }
        ).encode()

    @classmethod
    def parse(cls, data: bytes) -> OpenRequest:
        """Parse and check an open request (raises :class:`InvalidInput` naming the field)."""
        try:
            body = json.loads(data)
        except ValueError as exc:
            raise InvalidInput(f"open request is not JSON: {exc}", field="body") from None
        if not isinstance(body, dict):
            raise InvalidInput("open request must be a JSON object", field="body")
        if body.get("v") != PROTOCOL:
            raise InvalidInput(f"open request: v must be {PROTOCOL!r}, got {body.get('v')!r}", field="v")
        request_id = _field(body, "request_id", str)
        if not _REQUEST_ID.fullmatch(request_id):
            raise InvalidInput("open request: request_id must be 32 lowercase hex digits", field="request_id")
        set_size = _field(body, "set_size", int)
        if set_size < 0:
            raise InvalidInput(f"open request: set_size must be >= 0, got {set_size}", field="set_size")
        columns = _field(body, "columns", list)
        if not all(isinstance(c, str) and c for c in columns) or len(set(columns)) != len(columns):
            raise InvalidInput("open request: columns must be distinct non-empty strings", field="columns")
        mode = _enum(Mode, body, "mode")
        if columns and mode is not Mode.AGGREGATE:
            raise InvalidInput(
                f"open request: columns are only for aggregate mode, not {mode}", field="columns"
            )
        return cls(
            request_id=request_id,
            contract_id=_field(body, "contract_id", str),
            mode=mode,
            suite=_enum(Suite, body, "suite"),
            id_kind=_enum(IdKind, body, "id_kind"),
            set_size=set_size,
            columns=tuple(columns),
        )
