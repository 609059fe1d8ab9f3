"""Contracts: Dataspace Protocol negotiation, signed ODRL agreements, escrow, metered use, termination.

States (docs/PROTOCOL.md §7): REQUESTED (consumer) → OFFERED (provider) → ACCEPTED (consumer; the
agreement is now fixed) → AGREED (provider signs) → VERIFIED (consumer signs; prepayment into escrow) →
FINALIZED (the exchange grants processing & use rights for the term; use may begin), or TERMINATED.

Every use goes through :func:`record_use`: the policy engine decides, the use and its privacy cost are
reserved under a row lock on the contract (so concurrent uses never overdraw), the price is released from
escrow to the provider minus the exchange fee, and a usage event (digests and quantities only) is emitted
— all in one transaction.
"""

from __future__ import annotations

import base64
import hashlib
import math
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from sqlalchemy import or_, select

from datavalley.canonical import digest
from datavalley.crossborder.enforce import check_transfer
from datavalley.errors import BudgetExhausted, Conflict, Forbidden, InvalidInput, NotFound, PolicyViolation
from datavalley.exchange import Context
from datavalley.identity.model import Principal, Role
from datavalley.identity.service import active_key
from datavalley.keys import decode_public_key
from datavalley.market import accounts
from datavalley.market.governance import check_use_allowed
from datavalley.market.model import (
    Contract,
    ContractState,
    ListingStatus,
    Price,
    PriceModel,
    ProductKind,
    Use,
)
from datavalley.market.policy import Terms, UseRequest, UseState, build_agreement, evaluate, parse, urn
from datavalley.market.products import _get as get_product_row
from datavalley.market.products import _strs
from datavalley.market.tables import ContractRow, ProductRow, UseRow
from datavalley.rights.model import RightKind, RightStatus
from datavalley.rights.rights import _covers, grant_right, is_effective, revoke_right, to_right
from datavalley.rights.tables import RightRow
from datavalley.store.base import new_id
from datavalley.store.pages import Page, paginate

AGREEMENT_FORMAT = "datavalley-agreement/v1"
DEFAULT_FEE_BPS = 200  # 2 % exchange fee on every release to a provider
LIVE = (ContractState.FINALIZED,)
OPEN = (
    ContractState.REQUESTED,
    ContractState.OFFERED,
    ContractState.ACCEPTED,
    ContractState.AGREED,
)


def to_contract(r: ContractRow) -> Contract:
    return Contract(
        id=r.id,
        product_id=r.product_id,
        provider_id=r.provider_id,
        consumer_id=r.consumer_id,
        state=ContractState(r.state),
        channel=r.channel,
        suspended=r.suspended,
        price=Price.from_json(r.price),
        policy=dict(r.policy),
        prepayment=r.prepayment,
        fee_bps=r.fee_bps,
        agreement_digest=r.agreement_digest,
        provider_signature=r.provider_signature,
        consumer_signature=r.consumer_signature,
        right_ids=tuple(r.right_ids),
        valid_from=r.valid_from,
        valid_until=r.valid_until,
        uses=r.uses,
        budget_spent=r.budget_spent,
        quantity=r.quantity,
        funded=r.funded,
        escrow=r.funded - r.released - r.refunded,
        released=r.released,
        refunded=r.refunded,
        paid_until=r.paid_until,
        created_at=r.created_at,
        updated_at=r.updated_at,
        termination_reason=r.termination_reason,
    )


def _get(ctx: Context, contract_id: str, *, lock: bool = False) -> ContractRow:
    """The contract if the caller is a party or an overseer (NotFound otherwise)."""
    stmt = select(ContractRow).where(ContractRow.id == contract_id)
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    row = ctx.session.scalars(stmt).first()
    me = ctx.principal.participant_id
    if row is None or not (
        me in (row.provider_id, row.consumer_id)
        or ctx.principal.is_system
        or ctx.principal.has(Role.OPERATOR, Role.AUDITOR, Role.REGULATOR)
    ):
        raise NotFound(f"contract {contract_id} does not exist", contract_id=contract_id)
    return row


def get_contract(ctx: Context, contract_id: str) -> Contract:
    return to_contract(_get(ctx, contract_id))


def list_contracts(
    ctx: Context, *, state: str | None = None, limit: int = 50, cursor: str | None = None
) -> Page[Contract]:
    """Contracts the caller is party to (all, for overseers), oldest first."""
    me = ctx.principal.participant_id
    stmt = select(ContractRow)
    if not ctx.principal.has(Role.OPERATOR, Role.AUDITOR, Role.REGULATOR):
        stmt = stmt.where(or_(ContractRow.provider_id == me, ContractRow.consumer_id == me))
    if state:
        stmt = stmt.where(ContractRow.state == state)
    return paginate(ctx.session, stmt, ContractRow.id, cursor, limit, to_contract)


def _move(ctx: Context, row: ContractRow, to: ContractState, **payload: Any) -> None:
    old = row.state
    row.state = to.value
    row.updated_at = ctx.now
    ctx.emit(
        f"contract.{to.value.lower()}",
        [row.id, row.provider_id, row.consumer_id],
        {"id": row.id, "from": old, "to": to.value, **payload},
    )


