"""Cross-border use cases: facts, node locations, sketches, records, transfer requests, the register.

Authorisation is checked here (docs/CROSS_BORDER.md, "Who may do what"): the operator attests facts and
node locations (they are inspected, not declared by the parties); the exporter's node submits sketches of
its own resources; the exporter files records for its own transfers, except security assessment approvals
(the CAC's decision), which the regulator or the operator records; the regulator, auditor and operator
read the whole register, an exporter only its own rows.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from datavalley.canonical import digest
from datavalley.crossborder import sketch
from datavalley.crossborder.enforce import assess, jurisdiction, record, refusal_message
from datavalley.crossborder.engine import decide
from datavalley.crossborder.model import (
    BASES,
    GDPR_ROLES,
    Counter,
    Facts,
    NodeLocation,
    Proposal,
    RecordKind,
    SketchInfo,
    Transfer,
    TransferRecord,
)
from datavalley.crossborder.rules import load
from datavalley.crossborder.tables import (
    CrossborderCounterRow,
    CrossborderFactsRow,
    CrossborderNodeRow,
    CrossborderRecordRow,
    CrossborderSketchRow,
    CrossborderTransferRow,
)
from datavalley.errors import Conflict, Forbidden, InvalidInput, NotFound
from datavalley.exchange import Context
from datavalley.identity.model import Role
from datavalley.identity.tables import ParticipantRow
from datavalley.store.base import new_id
from datavalley.store.pages import Page, paginate

MAX_TEXT = 200


def _oversees(ctx: Context) -> bool:
    return ctx.principal.has(Role.OPERATOR, Role.AUDITOR, Role.REGULATOR)


def _participant(ctx: Context, participant_id: str) -> ParticipantRow:
    p = ctx.session.get(ParticipantRow, participant_id)
    if p is None:
        raise NotFound(f"participant {participant_id} does not exist", participant_id=participant_id)
    return p


def _text(value: Any, name: str, *, required: bool = True, limit: int = MAX_TEXT) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise InvalidInput(f"{name} must be 1 to {limit} characters", field=name)
    return value.strip()


def _country(value: Any, name: str) -> str:
    if not isinstance(value, str) or len(value) != 2 or not value.isascii() or not value.isalpha():
        raise InvalidInput(f"{name} must be an ISO 3166-1 alpha-2 code", field=name)
    return value.upper()


# --- facts ----------------------------------------------------------------------------------------


def _facts(ctx: Context, participant_id: str) -> Facts:
    p = _participant(ctx, participant_id)
    f = ctx.session.get(CrossborderFactsRow, participant_id)
    return Facts(
        participant_id=participant_id,
        jurisdiction=p.country,
        ciio=bool(f and f.ciio),
        ftz_zone=f.ftz_zone if f else None,
        gdpr_role=f.gdpr_role if f else "controller",
        attested_by=f.attested_by if f else None,
        updated_at=f.updated_at if f else None,
    )


def get_facts(ctx: Context, participant_id: str) -> dict[str, Any]:
    """A participant's facts and node location (itself or an overseer)."""
    if not (_oversees(ctx) or ctx.principal.participant_id == participant_id):
        raise NotFound(f"participant {participant_id} does not exist", participant_id=participant_id)
    facts = _facts(ctx, participant_id)
    _, node = jurisdiction(ctx, participant_id)
    return {"facts": facts, "node_jurisdiction": node}


