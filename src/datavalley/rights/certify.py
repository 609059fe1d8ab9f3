"""Issuing registration certificates and exporting the public catalog (use cases over the registry).

A certificate is issued once per registered version, on first request after its registration event is on
the ledger (it carries that event's receipt), then stored and served unchanged. Format and offline
verification: :mod:`datavalley.rights.certificates`, docs/PROTOCOL.md section 6.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from datavalley.canonical import digest
from datavalley.catalog.dcat import CatalogInfo, catalog_to_jsonld
from datavalley.errors import Conflict, NotFound
from datavalley.events import SYSTEM, EventRow, emit
from datavalley.exchange import Context
from datavalley.identity.service import _participant
from datavalley.identity.tables import ParticipantRow
from datavalley.ledger import service as ledger
from datavalley.ledger.tables import CheckpointRow
from datavalley.rights.certificates import build_certificate, sign_certificate
from datavalley.rights.model import ResourceStatus, RightStatus
from datavalley.rights.registration import get_row, schema_digest, to_resource
from datavalley.rights.rights import to_right
from datavalley.rights.tables import CertificateRow, ResourceRow, ResourceVersionRow, RightRow


def certificate(ctx: Context, resource_id: str, *, version: int | None = None) -> dict[str, Any]:
    """The signed certificate of a registered version (default: the current one).

    Raises :class:`NotFound` (resource or version) and :class:`Conflict` if its registration event is not
    yet in a signed checkpoint.
    """
    res = get_row(ctx, resource_id)
    v = version or res.version
    row = (  # the newest: a holding transfer issues a new certificate for the same version
        ctx.session.execute(
            select(CertificateRow)
            .where(CertificateRow.resource_id == res.id, CertificateRow.version == v)
            .order_by(CertificateRow.event_id.desc())
            .limit(1)
        )
        .scalars()
        .first()
    )
    if row is None:
        raise NotFound(f"resource {resource_id} has no version {v}", resource_id=resource_id, version=v)
    if row.document is not None:
        return dict(row.document)
    event = ctx.session.get(EventRow, row.event_id)
    assert event is not None and event.payload is not None
    latest = ctx.session.execute(
        select(CheckpointRow).order_by(CheckpointRow.size.desc()).limit(1)
    ).scalar_one_or_none()
    if event.ledger_index is None or latest is None or event.ledger_index >= latest.size:
        raise Conflict(
            f"the registration of {resource_id} v{v} is not yet in a signed checkpoint; retry shortly"
        )
    receipt = ledger.receipt(
        ctx.session, event.ledger_index, ledger.SignedCheckpoint(latest.size, latest.root_hash, latest.note)
    )
    ver = ctx.session.get(ResourceVersionRow, (res.id, v))
    assert ver is not None
    holder = ctx.session.get(ParticipantRow, event.payload["holder"])
    assert holder is not None
    roots = ctx.session.scalars(
        select(RightRow)
        .where(RightRow.resource_id == res.id, RightRow.parent_id.is_(None), RightRow.holder_id == holder.id)
        .order_by(RightRow.id)
    )
    rights = [
        {
            "id": r.id,
            "kind": r.kind,
            "holder_id": r.holder_id,
            "grantor_id": r.grantor_id,
            "scope": to_right(r).scope.to_json(),
        }
        for r in roots
        if r.status in (RightStatus.ACTIVE, RightStatus.TRANSFERRED)
    ]
    assert ctx.signer is not None
    doc = build_certificate(
        certificate_id=row.id,
        issued_at=ctx.now,
        origin=ctx.settings.origin,
        verifier_key=ctx.signer.verifier().verifier_key_string(),
        resource={
            "id": res.id,
            "name": res.name,
            "version": v,
            "fingerprint": ver.fingerprint,
            "row_count": ver.row_count,
            "format": res.format,
            "schema_digest": schema_digest(ver.schema),
        },
        holder={
            "participant_id": holder.id,
            "name": holder.name,
            "country": holder.country,
            "registry_id": holder.registry_id,
        },
        rights=rights,
        classification={
            "sector": res.sector,
            "grade": event.payload["grade"],
            "confirmed": res.confirmed_grade is not None,
        },
        validity={"from": ver.created_at.isoformat(), "until": event.payload["valid_until"]},
        registration_event={"type": event.type, "payload": event.payload},
        receipt=receipt,
    )
    signed = sign_certificate(doc, ctx.signer)
    row.document = signed
    # The exchange issues it (whoever asked first is not part of the record).
    issued = emit(
        ctx.session,
        ctx.now,
        SYSTEM,
        "certificate.issued",
        [res.id, row.id, holder.id],
        {"certificate": row.id, "resource": res.id, "version": v, "document_digest": digest(signed)},
    )
    ctx.event_ids.append(issued.id)
    return signed


def public_catalog(ctx: Context, *, base_url: str) -> dict[str, Any]:
    """The public catalog (published, live resources) as DCAT-AP 3 JSON-LD."""
    rows = list(
        ctx.session.scalars(
            select(ResourceRow)
            .where(ResourceRow.published.is_(True), ResourceRow.status == ResourceStatus.REGISTERED.value)
            .order_by(ResourceRow.id)
        )
    )
    ids = {r.provider_id for r in rows}
    operator = ctx.session.scalars(select(ParticipantRow).order_by(ParticipantRow.id)).first()
    if operator is None:
        raise NotFound("the exchange has no operator participant")
    publishers = {
        p.id: _participant(p)
        for p in ctx.session.scalars(select(ParticipantRow).where(ParticipantRow.id.in_(ids | {operator.id})))
    }
    info = CatalogInfo(
        base_url=base_url,
        title="datavalley data catalog",
        description="Registered data resources available through contracts on this exchange "
        "(usable but invisible: access is by contract, rows never leave the provider's node).",
        publisher=publishers[operator.id],
        homepage=base_url,
        language="en",
    )
    return catalog_to_jsonld(info, [to_resource(r) for r in rows], publishers)