def _expect(row: ContractRow, *states: ContractState, action: str) -> None:
    if row.state not in states:
        wanted = " or ".join(s.value for s in states)
        raise Conflict(f"contract {row.id} is {row.state}; {action} needs {wanted}", state=row.state)


def _party(ctx: Context, row: ContractRow, side: str, action: str) -> None:
    want = row.provider_id if side == "provider" else row.consumer_id
    if ctx.principal.participant_id != want:
        raise Forbidden(f"{action} is for the {side} of contract {row.id}")
    _side_role(ctx, row, action)


def _side_role(ctx: Context, row: ContractRow, action: str) -> None:
    """A party acts on a contract only with the role of its side (provider / consumer) in its token, and
    only while its participant is verified; the exchange itself and overseers are checked by the caller."""
    me = ctx.principal.participant_id
    if ctx.principal.is_system or me not in (row.provider_id, row.consumer_id):
        return
    ctx.require(Role.PROVIDER if me == row.provider_id else Role.CONSUMER, action=action)
    if not ctx.principal.participant_verified:
        raise Forbidden(f"{action} needs a verified participant (participant {me} is not)", action=action)


# --- negotiation ------------------------------------------------------------------------------------


def _narrow(template: dict[str, Any], kind: ProductKind, req: dict[str, Any]) -> dict[str, Any]:
    """The consumer's requested terms, checked to lie within the product's policy template."""
    terms: dict[str, Any] = {}
    purpose = req.get("purpose")
    if not isinstance(purpose, str) or not purpose.strip():
        raise InvalidInput("purpose is required (one of the product's purposes)", field="purpose")
    if purpose not in template["purposes"]:
        raise PolicyViolation(f"purpose {purpose!r} is not offered (offered: {template['purposes']})")
    terms["purposes"] = [purpose]
    regions = _strs(req.get("regions") or template["regions"], "regions")
    if bad := _covers(template["regions"], regions):
        raise PolicyViolation(f"regions {bad} are not offered (offered: {template['regions']})")
    terms["regions"] = regions
    days = req.get("valid_days", template["valid_days"])
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= template["valid_days"]:
        raise InvalidInput(f"valid_days must be between 1 and {template['valid_days']}", field="valid_days")
    terms["valid_days"] = days
    cap = template.get("max_uses")
    uses = req.get("max_uses", cap)
    if uses is not None and (isinstance(uses, bool) or not isinstance(uses, int) or uses < 1):
        raise InvalidInput("max_uses must be a positive integer", field="max_uses")
    if cap is not None and (uses is None or uses > cap):
        raise PolicyViolation(f"at most {cap} uses are offered", field="max_uses")
    terms["max_uses"] = uses
    if kind == ProductKind.PRIVATE_ANALYTICS:
        base = template["privacy"]
        asked = req.get("privacy") or {}
        if not isinstance(asked, dict):
            raise InvalidInput("privacy must be an object", field="privacy")
        k = asked.get("min_group_size", base["min_group_size"])
        eps = asked.get("epsilon", base["epsilon"])
        if isinstance(k, bool) or not isinstance(k, int) or k < base["min_group_size"]:
            raise PolicyViolation(
                f"min_group_size may only be raised (product minimum {base['min_group_size']})"
            )
        if isinstance(eps, bool) or not isinstance(eps, int | float) or not 0 < eps <= base["epsilon"]:
            raise PolicyViolation(f"epsilon may only be lowered (product budget {base['epsilon']})")
        terms["privacy"] = {**base, "min_group_size": k, "epsilon": float(eps)}
    if kind == ProductKind.SET_INTERSECTION:
        modes = _strs(req.get("psi_modes") or template["psi_modes"], "psi_modes")
        if bad := [m for m in modes if m not in template["psi_modes"]]:
            raise PolicyViolation(f"PSI modes {bad} are not offered (offered: {template['psi_modes']})")
        terms["psi_modes"] = modes
        if template.get("privacy"):
            terms["privacy"] = template["privacy"]
    if kind in (ProductKind.FILE_DELIVERY, ProductKind.COMPUTE_POOL):
        terms["max_quantity"] = req.get("max_quantity", template.get("max_quantity"))
        if template.get("delivery"):
            terms["delivery"] = template["delivery"]
    return terms