def set_facts(
    ctx: Context,
    participant_id: str,
    *,
    ciio: bool,
    ftz_zone: str | None = None,
    gdpr_role: str = "controller",
) -> Facts:
    """The operator attests a participant's CIIO status, FTZ registration and GDPR role."""
    ctx.require(Role.OPERATOR, action="attesting cross-border facts")
    _participant(ctx, participant_id)
    if not isinstance(ciio, bool):
        raise InvalidInput("ciio must be true or false", field="ciio")
    if ftz_zone is not None and load().zone(ftz_zone) is None:
        zones = ", ".join(z.zone for z in load().ftz)
        raise InvalidInput(f"unknown free trade zone {ftz_zone!r} (known: {zones})", field="ftz_zone")
    if gdpr_role not in GDPR_ROLES:
        raise InvalidInput("gdpr_role must be controller or processor", field="gdpr_role")
    row = ctx.session.get(CrossborderFactsRow, participant_id)
    if row is None:
        row = CrossborderFactsRow(participant_id=participant_id)
        ctx.session.add(row)
    row.ciio, row.ftz_zone, row.gdpr_role = ciio, ftz_zone, gdpr_role
    row.attested_by, row.updated_at = ctx.principal.member_id, ctx.now
    ctx.session.flush()
    ctx.emit(
        "crossborder.facts_attested",
        [participant_id],
        {"participant": participant_id, "ciio": ciio, "ftz_zone": ftz_zone, "gdpr_role": gdpr_role},
    )
    return _facts(ctx, participant_id)


def attest_node(
    ctx: Context, participant_id: str, *, jurisdiction: str, site: str, evidence: str
) -> NodeLocation:
    """The operator records where a participant's node runs (after inspecting it); the newest wins."""
    ctx.require(Role.OPERATOR, action="attesting a node location")
    _participant(ctx, participant_id)
    code = _country(jurisdiction, "jurisdiction")
    site_v = _text(site, "site")
    ev = _text(evidence, "evidence")
    assert site_v is not None and ev is not None
    row = CrossborderNodeRow(
        id=new_id("nd"), participant_id=participant_id, jurisdiction=code, site=site_v,
        evidence_digest=digest({"evidence": ev}), attested_by=ctx.principal.member_id, created_at=ctx.now,
    )  # fmt: skip
    ctx.session.add(row)
    ctx.session.flush()
    ctx.emit(
        "crossborder.node_attested",
        [row.id, participant_id],
        {"id": row.id, "participant": participant_id, "jurisdiction": code, "evidence": row.evidence_digest},
    )
    return NodeLocation(
        row.id, participant_id, code, row.site, row.evidence_digest, row.attested_by, row.created_at
    )


# --- sketches -------------------------------------------------------------------------------------


def submit_sketch(ctx: Context, resource_id: str, *, sketch_b64: str) -> SketchInfo:
    """The holder's node submits the identifier sketch of a resource's current version."""
    from datavalley.crossborder.node import identifier_column
    from datavalley.rights.registration import get_row

    ctx.require(Role.PROVIDER, action="submitting an identifier sketch")
    res = get_row(ctx, resource_id)
    if res.provider_id != ctx.principal.participant_id:
        raise Forbidden(f"only the holder of resource {resource_id} submits its sketch")
    if not res.pii_present:
        raise Conflict(f"resource {resource_id} holds no personal information: no sketch is needed")
    found = identifier_column(res.pii)
    if found is None:
        raise Conflict(f"resource {resource_id} has no identifier column to count individuals by")
    if not isinstance(sketch_b64, str):
        raise InvalidInput("sketch must be base64 text", field="sketch")
    data = sketch.decode(sketch_b64)
    est, ub = sketch.bounds(data)
    row = ctx.session.get(CrossborderSketchRow, (res.id, res.fingerprint))
    if row is None:
        row = CrossborderSketchRow(resource_id=res.id, fingerprint=res.fingerprint)
        ctx.session.add(row)
    row.identifier_kind, row.sketch, row.estimate, row.upper_bound = found[1], data, est, ub
    row.submitted_by, row.created_at = ctx.principal.member_id, ctx.now
    ctx.session.flush()
    ctx.emit(
        "crossborder.sketch_submitted",
        [res.id],
        {
            "resource": res.id,
            "fingerprint": res.fingerprint,
            "kind": found[1],
            "sketch": digest({"sketch": sketch.encode(data)}),
            "estimate": round(est, 1),
            "upper_bound": ub,
        },
    )
    return SketchInfo(res.id, res.fingerprint, found[1], est, ub, ctx.now)


