"""Delivery use cases at the exchange: recipients and their sharing tokens, token resolution, metered reads.

Every function takes a :class:`~datavalley.exchange.Context` and runs inside ``Exchange.run`` /
``Exchange.read``; authorisation is checked here. Sharing tokens are ``dvs_`` + 256 random bits, stored
as SHA-256 only, bound to one recipient of one contract, and expire no later than the contract.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta

from sqlalchemy import func, select

from datavalley.delivery.model import Grant, IssuedToken, Read, Recipient
from datavalley.delivery.tables import DeliveryReadRow, RecipientRow, SharingTokenRow
from datavalley.errors import BudgetExhausted, Conflict, Forbidden, InvalidInput, NotFound, PolicyViolation
from datavalley.exchange import Context, token_digest
from datavalley.identity.model import Role
from datavalley.market import contracts
from datavalley.market.model import ContractState, ProductKind
from datavalley.market.policy import parse
from datavalley.market.tables import ContractRow, ProductRow
from datavalley.store.base import new_id

TOKEN_PREFIX = "dvs_"  # noqa: S105 - a public prefix, not a secret
RECIPIENT_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
MAX_TTL_DAYS = 366


def _contract(
    ctx: Context, contract_id: str, *, consumer_only: bool, lock: bool = False, read: bool = False
) -> ContractRow:
    """The delivery contract for a party acting with its side's role (and verified), or for a ``read``:
    any member of a party, or an overseer."""
    row = contracts._get(ctx, contract_id, lock=lock)
    me = ctx.principal.participant_id
    parties = (row.consumer_id,) if consumer_only else (row.consumer_id, row.provider_id)
    if not (read and ctx.principal.has(Role.OPERATOR, Role.AUDITOR, Role.REGULATOR)):
        if me not in parties:
            who = "consumer" if consumer_only else "parties"
            raise Forbidden(f"only the {who} of contract {contract_id} manage its delivery recipients")
        if not read:
            contracts._side_role(ctx, row, "managing delivery recipients")
    product = ctx.session.get(ProductRow, row.product_id)
    if product is None or product.kind != ProductKind.FILE_DELIVERY:
        raise Conflict(f"contract {contract_id} is not for a file delivery product: nothing is delivered")
    return row


def _recipient_name(name: str) -> str:
    if not isinstance(name, str) or not RECIPIENT_NAME.fullmatch(name):
        raise InvalidInput(
            "recipient must be 1-64 characters: lower-case letters, digits, '_', '.', '-'", field="recipient"
        )
    return name


def _to_recipient(ctx: Context, r: RecipientRow) -> Recipient:
    active = ctx.session.scalar(
        select(func.count())
        .select_from(SharingTokenRow)
        .where(
            SharingTokenRow.recipient_id == r.id,
            SharingTokenRow.revoked_at.is_(None),
            SharingTokenRow.expires_at > ctx.now,
        )
    )
    return Recipient(r.id, r.contract_id, r.name, int(active or 0), r.created_at, r.revoked_at)


def issue_token(
    ctx: Context,
    contract_id: str,
    *,
    recipient: str = "default",
    rotate: bool = False,
    ttl_days: int | None = None,
) -> IssuedToken:
    """A new sharing token for ``recipient`` of the contract (created on first use); the consumer only.

    With ``rotate`` the recipient's other tokens are revoked in the same transaction. The token expires
    with the contract, or earlier with ``ttl_days``.
    """
    ctx.require(Role.CONSUMER, action="issuing a delivery token")
    row = _contract(ctx, contract_id, consumer_only=True, lock=True)
    name = _recipient_name(recipient)
    if row.state != ContractState.FINALIZED or row.valid_until is None:
        raise Conflict(f"contract {contract_id} is {row.state}: tokens are issued for live contracts only")
    if row.valid_until <= ctx.now:
        raise Conflict(f"contract {contract_id} expired at {row.valid_until.isoformat()}")
    expires: datetime = row.valid_until
    if ttl_days is not None:
        if isinstance(ttl_days, bool) or not isinstance(ttl_days, int) or not 1 <= ttl_days <= MAX_TTL_DAYS:
            raise InvalidInput(f"ttl_days must be between 1 and {MAX_TTL_DAYS}", field="ttl_days")
        expires = min(expires, ctx.now + timedelta(days=ttl_days))
    rec = ctx.session.scalars(
        select(RecipientRow).where(RecipientRow.contract_id == row.id, RecipientRow.name == name)
    ).first()
    if rec is None:
        rec = RecipientRow(
            id=new_id("rcp"),
            contract_id=row.id,
            name=name,
            created_by=ctx.principal.member_id,
            created_at=ctx.now,
            revoked_at=None,
        )
        ctx.session.add(rec)
        ctx.session.flush()
        ctx.emit("delivery.recipient_added", [row.id, rec.id], {"id": rec.id, "contract": row.id})
    elif rec.revoked_at is not None:
        raise Conflict(f"recipient {name!r} of contract {contract_id} was revoked; choose another name")
    revoked: list[str] = []
    if rotate:
        for tok in ctx.session.scalars(
            select(SharingTokenRow).where(
                SharingTokenRow.recipient_id == rec.id, SharingTokenRow.revoked_at.is_(None)
            )
        ):
            tok.revoked_at = ctx.now
            revoked.append(tok.id)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    tok = SharingTokenRow(
        id=new_id("dst"),
        recipient_id=rec.id,
        contract_id=row.id,
        token_hash=token_digest(secret),
        created_at=ctx.now,
        expires_at=expires,
        revoked_at=None,
    )
    ctx.session.add(tok)
    ctx.emit(
        "delivery.token_issued",
        [row.id, rec.id, tok.id],
        {
            "id": tok.id,
            "contract": row.id,
            "recipient": rec.id,
            "revoked": revoked,
            "expires": expires.isoformat(),
        },
    )
    return IssuedToken(tok.id, rec.id, row.id, secret, expires, tuple(revoked))


def revoke_recipient(ctx: Context, contract_id: str, *, recipient: str) -> Recipient:
    """Revoke a recipient and every token it holds (either party may)."""
    row = _contract(ctx, contract_id, consumer_only=False)
    rec = ctx.session.scalars(
        select(RecipientRow).where(RecipientRow.contract_id == row.id, RecipientRow.name == recipient)
    ).first()
    if rec is None:
        raise NotFound(f"contract {contract_id} has no recipient {recipient!r}")
    if rec.revoked_at is not None:
        raise Conflict(f"recipient {recipient!r} of contract {contract_id} is already revoked")
    rec.revoked_at = ctx.now
    ids = []
    for tok in ctx.session.scalars(
        select(SharingTokenRow).where(
            SharingTokenRow.recipient_id == rec.id, SharingTokenRow.revoked_at.is_(None)
        )
    ):
        tok.revoked_at = ctx.now
        ids.append(tok.id)
    ctx.emit(
        "delivery.recipient_revoked", [row.id, rec.id], {"id": rec.id, "contract": row.id, "tokens": ids}
    )
    return _to_recipient(ctx, rec)


def revoke_token(ctx: Context, token_id: str) -> IssuedToken:
    """Revoke one sharing token by ID (either party of its contract)."""
    tok = ctx.session.get(SharingTokenRow, token_id)
    if tok is None:
        raise NotFound(f"sharing token {token_id} does not exist")
    try:
        _contract(ctx, tok.contract_id, consumer_only=False)
    except NotFound:
        raise NotFound(f"sharing token {token_id} does not exist") from None
    if tok.revoked_at is not None:
        raise Conflict(f"sharing token {token_id} is already revoked")
    tok.revoked_at = ctx.now
    ctx.emit("delivery.token_revoked", [tok.contract_id, tok.id], {"id": tok.id, "contract": tok.contract_id})
    return IssuedToken(tok.id, tok.recipient_id, tok.contract_id, "", tok.expires_at, (tok.id,))


def list_recipients(ctx: Context, contract_id: str) -> list[Recipient]:
    """The contract's recipients (never token secrets): its parties and overseers."""
    row = _contract(ctx, contract_id, consumer_only=False, read=True)
    rows = ctx.session.scalars(
        select(RecipientRow).where(RecipientRow.contract_id == row.id).order_by(RecipientRow.id)
    )
    return [_to_recipient(ctx, r) for r in rows]


