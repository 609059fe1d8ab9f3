"""Settlement statements, invoices (HTML and PDF) and disputes.

A statement lists every posting on a participant's (or a contract's) accounts in a period with opening
and closing balances; an invoice is the provider's bill for what was released to it under one contract in
a period (gross, the exchange fee, net). Disputes carry ledger receipts as evidence, verified here; the
operator's ruling executes through the same accounting (refund, penalty, termination).
"""

from __future__ import annotations

import html
import json
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from datavalley.canonical import digest
from datavalley.errors import Conflict, Forbidden, IntegrityError, InvalidInput, NotFound
from datavalley.events import EventRow
from datavalley.exchange import Context
from datavalley.identity.model import Role
from datavalley.identity.tables import ParticipantRow
from datavalley.ledger import log
from datavalley.ledger.verify import verify_receipt
from datavalley.market import accounts
from datavalley.market.contracts import _end, _get, _refund, _side_role, to_contract
from datavalley.market.model import ContractState, Dispute
from datavalley.market.tables import AccountRow, ContractRow, DisputeRow, PostingRow, TxnRow
from datavalley.store.base import new_id
from datavalley.store.pages import Page, paginate


def _period(start: datetime, end: datetime) -> None:
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidInput("statement periods need time zones", field="start")
    if end <= start:
        raise InvalidInput("a statement period must end after it starts", field="end")


def _opening(ctx: Context, owner: str, before: datetime) -> dict[str, int]:
    rows = ctx.session.execute(
        select(AccountRow.kind, func.sum(PostingRow.amount))
        .join(PostingRow, PostingRow.account_id == AccountRow.id)
        .join(TxnRow, TxnRow.id == PostingRow.txn_id)
        .where(AccountRow.owner == owner, TxnRow.created_at < before)
        .group_by(AccountRow.kind)
    ).all()
    return {kind: int(total or 0) for kind, total in rows}


def statement(
    ctx: Context, *, start: datetime, end: datetime, participant_id: str | None = None
) -> dict[str, Any]:
    """A participant's statement for ``[start, end)``: opening, lines, totals by kind, closing."""
    _period(start, end)
    who = participant_id or ctx.principal.participant_id
    if who is None:
        raise InvalidInput("participant_id is required", field="participant_id")
    if who != ctx.principal.participant_id and not ctx.principal.has(
        Role.OPERATOR, Role.AUDITOR, Role.REGULATOR
    ):
        raise Forbidden("only the participant itself or an overseer reads its statement")
    opening = _opening(ctx, who, start)
    lines = accounts.statement_lines(ctx.session, who, start, end)
    totals: dict[str, int] = {}
    for line in lines:
        totals[line["txn"]] = totals.get(line["txn"], 0) + line["amount"]
    closing = dict(opening)
    for line in lines:
        closing[line["account"]] = closing.get(line["account"], 0) + line["amount"]
    from datavalley.compute.jobs import compute_lines

    return {
        "participant_id": who,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "currency": accounts.CURRENCY,
        "opening": opening,
        "lines": lines,
        "totals": totals,
        "closing": closing,
        # jobs run on compute pools: core-hours, energy and emissions beside the money (docs/COMPUTE.md)
        "compute": compute_lines(ctx, who, start, end),
    }


def contract_statement(ctx: Context, contract_id: str) -> dict[str, Any]:
    """Everything that moved under one contract: funding, releases (with fees), refunds, uses."""
    row = _get(ctx, contract_id)
    txns = ctx.session.execute(
        select(TxnRow.id, TxnRow.kind, TxnRow.memo, TxnRow.created_at)
        .where(TxnRow.contract_id == row.id)
        .order_by(TxnRow.created_at, TxnRow.id)
    ).all()
    fee_acc = ctx.session.scalars(
        select(AccountRow.id).where(AccountRow.owner == "exchange", AccountRow.kind == "fee_income")
    ).first()
    lines, fees = [], 0
    for tid, kind, memo, at in txns:
        postings = ctx.session.execute(
            select(PostingRow.account_id, PostingRow.amount).where(PostingRow.txn_id == tid)
        ).all()
        fee = sum(a for acc, a in postings if acc == fee_acc)
        gross = (
            max((a for _, a in postings if a > 0), default=0)
            if kind != "escrow.release"
            else -sum(a for _, a in postings if a < 0)
        )
        fees += fee
        lines.append({"at": at.isoformat(), "kind": kind, "memo": memo, "gross": gross, "fee": fee})
    c = to_contract(row)
    return {
        "contract_id": c.id,
        "state": c.state.value,
        "price": c.price.to_json(),
        "funded": c.funded,
        "released": c.released,
        "fees": fees,
        "provider_net": c.released - fees,
        "refunded": c.refunded,
        "escrow": c.escrow,
        "uses": c.uses,
        "budget_spent": c.budget_spent,
        "lines": lines,
    }


