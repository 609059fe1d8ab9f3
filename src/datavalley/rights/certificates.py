"""Registration certificates: a signed, offline-verifiable record of a registered data resource version.

A certificate is a JSON document signed by the exchange key, with a printable HTML rendering
(:func:`render_html`). It carries the ledger receipt of the version's registration event, so anyone holding
the exchange's verifier key can check it without contacting the exchange (``datavalley cert verify FILE``).

Format (``datavalley-registration-certificate/v1``)::

    {"format": "datavalley-registration-certificate/v1",
     "certificate_id": "c_<26 chars>",
     "issued_at": "2026-11-22T07:30:00Z",
     "issuer": {"origin": "<ledger origin>", "verifier_key": "<origin>+<hex key id>+<base64(0x01‖pubkey)>"},
     "resource": {"id": "r_…", "name": "…", "version": 1, "fingerprint": "dvfp1:…", "row_count": 1000,
                  "format": "csv", "schema_digest": "sha256:<hex>"},
     "holder": {"participant_id": "p_…", "name": "…", "country": "CN", "registry_id": "…"},
     "rights": [{"id": "g_…", "kind": "holding" | "processing_use" | "product_operation",
                 "holder_id": "p_…", "grantor_id": "p_…" | null,
                 "scope": {"purposes": ["*"], "territories": ["*"], "valid_from": "<ISO-8601>",
                           "valid_until": "<ISO-8601>" | null, "sublicensable": true}}, …],
     "classification": {"sector": "transport", "grade": "general" | "important" | "core",
                        "confirmed": false},
     "validity": {"from": "<ISO-8601 with offset>", "until": "<ISO-8601 with offset>"},
     "registration_event": {"type": "resource.registered" | "resource.changed",
                            "payload": {"resource": "r_…", "fingerprint": "dvfp1:…", "version": 1,
                                        "holder": "p_…", …}},
     "receipt": <datavalley-receipt/v1 object, section 4>,
     "signature": "<base64 Ed25519 signature>"}

- Every field above is required and no other field is allowed in the certificate's own objects;
  ``registration_event.payload`` is the event payload exactly as the exchange recorded it (non-personal:
  IDs, digests, grade, version; at least ``resource``, ``fingerprint``, ``version`` and ``holder``) and
  ``receipt`` is a ledger receipt exactly as the ledger returns it.
- ``signature`` is the exchange key's Ed25519 signature over
  ``b"datavalley-certificate/v1\\n" + canonical_json(certificate without "signature")`` (RFC 8785). The
  prefix separates this signature domain from checkpoint notes signed by the same key.

Verification (:func:`verify_certificate`), trusting only the exchange verifier key (pinned, or else the
certificate's own ``issuer.verifier_key``, which proves nothing against a forger and is reported as such):

1. the signature verifies with that key (and, when a key is pinned, the issuer key is the pinned one);
2. the receipt verifies: its checkpoint is signed by that key, for the issuer's origin, and its inclusion
   proof puts the entry in the checkpoint's tree;
3. the entry's ``type`` equals ``registration_event.type`` and its ``payload`` equals
   ``digest(registration_event.payload)`` (``sha256:`` + hex SHA-256 of its canonical JSON), so the
   certificate carries exactly the payload the ledger committed to;
4. the payload's ``resource``, ``fingerprint``, ``version`` and ``holder`` equal ``resource.id``,
   ``resource.fingerprint``, ``resource.version`` and ``holder.participant_id``; if the payload has them,
   ``row_count``, ``schema_digest``, ``sector``, ``grade`` and ``valid_until`` equal the certificate's
   (``valid_until`` compared as an instant with ``validity.until``); every right is held by the holder;
5. ``validity.from`` is not after ``validity.until``.

Whether the certificate is still in force (validity against today's date, a later change, transfer,
cancellation or revocation on the ledger) is a separate question that a signed document cannot answer on
its own: the exchange's signed status answers it online (:mod:`datavalley.rights.cert_status`).
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from datavalley.canonical import canonical_json, digest
from datavalley.errors import IntegrityError, InvalidInput
from datavalley.ledger.commitment import reveal
from datavalley.ledger.note import Checkpoint, NoteError, Signer, Verifier, parse_note, parse_verifier_key
from datavalley.ledger.service import RECEIPT_FORMAT
from datavalley.ledger.verify import verify_receipt
from datavalley.rights.model import Grade, RightKind

__all__ = [
    "CERTIFICATE_FORMAT",
    "REGISTRATION_EVENT_TYPES",
    "SIGNATURE_DOMAIN",
    "CertificateCheck",
    "build_certificate",
    "render_html",
    "sign_certificate",
    "verify_certificate",
]

CERTIFICATE_FORMAT: Final = "datavalley-registration-certificate/v1"
SIGNATURE_DOMAIN: Final = b"datavalley-certificate/v1\n"
"""Prefix of the signed bytes, so a certificate signature can never be mistaken for another signature."""
REGISTRATION_EVENT_TYPES: Final = ("resource.registered", "resource.changed", "resource.transferred")
"""Event types that issue a certificate: a resource version's registration, or its holding transfer."""

