"""Double-entry accounting: accounts, balanced transactions, payment rails, invariants.

Every movement of money is one :class:`TxnRow` whose postings sum to zero, written in the caller's
transaction (so it commits or rolls back with the state change that caused it). Account rows are locked
in a fixed order (by ID) before their balances change, so concurrent transfers on PostgreSQL serialise
per account and never deadlock; a CHECK constraint keeps every non-clearing balance ≥ 0 as a last wall.

Accounts (owner, kind): ``(participant, available)``, ``(participant, withdrawing)``,
``(contract, escrow)``, ``("exchange", fee_income)`` and ``("rail", clearing)`` — the clearing account
mirrors money outside the exchange, so its balance is minus the net deposits and all balances sum to 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.orm import Session

from datavalley.errors import Conflict, DatavalleyError, Forbidden, InsufficientFunds, InvalidInput, NotFound
from datavalley.exchange import Context
from datavalley.identity.model import Role
from datavalley.market.model import Balance, Payment
from datavalley.market.tables import AccountRow, ContractRow, PaymentRow, PostingRow, TxnRow
from datavalley.store.base import new_id
from datavalley.store.pages import Page, paginate

CURRENCY = "CNY"
RAIL = "bank_transfer"
MAX_AMOUNT = 10**15  # minor units; far above any real deal, far below int64


def amount_of(value: Any, field: str = "amount") -> int:
    """A positive integer amount of minor units (refuses floats, bools, zero and absurd values)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(
            f"{field} must be an integer number of minor units (fen), got {value!r}", field=field
        )
    if not 0 < value <= MAX_AMOUNT:
        raise InvalidInput(f"{field} must be between 1 and {MAX_AMOUNT}", field=field)
    return value


def account(session: Session, owner: str, kind: str, currency: str = CURRENCY) -> AccountRow:
    """The account (created empty on first use)."""
    row = session.scalars(
        select(AccountRow).where(
            AccountRow.owner == owner, AccountRow.kind == kind, AccountRow.currency == currency
        )
    ).first()
    if row is None:
        row = AccountRow(id=new_id("acc"), owner=owner, kind=kind, currency=currency, balance=0)
        session.add(row)
        session.flush()
    return row


def transfer(
    ctx: Context,
    kind: str,
    legs: Sequence[tuple[AccountRow, int]],
    *,
    memo: str,
    contract_id: str | None = None,
) -> TxnRow:
    """Post one balanced transaction: ``legs`` are (account, signed amount) and must sum to zero.

    Locks the accounts (in ID order), refuses to take any non-clearing account below zero with
    :class:`InsufficientFunds` naming the account, and writes nothing in that case.
    """
    legs = [(a, n) for a, n in legs if n != 0]
    if sum(n for _, n in legs) != 0:
        raise DatavalleyError(f"unbalanced transaction {kind}: postings sum to {sum(n for _, n in legs)}")
    ids = sorted({a.id for a, _ in legs})
    locked = {
        r.id: r
        for r in ctx.session.scalars(
            select(AccountRow)
            .where(AccountRow.id.in_(ids))
            .order_by(AccountRow.id)
            .with_for_update()
            # re-read balances under the lock even if the rows are already in the identity map
            .execution_options(populate_existing=True)
        )
    }
    for acc, n in legs:
        row = locked[acc.id]
        if row.kind != "clearing" and row.balance + n < 0:
            raise InsufficientFunds(
                f"{row.kind} balance of {row.owner} is {row.balance} {row.currency}, {-n} needed for {memo}",
                account=row.owner,
                kind=row.kind,
                balance=row.balance,
                needed=-n,
            )
    txn = TxnRow(id=new_id("txn"), kind=kind, contract_id=contract_id, memo=memo, created_at=ctx.now)
    ctx.session.add(txn)
    ctx.session.flush()  # the postings reference it (no ORM relationship orders the inserts for us)
    for acc, n in legs:
        locked[acc.id].balance += n
        ctx.session.add(PostingRow(txn_id=txn.id, account_id=acc.id, amount=n))
    try:
        ctx.session.flush()
    except SAIntegrityError as e:
        if "non_negative" not in str(e.orig):
            raise
        # the CHECK constraint: the last wall if a balance check above was ever bypassed
        raise InsufficientFunds(f"a balance would go negative for {memo}") from e
    return txn


def fee_of(amount: int, fee_bps: int) -> int:
    """The exchange fee on a release, rounded half up to the fen."""
    return (amount * fee_bps + 5_000) // 10_000


# --- balances --------------------------------------------------------------------------------------


def to_balance(r: AccountRow) -> Balance:
    return Balance(r.id, r.owner, r.kind, r.balance, r.currency)


