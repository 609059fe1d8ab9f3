"""Registration use cases: register, change, renew, cancel, revoke, publish, classify, object.

Registration practice (Shenzhen, Changchun, Shanghai exchanges) knows these event types, and each is one
ledger event here: first registration (``resource.registered``), licence (``right.granted``), transfer
(``right.transferred``), change (``resource.changed``), renewal (``resource.renewed``), cancellation
(``resource.cancelled``), revocation (``resource.revoked``) and objection (``objection.filed`` /
``objection.resolved``).

Only metadata, digests and aggregate profiles reach the exchange: the node analyses the data where it
lives and sends the result (docs/PROTOCOL.md, "Resource registration").
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from datavalley.canonical import digest
from datavalley.errors import Conflict, Forbidden, InvalidInput, NotFound, PolicyViolation
from datavalley.exchange import Context
from datavalley.identity.model import ParticipantKind, Role
from datavalley.identity.tables import ParticipantRow
from datavalley.rights.grading import suggest
from datavalley.rights.model import (
    Classification,
    Grade,
    Objection,
    Resource,
    ResourceStatus,
    RightKind,
    RightStatus,
)
from datavalley.rights.tables import (
    CertificateRow,
    ObjectionRow,
    ResourceFacetRow,
    ResourceRow,
    ResourceSearchRow,
    ResourceVersionRow,
    RightRow,
    search_key,
)
from datavalley.store.base import new_id

FINGERPRINT = re.compile(r"^dvfp1:[0-9a-f]{32,128}$")
SECTOR = re.compile(r"^[a-z][a-z0-9_]{1,63}$")
FORMATS = ("csv", "parquet", "json", "jsonl", "xlsx", "sql")
DEFAULT_VALIDITY_DAYS = 3 * 365


# --- conversions ------------------------------------------------------------------------------


def to_resource(r: ResourceRow) -> Resource:
    return Resource(
        id=r.id,
        provider_id=r.provider_id,
        name=r.name,
        description=r.description,
        tags=tuple(r.tags),
        format=r.format,
        schema=tuple((str(c[0]), str(c[1])) for c in r.schema),
        row_count=r.row_count,
        fingerprint=r.fingerprint,
        version=r.version,
        profile=r.profile,
        pii=r.pii,
        pii_present=r.pii_present,
        sensitive_pii=r.sensitive_pii,
        estimated_individuals=r.estimated_individuals,
        classification=Classification(
            sector=r.sector,
            suggested=Grade(r.suggested_grade),
            reasons=tuple(r.grade_reasons),
            declared=Grade(r.declared_grade),
            confirmed=Grade(r.confirmed_grade) if r.confirmed_grade else None,
            confirmed_by=r.confirmed_by,
        ),
        public_data=r.public_data,
        published=r.published,
        status=ResourceStatus(r.status),
        lawful_source=r.lawful_source,
        valid_until=r.valid_until,
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


def to_objection(o: ObjectionRow) -> Objection:
    return Objection(
        o.id, o.resource_id, o.objector_id, o.reason, o.status, o.created_at, o.resolved_at, o.resolution
    )


# --- lookups --------------------------------------------------------------------------------


def oversees(ctx: Context) -> bool:
    return ctx.principal.has(Role.OPERATOR, Role.AUDITOR, Role.REGULATOR)


def visible(ctx: Context, r: ResourceRow) -> bool:
    """Overseers see everything; holders their own; others published, live resources only."""
    return (
        oversees(ctx)
        or r.provider_id == ctx.principal.participant_id
        or (r.published and r.status in (ResourceStatus.REGISTERED, ResourceStatus.FROZEN))
    )


def get_row(ctx: Context, resource_id: str, *, lock: bool = False) -> ResourceRow:
    """The resource if the caller may see it (raises :class:`NotFound` otherwise, never leaking existence)."""
    stmt = select(ResourceRow).where(ResourceRow.id == resource_id)
    if lock:
        stmt = stmt.with_for_update()
    row = ctx.session.execute(stmt).scalar_one_or_none()
    if row is None or not visible(ctx, row):
        raise NotFound(f"resource {resource_id} does not exist", resource_id=resource_id)
    return row


def require_verified(ctx: Context, action: str) -> None:
    if not (ctx.principal.is_system or ctx.principal.participant_verified):
        raise Forbidden(
            f"{action} needs a verified participant (participant {ctx.principal.participant_id} is not)"
        )


def require_provider(ctx: Context, action: str) -> None:
    """The caller's token holds the provider role and its participant is verified (top of holder actions)."""
    ctx.require(Role.PROVIDER, action=action)
    require_verified(ctx, action)