_CERTIFICATE_ID = re.compile(r"c_[0-9A-Za-z]+")
_ISSUED_AT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?Z")
_ED25519_SIG_SIZE: Final = 64

# The fields of each object of the format, with their accepted types. Exact key sets keep the format
# unambiguous: an unknown field is refused rather than signed by the issuer and ignored by a verifier.
_TOP: Final = (
    "format",
    "certificate_id",
    "issued_at",
    "issuer",
    "resource",
    "holder",
    "rights",
    "classification",
    "validity",
    "registration_event",
    "receipt",
)
_STR = (str,)
_ISSUER: Final = {"origin": _STR, "verifier_key": _STR}
_RESOURCE: Final = {
    "id": _STR,
    "name": _STR,
    "version": (int,),
    "fingerprint": _STR,
    "row_count": (int,),
    "format": _STR,
    "schema_digest": _STR,
}
_HOLDER: Final = {"participant_id": _STR, "name": _STR, "country": _STR, "registry_id": _STR}
_RIGHT: Final = {
    "id": _STR,
    "kind": _STR,
    "holder_id": _STR,
    "grantor_id": (str, type(None)),
    "scope": (dict,),
}
_SCOPE: Final = {
    "purposes": (list,),
    "territories": (list,),
    "valid_from": _STR,
    "valid_until": (str, type(None)),
    "sublicensable": (bool,),
}
_CLASSIFICATION: Final = {"sector": _STR, "grade": _STR, "confirmed": (bool,)}
_VALIDITY: Final = {"from": _STR, "until": _STR}
_EVENT: Final = {"type": _STR, "payload": (dict,)}
_PAYLOAD_REQUIRED: Final = {"resource": _STR, "fingerprint": _STR, "version": (int,), "holder": _STR}


# ---------------------------------------------------------------------------------------------------------
# Shape checks (malformed input raises InvalidInput naming the field)
# ---------------------------------------------------------------------------------------------------------


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInput(f"certificate field {where!r} must be an object", field=where)
    return value


def _fields(
    value: Any, where: str, spec: Mapping[str, tuple[type, ...]], *, exact: bool = True
) -> dict[str, Any]:
    """Check that ``value`` is an object with the fields of ``spec`` (and, if ``exact``, no others)."""
    obj = _object(value, where)
    for name, types in spec.items():
        path = f"{where}.{name}" if where else name
        if name not in obj:
            raise InvalidInput(f"certificate field {path!r} is missing", field=path)
        item = obj[name]
        # bool is an int subclass: a version of True is a bug in the producer, not version 1.
        if isinstance(item, bool) and bool not in types:
            raise InvalidInput(f"certificate field {path!r} must not be a boolean", field=path)
        if not isinstance(item, types):
            wanted = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise InvalidInput(f"certificate field {path!r} must be {wanted}", field=path)
        if isinstance(item, str) and not item and type(None) not in types:
            raise InvalidInput(f"certificate field {path!r} must not be empty", field=path)
    if exact:
        unknown = sorted(set(obj) - set(spec))
        if unknown:
            path = f"{where}.{unknown[0]}" if where else unknown[0]
            raise InvalidInput(f"certificate field {path!r} is not part of {CERTIFICATE_FORMAT}", field=path)
    return obj


