"""The three rights: grant, authorise public-data operation, transfer, revoke (with cascade), chain of title.

Rules:
- Holding is never granted, only transferred. Processing & use and product operation are granted from a
  right of the same kind that the grantor holds: a root right (the holder's) or a sub-licensable grant.
- No grant may exceed the right it derives from: purposes ⊆, territories ⊆, term within, sub-licensable
  only if the parent is (``*`` in a parent means unrestricted).
- Revoking a right revokes, in the same transaction, every right derived from it (cascade).
- Frozen (objection open), cancelled or revoked resources take no new grants; core data takes none at all.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from datavalley.errors import Conflict, Forbidden, InvalidInput, NotFound, PolicyViolation
from datavalley.exchange import Context
from datavalley.identity.model import ParticipantKind, ParticipantStatus, Role
from datavalley.identity.tables import ParticipantRow
from datavalley.rights.model import Grade, Right, RightKind, RightStatus, Scope, TitleLink
from datavalley.rights.registration import get_row, oversees, require_live, require_verified
from datavalley.rights.tables import ResourceRow, RightRow
from datavalley.store.base import new_id

WILDCARD = "*"


def to_right(r: RightRow) -> Right:
    return Right(
        id=r.id,
        resource_id=r.resource_id,
        kind=RightKind(r.kind),
        holder_id=r.holder_id,
        grantor_id=r.grantor_id,
        parent_id=r.parent_id,
        scope=Scope(tuple(r.purposes), tuple(r.territories), r.valid_from, r.valid_until, r.sublicensable),
        public_data_authorisation=r.public_data_authorisation,
        status=RightStatus(r.status),
        created_at=r.created_at,
        ended_at=r.ended_at,
    )


def _names(values: list[str] | None, field: str) -> list[str]:
    out = sorted({v.strip() for v in (values or []) if v.strip()})
    if not out:
        raise InvalidInput(f"{field} must name at least one value", field=field)
    if WILDCARD in out and len(out) > 1:
        raise InvalidInput(f"{field}: '*' (unrestricted) cannot be combined with other values", field=field)
    return out


def _covers(parent: list[str], child: list[str]) -> list[str]:
    """Values of ``child`` that ``parent`` does not allow."""
    if WILDCARD in parent:
        return []
    return [c for c in child if c not in parent]


def is_effective(r: RightRow, now: datetime) -> bool:
    """Active, and within its term."""
    return (
        r.status == RightStatus.ACTIVE
        and r.valid_from <= now
        and (r.valid_until is None or now < r.valid_until)
    )


def _pick_parent(ctx: Context, res: ResourceRow, kind: RightKind, parent_id: str | None) -> RightRow:
    me = ctx.principal.participant_id
    if parent_id is not None:
        parent = ctx.session.get(RightRow, parent_id)
        if parent is None or parent.resource_id != res.id:
            raise NotFound(f"right {parent_id} does not exist on resource {res.id}", right_id=parent_id)
        if parent.holder_id != me:
            raise Forbidden(f"right {parent_id} is not held by participant {me}")
        candidates = [parent]
    else:
        candidates = list(
            ctx.session.scalars(
                select(RightRow)
                .where(RightRow.resource_id == res.id, RightRow.kind == kind.value, RightRow.holder_id == me)
                .order_by(RightRow.parent_id.is_not(None), RightRow.id)
            )
        )
    usable = [c for c in candidates if c.kind == kind.value and is_effective(c, ctx.now)]
    if not usable:
        raise Forbidden(
            f"participant {me} holds no effective {kind.value} right on resource {res.id} to grant from"
        )
    root_or_sub = [c for c in usable if c.parent_id is None or c.sublicensable]
    if not root_or_sub:
        raise Forbidden(f"participant {me}'s {kind.value} right on resource {res.id} is not sub-licensable")
    return root_or_sub[0]


def _grantee(ctx: Context, participant_id: str) -> ParticipantRow:
    p = ctx.session.get(ParticipantRow, participant_id)
    if p is None:
        raise NotFound(f"participant {participant_id} does not exist", participant_id=participant_id)
    if p.status != ParticipantStatus.VERIFIED:
        raise Conflict(f"participant {participant_id} is {p.status}; rights go only to verified participants")
    return p


def grant_right(
    ctx: Context,
    resource_id: str,
    *,
    kind: str,
    grantee_id: str,
    purposes: list[str],
    territories: list[str],
    valid_until: datetime,
    valid_from: datetime | None = None,
    sublicensable: bool = False,
    parent_id: str | None = None,
    public_data_authorisation: bool = False,
) -> Right:
    """Grant processing & use or product operation to another participant (a licence).

    Raises :class:`InvalidInput` (kind, empty scope, bad term), :class:`Forbidden` (no right to grant
    from, scope exceeding it), :class:`Conflict` (frozen/ended resource, unverified grantee) and
    :class:`PolicyViolation` (core data).
    """
    ctx.require(Role.PROVIDER, Role.CONSUMER, action="granting a right")
    require_verified(ctx, "granting a right")
    try:
        k = RightKind(kind)
    except ValueError:
        raise InvalidInput(f"unknown right kind {kind!r}", field="kind") from None
    if k == RightKind.HOLDING:
        raise InvalidInput("the holding right is transferred, never granted (use transfer)", field="kind")
    res = get_row(ctx, resource_id, lock=True)
    if res.provider_id == ctx.principal.participant_id:
        # Licensing one's own data is a provider act; a sub-licensee re-grants under its licence.
        ctx.require(Role.PROVIDER, action="granting a right on a resource you hold")
    require_live(res, "granting rights")
    if res.effective_grade == Grade.CORE:
        raise PolicyViolation(
            f"resource {resource_id} is core data: no processing or operation rights may be granted"
        )
    if grantee_id == ctx.principal.participant_id:
        raise InvalidInput("a participant cannot grant a right to itself", field="grantee_id")
    _grantee(ctx, grantee_id)
    parent = _pick_parent(ctx, res, k, parent_id)
    purposes_v = _names(purposes, "purposes")
    territories_v = _names(territories, "territories")
    start = valid_from or ctx.now
    if valid_until.tzinfo is None or start.tzinfo is None:
        raise InvalidInput("valid_from and valid_until need a time zone", field="valid_until")
    if valid_until <= start:
        raise InvalidInput("valid_until must be after valid_from", field="valid_until")
    excess = []
    if bad := _covers(parent.purposes, purposes_v):
        excess.append(f"purposes {bad} (allowed: {parent.purposes})")
    if bad := _covers(parent.territories, territories_v):
        excess.append(f"territories {bad} (allowed: {parent.territories})")
    if start < parent.valid_from or (parent.valid_until is not None and valid_until > parent.valid_until):
        until = parent.valid_until.isoformat() if parent.valid_until else "open"
        excess.append(f"term {start.isoformat()}..{valid_until.isoformat()} (allowed until {until})")
    if sublicensable and not parent.sublicensable:
        excess.append("sub-licensing (the parent right is not sub-licensable)")
    if excess:
        raise Forbidden(f"grant exceeds right {parent.id}: " + "; ".join(excess), parent_id=parent.id)
    row = RightRow(
        id=new_id("g"),
        resource_id=res.id,
        kind=k.value,
        holder_id=grantee_id,
        grantor_id=ctx.principal.participant_id,
        parent_id=parent.id,
        purposes=purposes_v,
        territories=territories_v,
        valid_from=start,
        valid_until=valid_until,
        sublicensable=sublicensable,
        public_data_authorisation=public_data_authorisation,
        status=RightStatus.ACTIVE.value,
        created_at=ctx.now,
        ended_at=None,
    )
    ctx.session.add(row)
    ctx.session.flush()
    ctx.emit(
        "right.public_data_authorised" if public_data_authorisation else "right.granted",
        [res.id, row.id, grantee_id],
        {
            "right": row.id,
            "resource": res.id,
            "kind": k.value,
            "holder": grantee_id,
            "grantor": row.grantor_id,
            "parent": parent.id,
            "scope": to_right(row).scope.to_json(),
        },
    )
    return to_right(row)


def authorise_public_data_operation(
    ctx: Context,
    resource_id: str,
    *,
    operator_id: str,
    purposes: list[str],
    territories: list[str],
    valid_until: datetime,
) -> Right:
    """A public body holding public data authorises an operating entity to run products on it.

    As in the 2025 national public-data rules: a product-operation right with a fixed scope and term,
    not sub-licensable, recorded as an authorisation. Raises :class:`Forbidden` unless the caller is the
    public-body holder of a public-data resource.
    """
    ctx.require(Role.PROVIDER, action="authorising public-data operation")
    require_verified(ctx, "authorising public-data operation")
    res = get_row(ctx, resource_id)
    me = ctx.session.get(ParticipantRow, ctx.principal.participant_id)
    if me is None or me.kind != ParticipantKind.PUBLIC_BODY or res.provider_id != me.id:
        raise Forbidden("only the public body holding a resource authorises its operation")
    if not res.public_data:
        raise Conflict(f"resource {resource_id} is not registered as public data")
    return grant_right(
        ctx,
        resource_id,
        kind=RightKind.PRODUCT_OPERATION.value,
        grantee_id=operator_id,
        purposes=purposes,
        territories=territories,
        valid_until=valid_until,
        sublicensable=False,
        public_data_authorisation=True,
    )


def transfer_holding(
    ctx: Context, resource_id: str, *, to_id: str, include_use_rights: bool = True
) -> list[Right]:
    """Transfer the holding right (by default with the holder's root processing and operation rights).

    Derived grants stay valid: they are re-parented onto the new holder's rights.
    """
    ctx.require(Role.PROVIDER, action="transferring a right")
    require_verified(ctx, "transferring a right")
    res = get_row(ctx, resource_id, lock=True)
    require_live(res, "transferring rights")
    if res.provider_id != ctx.principal.participant_id:
        raise Forbidden(f"only the holder of resource {resource_id} transfers its holding right")
    if to_id == res.provider_id:
        raise InvalidInput("cannot transfer to the current holder", field="to_id")
    _grantee(ctx, to_id)
    kinds = list(RightKind) if include_use_rights else [RightKind.HOLDING]
    moved: list[Right] = []
    for kind in kinds:
        old = ctx.session.scalars(
            select(RightRow).where(
                RightRow.resource_id == res.id,
                RightRow.kind == kind.value,
                RightRow.parent_id.is_(None),
                RightRow.status == RightStatus.ACTIVE,
            )
        ).first()
        if old is None:
            continue
        new = RightRow(
            id=new_id("g"),
            resource_id=res.id,
            kind=kind.value,
            holder_id=to_id,
            grantor_id=old.holder_id,
            parent_id=None,
            purposes=old.purposes,
            territories=old.territories,
            valid_from=ctx.now,
            valid_until=old.valid_until,
            sublicensable=True,
            public_data_authorisation=False,
            status=RightStatus.ACTIVE.value,
            created_at=ctx.now,
            ended_at=None,
        )
        ctx.session.add(new)
        ctx.session.flush()
        for child in ctx.session.scalars(
            select(RightRow).where(RightRow.parent_id == old.id, RightRow.status == RightStatus.ACTIVE)
        ):
            child.parent_id = new.id
        old.status, old.ended_at = RightStatus.TRANSFERRED.value, ctx.now
        moved.append(to_right(new))
    res.provider_id, res.updated_at = to_id, ctx.now
    ctx.emit(
        "right.transferred",
        [res.id, to_id, *[m.id for m in moved]],
        {
            "resource": res.id,
            "from": ctx.principal.participant_id,
            "to": to_id,
            "rights": [m.id for m in moved],
        },
    )
    from datavalley.rights.cert_status import issue_on_transfer

    issue_on_transfer(ctx, res)  # the new holder's certificate; the previous holder's is superseded
    return moved


def revoke_right(ctx: Context, right_id: str, *, reason: str = "") -> list[Right]:
    """Revoke a granted right and, in cascade, every right derived from it. Returns all revoked rights.

    Allowed: the grantor, the holder of any ancestor right, or the operator. Root rights end only with the
    registration (cancel or revoke it).
    """
    if not ctx.principal.has(Role.OPERATOR):
        ctx.require(Role.PROVIDER, action="revoking a right")
        require_verified(ctx, "revoking a right")
    row = ctx.session.get(RightRow, right_id)
    me = ctx.principal.participant_id
    if row is None:
        raise NotFound(f"right {right_id} does not exist", right_id=right_id)
    # The grantor, or the holder of any right this one derives from, may revoke it.
    ancestor_held = False
    cursor = ctx.session.get(RightRow, row.parent_id) if row.parent_id else None
    while cursor is not None and not ancestor_held:
        ancestor_held = cursor.holder_id == me
        cursor = ctx.session.get(RightRow, cursor.parent_id) if cursor.parent_id else None
    allowed = ctx.principal.has(Role.OPERATOR) or row.grantor_id == me or ancestor_held
    if not allowed:
        if row.holder_id == me:
            raise Forbidden(
                f"the holder of right {right_id} cannot revoke it; its grantor or the operator can"
            )
        raise NotFound(f"right {right_id} does not exist", right_id=right_id)
    if row.parent_id is None:
        raise Conflict(f"right {right_id} is a root right: cancel or revoke the registration instead")
    if row.status != RightStatus.ACTIVE:
        raise Conflict(f"right {right_id} is already {row.status}")
    revoked = [row]
    frontier = [row.id]
    while frontier:
        children = list(
            ctx.session.scalars(
                select(RightRow).where(
                    RightRow.parent_id.in_(frontier), RightRow.status == RightStatus.ACTIVE
                )
            )
        )
        revoked += children
        frontier = [c.id for c in children]
    for r in revoked:
        r.status, r.ended_at = RightStatus.REVOKED.value, ctx.now
    from datavalley.canonical import digest

    ctx.emit(
        "right.revoked",
        [row.resource_id, *[r.id for r in revoked]],
        {
            "right": row.id,
            "cascade": [r.id for r in revoked[1:]],
            "reason_digest": digest(reason) if reason else None,
        },
    )
    from datavalley.market import governance

    why = f"right {row.id} revoked" + (f": {reason}" if reason else "")
    governance.end_contracts_on_rights(ctx, [r.id for r in revoked], reason=why)
    return [to_right(r) for r in revoked]


def chain_of_title(ctx: Context, resource_id: str) -> list[TitleLink]:
    """Every right ever recorded on the resource, as a forest (roots first, children under parents)."""
    res = get_row(ctx, resource_id)
    rows = list(
        ctx.session.scalars(select(RightRow).where(RightRow.resource_id == res.id).order_by(RightRow.id))
    )
    rows = [r for r in rows if right_visible(ctx, res, r)]
    children: dict[str | None, list[RightRow]] = {}
    for r in rows:
        children.setdefault(r.parent_id, []).append(r)
    # A transferred root's successor is a new root whose grantor is the old holder; keep roots in time order.
    out: list[TitleLink] = []

    def walk(parent: str | None, depth: int) -> None:
        for r in children.get(parent, []):
            out.append(TitleLink(to_right(r), depth))
            walk(r.id, depth + 1)

    walk(None, 0)
    return out


def list_rights(
    ctx: Context, *, holder_id: str | None = None, resource_id: str | None = None, active_only: bool = True
) -> list[Right]:
    """Rights held by a participant (default: the caller) or on a resource the caller may see."""
    stmt = select(RightRow)
    res: ResourceRow | None = None
    if resource_id is not None:
        res = get_row(ctx, resource_id)
        stmt = stmt.where(RightRow.resource_id == resource_id)
    else:
        holder = holder_id or ctx.principal.participant_id
        if holder != ctx.principal.participant_id and not oversees(ctx):
            raise Forbidden("only overseers list another participant's rights")
        stmt = stmt.where(RightRow.holder_id == holder)
    rows = ctx.session.scalars(stmt.order_by(RightRow.id))
    return [
        to_right(r)
        for r in rows
        if (not active_only or is_effective(r, ctx.now)) and (res is None or right_visible(ctx, res, r))
    ]


def right_visible(ctx: Context, res: ResourceRow, r: RightRow) -> bool:
    """Who holds a licence on a resource is between the parties: overseers and the resource's holder see
    every right; others see root rights (the public chain of title) and rights they hold or granted."""
    me = ctx.principal.participant_id
    return oversees(ctx) or res.provider_id == me or r.parent_id is None or me in (r.holder_id, r.grantor_id)


def has_right(
    ctx: Context, resource_id: str, participant_id: str, kind: RightKind, purpose: str | None = None
) -> bool:
    """Whether a participant holds an effective right of ``kind`` (for ``purpose``) — used by the market."""
    rows = ctx.session.scalars(
        select(RightRow).where(
            RightRow.resource_id == resource_id,
            RightRow.holder_id == participant_id,
            RightRow.kind == kind.value,
        )
    )
    return any(
        is_effective(r, ctx.now) and (purpose is None or not _covers(r.purposes, [purpose])) for r in rows
    )
