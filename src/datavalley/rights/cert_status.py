"""Certificate status: what a signed certificate cannot say about itself — whether it is still in force.

A certificate proves that a resource version was registered to a holder (its signature and ledger
receipt verify offline, forever). Whether it is still the current word is a separate, online question:

- ``valid``       the current certificate of the registration;
- ``superseded``  a later registration event replaced it: a change (new version) or a holding transfer,
                  which issues a new certificate to the new holder (``resource.transferred``);
- ``cancelled``   the holder cancelled the registration;
- ``revoked``     the operator revoked it (e.g. an objection was upheld).

The exchange answers with a signed status document (format ``datavalley-certificate-status/v1``, docs/
PROTOCOL.md §6) naming the ledger entry that changed the status; ``datavalley cert verify FILE --online``
checks it with the same exchange key as the certificate.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC
from typing import Any, Final

from sqlalchemy import select

from datavalley.canonical import canonical_json
from datavalley.errors import InvalidInput, NotFound
from datavalley.events import EventRow
from datavalley.exchange import Context
from datavalley.ledger.note import NoteError, parse_verifier_key
from datavalley.rights.tables import CertificateRow, ResourceRow
from datavalley.store.base import new_id

STATUS_FORMAT: Final = "datavalley-certificate-status/v1"
STATUS_DOMAIN: Final = b"datavalley-certificate-status/v1\n"
STATUSES: Final = ("valid", "superseded", "cancelled", "revoked")
_FIELDS: Final = (
    "format",
    "certificate_id",
    "resource_id",
    "version",
    "holder_id",
    "status",
    "changed_by",
    "checked_at",
    "issuer",
    "signature",
)


def supersede_older(ctx: Context, resource_id: str, event_id: int) -> None:
    """Mark every valid certificate of the resource issued before ``event_id`` as superseded by it."""
    for c in ctx.session.scalars(
        select(CertificateRow).where(
            CertificateRow.resource_id == resource_id,
            CertificateRow.status == "valid",
            CertificateRow.event_id < event_id,
        )
    ):
        c.status, c.status_event_id = "superseded", event_id


def end_certificates(ctx: Context, resource_id: str, status: str, event_id: int) -> None:
    """The registration ended (``cancelled`` / ``revoked`` by event ``event_id``): so do its certificates."""
    for c in ctx.session.scalars(
        select(CertificateRow).where(
            CertificateRow.resource_id == resource_id, CertificateRow.status == "valid"
        )
    ):
        c.status, c.status_event_id = status, event_id


def issue_on_transfer(ctx: Context, res: ResourceRow) -> str:
    """After a holding transfer (``res.provider_id`` is the new holder): record the registration under the
    new holder (``resource.transferred``, the registration payload) and issue its certificate, superseding
    the previous holder's. Returns the new certificate's ID (signed on first request, like any other)."""
    from datavalley.rights.registration import _payload

    ctx.emit("resource.transferred", [res.id, res.provider_id], _payload(res))
    event_id = ctx.event_ids[-1]
    cert = CertificateRow(
        id=new_id("c"),
        resource_id=res.id,
        version=res.version,
        event_id=event_id,
        document=None,
        created_at=ctx.now,
        holder_id=res.provider_id,
        status="valid",
        status_event_id=None,
    )
    ctx.session.add(cert)
    ctx.session.flush()
    supersede_older(ctx, res.id, event_id)
    return cert.id


def _signed_bytes(doc: dict[str, Any]) -> bytes:
    return STATUS_DOMAIN + canonical_json({k: v for k, v in doc.items() if k != "signature"})


def certificate_status(ctx: Context, certificate_id: str) -> dict[str, Any]:
    """The signed current status of a certificate (anyone holding its ID may ask: it is the capability).

    Raises :class:`NotFound` for an unknown ID.
    """
    cert = ctx.session.get(CertificateRow, certificate_id) if isinstance(certificate_id, str) else None
    if cert is None:
        raise NotFound(f"certificate {certificate_id} does not exist", certificate_id=certificate_id)
    changed_by = None
    if cert.status_event_id is not None:
        ev = ctx.session.get(EventRow, cert.status_event_id)
        if ev is not None:
            changed_by = {
                "type": ev.type,
                "event_id": ev.id,
                "ledger_index": ev.ledger_index,
                "payload_digest": ev.payload_digest,
            }
    holder = cert.holder_id
    if holder is None:
        reg = ctx.session.get(EventRow, cert.event_id)
        holder = str((reg.payload or {}).get("holder")) if reg is not None else None
    assert ctx.signer is not None
    doc: dict[str, Any] = {
        "format": STATUS_FORMAT,
        "certificate_id": cert.id,
        "resource_id": cert.resource_id,
        "version": cert.version,
        "holder_id": holder,
        "status": cert.status,
        "changed_by": changed_by,
        "checked_at": ctx.now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "issuer": {
            "origin": ctx.settings.origin,
            "verifier_key": ctx.signer.verifier().verifier_key_string(),
        },
    }
    doc["signature"] = base64.b64encode(ctx.signer.sign(_signed_bytes(doc))).decode("ascii")
    return doc


def verify_status(status: Any, certificate: dict[str, Any], *, verifier_key: str | None = None) -> list[str]:
    """Check a status document against the certificate it answers for; returns findings (empty: it holds).

    The key trusted is ``verifier_key`` (pinned) or else the certificate's ``issuer.verifier_key``: the
    status must be signed by the key that signed the certificate.
    """
    if not isinstance(status, dict) or status.get("format") != STATUS_FORMAT:
        raise InvalidInput(f"not a {STATUS_FORMAT} document", field="status")
    if set(status) != set(_FIELDS):
        raise InvalidInput(f"status fields must be exactly {sorted(_FIELDS)}", field="status")
    try:
        trusted = parse_verifier_key(verifier_key or certificate["issuer"]["verifier_key"])
        signature = base64.b64decode(str(status["signature"]), validate=True)
    except (NoteError, KeyError, TypeError, binascii.Error, ValueError) as exc:
        raise InvalidInput(f"cannot check the status signature: {exc}", field="signature") from exc
    findings = []
    if not trusted.verify(_signed_bytes(status), signature):
        findings.append("the status is not signed by the exchange key")
    if status["certificate_id"] != certificate.get("certificate_id"):
        findings.append("the status answers for another certificate")
    if status["resource_id"] != certificate.get("resource", {}).get("id"):
        findings.append("the status names another resource")
    if status["status"] not in STATUSES:
        findings.append(f"unknown status {status['status']!r}")
    return findings