def invoice(ctx: Context, contract_id: str, *, start: datetime, end: datetime) -> dict[str, Any]:
    """The provider's invoice to the consumer for releases under ``contract_id`` in ``[start, end)``."""
    _period(start, end)
    row = _get(ctx, contract_id)
    fee_acc = ctx.session.scalars(
        select(AccountRow.id).where(AccountRow.owner == "exchange", AccountRow.kind == "fee_income")
    ).first()
    items: list[dict[str, Any]] = []
    for tid, memo, at in ctx.session.execute(
        select(TxnRow.id, TxnRow.memo, TxnRow.created_at)
        .where(
            TxnRow.contract_id == row.id,
            TxnRow.kind == "escrow.release",
            TxnRow.created_at >= start,
            TxnRow.created_at < end,
        )
        .order_by(TxnRow.created_at, TxnRow.id)
    ):
        postings = ctx.session.execute(
            select(PostingRow.account_id, PostingRow.amount).where(PostingRow.txn_id == tid)
        ).all()
        gross = -sum(a for _, a in postings if a < 0)
        fee = sum(a for acc, a in postings if acc == fee_acc)
        items.append({"at": at.isoformat(), "description": memo, "amount": gross, "fee": fee})
    parties = {
        p.id: p
        for p in ctx.session.scalars(
            select(ParticipantRow).where(ParticipantRow.id.in_([row.provider_id, row.consumer_id]))
        )
    }

    def party(pid: str) -> dict[str, str]:
        p = parties.get(pid)
        return {
            "id": pid,
            "name": p.name if p else "",
            "country": p.country if p else "",
            "registry_id": p.registry_id if p else "",
        }

    total = sum(int(i["amount"]) for i in items)
    fees = sum(int(i["fee"]) for i in items)
    number = f"INV-{row.id}-{start:%Y%m%d}-{end:%Y%m%d}"
    return {
        "number": number,
        "contract_id": row.id,
        "seller": party(row.provider_id),
        "buyer": party(row.consumer_id),
        "period": {"start": start.isoformat(), "end": end.isoformat()},
        "currency": accounts.CURRENCY,
        "items": items,
        "total": total,
        "exchange_fee": fees,
        "seller_net": total - fees,
        "issued_at": ctx.now.isoformat(),
    }


def yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100:,}.{abs(fen) % 100:02d}"


def invoice_html(inv: dict[str, Any]) -> str:
    """A standalone HTML rendering of an invoice (all values escaped)."""
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(i['at'][:19])}</td><td>{e(i['description'])}</td>"
        f"<td class=n>{yuan(i['amount'])}</td></tr>"
        for i in inv["items"]
    )
    return (
        "<!doctype html><html><head><meta charset=utf-8>"
        f"<title>Invoice {e(inv['number'])}</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:4px 8px;border-bottom:1px solid #ddd}"
        ".n{text-align:right}</style></head><body>"
        f"<h1>Invoice {e(inv['number'])}</h1>"
        f"<p>Seller: {e(inv['seller']['name'])} ({e(inv['seller']['id'])})<br>"
        f"Buyer: {e(inv['buyer']['name'])} ({e(inv['buyer']['id'])})<br>"
        f"Contract: {e(inv['contract_id'])}<br>"
        f"Period: {e(inv['period']['start'])} – {e(inv['period']['end'])}</p>"
        f"<table><tr><th>time</th><th>item</th><th>amount ({e(inv['currency'])})</th></tr>{rows}"
        f"<tr><th colspan=2>total</th><th class=n>{yuan(inv['total'])}</th></tr>"
        f"<tr><td colspan=2>of which exchange fee</td><td class=n>{yuan(inv['exchange_fee'])}</td></tr>"
        f"<tr><td colspan=2>seller net</td><td class=n>{yuan(inv['seller_net'])}</td></tr></table>"
        "</body></html>"
    )