# --- records --------------------------------------------------------------------------------------


def _to_record(r: CrossborderRecordRow) -> TransferRecord:
    return TransferRecord(
        r.id, r.kind, r.exporter_id, r.recipient_id, r.contract_id, r.resource_id, r.number, dict(r.scope),
        r.valid_from, r.valid_until, r.evidence_digest, r.status, r.recorded_by, r.created_at,
    )  # fmt: skip


def file_record(
    ctx: Context,
    *,
    kind: str,
    evidence: str,
    contract_id: str | None = None,
    recipient_id: str | None = None,
    resource_id: str | None = None,
    number: str | None = None,
    scope: dict[str, Any] | None = None,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
    exporter_id: str | None = None,
) -> TransferRecord:
    """File a record a transfer needs. The exporter files filings, certifications, consent evidence, bases,
    SCCs and TIAs; a security assessment approval is the CAC's decision, so the regulator (or the operator)
    records it for the exporter (``exporter_id``)."""
    from datavalley.market.tables import ContractRow
    from datavalley.rights.tables import ResourceRow

    try:
        k = RecordKind(kind)
    except ValueError:
        allowed = ", ".join(x.value for x in RecordKind)
        raise InvalidInput(f"unknown record kind {kind!r} (allowed: {allowed})", field="kind") from None
    if k == RecordKind.SECURITY_ASSESSMENT:
        ctx.require(Role.REGULATOR, Role.OPERATOR, action="recording a security assessment approval")
        if not isinstance(exporter_id, str):
            raise InvalidInput(
                "a security assessment approval names its exporter (exporter_id)", field="exporter_id"
            )
        if _participant(ctx, exporter_id).status != "verified":
            raise Conflict(f"participant {exporter_id} is not verified")
        me: str | None = exporter_id
    else:
        ctx.require(Role.PROVIDER, action="filing a cross-border record")
        if exporter_id not in (None, ctx.principal.participant_id):
            raise Forbidden("an exporter files records for its own transfers only")
        me = ctx.principal.participant_id
    assert me is not None
    ev = _text(evidence, "evidence")
    num = _text(number, "number", required=False, limit=100)
    scope = dict(scope or {})
    if len(str(scope)) > 4000:
        raise InvalidInput("scope is too large", field="scope")
    if contract_id is not None:
        c = ctx.session.get(ContractRow, contract_id)
        if c is None or me not in (c.provider_id,):
            raise NotFound(f"contract {contract_id} does not exist", contract_id=contract_id)
        recipient_id = recipient_id or c.consumer_id
        if recipient_id != c.consumer_id:
            raise InvalidInput("recipient_id must be the contract's consumer", field="recipient_id")
    if recipient_id is not None:
        _participant(ctx, recipient_id)
    if resource_id is not None:
        res = ctx.session.get(ResourceRow, resource_id)
        if res is None or res.provider_id != me:
            raise NotFound(f"resource {resource_id} does not exist", resource_id=resource_id)
    start = valid_from or ctx.now
    rules = load()
    if (
        k in (RecordKind.SECURITY_ASSESSMENT, RecordKind.STANDARD_CONTRACT, RecordKind.CERTIFICATION)
        and not num
    ):
        raise InvalidInput(
            f"a {k.value} record needs its number (approval, filing or certificate)", field="number"
        )
    if k == RecordKind.SECURITY_ASSESSMENT:
        limit = start.replace(year=start.year + rules.assessment_validity_years)
        valid_until = valid_until or limit
        if valid_until > limit:
            raise InvalidInput(
                f"a security assessment is valid for at most {rules.assessment_validity_years} years "
                "(CAC 2024 art. 9)",
                field="valid_until",
            )
        for key in ("jurisdictions", "resources"):
            if key in scope and not (
                isinstance(scope[key], list) and all(isinstance(x, str) for x in scope[key])
            ):
                raise InvalidInput(f"scope.{key} must be a list of strings", field="scope")
        if "max_individuals" in scope and not (
            isinstance(scope["max_individuals"], int)
            and not isinstance(scope["max_individuals"], bool)
            and scope["max_individuals"] > 0
        ):
            raise InvalidInput("scope.max_individuals must be a positive integer", field="scope")
    if k == RecordKind.STANDARD_CONTRACT and recipient_id is None:
        raise InvalidInput(
            "a standard contract names its recipient (recipient_id or contract_id)", field="recipient_id"
        )
    if k == RecordKind.CONSENT and resource_id is None:
        raise InvalidInput("consent evidence is filed for a resource (resource_id)", field="resource_id")
    if k == RecordKind.BASIS:
        if contract_id is None:
            raise InvalidInput(
                "an exemption basis is claimed for a contract (contract_id)", field="contract_id"
            )
        if scope.get("basis") not in BASES:
            raise InvalidInput(f"scope.basis must be one of {', '.join(BASES)}", field="scope")
    if k in (RecordKind.SCC, RecordKind.TIA) and contract_id is None:
        raise InvalidInput(f"a {k.value} record is filed for a contract (contract_id)", field="contract_id")
    if valid_until is not None and valid_until <= start:
        raise InvalidInput("valid_until must be after valid_from", field="valid_until")
    if (
        num is not None
        and ctx.session.scalars(
            select(CrossborderRecordRow.id).where(
                CrossborderRecordRow.kind == k.value, CrossborderRecordRow.number == num
            )
        ).first()
    ):
        raise Conflict(f"a {k.value} record numbered {num!r} is already filed")
    assert ev is not None
    row = CrossborderRecordRow(
        id=new_id("xr"), kind=k.value, exporter_id=me, recipient_id=recipient_id, contract_id=contract_id,
        resource_id=resource_id, number=num, scope=scope, valid_from=start, valid_until=valid_until,
        evidence_digest=digest({"evidence": ev}), status="active", recorded_by=ctx.principal.member_id,
        created_at=ctx.now,
    )  # fmt: skip
    ctx.session.add(row)
    ctx.session.flush()
    ctx.emit(
        "crossborder.record_filed",
        [row.id, me, *(x for x in (recipient_id, contract_id, resource_id) if x)],
        {
            "id": row.id, "kind": row.kind, "number": num, "contract": contract_id, "recipient": recipient_id,
            "resource": resource_id, "scope_digest": digest(scope), "evidence": row.evidence_digest,
            "valid_from": start.isoformat(), "valid_until": valid_until.isoformat() if valid_until else None,
        },
    )  # fmt: skip
    return _to_record(row)


