"""Governance of every use: rights, registration status and participant status decide at the moment of use.

One function, :func:`check_use_allowed`, answers "may this contract be used *now*?" for every kind of use
(private SQL, PSI, plain metered uses, and any later delivery read, training round or compute job). Call it
in the unit of work that meters the use, after locking the contract row, so that the check and the charge
are one atomic decision::

    row = contracts._get(ctx, contract_id, lock=True)       # SELECT … FOR UPDATE on the contract
    clearance = check_use_allowed(ctx, row, purpose=p, region=r)
    … meter, release money, emit the usage event …

It refuses (raises) with a precise error whose ``details["reason"]`` is one of :data:`REASONS`:

=========================  ====  ===================================================================
reason                     HTTP  meaning
=========================  ====  ===================================================================
``contract_not_live``      403   the contract is not FINALIZED (negotiating, terminated, …)
``contract_suspended``     403   the contract is suspended (by the provider, the operator, unpaid)
``contract_not_in_term``   403   now is outside the contract's term
``right_missing``          403   the contract granted no processing & use right on a resource
``right_revoked``          403   that right was revoked (or transferred away)
``right_expired``          403   that right's term is over
``right_out_of_scope``     403   the purpose or region of this use lies outside that right's scope
``participant_suspended``  409   the provider or the consumer is suspended at the exchange
``resource_frozen``        409   an objection is open against a resource of the product
``resource_cancelled``     409   the holder cancelled the registration
``resource_revoked``       409   the operator revoked the registration (e.g. an objection was upheld)
``resource_expired``       409   the registration's validity is over (not renewed)
``provider_title_lost``    409   the provider no longer holds the holding or a product-operation right
=========================  ====  ===================================================================

403 (:class:`PolicyViolation`) means the contract itself does not allow the use; 409 (:class:`Conflict`)
means the state of a resource, a title or a participant does not allow it at present. Nothing is
recorded, released or charged when it raises.

Status changes propagate to contracts (docs/PROTOCOL.md §7, "Status changes and contracts"):

- an objection freezes the resource: use is refused while it is open; both parties of every affected
  contract are notified (``contract.resource_frozen`` / ``contract.resource_unfrozen``);
- an upheld objection, a revocation or a cancellation ends the registration: every affected contract is
  terminated with the reason, its unused prepayment refunded (:func:`end_contracts_on_resource`), both
  parties notified (``contract.governance_ended``);
- a cancellation under live contracts is refused unless the holder asks to terminate them;
- revoking the processing & use right a contract granted (or a right it derives from) terminates the
  contract the same way (:func:`end_contracts_on_rights`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import String, cast, select

from datavalley.canonical import digest
from datavalley.errors import Conflict, Forbidden, PolicyViolation
from datavalley.exchange import Context
from datavalley.identity.model import ParticipantStatus
from datavalley.identity.tables import ParticipantRow
from datavalley.market.model import ContractState
from datavalley.market.tables import ContractRow, ProductRow
from datavalley.rights.model import ResourceStatus, RightKind, RightStatus
from datavalley.rights.tables import ObjectionRow, ResourceRow, RightRow

REASONS: Final = (
    "contract_not_live",
    "contract_suspended",
    "contract_not_in_term",
    "right_missing",
    "right_revoked",
    "right_expired",
    "right_out_of_scope",
    "participant_suspended",
    "resource_frozen",
    "resource_cancelled",
    "resource_revoked",
    "resource_expired",
    "provider_title_lost",
)
WILDCARD: Final = "*"
_OPEN_STATES: Final = ("REQUESTED", "OFFERED", "ACCEPTED", "AGREED")
_LIVE_STATES: Final = ("VERIFIED", "FINALIZED")


@dataclass(frozen=True)
class UseClearance:
    """What :func:`check_use_allowed` established: the contract may be used now, on these resources,
    under these processing & use rights (one per resource, in the product's resource order)."""

    contract_id: str
    product_id: str
    provider_id: str
    consumer_id: str
    resource_ids: tuple[str, ...]
    right_ids: tuple[str, ...]
    checked_at: datetime


def _refuse(cls: type[PolicyViolation] | type[Conflict], reason: str, message: str, **details: Any) -> None:
    raise cls(message, reason=reason, **details)


def _effective(r: RightRow, now: datetime) -> bool:
    return (
        r.status == RightStatus.ACTIVE
        and r.valid_from <= now
        and (r.valid_until is None or now < r.valid_until)
    )


def _holds_title(ctx: Context, resource_id: str, participant_id: str) -> bool:
    rows = ctx.session.scalars(
        select(RightRow).where(
            RightRow.resource_id == resource_id,
            RightRow.holder_id == participant_id,
            RightRow.kind.in_([RightKind.HOLDING.value, RightKind.PRODUCT_OPERATION.value]),
            RightRow.status == RightStatus.ACTIVE.value,
        )
    )
    return any(_effective(r, ctx.now) for r in rows)


def check_use_allowed(
    ctx: Context,
    contract: ContractRow,
    *,
    purpose: str | None = None,
    region: str | None = None,
) -> UseClearance:
    """Refuse unless every right, status and rule behind ``contract`` holds at ``ctx.now``.

    ``contract`` should be locked (``SELECT … FOR UPDATE``) by the caller's unit of work, which then meters
    the use in the same transaction. ``purpose`` and ``region`` (when given) must lie within the scope of
    every processing & use right the contract granted. Checks, in order: the contract (state, suspension,
    term), both participants (not suspended), then per resource of the product: registration status and
    validity, the provider's title (an effective holding or product-operation right), the consumer's
    processing & use right (effective, in scope).

    Raises :class:`PolicyViolation` (403) or :class:`Conflict` (409) with ``details["reason"]`` from
    :data:`REASONS`; returns a :class:`UseClearance` otherwise. Reads only: it changes nothing.
    """
    cid = contract.id
    if contract.state != ContractState.FINALIZED:
        why = f" (terminated: {contract.termination_reason})" if contract.termination_reason else ""
        _refuse(
            PolicyViolation,
            "contract_not_live",
            f"contract {cid} is {contract.state}: no use is allowed{why}",
            state=contract.state,
        )
    if contract.suspended:
        _refuse(
            PolicyViolation,
            "contract_suspended",
            f"contract {cid} is suspended: no use is allowed until it is resumed",
        )
    now = ctx.now
    if (
        contract.valid_from is None
        or contract.valid_until is None
        or not (contract.valid_from <= now < contract.valid_until)
    ):
        term = (
            f"{contract.valid_from.isoformat()}..{contract.valid_until.isoformat()}"
            if contract.valid_from and contract.valid_until
            else "unset"
        )
        when = (
            "has expired" if contract.valid_until and now >= contract.valid_until else "is not in force yet"
        )
        _refuse(
            PolicyViolation, "contract_not_in_term", f"contract {cid} {when}: no use is allowed (term {term})"
        )
    for side, pid in (("provider", contract.provider_id), ("consumer", contract.consumer_id)):
        p = ctx.session.get(ParticipantRow, pid)
        if p is None or p.status == ParticipantStatus.SUSPENDED:
            _refuse(
                Conflict,
                "participant_suspended",
                f"the {side} {pid} of contract {cid} is suspended at the exchange: no use is allowed",
                participant_id=pid,
            )
    product = ctx.session.get(ProductRow, contract.product_id)
    if product is None:  # pragma: no cover - a foreign key guarantees it
        _refuse(PolicyViolation, "contract_not_live", f"contract {cid} has no product")
    assert product is not None
    rights = {
        r.resource_id: r
        for r in ctx.session.scalars(select(RightRow).where(RightRow.id.in_(list(contract.right_ids))))
    }
    used: list[str] = []
    for rid in product.resource_ids:
        res = ctx.session.get(ResourceRow, rid)
        if res is None:  # pragma: no cover - a foreign key guarantees it
            _refuse(Conflict, "resource_revoked", f"resource {rid} of contract {cid} does not exist")
        assert res is not None
        _check_resource(ctx, cid, res)
        if not _holds_title(ctx, rid, contract.provider_id):
            _refuse(
                Conflict,
                "provider_title_lost",
                f"the provider {contract.provider_id} of contract {cid} no longer holds the holding or a "
                f"product-operation right on resource {rid}: no use is allowed",
                resource_id=rid,
            )
        right = rights.get(rid)
        if right is None or right.holder_id != contract.consumer_id:
            _refuse(
                PolicyViolation,
                "right_missing",
                f"contract {cid} granted no processing & use right on resource {rid}",
                resource_id=rid,
            )
        assert right is not None
        _check_right(ctx, cid, right, purpose, region)
        used.append(right.id)
    return UseClearance(
        contract_id=cid,
        product_id=product.id,
        provider_id=contract.provider_id,
        consumer_id=contract.consumer_id,
        resource_ids=tuple(product.resource_ids),
        right_ids=tuple(used),
        checked_at=now,
    )


def _check_resource(ctx: Context, cid: str, res: ResourceRow) -> None:
    if res.status == ResourceStatus.FROZEN:
        open_ = list(
            ctx.session.scalars(
                select(ObjectionRow.id)
                .where(ObjectionRow.resource_id == res.id, ObjectionRow.status == "open")
                .order_by(ObjectionRow.id)
            )
        )
        _refuse(
            Conflict,
            "resource_frozen",
            f"resource {res.id} of contract {cid} is frozen by objection(s) {', '.join(open_)}: "
            "no use is allowed until the operator resolves them",
            resource_id=res.id,
            objections=open_,
        )
    if res.status == ResourceStatus.CANCELLED:
        _refuse(
            Conflict,
            "resource_cancelled",
            f"resource {res.id} of contract {cid} was cancelled by its holder: no use is allowed",
            resource_id=res.id,
        )
    if res.status != ResourceStatus.REGISTERED:
        _refuse(
            Conflict,
            "resource_revoked",
            f"resource {res.id} of contract {cid} is {res.status}: no use is allowed",
            resource_id=res.id,
        )
    if ctx.now >= res.valid_until:
        _refuse(
            Conflict,
            "resource_expired",
            f"the registration of resource {res.id} of contract {cid} expired on "
            f"{res.valid_until.isoformat()}: no use is allowed until it is renewed",
            resource_id=res.id,
        )


def _check_right(ctx: Context, cid: str, right: RightRow, purpose: str | None, region: str | None) -> None:
    if right.status != RightStatus.ACTIVE:
        _refuse(
            PolicyViolation,
            "right_revoked",
            f"the processing & use right {right.id} granted by contract {cid} is {right.status}: "
            "no use is allowed",
            right_id=right.id,
        )
    if not (right.valid_from <= ctx.now and (right.valid_until is None or ctx.now < right.valid_until)):
        _refuse(
            PolicyViolation,
            "right_expired",
            f"the processing & use right {right.id} granted by contract {cid} is not in its term",
            right_id=right.id,
        )
    if purpose is not None and WILDCARD not in right.purposes and purpose not in right.purposes:
        _refuse(
            PolicyViolation,
            "right_out_of_scope",
            f"purpose {purpose!r} is outside the processing & use right {right.id} of contract {cid} "
            f"(purposes: {right.purposes})",
            right_id=right.id,
        )
    if region is not None and WILDCARD not in right.territories and region not in right.territories:
        _refuse(
            PolicyViolation,
            "right_out_of_scope",
            f"region {region!r} is outside the processing & use right {right.id} of contract {cid} "
            f"(territories: {right.territories})",
            right_id=right.id,
        )


def check_contract_use(
    ctx: Context, contract_id: str, *, purpose: str | None = None, region: str | None = None
) -> UseClearance:
    """A dry run of :func:`check_use_allowed` for a party of the contract (``GET …/use-check``).

    Nodes call it before they compute anything (a PSI session, a private SQL query), so a use that would
    be refused costs no computation; the authoritative check is the one in the metering transaction.
    """
    from datavalley.market.contracts import _get

    row = _get(ctx, contract_id)
    me = ctx.principal.participant_id
    if me not in (row.provider_id, row.consumer_id) and not ctx.principal.is_system:
        raise Forbidden(f"only the parties of contract {contract_id} check its use")
    return check_use_allowed(ctx, row, purpose=purpose, region=region)


# --- propagation of status changes -------------------------------------------------------------


def contracts_on_resource(ctx: Context, resource_id: str, states: tuple[str, ...]) -> list[ContractRow]:
    """Contracts in ``states`` on any product resting on ``resource_id``, locked, in ID order."""
    # resource_ids is JSON; match its text, then confirm exactly ("_" in IDs is a LIKE wildcard).
    products = [
        p.id
        for p in ctx.session.scalars(
            select(ProductRow).where(cast(ProductRow.resource_ids, String).like(f'%"{resource_id}"%'))
        )
        if resource_id in p.resource_ids
    ]
    if not products:
        return []
    return list(
        ctx.session.scalars(
            select(ContractRow)
            .where(ContractRow.product_id.in_(products), ContractRow.state.in_(list(states)))
            .order_by(ContractRow.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    )


def live_contracts_on_resource(ctx: Context, resource_id: str) -> tuple[int, list[str]]:
    """How many contracts rest on ``resource_id`` and may hold money (VERIFIED/FINALIZED), and the IDs of
    those the caller is party to (another operator's contracts on the resource are counted, not named)."""
    rows = contracts_on_resource(ctx, resource_id, _LIVE_STATES)
    me = ctx.principal.participant_id
    return len(rows), [c.id for c in rows if me in (c.provider_id, c.consumer_id)]


def notify_resource_frozen(ctx: Context, resource_id: str, objection_id: str, *, frozen: bool) -> list[str]:
    """Tell both parties of every live or negotiating contract that use stops (or may resume)."""
    kind = "contract.resource_frozen" if frozen else "contract.resource_unfrozen"
    affected = contracts_on_resource(ctx, resource_id, _LIVE_STATES + _OPEN_STATES)
    for row in affected:
        ctx.emit(
            kind,
            [row.id, row.provider_id, row.consumer_id, resource_id],
            {"contract": row.id, "resource": resource_id, "objection": objection_id, "state": row.state},
        )
    return [r.id for r in affected]


def _terminate(ctx: Context, row: ContractRow, *, cause: str, subject: str, reason: str) -> None:
    """End ``row`` (refunding unused prepayment, see PROTOCOL.md §7) and notify both parties."""
    from datavalley.market.contracts import _end

    before = (row.released, row.refunded)
    state = row.state
    _end(ctx, row, reason, refund=True)
    ctx.emit(
        "contract.governance_ended",
        [row.id, row.provider_id, row.consumer_id, subject],
        {
            "contract": row.id,
            "cause": cause,
            "subject": subject,
            "from": state,
            "reason_digest": digest({"reason": reason}),
            "released": row.released - before[0],
            "refunded": row.refunded - before[1],
        },
    )


def end_contracts_on_resource(ctx: Context, resource_id: str, *, cause: str, reason: str) -> list[str]:
    """Terminate every live or negotiating contract resting on ``resource_id`` after it was ``cause``
    (``resource.cancelled`` / ``resource.revoked``); returns their IDs."""
    affected = contracts_on_resource(ctx, resource_id, _LIVE_STATES + _OPEN_STATES)
    for row in affected:
        _terminate(ctx, row, cause=cause, subject=resource_id, reason=f"{reason} (resource {resource_id})")
    return [r.id for r in affected]


def end_contracts_on_rights(ctx: Context, right_ids: list[str], *, reason: str) -> list[str]:
    """Terminate live contracts whose processing & use right is among the revoked ``right_ids``.

    A contract being terminated already (its rights are revoked by its own termination) is skipped.
    """
    if not right_ids:
        return []
    holders = {
        r.holder_id
        for r in ctx.session.scalars(select(RightRow).where(RightRow.id.in_(right_ids)))
        if r.kind == RightKind.PROCESSING_USE
    }
    if not holders:
        return []
    revoked = set(right_ids)
    live = select(ContractRow.id, ContractRow.right_ids).where(
        ContractRow.consumer_id.in_(sorted(holders)), ContractRow.state.in_(list(_LIVE_STATES))
    )
    hits = sorted(cid for cid, rights in ctx.session.execute(live) if revoked.intersection(rights))
    if not hits:
        return []
    locked = ctx.session.scalars(  # only the contracts concerned, in ID order
        select(ContractRow)
        .where(ContractRow.id.in_(hits))
        .order_by(ContractRow.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    ended = []
    for row in list(locked):
        if row.state not in _LIVE_STATES:
            continue
        hit = sorted(revoked.intersection(row.right_ids))
        if not hit or row.termination_reason is not None:
            continue
        _terminate(ctx, row, cause="right.revoked", subject=hit[0], reason=f"{reason} (right {hit[0]})")
        ended.append(row.id)
    return ended


def on_registration_ended(ctx: Context, resource_id: str, *, cause: str, reason: str) -> list[str]:
    """After a cancellation or revocation (the ``cause`` event was just emitted): its certificates take
    that status (changed by that event), and its contracts end."""
    from datavalley.rights.cert_status import end_certificates

    end_certificates(ctx, resource_id, cause.removeprefix("resource."), ctx.event_ids[-1])
    return end_contracts_on_resource(ctx, resource_id, cause=cause, reason=reason)


# --- listing: a privacy budget and a number of uses that fit together ----------------------------

#: Per-query ε values the listing spells out (how many queries of each the budget pays for).
QUERY_COSTS: Final = (0.1, 0.25, 0.5, 1.0)
#: The smallest average ε per use the exchange lists: below it the noise (scale ≥ 20× the sensitivity of
#: a count) drowns the answers, so uses the product promises could never be spent on useful queries.
MIN_EPSILON_PER_USE: Final = 0.05


def budget_plan(kind: str, terms: dict[str, Any]) -> dict[str, Any] | None:
    """How many queries of each cost a product's ε budget allows, capped by its max uses (None: no budget).

    PSI products with ``epsilon_per_session`` spend that much per aggregate session, so that is the one
    cost listed for them.
    """
    privacy = terms.get("privacy") or {}
    budget = privacy.get("epsilon")
    if not isinstance(budget, int | float) or budget <= 0:
        return None
    max_uses = terms.get("max_uses")
    per_session = privacy.get("epsilon_per_session")
    costs = (float(per_session),) if kind == "set_intersection" and per_session else QUERY_COSTS
    plan = []
    for cost in costs:
        queries = int(budget / cost + 1e-9)
        plan.append({"epsilon": cost, "queries": queries if max_uses is None else min(queries, max_uses)})
    return {
        "budget": float(budget),
        "max_uses": max_uses,
        "epsilon_per_use": None if not max_uses else float(budget) / max_uses,
        "plan": plan,
    }


def budget_check(kind: str, terms: dict[str, Any]) -> dict[str, Any] | None:
    """The listing checklist item ``privacy_budget_consistent`` (None when the product has no budget).

    Private analytics: the budget must leave at least :data:`MIN_EPSILON_PER_USE` per promised use. PSI
    offering only aggregate sessions: max uses must not exceed the sessions the budget pays for.
    """
    info = budget_plan(kind, terms)
    if info is None:
        return None
    spelled = ", ".join(f"{p['queries']} at ε={p['epsilon']:g}" for p in info["plan"])
    max_uses, budget = info["max_uses"], info["budget"]
    ok, why = True, "no use limit: the budget alone bounds use"
    if max_uses and kind == "private_analytics":
        ok = info["epsilon_per_use"] >= MIN_EPSILON_PER_USE
        why = f"{max_uses} uses leave ε={info['epsilon_per_use']:.3g} per use" + (
            "" if ok else f", below the listed minimum {MIN_EPSILON_PER_USE}: lower max_uses or raise ε"
        )
    elif max_uses and kind == "set_intersection":
        sessions = info["plan"][0]["queries"]
        only_aggregate = list(terms.get("psi_modes") or []) == ["aggregate"]
        ok = not only_aggregate or int(budget / info["plan"][0]["epsilon"] + 1e-9) >= max_uses
        why = f"{max_uses} uses; the budget pays for {sessions} aggregate session(s)" + (
            "" if ok else ": lower max_uses or raise ε"
        )
    return {
        "check": "privacy_budget_consistent",
        "ok": ok,
        "detail": f"budget ε={budget:g} allows {spelled}; {why}",
        "plan": info["plan"],
    }