def require_holder(ctx: Context, row: ResourceRow, action: str) -> None:
    if row.provider_id != ctx.principal.participant_id:
        raise Forbidden(f"{action} needs the holder of resource {row.id}", resource_id=row.id)


def require_live(row: ResourceRow, action: str) -> None:
    """Refuse changes to cancelled or revoked registrations, and new dealings on frozen ones."""
    if row.status == ResourceStatus.FROZEN:
        open_ = ", ".join(o for o in _open_objections(row))
        raise Conflict(
            f"resource {row.id} is frozen by objection(s) {open_}: {action} is not allowed",
            resource_id=row.id,
        )
    if row.status != ResourceStatus.REGISTERED:
        raise Conflict(f"resource {row.id} is {row.status}: {action} is not allowed", resource_id=row.id)


def _open_objections(row: ResourceRow) -> list[str]:
    from sqlalchemy.orm import object_session

    s = object_session(row)
    assert s is not None
    return list(
        s.execute(
            select(ObjectionRow.id).where(ObjectionRow.resource_id == row.id, ObjectionRow.status == "open")
        ).scalars()
    )


# --- validation -------------------------------------------------------------------------------


def _schema(value: Any) -> list[list[str]]:
    if not isinstance(value, list) or not value:
        raise InvalidInput("schema must be a non-empty list of [column, type] pairs", field="schema")
    out: list[list[str]] = []
    seen: set[str] = set()
    for i, col in enumerate(value):
        if not (
            isinstance(col, list | tuple) and len(col) == 2 and all(isinstance(x, str) and x for x in col)
        ):
            raise InvalidInput(
                f"schema[{i}] must be a [column, type] pair of non-empty strings", field="schema"
            )
        if col[0] in seen:
            raise InvalidInput(f"schema names column {col[0]!r} twice", field="schema")
        seen.add(col[0])
        out.append([col[0], col[1]])
    return out


def schema_digest(schema: list[list[str]]) -> str:
    return digest([list(c) for c in schema])


def _search_text(name: str, description: str, tags: list[str], schema: list[list[str]], sector: str) -> str:
    # Tags appear as " #tag " so a tag filter matches whole tags; the padding makes that work at the ends.
    parts = [name, description, " ".join(f"#{t}" for t in tags), " ".join(c[0] for c in schema), sector]
    return f" {' '.join(parts).lower()} "


# --- the catalog's search index -----------------------------------------------------------------

_FACET_KEY = ("provider_id", "published", "status", "sector", "effective_grade", "pii_present")


def sync_search(session: Session, row: ResourceRow) -> None:
    """Bring the resource's search row and the facet counts in line with ``row``, in the same transaction.

    Every use case that changes a column search filters on, counts or matches (published, status, grade,
    PI, sector, search text) calls this after changing ``row``; catalog search reads only these tables
    (see ``catalog.search``).
    """
    entry = session.execute(
        select(ResourceSearchRow).where(ResourceSearchRow.id == row.id)
    ).scalar_one_or_none()
    key = tuple(getattr(row, name) for name in _FACET_KEY)
    if entry is None:
        columns = dict(zip(_FACET_KEY, key, strict=True))
        session.add(ResourceSearchRow(id=row.id, search_key=search_key(row.search_text), **columns))
        _move_facet_count(session, None, key)
        return
    old = tuple(getattr(entry, name) for name in _FACET_KEY)
    for name, value in zip(_FACET_KEY, key, strict=True):
        setattr(entry, name, value)
    entry.search_key = search_key(row.search_text)  # unchanged text is no change: no write, no reindex
    if old != key:
        _move_facet_count(session, old, key)