def balances(ctx: Context, participant_id: str | None = None) -> list[Balance]:
    """A participant's accounts (its own, or any for an overseer)."""
    who = participant_id or ctx.principal.participant_id
    if who != ctx.principal.participant_id and not ctx.principal.has(
        Role.OPERATOR, Role.AUDITOR, Role.REGULATOR
    ):
        raise Forbidden("only the participant itself or an overseer sees its balances")
    if who is None:
        raise InvalidInput("participant_id is required for the exchange itself", field="participant_id")
    rows = ctx.session.scalars(select(AccountRow).where(AccountRow.owner == who).order_by(AccountRow.kind))
    found = {r.kind: r for r in rows}
    return [
        to_balance(found[k]) if k in found else Balance("", who, k, 0, CURRENCY)
        for k in ("available", "withdrawing")
    ] + [to_balance(r) for k, r in found.items() if k not in ("available", "withdrawing")]


def invariants(session: Session) -> dict[str, Any]:
    """The money invariants; ``ok`` is False with the violations listed if any fails.

    1. All balances sum to zero per currency (participants' + exchange's money = net deposits).
    2. No balance except the rail's clearing account is negative.
    3. Each contract's escrow equals its open obligation: funded − released − refunded.
    4. Every transaction's postings sum to zero, and each balance equals the sum of its postings.
    """
    problems: list[str] = []
    totals = dict(
        session.execute(
            select(AccountRow.currency, func.sum(AccountRow.balance)).group_by(AccountRow.currency)
        ).all()
    )
    for cur, total in totals.items():
        if total != 0:
            problems.append(f"balances in {cur} sum to {total}, not 0")
    negative = session.scalars(
        select(AccountRow).where(AccountRow.kind != "clearing", AccountRow.balance < 0)
    ).all()
    problems += [f"{r.kind} of {r.owner} is negative: {r.balance}" for r in negative]
    escrows = {
        r.owner: r.balance for r in session.scalars(select(AccountRow).where(AccountRow.kind == "escrow"))
    }
    open_total = 0
    for c in session.scalars(select(ContractRow).where(ContractRow.funded > 0)):
        obligation = c.funded - c.released - c.refunded
        open_total += obligation
        if escrows.get(c.id, 0) != obligation:
            problems.append(f"escrow of contract {c.id} is {escrows.get(c.id, 0)}, obligation {obligation}")
    unbalanced = session.execute(
        select(PostingRow.txn_id).group_by(PostingRow.txn_id).having(func.sum(PostingRow.amount) != 0)
    ).all()
    problems += [f"transaction {t} is unbalanced" for (t,) in unbalanced]
    posted = dict(
        session.execute(
            select(PostingRow.account_id, func.sum(PostingRow.amount)).group_by(PostingRow.account_id)
        ).all()
    )
    for r in session.scalars(select(AccountRow)):
        if int(posted.get(r.id, 0) or 0) != r.balance:
            problems.append(
                f"account {r.id} balance {r.balance} differs from its postings {posted.get(r.id, 0)}"
            )
    clearing = session.scalars(select(AccountRow).where(AccountRow.kind == "clearing")).all()
    return {
        "ok": not problems,
        "problems": problems,
        "net_deposits": -sum(r.balance for r in clearing),
        "escrow_total": sum(escrows.values()),
        "open_obligations": open_total,
        "transactions": session.scalar(select(func.count()).select_from(TxnRow)) or 0,
    }


def check_invariants(ctx: Context) -> dict[str, Any]:
    """Service wrapper: overseers only (it reveals totals across participants)."""
    ctx.require(Role.OPERATOR, Role.AUDITOR, Role.REGULATOR, action="checking the money invariants")
    return invariants(ctx.session)


# --- payment rail: operator-confirmed bank transfers ----------------------------------------------


def to_payment(r: PaymentRow) -> Payment:
    return Payment(
        r.id,
        r.participant_id,
        r.direction,
        r.amount,
        r.currency,
        r.rail,
        r.reference,
        r.status,
        r.created_at,
        r.confirmed_at,
    )


def _reference(value: str) -> str:
    value = (value or "").strip()
    if not value or len(value) > 100:
        raise InvalidInput(
            "reference (the bank transfer's reference) must be 1 to 100 characters", field="reference"
        )
    return value


def _trader(ctx: Context, action: str) -> None:
    """Money moves for verified participants acting with a provider or consumer token."""
    ctx.require(Role.PROVIDER, Role.CONSUMER, action=action)
    if not ctx.principal.participant_verified:
        raise Forbidden(f"{action} needs a verified participant", action=action)


