"""Cross-border routes: rules, decisions, facts, node locations, sketches, records, transfer requests, the
regulator's register (JSON and CSV), PIPIA reports and standard-contract filing packs (JSON and PDF).

Wire formats: docs/CROSS_BORDER.md. Every route is a thin shell over ``datavalley.crossborder``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from datavalley.api.deps import Caller, Document, exchange_of, mutate, render
from datavalley.crossborder import documents, rules, service
from datavalley.identity.model import Principal

router = APIRouter(prefix="/crossborder", tags=["crossborder"])


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FactsBody(Strict):
    ciio: bool
    ftz_zone: str | None = Field(default=None, max_length=32)
    gdpr_role: Literal["controller", "processor"] = "controller"


class NodeBody(Strict):
    jurisdiction: str = Field(min_length=2, max_length=2)
    site: str = Field(min_length=1, max_length=200)
    evidence: str = Field(min_length=1, max_length=200)


class SketchBody(Strict):
    sketch: str = Field(min_length=8, max_length=40_000)


class RecordBody(Strict):
    kind: str = Field(max_length=24)
    evidence: str = Field(min_length=1, max_length=200)
    contract_id: str | None = Field(default=None, max_length=40)
    recipient_id: str | None = Field(default=None, max_length=40)
    resource_id: str | None = Field(default=None, max_length=40)
    number: str | None = Field(default=None, max_length=100)
    scope: dict[str, Any] | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    exporter_id: str | None = Field(default=None, max_length=40)


class ReasonBody(Strict):
    reason: str = Field(min_length=1, max_length=200)


class TransferBody(Strict):
    operation: str | None = Field(default=None, max_length=40)
    mode: str | None = Field(default=None, max_length=24)


def _page(page: Any) -> dict[str, Any]:
    return {"items": [render(i) for i in page.items], "next_cursor": page.next_cursor}


@router.get("/rules")
def get_rules(request: Request, caller: Principal = Caller) -> Any:
    """The rule set in force, as shipped (versioned data with its sources)."""
    return rules.raw()


@router.post("/decide")
def decide(body: dict[str, Any], request: Request, caller: Principal = Caller) -> Any:
    """The decision engine on a hypothetical transfer; nothing is recorded."""
    return exchange_of(request).read(caller, service.what_if, body)


@router.get("/participants/{participant_id}")
def get_facts(participant_id: str, request: Request, caller: Principal = Caller) -> Any:
    return render(exchange_of(request).read(caller, service.get_facts, participant_id))


@router.put("/participants/{participant_id}/facts")
def set_facts(participant_id: str, body: FactsBody, request: Request, caller: Principal = Caller) -> Any:
    return mutate(
        request,
        caller,
        service.set_facts,
        participant_id,
        body=body.model_dump(mode="json"),
        **body.model_dump(),
    )


@router.post("/participants/{participant_id}/nodes", status_code=201)
def attest_node(participant_id: str, body: NodeBody, request: Request, caller: Principal = Caller) -> Any:
    return mutate(
        request,
        caller,
        service.attest_node,
        participant_id,
        body=body.model_dump(mode="json"),
        status=201,
        **body.model_dump(),
    )


@router.post("/resources/{resource_id}/sketch")
def submit_sketch(resource_id: str, body: SketchBody, request: Request, caller: Principal = Caller) -> Any:
    return mutate(
        request, caller, service.submit_sketch, resource_id, body=body.model_dump(), sketch_b64=body.sketch
    )


@router.post("/records", status_code=201)
def file_record(body: RecordBody, request: Request, caller: Principal = Caller) -> Any:
    return mutate(
        request,
        caller,
        service.file_record,
        body=body.model_dump(mode="json"),
        status=201,
        **body.model_dump(),
    )


@router.get("/records")
def list_records(
    request: Request,
    caller: Principal = Caller,
    exporter_id: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Any:
    return _page(
        exchange_of(request).read(
            caller, service.list_records, exporter_id=exporter_id, limit=limit, cursor=cursor
        )
    )


@router.post("/records/{record_id}/revoke")
def revoke_record(record_id: str, body: ReasonBody, request: Request, caller: Principal = Caller) -> Any:
    return mutate(
        request, caller, service.revoke_record, record_id, body=body.model_dump(), reason=body.reason
    )


@router.post("/contracts/{contract_id}/transfers", response_model=Document)
def request_transfer(
    contract_id: str, body: TransferBody, request: Request, caller: Principal = Caller
) -> JSONResponse:
    """Ask before moving data: the decision (allowed or refused, with what to file) is recorded."""
    return mutate(
        request,
        caller,
        service.request_transfer,
        contract_id,
        body=body.model_dump(),
        shape=lambda v: v,
        **body.model_dump(),
    )


@router.get("/register")
def register(
    request: Request,
    caller: Principal = Caller,
    exporter_id: str | None = None,
    pathway: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Any:
    return _page(
        exchange_of(request).read(
            caller, service.register, exporter_id=exporter_id, pathway=pathway, limit=limit, cursor=cursor
        )
    )


@router.get("/register.csv", responses={200: {"content": {"text/csv": {}}, "description": "CSV"}})
def register_csv(request: Request, caller: Principal = Caller, exporter_id: str | None = None) -> Response:
    text = exchange_of(request).read(caller, service.register_csv, exporter_id=exporter_id)
    return Response(text, media_type="text/csv; charset=utf-8")


@router.get("/counters")
def counters(request: Request, caller: Principal = Caller, year: int | None = None) -> Any:
    return render(exchange_of(request).read(caller, service.counters, year=year))


@router.get("/expiring")
def expiring(request: Request, caller: Principal = Caller, within_days: int = 120) -> Any:
    return render(exchange_of(request).read(caller, service.expiring, within_days=within_days))


def _document(doc: dict[str, Any], format: str) -> Any:
    if format == "pdf":
        return Response(documents.to_pdf(doc), media_type="application/pdf")
    return doc


@router.get("/contracts/{contract_id}/pipia")
def pipia(
    contract_id: str, request: Request, caller: Principal = Caller, format: Literal["json", "pdf"] = "json"
) -> Any:
    """The PI protection impact assessment report for exports under the contract (PIPL arts. 55-56)."""
    return _document(exchange_of(request).read(caller, documents.pipia, contract_id), format)


@router.get("/contracts/{contract_id}/filing-pack")
def filing_pack(
    contract_id: str, request: Request, caller: Principal = Caller, format: Literal["json", "pdf"] = "json"
) -> Any:
    """The standard-contract filing pack (particulars, parties, categories, volumes, jurisdictions)."""
    return _document(exchange_of(request).read(caller, documents.filing_pack, contract_id), format)