def _instant(value: str, where: str) -> datetime:
    """Parse an ISO-8601 timestamp that carries a UTC offset (a bare local time is ambiguous)."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"certificate field {where!r} is not an ISO-8601 timestamp", field=where) from None
    if parsed.tzinfo is None:
        raise InvalidInput(f"certificate field {where!r} must carry a UTC offset", field=where)
    return parsed


def _string_list(value: list[Any], where: str) -> None:
    if not all(isinstance(v, str) and v for v in value):
        raise InvalidInput(f"certificate field {where!r} must be a list of non-empty strings", field=where)


def _check_shape(doc: Any, *, signed: bool) -> dict[str, Any]:
    """Check every field of a certificate (with ``signature`` iff ``signed``); return it as a dict.

    The receipt is only checked to be a receipt object here; :func:`verify_receipt` parses the rest.
    """
    if not isinstance(doc, dict):
        raise InvalidInput("a certificate must be a JSON object", field="certificate")
    if "format" in doc and doc["format"] != CERTIFICATE_FORMAT:
        raise InvalidInput(
            f"not a registration certificate (format must be {CERTIFICATE_FORMAT!r})", field="format"
        )
    top: dict[str, tuple[type, ...]] = dict.fromkeys(_TOP, (object,))
    if signed:
        top["signature"] = _STR
    _fields(doc, "", top)
    if not isinstance(doc["certificate_id"], str) or not _CERTIFICATE_ID.fullmatch(doc["certificate_id"]):
        raise InvalidInput("certificate_id must look like c_<letters and digits>", field="certificate_id")
    if not isinstance(doc["issued_at"], str) or not _ISSUED_AT.fullmatch(doc["issued_at"]):
        raise InvalidInput("issued_at must be an ISO-8601 UTC timestamp ending in Z", field="issued_at")
    _instant(doc["issued_at"], "issued_at")
    _fields(doc["issuer"], "issuer", _ISSUER)
    resource = _fields(doc["resource"], "resource", _RESOURCE)
    if resource["version"] < 1:
        raise InvalidInput(
            "certificate field 'resource.version' must be at least 1", field="resource.version"
        )
    if resource["row_count"] < 0:
        raise InvalidInput(
            "certificate field 'resource.row_count' must not be negative", field="resource.row_count"
        )
    _fields(doc["holder"], "holder", _HOLDER)
    if not isinstance(doc["rights"], list):
        raise InvalidInput("certificate field 'rights' must be a list", field="rights")
    for i, raw in enumerate(doc["rights"]):
        right = _fields(raw, f"rights[{i}]", _RIGHT)
        if right["kind"] not in {k.value for k in RightKind}:
            kinds = ", ".join(k.value for k in RightKind)
            raise InvalidInput(
                f"certificate field 'rights[{i}].kind' must be one of {kinds}",
                field=f"rights[{i}].kind",
            )
        scope = _fields(right["scope"], f"rights[{i}].scope", _SCOPE)
        _string_list(scope["purposes"], f"rights[{i}].scope.purposes")
        _string_list(scope["territories"], f"rights[{i}].scope.territories")
        _instant(scope["valid_from"], f"rights[{i}].scope.valid_from")
        if scope["valid_until"] is not None:
            _instant(scope["valid_until"], f"rights[{i}].scope.valid_until")
    classification = _fields(doc["classification"], "classification", _CLASSIFICATION)
    if classification["grade"] not in {g.value for g in Grade}:
        raise InvalidInput(
            f"certificate field 'classification.grade' must be one of {', '.join(g.value for g in Grade)}",
            field="classification.grade",
        )
    validity = _fields(doc["validity"], "validity", _VALIDITY)
    _instant(validity["from"], "validity.from")
    _instant(validity["until"], "validity.until")
    event = _fields(doc["registration_event"], "registration_event", _EVENT)
    # The payload is the ledger's record, not ours: only the keys the checks rely on are required.
    _fields(event["payload"], "registration_event.payload", _PAYLOAD_REQUIRED, exact=False)
    receipt = _object(doc["receipt"], "receipt")
    if receipt.get("format") != RECEIPT_FORMAT:
        raise InvalidInput(f"certificate field 'receipt' must be a {RECEIPT_FORMAT} object", field="receipt")
    return doc


def _signed_bytes(doc: dict[str, Any]) -> bytes:
    return SIGNATURE_DOMAIN + canonical_json({k: v for k, v in doc.items() if k != "signature"})


def _parse_key(vkey: str, where: str) -> Verifier:
    try:
        return parse_verifier_key(vkey)
    except NoteError as exc:
        raise InvalidInput(f"{where} is not an exchange verifier key: {exc}", field=where) from exc


def _signature_bytes(value: str) -> bytes:
    """Decode the signature, accepting only canonical base64 so a signature has exactly one spelling."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("certificate signature is not valid base64", field="signature") from None
    if base64.b64encode(raw).decode("ascii") != value:
        raise InvalidInput("certificate signature is not canonical base64", field="signature")
    if len(raw) != _ED25519_SIG_SIZE:
        raise InvalidInput(
            f"certificate signature is {len(raw)} bytes, an Ed25519 signature is 64", field="signature"
        )
    return raw