def request_deposit(ctx: Context, *, amount: int, reference: str) -> Payment:
    """A participant announces a bank transfer to the exchange's account; nothing moves until confirmed."""
    if ctx.principal.participant_id is None:
        raise Forbidden("deposits are made by participants")
    _trader(ctx, "depositing money")
    row = PaymentRow(
        id=new_id("pay"),
        participant_id=ctx.principal.participant_id,
        direction="deposit",
        amount=amount_of(amount),
        currency=CURRENCY,
        rail=RAIL,
        reference=_reference(reference),
        status="pending",
        created_at=ctx.now,
        confirmed_at=None,
    )
    ctx.session.add(row)
    ctx.session.flush()
    ctx.emit(
        "payment.requested",
        [row.id, row.participant_id],
        {"id": row.id, "direction": "deposit", "amount": row.amount},
    )
    return to_payment(row)


def request_withdrawal(ctx: Context, *, amount: int, reference: str) -> Payment:
    """Move money from available to withdrawing at once (so it cannot be spent twice), pending payout."""
    me = ctx.principal.participant_id
    if me is None:
        raise Forbidden("withdrawals are made by participants")
    _trader(ctx, "withdrawing money")
    n = amount_of(amount)
    row = PaymentRow(
        id=new_id("pay"),
        participant_id=me,
        direction="withdrawal",
        amount=n,
        currency=CURRENCY,
        rail=RAIL,
        reference=_reference(reference),
        status="pending",
        created_at=ctx.now,
        confirmed_at=None,
    )
    ctx.session.add(row)
    ctx.session.flush()
    transfer(
        ctx,
        "withdrawal.hold",
        [(account(ctx.session, me, "available"), -n), (account(ctx.session, me, "withdrawing"), n)],
        memo=f"withdrawal {row.id}",
    )
    ctx.emit("payment.requested", [row.id, me], {"id": row.id, "direction": "withdrawal", "amount": n})
    return to_payment(row)


def confirm_payment(ctx: Context, payment_id: str, *, confirmed: bool = True) -> Payment:
    """The operator confirms (or rejects) a bank transfer; the money moves in this transaction."""
    ctx.require(Role.OPERATOR, action="confirming payments")
    row = ctx.session.scalars(select(PaymentRow).where(PaymentRow.id == payment_id).with_for_update()).first()
    if row is None:
        raise NotFound(f"payment {payment_id} does not exist", payment_id=payment_id)
    if row.status != "pending":
        raise Conflict(f"payment {payment_id} is already {row.status}")
    s, who = ctx.session, row.participant_id
    clearing = account(s, "rail", "clearing", row.currency)
    if row.direction == "deposit":
        if confirmed:
            transfer(
                ctx,
                "deposit",
                [(clearing, -row.amount), (account(s, who, "available"), row.amount)],
                memo=f"deposit {row.id}",
            )
    elif confirmed:
        transfer(
            ctx,
            "withdrawal",
            [(account(s, who, "withdrawing"), -row.amount), (clearing, row.amount)],
            memo=f"withdrawal {row.id}",
        )
    else:
        transfer(
            ctx,
            "withdrawal.release",
            [(account(s, who, "withdrawing"), -row.amount), (account(s, who, "available"), row.amount)],
            memo=f"withdrawal {row.id} rejected",
        )
    row.status = "confirmed" if confirmed else "rejected"
    row.confirmed_at = ctx.now
    ctx.emit(
        f"payment.{row.status}",
        [row.id, who],
        {"id": row.id, "direction": row.direction, "amount": row.amount},
    )
    return to_payment(row)


def list_payments(
    ctx: Context, *, status: str | None = None, limit: int = 50, cursor: str | None = None
) -> Page[Payment]:
    """Your payments (all, for overseers), oldest first."""
    stmt = select(PaymentRow)
    if not ctx.principal.has(Role.OPERATOR, Role.AUDITOR, Role.REGULATOR):
        stmt = stmt.where(PaymentRow.participant_id == ctx.principal.participant_id)
    if status:
        stmt = stmt.where(PaymentRow.status == status)
    return paginate(ctx.session, stmt, PaymentRow.id, cursor, limit, to_payment)


def statement_lines(session: Session, owner: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Postings on ``owner``'s accounts in ``[start, end)``, oldest first."""
    rows = session.execute(
        select(
            TxnRow.created_at,
            TxnRow.kind,
            TxnRow.memo,
            TxnRow.contract_id,
            AccountRow.kind,
            PostingRow.amount,
        )
        .join(PostingRow, PostingRow.txn_id == TxnRow.id)
        .join(AccountRow, AccountRow.id == PostingRow.account_id)
        .where(AccountRow.owner == owner, TxnRow.created_at >= start, TxnRow.created_at < end)
        .order_by(TxnRow.created_at, PostingRow.id)
    ).all()
    return [
        {
            "at": at.isoformat(),
            "txn": kind,
            "memo": memo,
            "contract_id": cid,
            "account": acc,
            "amount": amount,
        }
        for at, kind, memo, cid, acc, amount in rows
    ]