def revoke_record(ctx: Context, record_id: str, *, reason: str) -> TransferRecord:
    """The exporter withdraws a record, or the regulator revokes it (e.g. an approval withdrawn)."""
    row = ctx.session.get(CrossborderRecordRow, record_id)
    mine = row is not None and row.exporter_id == ctx.principal.participant_id
    if row is None or not (mine or _oversees(ctx)):
        raise NotFound(f"record {record_id} does not exist", record_id=record_id)
    # the exporter acts with the role it filed with (provider), like filing itself
    if not ((mine and ctx.principal.has(Role.PROVIDER)) or ctx.principal.has(Role.REGULATOR, Role.OPERATOR)):
        raise Forbidden("only the exporter (provider role), the regulator or the operator revokes a record")
    _text(reason, "reason")
    if row.status != "active":
        raise Conflict(f"record {record_id} is already {row.status}")
    row.status = "revoked"
    ctx.emit("crossborder.record_revoked", [row.id], {"id": row.id, "reason": digest({"reason": reason})})
    return _to_record(row)


def list_records(
    ctx: Context, *, exporter_id: str | None = None, limit: int = 50, cursor: str | None = None
) -> Page[TransferRecord]:
    stmt = select(CrossborderRecordRow)
    if not _oversees(ctx):
        stmt = stmt.where(CrossborderRecordRow.exporter_id == ctx.principal.participant_id)
    elif exporter_id:
        stmt = stmt.where(CrossborderRecordRow.exporter_id == exporter_id)
    return paginate(ctx.session, stmt, CrossborderRecordRow.id, cursor, limit, _to_record)