def _policy_for(row: ContractRow, product: ProductRow, start: datetime) -> dict[str, Any]:
    t = row.policy.get("terms", row.policy)
    privacy = t.get("privacy") or {}
    delivery = t.get("delivery") or {}
    terms = Terms(
        uid=urn("contract", row.id),
        assigner=urn("participant", row.provider_id),
        assignee=urn("participant", row.consumer_id),
        target=urn("product", product.id),
        action=ProductKind(product.kind).action,
        purposes=tuple(t["purposes"]),
        valid_from=start,
        valid_until=start + timedelta(days=t["valid_days"]),
        max_uses=t.get("max_uses"),
        regions=tuple(t["regions"]),
        min_group_size=privacy.get("min_group_size"),
        privacy_budget=privacy.get("epsilon"),
        privacy_unit=privacy.get("privacy_unit"),
        psi_modes=tuple(t.get("psi_modes") or ()),
        max_quantity=t.get("max_quantity"),
        columns=tuple(delivery.get("columns") or ()),
        pi_treatment=delivery.get("pi"),
        licensed_pi=tuple(delivery.get("licensed_pi") or ()),
        row_filter=tuple(delivery.get("row_filter") or ()),
        max_bytes=delivery.get("max_bytes"),
        duties=(
            {
                "action": "compensate",
                "constraint": [
                    {"leftOperand": "payAmount", "operator": "eq", "rightOperand": row.price["amount"]},
                    {"leftOperand": "unit", "operator": "eq", "rightOperand": row.price["currency"]},
                ],
            },
        )
        if row.price["model"] != PriceModel.FREE
        else (),
    )
    return build_agreement(terms)


def _prepayment(price: Price, terms: dict[str, Any]) -> int:
    match price.model:
        case PriceModel.FREE:
            return 0
        case PriceModel.ONE_OFF | PriceModel.SUBSCRIPTION:
            return price.amount
        case PriceModel.PER_QUERY:
            if not terms.get("max_uses"):
                raise InvalidInput(
                    "a per-query contract needs max_uses (the prepaid number of uses)", field="max_uses"
                )
            return price.cost(0, terms["max_uses"])
        case _:
            if not terms.get("max_quantity"):
                raise InvalidInput("a metered delivery contract needs max_quantity", field="max_quantity")
            return price.cost(0, terms["max_quantity"])


def request_contract(
    ctx: Context,
    *,
    product_id: str,
    purpose: str,
    regions: list[str] | None = None,
    valid_days: int | None = None,
    max_uses: int | None = None,
    privacy: dict[str, Any] | None = None,
    psi_modes: list[str] | None = None,
    max_quantity: int | None = None,
) -> Contract:
    """A consumer requests a contract on a listed product (REQUESTED): an over-the-exchange deal."""
    ctx.require(Role.CONSUMER, action="requesting a contract")
    me = ctx.principal.participant_id
    if not ctx.principal.participant_verified or me is None:
        raise Forbidden("requesting a contract needs a verified participant")
    product = get_product_row(ctx, product_id)
    terms = dict(
        purpose=purpose,
        regions=regions,
        valid_days=valid_days,
        max_uses=max_uses,
        privacy=privacy,
        psi_modes=psi_modes,
        max_quantity=max_quantity,
    )
    return to_contract(_new_contract(ctx, product, me, terms, ContractState.REQUESTED, channel="exchange"))


def offer_direct(
    ctx: Context,
    *,
    product_id: str,
    consumer_id: str,
    purpose: str,
    price: dict[str, Any] | None = None,
    regions: list[str] | None = None,
    valid_days: int | None = None,
    max_uses: int | None = None,
    privacy: dict[str, Any] | None = None,
    psi_modes: list[str] | None = None,
    max_quantity: int | None = None,
) -> Contract:
    """A directly negotiated deal: the provider offers its listed product to a named consumer (OFFERED).

    It ends in the same kind of contract as an over-the-exchange order: same checks, same signed
    agreement, same escrow and metering; only the channel differs.
    """
    ctx.require(Role.PROVIDER, action="offering a direct deal")
    if not ctx.principal.participant_verified:
        raise Forbidden("offering a direct deal needs a verified participant")
    product = get_product_row(ctx, product_id)
    if product.provider_id != ctx.principal.participant_id:
        raise Forbidden(f"only the provider of product {product_id} offers it directly")
    from datavalley.identity.tables import ParticipantRow

    consumer = ctx.session.get(ParticipantRow, consumer_id)
    if consumer is None:
        raise NotFound(f"participant {consumer_id} does not exist", participant_id=consumer_id)
    if consumer.status != "verified" or "consumer" not in consumer.roles:
        raise Conflict(f"participant {consumer_id} is not a verified consumer")
    terms = dict(
        purpose=purpose,
        regions=regions,
        valid_days=valid_days,
        max_uses=max_uses,
        privacy=privacy,
        psi_modes=psi_modes,
        max_quantity=max_quantity,
    )
    row = _new_contract(ctx, product, consumer_id, terms, ContractState.OFFERED, channel="direct")
    if price is not None:
        from datavalley.market.products import parse_price

        p = parse_price(price)
        row.price = p.to_json()
        row.prepayment = _prepayment(p, row.policy["terms"])
    ctx.emit(
        "contract.offered",
        [row.id, row.provider_id, row.consumer_id, product.id],
        {
            "id": row.id,
            "from": None,
            "to": "OFFERED",
            "channel": "direct",
            "price": row.price,
            "prepayment": row.prepayment,
            "terms_digest": digest(row.policy["terms"]),
        },
    )
    return to_contract(row)