# ---------------------------------------------------------------------------------------------------------
# Building and signing
# ---------------------------------------------------------------------------------------------------------


def build_certificate(
    *,
    certificate_id: str,
    issued_at: datetime,
    origin: str,
    verifier_key: str,
    resource: dict[str, Any],
    holder: dict[str, Any],
    rights: list[dict[str, Any]],
    classification: dict[str, Any],
    validity: dict[str, Any],
    registration_event: dict[str, Any],
    receipt: dict[str, Any],
) -> dict[str, Any]:
    """Assemble an unsigned certificate document (see the module docstring for the format).

    ``issued_at`` must be timezone-aware; it is written in UTC to the second with a ``Z`` suffix.

    Raises:
        InvalidInput: if a field is missing, has the wrong type or an unknown value, ``issued_at`` is naive,
            ``verifier_key`` is not an exchange (Ed25519 note) verifier key, the registration event type is
            not one that creates a resource version, or the document is not canonical JSON (e.g. a float).
    """
    if not isinstance(issued_at, datetime) or issued_at.tzinfo is None:
        raise InvalidInput("issued_at must be a timezone-aware datetime", field="issued_at")
    doc: dict[str, Any] = {
        "format": CERTIFICATE_FORMAT,
        "certificate_id": certificate_id,
        "issued_at": issued_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "issuer": {"origin": origin, "verifier_key": verifier_key},
        "resource": resource,
        "holder": holder,
        "rights": rights,
        "classification": classification,
        "validity": validity,
        "registration_event": registration_event,
        "receipt": receipt,
    }
    _check_shape(doc, signed=False)
    _parse_key(verifier_key, "issuer.verifier_key")
    if registration_event["type"] not in REGISTRATION_EVENT_TYPES:
        raise InvalidInput(
            f"registration_event.type {registration_event['type']!r} does not create a resource version "
            f"(expected one of {', '.join(REGISTRATION_EVENT_TYPES)})",
            field="registration_event.type",
        )
    # Fail here, not at signing or verification time, if something is not canonical JSON.
    canonical_json(doc)
    # A deep copy through JSON, so later changes to the caller's dicts cannot alter what gets signed.
    copied: dict[str, Any] = json.loads(canonical_json(doc))
    return copied


def sign_certificate(document: dict[str, Any], signer: Signer) -> dict[str, Any]:
    """Return a copy of the unsigned ``document`` with the exchange's ``signature`` added.

    Raises:
        InvalidInput: if the document is malformed or already signed, or ``signer`` is not the key its
            ``issuer.verifier_key`` names (the certificate could then never verify).
        TypeError: if ``signer`` is not a :class:`Signer`.
    """
    if not isinstance(signer, Signer):
        raise TypeError(f"sign_certificate needs a Signer, got {type(signer).__name__}")
    if isinstance(document, dict) and "signature" in document:
        raise InvalidInput("the certificate is already signed", field="signature")
    doc = _check_shape(document, signed=False)
    named = _parse_key(doc["issuer"]["verifier_key"], "issuer.verifier_key")
    if (named.name, named.public_key) != (signer.name, signer.public_key):
        raise InvalidInput(
            f"the signer {signer.name}+{signer.key_id.hex()} is not the issuer key "
            f"{named.name}+{named.key_id.hex()}",
            field="issuer.verifier_key",
        )
    signed: dict[str, Any] = json.loads(canonical_json(doc))
    signed["signature"] = base64.b64encode(signer.sign(_signed_bytes(doc))).decode("ascii")
    return signed