def resolve_token(ctx: Context, secret: str | None) -> Grant:
    """The grant behind a sharing token (node side, system principal).

    Raises :class:`Unauthenticated` for a missing, unknown, revoked or expired token and
    :class:`PolicyViolation` when its contract is not live (terminated, suspended, expired).
    """
    from datavalley.errors import Unauthenticated

    if not secret or not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        raise Unauthenticated("a delivery bearer token is required (see the profile file)")
    tok = ctx.session.scalars(
        select(SharingTokenRow).where(SharingTokenRow.token_hash == token_digest(secret))
    ).first()
    if tok is None:
        raise Unauthenticated("unknown delivery token")
    if tok.revoked_at is not None:
        raise Unauthenticated("this delivery token was revoked")
    if tok.expires_at <= ctx.now:
        raise Unauthenticated(f"this delivery token expired at {tok.expires_at.isoformat()}")
    rec = ctx.session.get(RecipientRow, tok.recipient_id)
    if rec is None or rec.revoked_at is not None:
        raise Unauthenticated("this delivery recipient was revoked")
    row = ctx.session.get(ContractRow, tok.contract_id)
    if row is None:
        raise Unauthenticated("unknown delivery token")
    if row.state != ContractState.FINALIZED:
        raise PolicyViolation(f"contract {row.id} is {row.state}: no delivery is allowed")
    if row.suspended:
        raise PolicyViolation(f"contract {row.id} is suspended: no delivery is allowed")
    return Grant(tok.id, rec.id, row.id, row.product_id, row.provider_id, row.consumer_id, tok.expires_at)