def _move_facet_count(session: Session, old: tuple[Any, ...] | None, new: tuple[Any, ...]) -> None:
    # Both rows are changed in one fixed order, so two transactions moving counts in opposite directions
    # wait for each other instead of deadlocking.
    changes = sorted([(old, -1), (new, 1)] if old is not None else [(new, 1)])
    for key, delta in changes:
        assert key is not None
        where = [
            getattr(ResourceFacetRow, name) == value for name, value in zip(_FACET_KEY, key, strict=True)
        ]
        if delta < 0:
            count = ResourceFacetRow.resource_count
            session.execute(update(ResourceFacetRow).where(*where).values(resource_count=count - 1))
            session.execute(delete(ResourceFacetRow).where(*where, count <= 0))
            continue
        values = {**dict(zip(_FACET_KEY, key, strict=True)), "resource_count": 1}
        bump = {"resource_count": ResourceFacetRow.resource_count + 1}
        if session.get_bind().dialect.name == "postgresql":
            pg = postgresql.insert(ResourceFacetRow).values(values)
            session.execute(pg.on_conflict_do_update(index_elements=list(_FACET_KEY), set_=bump))
        else:
            lite = sqlite.insert(ResourceFacetRow).values(values)
            session.execute(lite.on_conflict_do_update(index_elements=list(_FACET_KEY), set_=bump))


def _payload(row: ResourceRow) -> dict[str, Any]:
    """What a registration event commits to (and a certificate carries): IDs, digests, no personal data."""
    return {
        "resource": row.id,
        "holder": row.provider_id,
        "fingerprint": row.fingerprint,
        "version": row.version,
        "row_count": row.row_count,
        "schema_digest": schema_digest(row.schema),
        "sector": row.sector,
        "grade": row.effective_grade,
        "valid_until": row.valid_until.isoformat(),
    }


def _analysis_fields(analysis: dict[str, Any]) -> dict[str, Any]:
    """Validate the node's analysis (schema, row count, fingerprint, profile, PI report)."""
    if not isinstance(analysis, dict):
        raise InvalidInput("analysis must be an object", field="analysis")
    schema = _schema(analysis.get("schema"))
    rows = analysis.get("row_count")
    if not isinstance(rows, int) or rows < 0:
        raise InvalidInput("analysis.row_count must be a non-negative integer", field="row_count")
    if rows == 0:
        raise InvalidInput("the resource is empty (0 rows); there is nothing to register", field="row_count")
    fp = analysis.get("fingerprint")
    if not isinstance(fp, str) or not FINGERPRINT.match(fp):
        raise InvalidInput(
            "analysis.fingerprint must be a 'dvfp1:<hex>' content fingerprint", field="fingerprint"
        )
    fmt = analysis.get("format")
    if fmt not in FORMATS:
        raise InvalidInput(f"analysis.format must be one of {', '.join(FORMATS)}", field="format")
    profile = analysis.get("profile") or {}
    pii = analysis.get("pii") or {}
    if not isinstance(profile, dict) or not isinstance(pii, dict):
        raise InvalidInput("analysis.profile and analysis.pii must be objects", field="analysis")
    return {
        "schema": schema,
        "row_count": rows,
        "fingerprint": fp,
        "format": fmt,
        "profile": profile,
        "pii": pii,
    }


def _has_personal(pii: dict[str, Any]) -> bool:
    """Personal information present: organisation identifiers (USCC) are detected but are not personal."""
    return any(c.get("personal", True) for c in pii.get("columns") or [])


def _grade(value: str, field: str) -> Grade:
    try:
        return Grade(value)
    except ValueError:
        raise InvalidInput(
            f"{field} must be general, important or core, got {value!r}", field=field
        ) from None


# --- use cases -----------------------------------------------------------------------------------