# ---------------------------------------------------------------------------------------------------------
# Verification
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CertificateCheck:
    """The result of verifying a certificate offline.

    ``ok`` is true iff there are no findings. ``resource_id``, ``fingerprint`` and ``holder`` (the holder's
    participant ID) are what the certificate states; they are established only when ``ok``.
    ``checkpoint_size`` is the size of the receipt's checkpoint, or None if the receipt did not verify.
    ``trusted_key_source`` says which key was trusted: ``"pinned"`` (given by the caller) or
    ``"certificate"`` (the certificate's own issuer key, which a forger could have replaced).
    """

    ok: bool
    findings: tuple[str, ...]
    resource_id: str
    fingerprint: str
    holder: str
    checkpoint_size: int | None
    trusted_key_source: Literal["pinned", "certificate"]


def _entry_findings(
    entry: bytes, index: int, event: dict[str, Any], opening: dict[str, Any] | None = None
) -> list[str]:
    """Compare the ledger entry a receipt proves with the certificate's registration event (a committed
    entry through the receipt's opening: docs/PROTOCOL.md, "Ledger privacy")."""
    try:
        parsed = reveal(entry, opening)
    except InvalidInput:
        parsed = None
    except IntegrityError as exc:
        return [f"receipt entry: {exc.message}"]
    if not isinstance(parsed, dict):
        return ["receipt entry is not a datavalley ledger entry"]
    out = []
    if parsed.get("index") != index:
        out.append(f"receipt entry claims ledger index {parsed.get('index')!r} but is proved at {index}")
    if parsed.get("type") != event["type"]:
        out.append(
            f"receipt entry type {parsed.get('type')!r} is not the registration event type {event['type']!r}"
        )
    if parsed.get("payload") != digest(event["payload"]):
        out.append("receipt entry payload digest does not match the registration event")
    return out


def _same_instant(a: str, b: str) -> bool:
    try:
        x, y = datetime.fromisoformat(a), datetime.fromisoformat(b)
    except ValueError:
        return False
    if x.tzinfo is None or y.tzinfo is None:
        return a == b
    return x == y


def _payload_findings(doc: dict[str, Any]) -> list[str]:
    """Compare the registered payload with what the certificate states about the resource and holder."""
    payload = doc["registration_event"]["payload"]
    resource, classification = doc["resource"], doc["classification"]
    holder_id = doc["holder"]["participant_id"]
    pairs: list[tuple[str, str, Any]] = [
        ("resource", "resource id", resource["id"]),
        ("fingerprint", "fingerprint", resource["fingerprint"]),
        ("version", "version", resource["version"]),
        ("holder", "holder", holder_id),
        ("row_count", "row count", resource["row_count"]),
        ("schema_digest", "schema digest", resource["schema_digest"]),
        ("sector", "sector", classification["sector"]),
        ("grade", "grade", classification["grade"]),
    ]
    out = []
    for key, label, stated in pairs:
        # Keys beyond the required four are compared when the event recorded them (newer payloads may
        # record more; older ones fewer).
        if key in payload and payload[key] != stated:
            out.append(f"certificate {label} differs from the registered one")
    until = payload.get("valid_until")
    if isinstance(until, str) and not _same_instant(until, doc["validity"]["until"]):
        out.append("certificate validity end differs from the registered one")
    elif "valid_until" in payload and not isinstance(until, str):
        out.append("registered validity end is not a timestamp")
    for right in doc["rights"]:
        if right["holder_id"] != holder_id:
            out.append(f"right {right['id']} is held by {right['holder_id']}, not by the certificate holder")
    return out