def _new_contract(
    ctx: Context,
    product: ProductRow,
    consumer_id: str,
    req_terms: dict[str, Any],
    state: ContractState,
    *,
    channel: str,
) -> ContractRow:
    """Validate an order on ``product`` for ``consumer_id`` and insert the contract row."""
    if product.status != ListingStatus.LISTED:
        raise Conflict(f"product {product.id} is {product.status}: it takes no new orders")
    if product.provider_id == consumer_id:
        raise InvalidInput("a provider cannot contract with itself", field="product_id")
    from datavalley.rights.tables import ResourceRow

    frozen = [
        r
        for r in product.resource_ids
        if (res := ctx.session.get(ResourceRow, r)) and res.status != "registered"
    ]
    if frozen:
        raise Conflict(f"product {product.id} rests on resources that are frozen or ended: {frozen}")
    req = {k: v for k, v in req_terms.items() if v is not None or k in ("regions", "privacy", "psi_modes")}
    terms = _narrow(product.terms, ProductKind(product.kind), req)
    price = Price.from_json(product.price)
    row = ContractRow(
        id=new_id("c"),
        product_id=product.id,
        provider_id=product.provider_id,
        consumer_id=consumer_id,
        state=state.value,
        channel=channel,
        suspended=False,
        price=price.to_json(),
        policy={"terms": terms},
        prepayment=_prepayment(price, terms),
        fee_bps=int(ctx.settings.market_fee_bps),
        agreement=None,
        agreement_digest=None,
        provider_signature=None,
        consumer_signature=None,
        right_ids=[],
        valid_from=None,
        valid_until=None,
        uses=0,
        budget_spent=0.0,
        quantity=0,
        released=0,
        refunded=0,
        funded=0,
        paid_until=None,
        termination_reason=None,
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    ctx.session.add(row)
    ctx.session.flush()
    if state == ContractState.REQUESTED:
        ctx.emit(
            "contract.requested",
            [row.id, row.provider_id, consumer_id, product.id],
            {"id": row.id, "product": product.id, "channel": channel, "terms_digest": digest(terms)},
        )
    return row


def offer_contract(ctx: Context, contract_id: str, *, price: dict[str, Any] | None = None) -> Contract:
    """The provider offers terms (OFFERED), optionally a negotiated price for this buyer."""
    row = _get(ctx, contract_id, lock=True)
    _party(ctx, row, "provider", "offering")
    _expect(row, ContractState.REQUESTED, action="offering")
    if price is not None:
        from datavalley.market.products import parse_price

        p = parse_price(price)
        row.price = p.to_json()
        row.prepayment = _prepayment(p, row.policy["terms"])
    _move(ctx, row, ContractState.OFFERED, price=row.price, prepayment=row.prepayment)
    return to_contract(row)


def accept_contract(ctx: Context, contract_id: str) -> Contract:
    """The consumer accepts the offer (ACCEPTED); the agreement document is fixed now."""
    row = _get(ctx, contract_id, lock=True)
    _party(ctx, row, "consumer", "accepting")
    _expect(row, ContractState.OFFERED, action="accepting")
    check_transfer(ctx, row, stage="accept")
    product = ctx.session.get(ProductRow, row.product_id)
    assert product is not None
    start = ctx.now
    policy = _policy_for(row, product, start)
    terms = parse(policy)  # our own output must pass our own validator
    row.policy = policy
    row.valid_from, row.valid_until = terms.valid_from, terms.valid_until
    row.agreement = {
        "format": AGREEMENT_FORMAT,
        "contract_id": row.id,
        "product_id": row.product_id,
        "provider": row.provider_id,
        "consumer": row.consumer_id,
        "resources": list(product.resource_ids),
        "price": row.price,
        "prepayment": row.prepayment,
        "fee_bps": row.fee_bps,
        "policy": policy,
        "accepted_at": start.isoformat().replace("+00:00", "Z"),
    }
    row.agreement_digest = digest(row.agreement)
    _move(ctx, row, ContractState.ACCEPTED, agreement=row.agreement_digest)
    return to_contract(row)


def signing_message(contract_id: str, agreement_digest: str) -> bytes:
    """The bytes a party signs (docs/PROTOCOL.md §7)."""
    hexdigest = agreement_digest.removeprefix("sha256:")
    return f"{AGREEMENT_FORMAT}\n{contract_id}\n{hexdigest}\n".encode()


def agreement_of(ctx: Context, contract_id: str) -> dict[str, Any]:
    """The agreement to sign: the document, its digest and the exact message to sign."""
    row = _get(ctx, contract_id)
    if row.agreement is None or row.agreement_digest is None:
        raise Conflict(f"contract {contract_id} is {row.state}; the agreement exists once it is ACCEPTED")
    return {
        "agreement": row.agreement,
        "digest": row.agreement_digest,
        "message": base64.b64encode(signing_message(row.id, row.agreement_digest)).decode(),
        "provider_signature": row.provider_signature,
        "consumer_signature": row.consumer_signature,
    }


def _verify(ctx: Context, row: ContractRow, participant_id: str, signature: str) -> str:
    key = active_key(ctx.session, participant_id)
    if key is None:
        raise Conflict(
            f"participant {participant_id} has no registered key to sign with (datavalley keys register)"
        )
    try:
        sig = base64.b64decode(signature, validate=True)
    except ValueError:
        raise InvalidInput("signature is not valid base64", field="signature") from None
    assert row.agreement_digest is not None
    try:
        decode_public_key(key.public_key).verify(sig, signing_message(row.id, row.agreement_digest))
    except InvalidSignature:
        raise Forbidden(
            f"the signature does not verify under participant {participant_id}'s key {key.id} "
            f"for agreement {row.agreement_digest}"
        ) from None
    return key.id


def sign_contract(ctx: Context, contract_id: str, *, signature: str) -> Contract:
    """A party signs the agreement: the provider first (AGREED), then the consumer (VERIFIED → FINALIZED).

    The consumer's signature also moves the prepayment into escrow (402 if funds are short — then nothing
    changes, the signature included) and finalizes: processing & use rights are granted for the term.
    """
    row = _get(ctx, contract_id, lock=True)
    _side_role(ctx, row, "signing an agreement")
    me = ctx.principal.participant_id
    if me == row.provider_id:
        _expect(row, ContractState.ACCEPTED, action="the provider's signature")
        key_id = _verify(ctx, row, me, signature)
        row.provider_signature = signature
        _move(
            ctx,
            row,
            ContractState.AGREED,
            agreement=row.agreement_digest,
            signature=_sig_digest(signature),
            key=key_id,
        )
        return to_contract(row)
    if me != row.consumer_id:
        raise NotFound(f"contract {contract_id} does not exist", contract_id=contract_id)
    _expect(row, ContractState.AGREED, action="the consumer's signature")
    key_id = _verify(ctx, row, me, signature)
    row.consumer_signature = signature
    if row.prepayment:
        accounts.transfer(
            ctx,
            "escrow.fund",
            [
                (accounts.account(ctx.session, row.consumer_id, "available"), -row.prepayment),
                (accounts.account(ctx.session, row.id, "escrow"), row.prepayment),
            ],
            memo=f"prepayment for contract {row.id}",
            contract_id=row.id,
        )
        row.funded += row.prepayment
    _move(
        ctx,
        row,
        ContractState.VERIFIED,
        agreement=row.agreement_digest,
        signature=_sig_digest(signature),
        key=key_id,
        escrowed=row.prepayment,
    )
    _finalize(ctx, row)
    return to_contract(row)


def _sig_digest(signature: str) -> str:
    return "sha256:" + hashlib.sha256(signature.encode()).hexdigest()


def _acting_for(ctx: Context, participant_id: str) -> Context:
    """A context in which the exchange acts for ``participant_id`` under a signed agreement."""
    principal = Principal(None, participant_id, frozenset({Role.PROVIDER}), participant_verified=True)
    return Context(ctx.session, principal, ctx.now, ctx.settings, event_ids=ctx.event_ids, signer=ctx.signer)


def _finalize(ctx: Context, row: ContractRow) -> None:
    """Grant the consumer processing & use rights on each resource for the contract's term."""
    assert row.valid_until is not None
    terms = parse(row.policy)
    provider_ctx = _acting_for(ctx, row.provider_id)
    product = ctx.session.get(ProductRow, row.product_id)
    assert product is not None
    granted = []
    for rid in product.resource_ids:
        granted.append(_grant_use(provider_ctx, rid, row, list(terms.purposes), list(terms.regions) or ["*"]))
    row.right_ids = granted
    if row.price["model"] == PriceModel.SUBSCRIPTION:
        row.paid_until = ctx.now + timedelta(days=row.price["period_days"])
    _move(ctx, row, ContractState.FINALIZED, rights=granted, valid_until=row.valid_until.isoformat())


def _grant_use(
    ctx: Context, resource_id: str, row: ContractRow, purposes: list[str], regions: list[str]
) -> str:
    """A processing & use right for the consumer, from the provider's processing & use right or — when
    the provider operates the product under a product operation right — derived from that right."""
    assert row.valid_until is not None
    try:
        return grant_right(
            ctx,
            resource_id,
            kind=RightKind.PROCESSING_USE.value,
            grantee_id=row.consumer_id,
            purposes=purposes,
            territories=regions,
            valid_until=row.valid_until,
        ).id
    except Forbidden:
        parents = [
            r
            for r in ctx.session.scalars(
                select(RightRow).where(
                    RightRow.resource_id == resource_id,
                    RightRow.holder_id == row.provider_id,
                    RightRow.kind == RightKind.PRODUCT_OPERATION.value,
                )
            )
            if is_effective(r, ctx.now)
            and not _covers(r.purposes, purposes)
            and not _covers(r.territories, regions)
            and (r.valid_until is None or row.valid_until <= r.valid_until)
        ]
        if not parents:
            raise
        parent = parents[0]
        right = RightRow(
            id=new_id("g"),
            resource_id=resource_id,
            kind=RightKind.PROCESSING_USE.value,
            holder_id=row.consumer_id,
            grantor_id=row.provider_id,
            parent_id=parent.id,
            purposes=sorted(purposes),
            territories=sorted(regions),
            valid_from=ctx.now,
            valid_until=row.valid_until,
            sublicensable=False,
            public_data_authorisation=False,
            status=RightStatus.ACTIVE.value,
            created_at=ctx.now,
            ended_at=None,
        )
        ctx.session.add(right)
        ctx.session.flush()
        ctx.emit(
            "right.granted",
            [resource_id, right.id, row.consumer_id],
            {
                "right": right.id,
                "resource": resource_id,
                "kind": right.kind,
                "holder": row.consumer_id,
                "grantor": row.provider_id,
                "parent": parent.id,
                "scope": to_right(right).scope.to_json(),
                "contract": row.id,
            },
        )
        return right.id


# --- suspension and termination -----------------------------------------------------------------


def suspend_contract(ctx: Context, contract_id: str, *, suspended: bool, reason: str = "") -> Contract:
    """Stop (or restart) use without ending the contract: the operator, or the provider."""
    row = _get(ctx, contract_id, lock=True)
    if not (ctx.principal.has(Role.OPERATOR) or ctx.principal.participant_id == row.provider_id):
        raise Forbidden(f"only the operator or the provider suspends contract {contract_id}")
    if not ctx.principal.has(Role.OPERATOR):
        _side_role(ctx, row, "suspending a contract")
    _expect(row, ContractState.FINALIZED, action="suspending")
    if row.suspended == suspended:
        raise Conflict(f"contract {contract_id} is already {'suspended' if suspended else 'running'}")
    row.suspended = suspended
    row.updated_at = ctx.now
    row.suspension_reason = reason.strip() or None
    ctx.emit(
        f"contract.{'suspended' if suspended else 'resumed'}",
        [row.id],
        {"id": row.id, "reason_digest": digest({"reason": reason.strip()})},
    )
    return to_contract(row)


def _release(ctx: Context, row: ContractRow, amount: int, memo: str) -> None:
    """Pay ``amount`` out of the contract's escrow: provider gets it minus the exchange fee."""
    if amount <= 0:
        return
    fee = accounts.fee_of(amount, row.fee_bps)
    accounts.transfer(
        ctx,
        "escrow.release",
        [
            (accounts.account(ctx.session, row.id, "escrow"), -amount),
            (accounts.account(ctx.session, row.provider_id, "available"), amount - fee),
            (accounts.account(ctx.session, "exchange", "fee_income"), fee),
        ],
        memo=memo,
        contract_id=row.id,
    )
    row.released += amount


def _refund(ctx: Context, row: ContractRow, amount: int, memo: str) -> None:
    if amount <= 0:
        return
    accounts.transfer(
        ctx,
        "escrow.refund",
        [
            (accounts.account(ctx.session, row.id, "escrow"), -amount),
            (accounts.account(ctx.session, row.consumer_id, "available"), amount),
        ],
        memo=memo,
        contract_id=row.id,
    )
    row.refunded += amount
    ctx.emit(
        "contract.refunded",
        [row.id, row.provider_id, row.consumer_id],
        {"id": row.id, "amount": amount, "currency": row.price.get("currency"), "memo_digest": digest(memo)},
    )


def _end(ctx: Context, row: ContractRow, reason: str, *, refund: bool = True) -> None:
    """Terminate: settle a subscription's used share, refund the rest of the escrow, revoke the rights."""
    row.termination_reason = reason  # first: revoking its rights below must not end it a second time
    if row.state == ContractState.FINALIZED:
        left = row.funded - row.released - row.refunded
        if row.price["model"] == PriceModel.SUBSCRIPTION and row.paid_until and left > 0:
            period = timedelta(days=row.price["period_days"])
            start = row.paid_until - period
            used = min(max((ctx.now - start) / period, 0.0), 1.0)
            _release(ctx, row, min(left, round(left * used)), f"pro-rata subscription for contract {row.id}")
        left = row.funded - row.released - row.refunded
        if refund:
            _refund(ctx, row, left, f"refund on termination of contract {row.id}")
        else:
            _release(ctx, row, left, f"final release for contract {row.id}")
        provider_ctx = _acting_for(ctx, row.provider_id)
        for rid in row.right_ids:
            right = ctx.session.get(RightRow, rid)
            if right is not None and right.status == RightStatus.ACTIVE:
                revoke_right(provider_ctx, rid, reason=f"contract {row.id} ended")
    row.termination_reason = reason
    _move(ctx, row, ContractState.TERMINATED, reason_digest=digest({"reason": reason}))


def terminate_contract(ctx: Context, contract_id: str, *, reason: str) -> Contract:
    """End a contract: either party while negotiating; a party or the operator once it is live."""
    row = _get(ctx, contract_id, lock=True)
    me = ctx.principal.participant_id
    is_party = me in (row.provider_id, row.consumer_id)
    if not (is_party or ctx.principal.has(Role.OPERATOR)):
        raise Forbidden(f"only a party or the operator terminates contract {contract_id}")
    if not ctx.principal.has(Role.OPERATOR):
        _side_role(ctx, row, "terminating a contract")
    if not (reason or "").strip():
        raise InvalidInput("a termination needs a reason", field="reason")
    _expect(row, *OPEN, ContractState.VERIFIED, ContractState.FINALIZED, action="terminating")
    _end(ctx, row, reason.strip())
    return to_contract(row)


# --- use: authorise, reserve, meter, pay -------------------------------------------------------


def record_use(
    ctx: Context,
    contract_id: str,
    *,
    operation: str,
    purpose: str,
    region: str = "CN",
    quantity: int = 1,
    privacy_cost: float = 0.0,
    request_digest: str,
    mode: str | None = None,
    min_group_size: int | None = None,
    node_key: str | None = None,
    privacy_delta: float = 0.0,
) -> Use:
    """Authorise and record one use (the node calls this before releasing any result).

    Raises :class:`PolicyViolation` (the policy forbids it, the contract is suspended or not live),
    :class:`BudgetExhausted` (privacy budget would be overdrawn) — in both cases nothing is recorded,
    charged or spent. With ``node_key`` a repeated call returns the first use (no double charge).
    Before anything is metered, :func:`datavalley.market.governance.check_use_allowed` refuses uses that
    rights, registration status or participant status no longer allow (403 or 409, ``details.reason``).
    """
    row = _get(ctx, contract_id, lock=True)
    me = ctx.principal.participant_id
    if me not in (row.provider_id, row.consumer_id) and not ctx.principal.is_system:
        raise Forbidden(f"only the parties' nodes record uses of contract {contract_id}")
    _side_role(ctx, row, "recording a use")
    if node_key is not None:
        seen = ctx.session.scalars(
            select(UseRow).where(UseRow.contract_id == row.id, UseRow.node_key == node_key)
        ).first()
        if seen is not None:
            if (
                me is not None
                and seen.recorded_by not in (None, me)
                and seen.attested_by is None
                and seen.request_digest == request_digest
            ):
                # the other party's node reports the same use (e.g. both ends of a PSI session): its
                # attestation goes on the ledger too, without a second charge
                seen.attested_by = me
                ctx.emit(
                    "contract.use_attested",
                    [row.id, seen.id],
                    {"id": seen.id, "contract": row.id, "by": me, "request": request_digest},
                )
            return _to_use(seen, row)
    # rights, registration and participant status, in this transaction (docs/PROTOCOL.md §7)
    check_use_allowed(ctx, row, purpose=purpose, region=region)
    if row.state != ContractState.FINALIZED:
        raise PolicyViolation(f"contract {contract_id} is {row.state}: no use is allowed", state=row.state)
    if row.suspended:
        raise PolicyViolation(f"contract {contract_id} is suspended: no use is allowed until it is resumed")
    if row.price["model"] == PriceModel.SUBSCRIPTION and row.paid_until and ctx.now >= row.paid_until:
        raise PolicyViolation(
            f"contract {contract_id}'s subscription is unpaid since {row.paid_until.isoformat()}"
        )
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= 2**62:
        raise InvalidInput("quantity must be a positive integer", field="quantity")
    if isinstance(privacy_delta, bool) or not (
        isinstance(privacy_delta, int | float) and 0.0 <= privacy_delta < 1.0
    ):
        raise InvalidInput("privacy_delta must be a number in [0, 1)", field="privacy_delta")
    if (
        isinstance(privacy_cost, bool)
        or not isinstance(privacy_cost, int | float)
        or not math.isfinite(privacy_cost)
        or privacy_cost < 0
    ):
        raise InvalidInput("privacy_cost must be a finite, non-negative number", field="privacy_cost")
    if (
        not isinstance(request_digest, str)
        or not request_digest.startswith("sha256:")
        or len(request_digest) != 71
    ):
        raise InvalidInput("request_digest must be sha256:<64 hex>", field="request_digest")
    request = UseRequest(
        action=operation,
        purpose=purpose,
        region=region,
        at=ctx.now,
        quantity=quantity,
        privacy_cost=float(privacy_cost),
        mode=mode,
        min_group_size=min_group_size,
    )
    decision = evaluate(row.policy, request, UseState(row.uses, row.budget_spent, row.quantity))
    if not decision.allowed:
        if decision.over_budget:
            raise BudgetExhausted(
                f"contract {contract_id}: {decision.reasons[0]}", budget_left=decision.budget_left
            )
        raise PolicyViolation(
            f"contract {contract_id} refuses this use: " + "; ".join(decision.reasons),
            reasons=list(decision.reasons),
        )
    check_transfer(ctx, row, stage="use", operation=operation, mode=mode, min_group_size=min_group_size)
    price = Price.from_json(row.price)
    by_quantity = (PriceModel.PER_ROW, PriceModel.PER_MB, PriceModel.PER_CORE_HOUR)
    metered = quantity if price.model in by_quantity else 1
    already = row.quantity if price.model in by_quantity else row.uses
    amount = price.cost(already, metered)
    if price.model == PriceModel.ONE_OFF and row.released == 0:
        amount = row.funded - row.refunded
    row.uses += 1
    row.budget_spent += float(privacy_cost)
    row.delta_spent = (row.delta_spent or 0.0) + float(privacy_delta)
    row.quantity += quantity
    row.updated_at = ctx.now
    use = UseRow(
        id=new_id("use"),
        contract_id=row.id,
        operation=operation,
        quantity=quantity,
        privacy_cost=float(privacy_cost),
        privacy_delta=float(privacy_delta),
        amount=amount,
        request_digest=request_digest,
        node_key=node_key,
        recorded_by=me,
        attested_by=None,
        created_at=ctx.now,
    )
    ctx.session.add(use)
    _release(ctx, row, amount, f"{operation} on contract {row.id}")
    ctx.emit(
        "contract.used",
        [row.id, use.id],
        {
            "id": use.id,
            "contract": row.id,
            "operation": operation,
            "quantity": quantity,
            "privacy_cost": float(privacy_cost),
            "privacy_delta": float(privacy_delta),
            "amount": amount,
            "request": request_digest,
        },
    )
    return _to_use(use, row)


def _to_use(u: UseRow, row: ContractRow) -> Use:
    terms = parse(row.policy)
    return Use(
        id=u.id,
        contract_id=u.contract_id,
        operation=u.operation,
        quantity=u.quantity,
        privacy_cost=u.privacy_cost,
        amount=u.amount,
        request_digest=u.request_digest,
        uses_left=None if terms.max_uses is None else terms.max_uses - row.uses,
        budget_left=None if terms.privacy_budget is None else terms.privacy_budget - row.budget_spent,
        created_at=u.created_at,
    )


def list_uses(ctx: Context, contract_id: str, *, limit: int = 100, cursor: str | None = None) -> Page[Use]:
    """Metered uses of a contract, oldest first."""
    row = _get(ctx, contract_id)
    stmt = select(UseRow).where(UseRow.contract_id == row.id)
    return paginate(ctx.session, stmt, UseRow.id, cursor, limit, lambda u: _to_use(u, row))


# --- periodic settlement ------------------------------------------------------------------------


def run_settlement(ctx: Context) -> dict[str, Any]:
    """The operator's periodic run: renew subscriptions, end expired contracts (release/refund escrow).

    Subscriptions: when a period has elapsed its escrow is released to the provider and the next period
    is charged from the consumer's available balance into escrow; if funds are short the contract is
    suspended (and resumes on the next run that can charge it). Expired contracts are terminated, the
    unused metered escrow refunded.
    """
    ctx.require(Role.OPERATOR, action="running settlement")
    report: dict[str, list[str]] = {"renewed": [], "suspended_unpaid": [], "expired": [], "released": []}
    rows = ctx.session.scalars(
        select(ContractRow)
        .where(ContractRow.state == ContractState.FINALIZED.value)
        .order_by(ContractRow.id)
        .with_for_update()
    ).all()
    for row in rows:
        assert row.valid_until is not None
        if row.price["model"] == PriceModel.SUBSCRIPTION and row.paid_until is not None:
            period = timedelta(days=row.price["period_days"])
            while (
                row.paid_until is not None and row.paid_until <= ctx.now and row.paid_until < row.valid_until
            ):
                left = row.funded - row.released - row.refunded
                _release(
                    ctx, row, left, f"subscription period to {row.paid_until.date()} of contract {row.id}"
                )
                report["released"].append(row.id)
                available = accounts.account(ctx.session, row.consumer_id, "available")
                if available.balance < row.price["amount"]:
                    if not row.suspended:
                        row.suspended = True
                        ctx.emit(
                            "contract.suspended", [row.id], {"id": row.id, "reason": "subscription unpaid"}
                        )
                    report["suspended_unpaid"].append(row.id)
                    break
                accounts.transfer(
                    ctx,
                    "escrow.fund",
                    [
                        (available, -row.price["amount"]),
                        (accounts.account(ctx.session, row.id, "escrow"), row.price["amount"]),
                    ],
                    memo=f"subscription renewal of contract {row.id}",
                    contract_id=row.id,
                )
                row.funded += row.price["amount"]
                row.paid_until = row.paid_until + period
                if row.suspended:
                    row.suspended = False
                    ctx.emit("contract.resumed", [row.id], {"id": row.id, "reason": "subscription paid"})
                ctx.emit(
                    "contract.renewed",
                    [row.id],
                    {
                        "id": row.id,
                        "paid_until": row.paid_until.isoformat(),
                        "amount": row.price["amount"],
                        "released": left,
                    },
                )
                report["renewed"].append(row.id)
        if ctx.now >= row.valid_until:
            one_off_done = row.price["model"] == PriceModel.ONE_OFF and row.released > 0
            subscription = row.price["model"] == PriceModel.SUBSCRIPTION
            _end(ctx, row, "expired", refund=not (one_off_done or subscription))
            report["expired"].append(row.id)
    ctx.emit("settlement.run", [], {k: len(v) for k, v in report.items()})
    return report