# --- decisions ------------------------------------------------------------------------------------


def what_if(ctx: Context, proposal: dict[str, Any]) -> dict[str, Any]:
    """The engine on a hypothetical transfer (any authenticated caller; nothing is recorded)."""
    fields = set(Proposal.__dataclass_fields__)
    if unknown := sorted(set(proposal) - fields):
        raise InvalidInput(f"unknown proposal fields {unknown}", field="proposal")
    data = dict(proposal)
    for key in ("categories", "bases"):
        if key in data:
            if not isinstance(data[key], list) or not all(isinstance(x, str) for x in data[key]):
                raise InvalidInput(f"{key} must be a list of strings", field=key)
            data[key] = frozenset(data[key])
    for key in ("origin", "recipient"):
        if key not in data:
            raise InvalidInput(f"{key} is required", field=key)
    for key in ("personal", "sensitive", "important", "core", "anonymised", "ciio"):
        if key in data and not isinstance(data[key], bool):
            raise InvalidInput(f"{key} must be true or false", field=key)
    for key in ("origin", "recipient", "sector", "exporter_role", "importer_role", "on", "ftz_zone"):
        if key in data and not (isinstance(data[key], str) or (key == "ftz_zone" and data[key] is None)):
            raise InvalidInput(f"{key} must be a string", field=key)
        if isinstance(data.get(key), str) and len(data[key]) > MAX_TEXT:
            raise InvalidInput(f"{key} is too long", field=key)
    return decide(Proposal(**data), load()).to_json()


def request_transfer(
    ctx: Context, contract_id: str, *, operation: str | None = None, mode: str | None = None
) -> dict[str, Any]:
    """A party asks, before moving data, whether a transfer under the contract may happen now.

    The decision (allowed or refused, with what to file) is recorded in the register and on the ledger.
    Nothing is counted: counting happens when the use itself is recorded.
    """
    from datavalley.market.contracts import _get, _side_role

    row = _get(ctx, contract_id)
    if ctx.principal.participant_id not in (row.provider_id, row.consumer_id):
        raise Forbidden(f"only a party to contract {contract_id} requests a transfer under it")
    _side_role(ctx, row, "requesting a cross-border transfer")
    a = assess(ctx, row, stage="request", operation=operation, mode=mode)
    if a is None:
        return {"cross_border": False, "allowed": True, "contract_id": contract_id}
    tid = record(ctx, a, contract_id, stage="request", operation=operation)
    return {
        "cross_border": True,
        "allowed": a.allowed,
        "contract_id": contract_id,
        "transfer_id": tid,
        "decision": a.decision.to_json(),
        "missing": [list(g) for g in a.missing],
        "sketches_needed": list(a.sketch_needed),
        "message": None if a.allowed else refusal_message(a, contract_id),
        "non_personal_reason": a.non_personal_reason,
    }


# --- the register ---------------------------------------------------------------------------------


def _to_transfer(r: CrossborderTransferRow) -> Transfer:
    return Transfer(
        r.id, r.stage, r.contract_id, r.exporter_id, r.recipient_id, r.origin, r.destination, r.pathway,
        r.exemption, r.allowed, r.personal, r.non_personal_reason, tuple(r.articles),
        tuple(tuple(g) for g in r.missing), tuple(r.records), r.year, r.individuals_ub, r.sensitive_ub,
        r.created_at,
    )  # fmt: skip