def verify_certificate(cert: dict[str, Any], *, verifier_key: str | None = None) -> CertificateCheck:
    """Verify a registration certificate offline, trusting only the exchange verifier key.

    The key is ``verifier_key`` when given (pinned), else the certificate's ``issuer.verifier_key``. Checks
    are listed in the module docstring; each failure becomes one finding and ``ok`` is False.

    Raises:
        InvalidInput: if the certificate is malformed: not an object, another format, a missing, unknown or
            mistyped field, an unparseable timestamp, a signature that is not canonical base64 of 64 bytes,
            a malformed verifier key (pinned or issuer) or a malformed receipt.
    """
    doc = _check_shape(cert, signed=True)
    signature = _signature_bytes(doc["signature"])
    issuer = doc["issuer"]
    named = _parse_key(issuer["verifier_key"], "issuer.verifier_key")
    findings: list[str] = []
    source: Literal["pinned", "certificate"]
    if verifier_key is not None:
        trusted, source = _parse_key(verifier_key, "verifier_key"), "pinned"
        if (trusted.name, trusted.public_key) != (named.name, named.public_key):
            findings.append("the certificate names a different exchange key than the pinned one")
    else:
        trusted, source = named, "certificate"
    if issuer["origin"] != trusted.name:
        findings.append(f"issuer origin {issuer['origin']!r} is not the exchange key's name {trusted.name!r}")

    if not trusted.verify(_signed_bytes(doc), signature):
        findings.append("signature does not verify with the exchange key")

    receipt = doc["receipt"]
    checkpoint_size: int | None = None
    try:
        cp, entry, index = verify_receipt(receipt, trusted)
    except InvalidInput as exc:
        field = exc.details.get("field")
        raise InvalidInput(
            f"certificate receipt is malformed: {exc.message}",
            field=f"receipt.{field}" if field else "receipt",
        ) from exc
    except IntegrityError as exc:
        findings.append(exc.message)
        # verify_receipt decoded these before checking the signature, so they are well-formed; the
        # entry checks below still say whether the receipt is about this registration at all.
        entry, index = base64.b64decode(receipt["entry"]), receipt["index"]
    else:
        checkpoint_size = cp.size
        if cp.origin != issuer["origin"]:
            findings.append(
                f"receipt checkpoint is from log {cp.origin!r}, not the issuer's {issuer['origin']!r}"
            )
    findings.extend(_entry_findings(entry, index, doc["registration_event"], receipt.get("opening")))

    event_type = doc["registration_event"]["type"]
    if event_type not in REGISTRATION_EVENT_TYPES:
        findings.append(f"registration event type {event_type!r} does not register a resource version")
    findings.extend(_payload_findings(doc))

    valid_from = _instant(doc["validity"]["from"], "validity.from")
    valid_until = _instant(doc["validity"]["until"], "validity.until")
    if valid_from > valid_until:
        findings.append("certificate validity ends before it starts")

    return CertificateCheck(
        ok=not findings,
        findings=tuple(findings),
        resource_id=doc["resource"]["id"],
        fingerprint=doc["resource"]["fingerprint"],
        holder=doc["holder"]["participant_id"],
        checkpoint_size=checkpoint_size,
        trusted_key_source=source,
    )


# ---------------------------------------------------------------------------------------------------------
# HTML rendering
# ---------------------------------------------------------------------------------------------------------

_RIGHT_LABELS: Final = {
    "holding": "数据资源持有权 / Resource holding",
    "processing_use": "数据加工使用权 / Processing & use",
    "product_operation": "数据产品经营权 / Product operation",
}
_GRADE_LABELS: Final = {
    "general": "一般数据 / General",
    "important": "重要数据 / Important",
    "core": "核心数据 / Core",
}
_EVENT_LABELS: Final = {
    "resource.registered": "首次登记 / First registration",
    "resource.changed": "变更登记 / Change registration",
    "resource.transferred": "转让登记 / Transfer registration",
}

_CSS: Final = """
@page { size: A4; margin: 16mm; }
* { box-sizing: border-box; }
body { margin: 0; background: #f3f1ea; color: #1d1d1b;
  font-family: "PingFang SC", "Hiragino Sans GB", "Microsoft YaHei", "Noto Sans CJK SC",
    "Source Han Sans SC", "WenQuanYi Micro Hei", system-ui, -apple-system, "Segoe UI", Arial, sans-serif;
  font-size: 10.5pt; line-height: 1.5; }
main { max-width: 190mm; margin: 12mm auto; background: #fff; padding: 14mm 16mm;
  border: 1px solid #b8a67a; outline: 3px double #b8a67a; outline-offset: -9px; }
header { text-align: center; border-bottom: 2px solid #8c1c13; padding-bottom: 6mm; margin-bottom: 6mm; }
h1 { margin: 0; font-size: 20pt; letter-spacing: 0.12em; color: #8c1c13;
  font-family: "Songti SC", "STSong", "SimSun", "Noto Serif CJK SC", "Source Han Serif SC", serif; }
h1 .en { display: block; font-size: 11pt; letter-spacing: 0.04em; color: #444; margin-top: 1mm;
  font-family: Georgia, "Times New Roman", serif; }
h2 { font-size: 11.5pt; margin: 6mm 0 2mm; padding-bottom: 1mm; border-bottom: 1px solid #ddd;
  color: #8c1c13; }
.meta { color: #555; font-size: 9pt; margin-top: 3mm; }
table { width: 100%; border-collapse: collapse; }
th, td { text-align: left; vertical-align: top; padding: 1.4mm 2mm; border-bottom: 1px solid #eee; }
table.kv th { width: 34%; font-weight: 600; color: #333; }
table.rights th { background: #f6f2e8; font-weight: 600; font-size: 9pt; }
table.rights td { font-size: 9pt; }
.mono { font-family: "SFMono-Regular", Menlo, Consolas, "Liberation Mono", monospace; font-size: 8.5pt;
  word-break: break-all; }
.fingerprint { font-size: 10pt; padding: 2mm 3mm; background: #f6f2e8; border-left: 3px solid #8c1c13; }
.verify { margin-top: 7mm; padding: 3mm 4mm; background: #f7f7f7; border: 1px dashed #999; font-size: 9pt; }
.verify code { font-family: "SFMono-Regular", Menlo, Consolas, monospace; }
footer { margin-top: 5mm; font-size: 8pt; color: #666; }
@media print {
  body { background: #fff; }
  main { margin: 0; max-width: none; border: none; outline: none; padding: 0; }
  h2, table.kv, tr { break-inside: avoid; }
}
"""


