"""Ledger routes: checkpoints, entries, proofs, receipts, export, witnesses and cosignatures."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict

from datavalley.api.deps import Caller, Document, Mutation, exchange_of, mutate
from datavalley.api.numbers import check_id
from datavalley.identity.model import Principal
from datavalley.ledger import service as svc

router = APIRouter(prefix="/ledger", tags=["ledger"])


class Witness(BaseModel):
    model_config = ConfigDict(extra="forbid")
    verifier_key: str


class Cosignature(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: int
    line: str


@router.get("/verifier-key", response_model=Document)
def verifier_key(request: Request, caller: Principal = Caller) -> dict[str, str]:
    """The exchange's checkpoint verifier key (C2SP vkey) and origin: what auditors pin."""
    ex = exchange_of(request)
    return {"origin": ex.settings.origin, "verifier_key": ex.ledger.verifier.verifier_key_string()}


@router.get("/checkpoint", response_model=Document)
def checkpoint(request: Request, caller: Principal = Caller) -> Any:
    """The latest signed checkpoint with cosignatures; signs a new one first if entries are pending."""
    ex = exchange_of(request)
    ex.ledger.sequence_pending()
    ex.ledger.publish()
    return ex.read(caller, svc.latest_checkpoint)


@router.get("/checkpoint.note", response_class=PlainTextResponse)
def checkpoint_note(request: Request, caller: Principal = Caller) -> str:
    """The latest checkpoint as a bare signed note (text/plain), as tlog tooling expects."""
    return str(checkpoint(request, caller)["note"])


@router.get("/checkpoints/{size}", response_model=Document)
def checkpoint_at(size: int, request: Request, caller: Principal = Caller) -> Any:
    return exchange_of(request).read(caller, svc.checkpoint_at, check_id(size, "checkpoint"))


@router.get("/entries", response_model=Document)
def entries(
    request: Request, caller: Principal = Caller, start: int = Query(ge=0), end: int = Query(ge=0)
) -> Any:
    return exchange_of(request).read(caller, svc.get_entries, start, end)


@router.get("/proofs/inclusion", response_model=Document)
def inclusion(
    request: Request,
    caller: Principal = Caller,
    size: int = Query(ge=0),
    index: int | None = Query(None, ge=0),
    leaf_hash: str | None = None,
) -> Any:
    return exchange_of(request).read(
        caller, svc.get_inclusion_proof, size=size, index=index, leaf_hash=leaf_hash
    )


@router.get("/proofs/consistency", response_model=Document)
def consistency(
    request: Request, caller: Principal = Caller, old_size: int = Query(ge=0), new_size: int = Query(ge=0)
) -> Any:
    return exchange_of(request).read(caller, svc.get_consistency_proof, old_size, new_size)


@router.get("/receipts/{event_id}", response_model=Document)
def receipt(event_id: int, request: Request, caller: Principal = Caller) -> Any:
    return exchange_of(request).read(caller, svc.get_receipt, check_id(event_id, "event"))


@router.get("/export", response_model=Document)
def export(request: Request, caller: Principal = Caller) -> Any:
    """The whole log and its checkpoints as a verification bundle (operator, auditor, regulator)."""
    ex = exchange_of(request)
    ex.ledger.sequence_pending()
    ex.ledger.publish()
    return ex.read(caller, svc.export_bundle, exchange_vkey=ex.ledger.verifier.verifier_key_string())


@router.post("/witnesses", status_code=201, response_model=Mutation[Document])
def register_witness(body: Witness, request: Request, caller: Principal = Caller) -> JSONResponse:
    return mutate(
        request, caller, svc.register_witness, body.verifier_key, body=body.model_dump(), status=201
    )


@router.post("/cosignatures", response_model=Mutation[Document])
def cosign(body: Cosignature, request: Request, caller: Principal = Caller) -> JSONResponse:
    """A witness submits its cosignature line for a checkpoint."""
    return mutate(request, caller, svc.add_cosignature, body.size, body.line, body=body.model_dump())