def register(
    ctx: Context,
    *,
    exporter_id: str | None = None,
    pathway: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Page[Transfer]:
    """Decided cross-border transfers, oldest first: all for overseers, an exporter's own otherwise."""
    stmt = select(CrossborderTransferRow)
    if not _oversees(ctx):
        stmt = stmt.where(CrossborderTransferRow.exporter_id == ctx.principal.participant_id)
    elif exporter_id:
        stmt = stmt.where(CrossborderTransferRow.exporter_id == exporter_id)
    if pathway:
        stmt = stmt.where(CrossborderTransferRow.pathway == pathway)
    return paginate(ctx.session, stmt, CrossborderTransferRow.id, cursor, limit, _to_transfer)


def counters(ctx: Context, *, year: int | None = None) -> list[Counter]:
    """Distinct individuals per exporter and year (estimate and the upper bound thresholds use)."""
    stmt = select(CrossborderCounterRow).order_by(
        CrossborderCounterRow.exporter_id, CrossborderCounterRow.year, CrossborderCounterRow.kind
    )
    if not _oversees(ctx):
        stmt = stmt.where(CrossborderCounterRow.exporter_id == ctx.principal.participant_id)
    if year is not None:
        stmt = stmt.where(CrossborderCounterRow.year == year)
    return [
        Counter(r.exporter_id, r.year, r.kind, round(r.estimate, 1), r.upper_bound, 14, r.updated_at)
        for r in ctx.session.scalars(stmt)
    ]


def _working_days_before(end: datetime, days: int) -> datetime:
    d = end
    left = days
    while left > 0:
        d -= timedelta(days=1)
        if d.weekday() < 5:
            left -= 1
    return d


def expiring(ctx: Context, *, within_days: int = 120) -> list[dict[str, Any]]:
    """Approvals, certifications and filings expiring within ``within_days``, with the renewal window
    (a security assessment's extension is applied for 60 working days before expiry, CAC 2024 art. 9)."""
    if isinstance(within_days, bool) or not isinstance(within_days, int) or not 1 <= within_days <= 3660:
        raise InvalidInput("within_days must be between 1 and 3660", field="within_days")
    rules = load()
    stmt = select(CrossborderRecordRow).where(
        CrossborderRecordRow.status == "active",
        CrossborderRecordRow.valid_until.is_not(None),
        CrossborderRecordRow.valid_until <= ctx.now + timedelta(days=within_days),
    )
    if not _oversees(ctx):
        stmt = stmt.where(CrossborderRecordRow.exporter_id == ctx.principal.participant_id)
    out = []
    for r in ctx.session.scalars(stmt.order_by(CrossborderRecordRow.valid_until)):
        assert r.valid_until is not None
        window = _working_days_before(r.valid_until, rules.renewal_window_working_days)
        out.append(
            {
                "record": _to_record(r),
                "expired": r.valid_until <= ctx.now,
                "renew_from": window.isoformat() if r.kind == "security_assessment" else None,
                "in_renewal_window": r.kind == "security_assessment" and window <= ctx.now < r.valid_until,
            }
        )
    return out


CSV_COLUMNS = (
    "id", "created_at", "stage", "contract_id", "exporter_id", "recipient_id", "origin", "destination",
    "pathway", "exemption", "allowed", "personal", "articles", "missing", "records", "year",
    "individuals_ub", "sensitive_ub",
)  # fmt: skip


def register_csv(ctx: Context, *, exporter_id: str | None = None) -> str:
    """The register as CSV (RFC 4180), every row the caller may see."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(CSV_COLUMNS)
    cursor = None
    while True:
        page = register(ctx, exporter_id=exporter_id, limit=500, cursor=cursor)
        for t in page.items:
            w.writerow(
                [
                    t.id, t.created_at.isoformat(), t.stage, t.contract_id or "", t.exporter_id,
                    t.recipient_id,
                    t.origin, t.destination, t.pathway, t.exemption or "", str(t.allowed).lower(),
                    str(t.personal).lower(), "; ".join(t.articles), "; ".join("|".join(g) for g in t.missing),
                    "; ".join(t.records), t.year, t.individuals_ub, t.sensitive_ub,
                ]
            )  # fmt: skip
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    return buf.getvalue()