_KIND_ORDER: Final = tuple(k.value for k in RightKind)
_CSP: Final = "default-src 'none'; style-src 'unsafe-inline'"


def _e(value: Any) -> str:
    """Escape any value for HTML text and attributes; None reads as a dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "是 / Yes" if value else "否 / No"
    return html.escape(str(value), quote=True)


def _when(value: str | None) -> str:
    """A timestamp for people: UTC to the second (the JSON keeps the exact value), escaped."""
    if value is None:
        return _e(None)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return _e(value)
    if parsed.tzinfo is None:
        return _e(value)
    return _e(parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))


def _kv(rows: list[tuple[str, str]]) -> str:
    """A two-column table; labels are trusted constants, values must already be escaped."""
    body = "".join(f"<tr><th>{label}</th><td>{value}</td></tr>" for label, value in rows)
    return f'<table class="kv">{body}</table>'


def _stated_checkpoint_size(receipt: dict[str, Any]) -> str:
    """The checkpoint size the receipt states (unverified: rendering is not verification)."""
    try:
        text, _ = parse_note(receipt.get("checkpoint", ""))
        return str(Checkpoint.parse(text).size)
    except (NoteError, TypeError):
        return "—"


def render_html(cert: dict[str, Any]) -> str:
    """Render a certificate as a self-contained, printable HTML page (Chinese and English labels).

    Every value from the certificate is HTML-escaped. Rendering does not verify anything: the page says how
    to verify the JSON document.

    Raises:
        InvalidInput: if the certificate is malformed (see :func:`verify_certificate`); a signature is
            optional, so a draft can be previewed.
    """
    doc = _check_shape(cert, signed=isinstance(cert, dict) and "signature" in cert)
    res, holder, cls, validity = doc["resource"], doc["holder"], doc["classification"], doc["validity"]
    event, receipt = doc["registration_event"], doc["receipt"]

    rights_rows = (
        "".join(
            "<tr>"
            f"<td>{_e(_RIGHT_LABELS[r['kind']])}</td>"
            f'<td class="mono">{_e(r["holder_id"])}</td>'
            f'<td class="mono">{_e(r["grantor_id"])}</td>'
            f"<td>{_e(', '.join(r['scope']['purposes']))}</td>"
            f"<td>{_e(', '.join(r['scope']['territories']))}</td>"
            f"<td>{_when(r['scope']['valid_from'])}</td>"
            f"<td>{_when(r['scope']['valid_until'])}</td>"
            f"<td>{_e(r['scope']['sublicensable'])}</td>"
            "</tr>"
            for r in sorted(doc["rights"], key=lambda r: (_KIND_ORDER.index(r["kind"]), r["id"]))
        )
        or '<tr><td colspan="8">—</td></tr>'
    )
    rights_table = (
        '<table class="rights"><thead><tr>'
        "<th>权利 / Right</th><th>持有方 / Holder</th><th>授予方 / Grantor</th><th>用途 / Purposes</th>"
        "<th>地域 / Territories</th><th>起 / From</th><th>止 / Until</th><th>可再许可 / Sublicensable</th>"
        f"</tr></thead><tbody>{rights_rows}</tbody></table>"
    )
    grade = _e(_GRADE_LABELS[cls["grade"]])
    confirmed = "已确认 / Confirmed by the operator" if cls["confirmed"] else "待确认 / Not yet confirmed"
    event_label = _e(_EVENT_LABELS.get(event["type"], ""))
    signature = doc.get("signature")

    sections = [
        "<h2>数据资源 / Data resource</h2>",
        _kv(
            [
                ("名称 / Name", _e(res["name"])),
                ("资源编号 / Resource ID", f'<span class="mono">{_e(res["id"])}</span>'),
                ("版本 / Version", _e(res["version"])),
                ("格式 / Format", _e(res["format"])),
                ("记录数 / Rows", _e(res["row_count"])),
                ("结构摘要 / Schema digest", f'<span class="mono">{_e(res["schema_digest"])}</span>'),
            ]
        ),
        "<h2>数据指纹 / Fingerprint</h2>",
        f'<div class="mono fingerprint">{_e(res["fingerprint"])}</div>',
        "<h2>持有方 / Holder</h2>",
        _kv(
            [
                ("名称 / Name", _e(holder["name"])),
                ("主体编号 / Participant ID", f'<span class="mono">{_e(holder["participant_id"])}</span>'),
                ("国家或地区 / Country", _e(holder["country"])),
                ("登记号 / Registry ID", f'<span class="mono">{_e(holder["registry_id"])}</span>'),
            ]
        ),
        "<h2>权利 / Rights</h2>",
        rights_table,
        "<h2>分类分级 / Classification</h2>",
        _kv(
            [
                ("行业领域 / Sector", _e(cls["sector"])),
                ("级别 / Grade", f"{grade} ({confirmed})"),
            ]
        ),
        "<h2>有效期 / Validity</h2>",
        _kv([("自 / From", _when(validity["from"])), ("至 / Until", _when(validity["until"]))]),
        "<h2>账本存证 / Ledger record</h2>",
        _kv(
            [
                (
                    "登记事件 / Registration event",
                    f'{event_label} <span class="mono">{_e(event["type"])}</span>',
                ),
                ("账本序号 / Ledger index", _e(receipt.get("index"))),
                ("检查点规模 / Checkpoint size", _e(_stated_checkpoint_size(receipt))),
                ("账本 / Ledger origin", _e(doc["issuer"]["origin"])),
                ("事件摘要 / Event digest", f'<span class="mono">{_e(digest(event["payload"]))}</span>'),
                (
                    "交易所公钥 / Exchange verifier key",
                    f'<span class="mono">{_e(doc["issuer"]["verifier_key"])}</span>',
                ),
                (
                    "签名 / Signature",
                    f'<span class="mono">{_e(signature) if signature else "未签名 / unsigned"}</span>',
                ),
            ]
        ),
    ]
    verify_note = (
        '<div class="verify"><strong>如何验证 / How to verify</strong><br>'
        "本页面仅为展示，不构成证明。请使用证书 JSON 文件离线验证交易所签名与账本收据："
        "<br>This page is a rendering, not the proof. Verify the certificate's JSON file offline "
        "(exchange signature and ledger receipt), pinning the exchange key you trust:<br>"
        "<code>datavalley cert verify FILE --verifier-key KEY</code><br>"
        "离线验证证明登记事实，不证明当前状态；当前状态请加 <code>--online</code>。"
        "<br>The offline check proves the registration, not its current status "
        "(valid, superseded, cancelled or revoked): add <code>--online</code>.</div>"
    )
    title = f"数据资源登记证书 / Data Resource Registration Certificate — {_e(res['name'])}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="zh-CN">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        # The page needs nothing but its inline style; forbidding everything else means a value that
        # escaped escaping still could not load or run anything.
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        f"<title>{title}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        "<header><h1>数据资源登记证书"
        '<span class="en" lang="en">Data Resource Registration Certificate</span></h1>'
        f'<div class="meta">证书编号 / Certificate ID <span class="mono">{_e(doc["certificate_id"])}</span>'
        f" · 签发时间 / Issued {_when(doc['issued_at'])}</div></header>\n"
        + "\n".join(sections)
        + "\n"
        + verify_note
        + f"\n<footer>{_e(CERTIFICATE_FORMAT)}</footer>\n</main>\n</body>\n</html>\n"
    )