def invoice_pdf(inv: dict[str, Any]) -> bytes:
    """A PDF rendering of an invoice (fpdf2): both parties by name with their registry IDs (USCC), set in
    a CJK font (datavalley/fonts.py) so Chinese names render; without one, Latin core fonts."""
    from fpdf import FPDF

    from datavalley.fonts import cjk_font

    pdf = FPDF()
    pdf.add_page()
    font = cjk_font()
    if font is not None:
        pdf.add_font("cjk", fname=str(font))
        family = "cjk"

        def text(value: str) -> str:
            return value

        def bold(size: float) -> None:
            pdf.set_font(family, size=size)
    else:
        family = "Helvetica"

        def text(value: str) -> str:
            return value.encode("latin-1", "replace").decode("latin-1")

        def bold(size: float) -> None:
            pdf.set_font(family, "B", size)

    def party(p: dict[str, Any]) -> str:
        reg = p.get("registry_id") or ""
        label = "USCC" if p.get("country") == "CN" else "registry ID"
        return f"{p.get('name') or p['id']}  ({label} {reg}; {p['id']})" if reg else p.get("name") or p["id"]

    bold(16)
    pdf.cell(0, 10, text(f"Invoice {inv['number']}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(family, size=10)
    for label, value in (
        ("Seller", party(inv["seller"])),
        ("Buyer", party(inv["buyer"])),
        ("Contract", inv["contract_id"]),
        ("Period", f"{inv['period']['start'][:10]} to {inv['period']['end'][:10]}"),
    ):
        pdf.multi_cell(0, 6, text(f"{label}: {value}"), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    for i in inv["items"]:
        pdf.cell(40, 6, text(i["at"][:19]))
        pdf.cell(110, 6, text(i["description"][:60]))
        pdf.cell(30, 6, yuan(i["amount"]), align="R", new_x="LMARGIN", new_y="NEXT")
    bold(10)
    pdf.cell(150, 8, f"Total ({inv['currency']})")
    pdf.cell(30, 8, yuan(inv["total"]), align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(family, size=10)
    pdf.cell(150, 6, "of which exchange fee")
    pdf.cell(30, 6, yuan(inv["exchange_fee"]), align="R", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


# --- disputes ---------------------------------------------------------------------------------------


def to_dispute(r: DisputeRow) -> Dispute:
    return Dispute(
        r.id,
        r.contract_id,
        r.claimant_id,
        r.respondent_id,
        r.claim,
        tuple(r.evidence),
        r.status,
        r.ruling,
        r.created_at,
        r.ruled_at,
    )


def _check_evidence(ctx: Context, contract_id: str, receipts: Any) -> list[dict[str, Any]]:
    """Verify each receipt against the exchange key and the stored log, and that it concerns the contract."""
    if not isinstance(receipts, list) or not receipts:
        raise InvalidInput("evidence must be a non-empty list of ledger receipts", field="evidence")
    assert ctx.signer is not None
    verifier = ctx.signer.verifier()
    out = []
    for n, r in enumerate(receipts):
        cp, entry, index = verify_receipt(r, verifier)
        if index >= log.head_size(ctx.session) or log.entries(ctx.session, index, index + 1)[0] != entry:
            raise IntegrityError(f"evidence {n}: entry {index} is not the entry this ledger holds")
        # the entry is committed: read its subjects from the event the exchange sequenced at that index
        ev = ctx.session.scalars(select(EventRow).where(EventRow.ledger_index == index)).first()
        body = (
            {"type": ev.type, "subjects": list(ev.subjects), "payload": ev.payload_digest}
            if ev is not None
            else json.loads(entry)
        )
        if contract_id not in body.get("subjects", []):
            raise InvalidInput(
                f"evidence {n}: ledger entry {index} ({body.get('type')}) "
                f"does not concern contract {contract_id}",
                field="evidence",
            )
        out.append(
            {
                "index": index,
                "type": body.get("type"),
                "payload": body.get("payload"),
                "checkpoint_size": cp.size,
            }
        )
    return out


def open_dispute(ctx: Context, contract_id: str, *, claim: str, evidence: list[dict[str, Any]]) -> Dispute:
    """A party opens a dispute with a claim and verified ledger receipts as evidence."""
    row = _get(ctx, contract_id, lock=True)
    me = ctx.principal.participant_id
    if me not in (row.provider_id, row.consumer_id):
        raise Forbidden(f"only a party to contract {contract_id} opens a dispute on it")
    _side_role(ctx, row, "opening a dispute")
    if not (claim or "").strip() or len(claim) > 5000:
        raise InvalidInput("claim must be 1 to 5000 characters", field="claim")
    checked = _check_evidence(ctx, row.id, evidence)
    d = DisputeRow(
        id=new_id("dsp"),
        contract_id=row.id,
        claimant_id=me,
        respondent_id=row.consumer_id if me == row.provider_id else row.provider_id,
        claim=claim.strip(),
        evidence=checked,
        status="open",
        ruling=None,
        created_at=ctx.now,
        ruled_at=None,
    )
    ctx.session.add(d)
    ctx.session.flush()
    ctx.emit(
        "dispute.opened",
        [d.id, row.id],
        {
            "id": d.id,
            "contract": row.id,
            "evidence": [e["index"] for e in checked],
            "claim_digest": digest({"claim": d.claim}),
        },
    )
    return to_dispute(d)


def rule_dispute(
    ctx: Context, dispute_id: str, *, refund: int = 0, penalty: int = 0, terminate: bool = False, reason: str
) -> Dispute:
    """The operator rules: refund escrow to the consumer, a penalty paid by the respondent to the claimant,
    and/or termination — executed through the accounting in this transaction, recorded on the ledger."""
    ctx.require(Role.OPERATOR, action="ruling on disputes")
    d = ctx.session.scalars(select(DisputeRow).where(DisputeRow.id == dispute_id).with_for_update()).first()
    if d is None:
        raise NotFound(f"dispute {dispute_id} does not exist", dispute_id=dispute_id)
    if d.status != "open":
        raise Conflict(f"dispute {dispute_id} is already {d.status}")
    if not (reason or "").strip():
        raise InvalidInput("a ruling needs a reason", field="reason")
    for name, v in (("refund", refund), ("penalty", penalty)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise InvalidInput(f"{name} must be a non-negative integer of minor units", field=name)
    row = _get(ctx, d.contract_id, lock=True)
    escrow = row.funded - row.released - row.refunded
    if refund > escrow:
        raise Conflict(f"refund {refund} exceeds the contract's escrow {escrow}", escrow=escrow)
    _refund(ctx, row, refund, f"refund by ruling on dispute {d.id}")
    if penalty:
        accounts.transfer(
            ctx,
            "dispute.penalty",
            [
                (accounts.account(ctx.session, d.respondent_id, "available"), -penalty),
                (accounts.account(ctx.session, d.claimant_id, "available"), penalty),
            ],
            memo=f"penalty by ruling on dispute {d.id}",
            contract_id=row.id,
        )
    if terminate:
        if row.state not in (ContractState.FINALIZED, ContractState.VERIFIED, *[]):
            raise Conflict(f"contract {row.id} is {row.state}; only a live contract is terminated by ruling")
        _end(ctx, row, f"terminated by ruling on dispute {d.id}")
    d.status = "ruled"
    d.ruling = {"refund": refund, "penalty": penalty, "terminate": terminate, "reason": reason.strip()}
    d.ruled_at = ctx.now
    ctx.emit(
        "dispute.ruled",
        [d.id, row.id],
        {
            "id": d.id,
            "refund": refund,
            "penalty": penalty,
            "terminate": terminate,
            "reason_digest": digest({"reason": reason.strip()}),
        },
    )
    return to_dispute(d)


def get_dispute(ctx: Context, dispute_id: str) -> Dispute:
    d = ctx.session.get(DisputeRow, dispute_id)
    if d is None:
        raise NotFound(f"dispute {dispute_id} does not exist", dispute_id=dispute_id)
    _get(ctx, d.contract_id)  # parties and overseers only
    return to_dispute(d)


def list_disputes(
    ctx: Context, *, status: str | None = None, limit: int = 50, cursor: str | None = None
) -> Page[Dispute]:
    """Disputes you are party to (all, for overseers), oldest first."""
    stmt = select(DisputeRow)
    if not ctx.principal.has(Role.OPERATOR, Role.AUDITOR, Role.REGULATOR):
        me = ctx.principal.participant_id
        stmt = stmt.where((DisputeRow.claimant_id == me) | (DisputeRow.respondent_id == me))
    if status:
        stmt = stmt.where(DisputeRow.status == status)
    return paginate(ctx.session, stmt, DisputeRow.id, cursor, limit, to_dispute)


__all__ = [
    "ContractRow",
    "contract_statement",
    "get_dispute",
    "invoice",
    "invoice_html",
    "invoice_pdf",
    "list_disputes",
    "open_dispute",
    "rule_dispute",
    "statement",
]