def token_live(ctx: Context, token_id: str) -> bool:
    """Is sharing token ``token_id`` still usable (not revoked or expired, recipient active, contract live)?
    The node asks this before serving a file, so a revocation also stops URLs already handed out."""
    tok = ctx.session.get(SharingTokenRow, token_id)
    if tok is None or tok.revoked_at is not None or tok.expires_at <= ctx.now:
        return False
    rec = ctx.session.get(RecipientRow, tok.recipient_id)
    row = ctx.session.get(ContractRow, tok.contract_id)
    return (
        rec is not None
        and rec.revoked_at is None
        and row is not None
        and row.state == ContractState.FINALIZED
        and not row.suspended
    )


def record_read(
    ctx: Context,
    grant: Grant,
    *,
    table: str,
    version: int,
    rows: int,
    size: int,
    files: int,
    request_digest: str,
    mb_metered: bool,
) -> Read:
    """Meter one read: a use under the contract (rights, status, reads/rows caps, price) plus the byte cap.

    One transaction: if anything refuses, nothing is recorded or charged (and nothing is served).
    """
    row = ctx.session.get(ContractRow, grant.contract_id)
    if row is None:
        raise NotFound(f"contract {grant.contract_id} does not exist")
    terms = parse(row.policy)
    quantity = max(1, -(-size // 1_000_000)) if mb_metered else max(1, rows)
    use = contracts.record_use(
        ctx,
        grant.contract_id,
        operation="dv:deliver",
        purpose=terms.purposes[0],
        region=terms.regions[0] if terms.regions else "CN",
        quantity=quantity,
        request_digest=request_digest,
    )
    if terms.max_bytes is not None:
        used = ctx.session.scalar(
            select(func.coalesce(func.sum(DeliveryReadRow.bytes), 0)).where(
                DeliveryReadRow.contract_id == grant.contract_id
            )
        )
        if int(used or 0) + size > terms.max_bytes:
            raise BudgetExhausted(
                f"contract {grant.contract_id}: {size} more bytes would exceed the agreed maximum "
                f"{terms.max_bytes} ({int(used or 0)} delivered)"
            )
    read = DeliveryReadRow(
        id=new_id("drd"),
        contract_id=grant.contract_id,
        recipient_id=grant.recipient_id,
        use_id=use.id,
        table_name=table,
        version=version,
        rows=rows,
        bytes=size,
        files=files,
        created_at=ctx.now,
    )
    ctx.session.add(read)
    ctx.emit(
        "delivery.read",
        [grant.contract_id, use.id, read.id],
        {
            "id": read.id,
            "contract": grant.contract_id,
            "recipient": grant.recipient_id,
            "use": use.id,
            "version": version,
            "rows": rows,
            "bytes": size,
            "files": files,
        },
    )
    return Read(read.id, use.id, grant.contract_id, table, version, rows, size, files, use.amount)


def trace_candidates(ctx: Context) -> list[tuple[str, str, str, bool]]:
    """For the calling provider: (contract, recipient ID, product, has it been delivered?) of every
    recipient of its delivery contracts — the population a leak is attributed within."""
    ctx.require(Role.PROVIDER, action="tracing a leaked copy")
    if not ctx.principal.participant_verified:
        raise Forbidden(
            f"tracing a leaked copy needs a verified participant ({ctx.principal.participant_id})"
        )
    me = ctx.principal.participant_id
    rows = ctx.session.execute(
        select(RecipientRow.contract_id, RecipientRow.id, ContractRow.product_id)
        .join(ContractRow, ContractRow.id == RecipientRow.contract_id)
        .where(ContractRow.provider_id == me)
        .order_by(RecipientRow.id)
    ).all()
    delivered = set(
        ctx.session.scalars(
            select(DeliveryReadRow.recipient_id)
            .join(ContractRow, ContractRow.id == DeliveryReadRow.contract_id)
            .where(ContractRow.provider_id == me)
            .distinct()
        )
    )
    return [(c, r, p, r in delivered) for c, r, p in rows]
