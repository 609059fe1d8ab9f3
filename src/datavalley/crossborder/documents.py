"""Documents people file, generated from the exchange's records: the PIPIA report and the standard-contract
filing pack, as JSON (the record) and PDF (fpdf2 core fonts; non-Latin text is shown by ID).

Neither document holds personal information: PI is described by kind (``cn_mobile``), never by value, and
volumes are the sketches' bounds.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from datavalley.canonical import digest
from datavalley.crossborder.enforce import jurisdiction, year_of
from datavalley.crossborder.rules import load
from datavalley.crossborder.tables import (
    CrossborderCounterRow,
    CrossborderRecordRow,
    CrossborderTransferRow,
)
from datavalley.errors import NotFound
from datavalley.exchange import Context
from datavalley.identity.model import Role
from datavalley.identity.tables import ParticipantRow

PIPIA_FORMAT = "datavalley-pipia/v1"
FILING_FORMAT = "datavalley-sc-filing/v1"


def _contract(ctx: Context, contract_id: str) -> Any:
    from datavalley.market.tables import ContractRow

    row = ctx.session.get(ContractRow, contract_id)
    me = ctx.principal.participant_id
    if row is None or not (
        me in (row.provider_id, row.consumer_id)
        or ctx.principal.has(Role.OPERATOR, Role.AUDITOR, Role.REGULATOR)
    ):
        raise NotFound(f"contract {contract_id} does not exist", contract_id=contract_id)
    return row


def _party(ctx: Context, pid: str) -> dict[str, Any]:
    p = ctx.session.get(ParticipantRow, pid)
    assert p is not None
    country, node = jurisdiction(ctx, pid)
    return {"id": p.id, "name": p.name, "registry_id": p.registry_id, "jurisdiction": country, "node": node}


def _data(ctx: Context, product: Any) -> list[dict[str, Any]]:
    from datavalley.rights.tables import ResourceRow

    out = []
    for rid in product.resource_ids:
        r = ctx.session.get(ResourceRow, rid)
        if r is None:
            continue
        cols = r.pii.get("columns", []) if isinstance(r.pii, dict) else []
        out.append(
            {
                "resource": r.id,
                "sector": r.sector,
                "grade": r.effective_grade,
                "personal": r.pii_present,
                "sensitive": r.sensitive_pii,
                "pi_kinds": sorted({str(c.get("kind")) for c in cols if c.get("personal")}),
                "estimated_individuals": r.estimated_individuals,
                "fingerprint": r.fingerprint,
            }
        )
    return out


def _basics(ctx: Context, contract_id: str) -> dict[str, Any]:
    from datavalley.market.tables import ProductRow

    row = _contract(ctx, contract_id)
    product = ctx.session.get(ProductRow, row.product_id)
    assert product is not None
    terms = (row.policy or {}).get("terms") or {}
    rules = load()
    year = year_of(ctx.now, rules)
    counters = {
        c.kind: {"estimate": round(c.estimate, 1), "upper_bound": c.upper_bound}
        for c in ctx.session.scalars(
            select(CrossborderCounterRow).where(
                CrossborderCounterRow.exporter_id == row.provider_id, CrossborderCounterRow.year == year
            )
        )
    }
    transfers = list(
        ctx.session.scalars(
            select(CrossborderTransferRow)
            .where(CrossborderTransferRow.contract_id == row.id)
            .order_by(CrossborderTransferRow.id)
        )
    )
    records = list(
        ctx.session.scalars(
            select(CrossborderRecordRow)
            .where(
                CrossborderRecordRow.exporter_id == row.provider_id,
                # only the records this contract's transfer rests on: its own, its recipient's, those of
                # the data it covers, and the exporter's general ones (approvals, certifications); never
                # records about the exporter's other resources (the document goes to the counterparty)
                (CrossborderRecordRow.contract_id == row.id)
                | (CrossborderRecordRow.recipient_id == row.consumer_id)
                | (
                    CrossborderRecordRow.contract_id.is_(None)
                    & CrossborderRecordRow.recipient_id.is_(None)
                    & (
                        CrossborderRecordRow.resource_id.is_(None)
                        | CrossborderRecordRow.resource_id.in_(list(product.resource_ids or []))
                    )
                ),
            )
            .order_by(CrossborderRecordRow.id)
        )
    )
    last = transfers[-1] if transfers else None
    return {
        "row": row,
        "product": product,
        "exporter": _party(ctx, row.provider_id),
        "recipient": _party(ctx, row.consumer_id),
        "data": _data(ctx, product),
        "purposes": list(terms.get("purposes") or []),
        "valid_until": row.valid_until.isoformat() if row.valid_until else None,
        "year": year,
        "counters": counters,
        "decision": dict(last.decision) if last else None,
        "transfers": [
            {
                "id": t.id,
                "stage": t.stage,
                "pathway": t.pathway,
                "allowed": t.allowed,
                "at": t.created_at.isoformat(),
            }
            for t in transfers
        ],
        "records": [
            {
                "id": r.id,
                "kind": r.kind,
                "number": r.number,
                "status": r.status,
                "valid_from": r.valid_from.isoformat(),
                "valid_until": r.valid_until.isoformat() if r.valid_until else None,
                "evidence": r.evidence_digest,
            }
            for r in records
        ],
        "rules": rules,
    }


def pipia(ctx: Context, contract_id: str) -> dict[str, Any]:
    """The PI protection impact assessment report for exports under a contract (PIPL arts. 55(4), 56)."""
    b = _basics(ctx, contract_id)
    rules = b["rules"]
    personal = any(d["personal"] for d in b["data"])
    doc = {
        "format": PIPIA_FORMAT,
        "title": "Personal information protection impact assessment (PIPL art. 55(4), art. 56)",
        "generated_at": ctx.now.isoformat(),
        "retain_until": (ctx.now + timedelta(days=3 * 366)).date().isoformat(),
        "retention_basis": "PIPL art. 56: the report and the processing record are kept at least 3 years",
        "contract": b["row"].id,
        "product": {"id": b["product"].id, "kind": b["product"].kind},
        "exporter": b["exporter"],
        "recipient": b["recipient"],
        "purposes": b["purposes"],
        "data": b["data"],
        "volume": {"year": b["year"], "counters": b["counters"], "method": "HLL upper bound, 3 sigma"},
        "decision": b["decision"],
        "assessment": {
            "lawfulness_necessity": (
                f"purposes {b['purposes']} are fixed in the signed ODRL agreement of contract {b['row'].id}; "
                "uses outside them are refused by the policy engine (PIPL art. 56(1))"
            ),
            "impact_and_risk": (
                (
                    "personal information of the kinds listed leaves the node for "
                    + b["recipient"]["jurisdiction"]
                )
                if personal
                else "no personal information leaves the node (aggregates only)"
            )
            + "; every use is recorded on the verifiable ledger (PIPL art. 56(2))",
            "measures": (
                "data leaves a node only as the contract permits (private SQL with differential privacy and "
                "minimum group size, PSI, or metered delivery); the pathway and its records are checked at "
                "acceptance and at every use; sketches of salted identifier hashes count individuals "
                "without identifiers leaving the node (PIPL art. 56(3))"
            ),
        },
        "records": b["records"],
        "transfers": b["transfers"],
        "rules_version": rules.version,
    }
    doc["digest"] = digest(doc)
    return doc


def filing_pack(ctx: Context, contract_id: str) -> dict[str, Any]:
    """The standard-contract filing pack (Standard Contract Measures art. 7; CAC 2024 art. 8)."""
    b = _basics(ctx, contract_id)
    sc = [r for r in b["records"] if r["kind"] == "standard_contract"]
    pia = pipia(ctx, contract_id)
    doc = {
        "format": FILING_FORMAT,
        "title": "Standard contract for the export of personal information: filing pack",
        "generated_at": ctx.now.isoformat(),
        "contract": {
            "datavalley_contract": b["row"].id,
            "agreement_digest": b["row"].agreement_digest,
            "standard_contract": sc[-1] if sc else None,
            "valid_until": b["valid_until"],
        },
        "exporter": b["exporter"],
        "recipients": [b["recipient"]],
        "recipient_jurisdictions": sorted({b["recipient"]["jurisdiction"], b["recipient"]["node"]}),
        "purposes": b["purposes"],
        "categories": sorted({k for d in b["data"] for k in d["pi_kinds"]}),
        "sensitive": any(d["sensitive"] for d in b["data"]),
        "volume": {"year": b["year"], "counters": b["counters"]},
        "transfer_method": f"datavalley {b['product'].kind} under contract {b['row'].id}",
        "pipia": {"digest": pia["digest"], "generated_at": pia["generated_at"]},
        "decision": b["decision"],
        "rules_version": b["rules"].version,
    }
    doc["digest"] = digest(doc)
    return doc


def _latin(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1")


def _lines(value: Any, prefix: str = "") -> list[str]:
    if isinstance(value, dict):
        out: list[str] = []
        for k, v in value.items():
            if isinstance(v, dict | list) and v:
                out.append(f"{prefix}{k}:")
                out.extend(_lines(v, prefix + "  "))
            else:
                out.append(f"{prefix}{k}: {v}")
        return out
    if isinstance(value, list):
        out = []
        for i, v in enumerate(value):
            if isinstance(v, dict | list):
                out.append(f"{prefix}[{i}]")
                out.extend(_lines(v, prefix + "  "))
            else:
                out.append(f"{prefix}- {v}")
        return out
    return [f"{prefix}{value}"]


def to_pdf(doc: dict[str, Any]) -> bytes:
    """A plain PDF rendering of a document (every field, in order)."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 13)
    pdf.multi_cell(
        0, 7, _latin(str(doc.get("title", doc.get("format", "document")))), new_x="LMARGIN", new_y="NEXT"
    )
    pdf.set_font("Helvetica", size=8)
    body = {k: v for k, v in doc.items() if k != "title"}
    for line in _lines(body):
        pdf.multi_cell(0, 4, _latin(line), new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