def register_resource(
    ctx: Context,
    *,
    name: str,
    description: str = "",
    tags: list[str] | None = None,
    sector: str,
    declared_grade: str = "general",
    lawful_source: str,
    public_data: bool = False,
    published: bool = False,
    analysis: dict[str, Any],
    valid_days: int = DEFAULT_VALIDITY_DAYS,
) -> Resource:
    """First registration: the caller's participant becomes holder of all three rights.

    Raises :class:`Forbidden` (not a verified provider), :class:`InvalidInput` (bad analysis, empty data,
    missing lawful-source declaration) and :class:`Conflict` (the same content is already registered).
    """
    ctx.require(Role.PROVIDER, action="registering a data resource")
    require_verified(ctx, "registering a data resource")
    a = _analysis_fields(analysis)
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise InvalidInput("name must be 1 to 200 characters", field="name")
    if not lawful_source.strip():
        raise InvalidInput(
            "a lawful-source declaration is required (how the data was obtained)", field="lawful_source"
        )
    if not SECTOR.match(sector):
        raise InvalidInput("sector must be a lower-case slug like 'transport' or 'finance'", field="sector")
    tags = sorted({t.strip().lower() for t in (tags or []) if t.strip()})
    if not 1 <= valid_days <= 10 * 365:
        raise InvalidInput("valid_days must be between 1 and 3650", field="valid_days")
    declared = _grade(declared_grade, "declared_grade")
    provider = ctx.session.get(ParticipantRow, ctx.principal.participant_id)
    assert provider is not None
    if public_data and provider.kind != ParticipantKind.PUBLIC_BODY:
        raise Forbidden("only public bodies register public data", participant_id=provider.id)
    dup = ctx.session.execute(
        select(ResourceRow.id).where(
            ResourceRow.provider_id == provider.id,
            ResourceRow.fingerprint == a["fingerprint"],
            ResourceRow.status.in_([ResourceStatus.REGISTERED, ResourceStatus.FROZEN]),
        )
    ).scalar_one_or_none()
    if dup is not None:
        raise Conflict(
            f"this content (fingerprint {a['fingerprint'][:22]}…) is already registered as {dup}",
            resource_id=dup,
        )
    suggested, reasons = suggest(ctx.session, a["schema"], a["pii"], a["row_count"], sector, a["profile"])
    effective = Grade.highest(suggested, declared)
    row = ResourceRow(
        id=new_id("r"),
        provider_id=provider.id,
        name=name,
        description=description.strip(),
        tags=tags,
        format=a["format"],
        schema=a["schema"],
        row_count=a["row_count"],
        fingerprint=a["fingerprint"],
        version=1,
        profile=a["profile"],
        pii=a["pii"],
        pii_present=_has_personal(a["pii"]),
        sensitive_pii=bool(a["pii"].get("sensitive")),
        estimated_individuals=int(a["pii"].get("estimated_individuals") or 0),
        sector=sector,
        suggested_grade=suggested.value,
        grade_reasons=list(reasons),
        declared_grade=declared.value,
        confirmed_grade=None,
        confirmed_by=None,
        effective_grade=effective.value,
        public_data=public_data,
        published=published and effective != Grade.CORE,
        status=ResourceStatus.REGISTERED.value,
        lawful_source=lawful_source.strip(),
        search_text=_search_text(name, description, tags, a["schema"], sector),
        valid_until=ctx.now + timedelta(days=valid_days),
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    ctx.session.add(row)
    ctx.session.flush()
    sync_search(ctx.session, row)
    for kind in RightKind:
        ctx.session.add(
            RightRow(
                id=new_id("g"),
                resource_id=row.id,
                kind=kind.value,
                holder_id=provider.id,
                grantor_id=None,
                parent_id=None,
                purposes=["*"],
                territories=["*"],
                valid_from=ctx.now,
                valid_until=row.valid_until,
                sublicensable=True,
                public_data_authorisation=False,
                status=RightStatus.ACTIVE.value,
                created_at=ctx.now,
                ended_at=None,
            )
        )
    _record_version(ctx, row, "resource.registered")
    return to_resource(row)


def _record_version(ctx: Context, row: ResourceRow, event: str) -> None:
    ctx.emit(event, [row.id, row.provider_id], _payload(row))
    event_id = ctx.event_ids[-1]
    ctx.session.add(
        ResourceVersionRow(
            resource_id=row.id,
            version=row.version,
            fingerprint=row.fingerprint,
            row_count=row.row_count,
            schema=row.schema,
            event_id=event_id,
            created_at=ctx.now,
        )
    )
    ctx.session.add(
        CertificateRow(
            id=new_id("c"),
            resource_id=row.id,
            version=row.version,
            event_id=event_id,
            document=None,
            created_at=ctx.now,
            holder_id=row.provider_id,
            status="valid",
            status_event_id=None,
        )
    )
    ctx.session.flush()
    from datavalley.rights.cert_status import supersede_older

    supersede_older(ctx, row.id, event_id)  # a change registration supersedes the older certificates


def change_resource(ctx: Context, resource_id: str, *, analysis: dict[str, Any]) -> Resource:
    """Re-register changed content: a *change* event with the new fingerprint and a new version.

    Raises :class:`InvalidInput` on schema drift (columns or types differ: register a new resource),
    :class:`Conflict` if the content is unchanged or the resource is not live.
    """
    require_provider(ctx, "changing a registration")
    row = get_row(ctx, resource_id, lock=True)
    require_holder(ctx, row, "changing a registration")
    require_live(row, "changing the registration")
    a = _analysis_fields(analysis)
    if a["schema"] != row.schema:
        old = {c[0]: c[1] for c in row.schema}
        new = {c[0]: c[1] for c in a["schema"]}
        drift = [f"-{c}" for c in old if c not in new] + [f"+{c}" for c in new if c not in old]
        drift += [f"{c}: {old[c]} -> {new[c]}" for c in old if c in new and old[c] != new[c]]
        if not drift:
            drift = ["column order changed"]
        raise InvalidInput(
            f"schema drift on resource {resource_id}: {'; '.join(drift)}; "
            "register the new shape as a new resource",
            field="schema",
            drift=drift,
        )
    if a["fingerprint"] == row.fingerprint:
        raise Conflict(f"resource {resource_id} already has this content (version {row.version})")
    suggested, reasons = suggest(ctx.session, a["schema"], a["pii"], a["row_count"], row.sector, a["profile"])
    row.fingerprint = a["fingerprint"]
    row.row_count = a["row_count"]
    row.profile = a["profile"]
    row.pii = a["pii"]
    row.pii_present = _has_personal(a["pii"])
    row.sensitive_pii = bool(a["pii"].get("sensitive"))
    row.estimated_individuals = int(a["pii"].get("estimated_individuals") or 0)
    row.suggested_grade = suggested.value
    row.grade_reasons = list(reasons)
    # A higher suggestion than what the operator confirmed reopens confirmation.
    if row.confirmed_grade and Grade(row.confirmed_grade).rank < suggested.rank:
        row.confirmed_grade, row.confirmed_by = None, None
    row.effective_grade = _effective(row).value
    row.version += 1
    row.updated_at = ctx.now
    sync_search(ctx.session, row)
    _record_version(ctx, row, "resource.changed")
    return to_resource(row)


def _effective(row: ResourceRow) -> Grade:
    if row.confirmed_grade:
        return Grade(row.confirmed_grade)
    return Grade.highest(Grade(row.suggested_grade), Grade(row.declared_grade))


def renew_resource(ctx: Context, resource_id: str, *, valid_days: int = DEFAULT_VALIDITY_DAYS) -> Resource:
    """Renewal: extend the registration (and the holder's root rights) from now by ``valid_days``."""
    require_provider(ctx, "renewing a registration")
    row = get_row(ctx, resource_id, lock=True)
    require_holder(ctx, row, "renewing a registration")
    require_live(row, "renewal")
    if not 1 <= valid_days <= 10 * 365:
        raise InvalidInput("valid_days must be between 1 and 3650", field="valid_days")
    row.valid_until = max(row.valid_until, ctx.now) + timedelta(days=valid_days)
    row.updated_at = ctx.now
    for r in ctx.session.scalars(
        select(RightRow).where(
            RightRow.resource_id == row.id,
            RightRow.parent_id.is_(None),
            RightRow.status == RightStatus.ACTIVE,
        )
    ):
        r.valid_until = row.valid_until
    ctx.emit(
        "resource.renewed",
        [row.id, row.provider_id],
        {"resource": row.id, "valid_until": row.valid_until.isoformat()},
    )
    return to_resource(row)


def _end_all_rights(ctx: Context, resource_id: str) -> list[str]:
    ended = []
    for r in ctx.session.scalars(
        select(RightRow).where(RightRow.resource_id == resource_id, RightRow.status == RightStatus.ACTIVE)
    ):
        r.status, r.ended_at = RightStatus.REVOKED.value, ctx.now
        ended.append(r.id)
    return ended


def cancel_resource(
    ctx: Context, resource_id: str, *, reason: str = "", terminate_contracts: bool = False
) -> Resource:
    """Cancellation by the holder: the registration ends and every right over it is revoked.

    Refused (409) while live contracts rest on the resource, unless ``terminate_contracts``: then they are
    terminated with the reason and their unused prepayment refunded (docs/PROTOCOL.md §7).
    """
    from datavalley.market import governance

    require_provider(ctx, "cancelling a registration")
    row = get_row(ctx, resource_id, lock=True)
    require_holder(ctx, row, "cancelling a registration")
    if row.status in (ResourceStatus.CANCELLED, ResourceStatus.REVOKED):
        raise Conflict(f"resource {resource_id} is already {row.status}")
    if row.status == ResourceStatus.FROZEN:
        raise Conflict(
            f"resource {resource_id} is frozen by an objection; the operator must resolve it first"
        )
    count, live = governance.live_contracts_on_resource(ctx, row.id)
    if count and not terminate_contracts:
        raise Conflict(
            f"resource {resource_id} backs {count} live contract(s) {live}: cancel with "
            "terminate_contracts=true to terminate them and refund their unused prepayment",
            resource_id=resource_id,
            contracts=live,
        )
    row.status, row.published, row.updated_at = ResourceStatus.CANCELLED.value, False, ctx.now
    sync_search(ctx.session, row)
    ended = _end_all_rights(ctx, row.id)
    ctx.emit(
        "resource.cancelled",
        [row.id, row.provider_id],
        {"resource": row.id, "rights_ended": ended, "reason_digest": digest(reason) if reason else None},
    )
    governance.on_registration_ended(ctx, row.id, cause="resource.cancelled", reason=reason or "cancelled")
    return to_resource(row)


def revoke_resource(ctx: Context, resource_id: str, *, reason: str) -> Resource:
    """Revocation by the operator (e.g. unlawful source): the registration and all rights end."""
    ctx.require(Role.OPERATOR, action="revoking a registration")
    row = get_row(ctx, resource_id, lock=True)
    if row.status in (ResourceStatus.CANCELLED, ResourceStatus.REVOKED):
        raise Conflict(f"resource {resource_id} is already {row.status}")
    if not reason.strip():
        raise InvalidInput("a revocation needs a reason", field="reason")
    _revoke(ctx, row, reason)
    return to_resource(row)


def _revoke(ctx: Context, row: ResourceRow, reason: str) -> None:
    row.status, row.published, row.updated_at = ResourceStatus.REVOKED.value, False, ctx.now
    sync_search(ctx.session, row)
    ended = _end_all_rights(ctx, row.id)
    ctx.emit(
        "resource.revoked",
        [row.id, row.provider_id],
        {"resource": row.id, "rights_ended": ended, "reason_digest": digest(reason)},
    )
    from datavalley.market import governance

    governance.on_registration_ended(ctx, row.id, cause="resource.revoked", reason=reason)


def set_published(ctx: Context, resource_id: str, *, published: bool) -> Resource:
    """The holder shows or hides the resource in the public catalog. Core data is never published."""
    require_provider(ctx, "publishing a resource")
    row = get_row(ctx, resource_id, lock=True)
    require_holder(ctx, row, "publishing a resource")
    if published:
        require_live(row, "publishing")
        if row.effective_grade == Grade.CORE:
            raise PolicyViolation(
                f"resource {resource_id} is core data: it can be registered but never published or traded"
            )
    if row.published == published:
        raise Conflict(f"resource {resource_id} is already {'published' if published else 'unpublished'}")
    row.published, row.updated_at = published, ctx.now
    sync_search(ctx.session, row)
    ctx.emit("resource.published" if published else "resource.unpublished", [row.id], {"resource": row.id})
    return to_resource(row)


def confirm_classification(ctx: Context, resource_id: str, *, grade: str, reason: str = "") -> Resource:
    """The operator confirms (or corrects) the grade. Raising it to core unpublishes the resource."""
    ctx.require(Role.OPERATOR, action="confirming a classification")
    row = get_row(ctx, resource_id, lock=True)
    g = _grade(grade, "grade")
    if g.rank < Grade(row.suggested_grade).rank and not reason.strip():
        raise InvalidInput(
            f"confirming {g.value} below the suggested {row.suggested_grade} needs a reason", field="reason"
        )
    row.confirmed_grade, row.confirmed_by = g.value, ctx.principal.member_id
    row.effective_grade = g.value
    if g == Grade.CORE:
        row.published = False
    row.updated_at = ctx.now
    sync_search(ctx.session, row)
    ctx.emit(
        "resource.classified",
        [row.id],
        {"resource": row.id, "grade": g.value, "reason_digest": digest(reason) if reason else None},
    )
    return to_resource(row)


def get_resource(ctx: Context, resource_id: str) -> Resource:
    """A resource visible to the caller."""
    return to_resource(get_row(ctx, resource_id))


def file_objection(ctx: Context, resource_id: str, *, reason: str) -> Objection:
    """A third party objects to a registration; the resource is frozen until the operator resolves it."""
    require_verified(ctx, "objecting to a registration")
    row = get_row(ctx, resource_id, lock=True)
    if row.provider_id == ctx.principal.participant_id:
        raise Conflict("the holder cannot object to its own registration")
    if row.status not in (ResourceStatus.REGISTERED, ResourceStatus.FROZEN):
        raise Conflict(f"resource {resource_id} is {row.status}; there is nothing to object to")
    if not 1 <= len(reason.strip()) <= 4000:
        raise InvalidInput("reason must be 1 to 4000 characters", field="reason")
    o = ObjectionRow(
        id=new_id("o"),
        resource_id=row.id,
        objector_id=str(ctx.principal.participant_id),
        reason=reason.strip(),
        status="open",
        created_at=ctx.now,
        resolved_at=None,
        resolution=None,
    )
    ctx.session.add(o)
    row.status, row.updated_at = ResourceStatus.FROZEN.value, ctx.now
    sync_search(ctx.session, row)
    ctx.session.flush()
    ctx.emit(
        "objection.filed",
        [row.id, o.id, o.objector_id],
        {"objection": o.id, "resource": row.id, "reason_digest": digest(o.reason)},
    )
    from datavalley.market import governance

    governance.notify_resource_frozen(ctx, row.id, o.id, frozen=True)
    return to_objection(o)


def resolve_objection(ctx: Context, objection_id: str, *, upheld: bool, resolution: str) -> Objection:
    """The operator upholds (the registration is revoked) or dismisses (unfrozen if none remain open)."""
    ctx.require(Role.OPERATOR, action="resolving an objection")
    o = ctx.session.get(ObjectionRow, objection_id)
    if o is None:
        raise NotFound(f"objection {objection_id} does not exist", objection_id=objection_id)
    if o.status != "open":
        raise Conflict(f"objection {objection_id} is already {o.status}")
    if not resolution.strip():
        raise InvalidInput("a resolution needs a text", field="resolution")
    row = get_row(ctx, o.resource_id, lock=True)
    o.status, o.resolved_at, o.resolution = ("upheld" if upheld else "dismissed"), ctx.now, resolution.strip()
    ctx.session.flush()
    ctx.emit(
        "objection.resolved",
        [row.id, o.id],
        {"objection": o.id, "resource": row.id, "upheld": upheld, "resolution_digest": digest(o.resolution)},
    )
    if upheld:
        _revoke(ctx, row, f"objection {o.id} upheld: {o.resolution}")
    elif not _open_objections(row):
        row.status, row.updated_at = ResourceStatus.REGISTERED.value, ctx.now
        sync_search(ctx.session, row)
        from datavalley.market import governance

        governance.notify_resource_frozen(ctx, row.id, o.id, frozen=False)
    return to_objection(o)


def list_objections(ctx: Context, resource_id: str) -> list[Objection]:
    """Objections to a resource (visible to whoever can see the resource)."""
    res = get_row(ctx, resource_id)
    stmt = select(ObjectionRow).where(ObjectionRow.resource_id == resource_id).order_by(ObjectionRow.id)
    if not (oversees(ctx) or res.provider_id == ctx.principal.participant_id):
        # Who objects is between the objector, the holder and the overseers.
        stmt = stmt.where(ObjectionRow.objector_id == ctx.principal.participant_id)
    rows = ctx.session.scalars(stmt)
    return [to_objection(o) for o in rows]


def count_resources(ctx: Context) -> int:
    return int(ctx.session.scalar(select(func.count()).select_from(ResourceRow)) or 0)


def version_history(ctx: Context, resource_id: str) -> list[dict[str, Any]]:
    """Every registered version: fingerprint, rows, the event that recorded it."""
    get_row(ctx, resource_id)
    rows = ctx.session.scalars(
        select(ResourceVersionRow)
        .where(ResourceVersionRow.resource_id == resource_id)
        .order_by(ResourceVersionRow.version)
    )
    return [
        {
            "version": v.version,
            "fingerprint": v.fingerprint,
            "row_count": v.row_count,
            "event_id": v.event_id,
            "created_at": v.created_at.isoformat(),
        }
        for v in rows
    ]
