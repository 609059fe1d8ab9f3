"""Market routes: products, listing review, contracts, uses, payments, statements, invoices, disputes.

Wire formats: docs/PROTOCOL.md section 7. Every route is a thin shell over ``datavalley.market``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from datavalley.api.deps import Caller, Document, Mutation, Page, exchange_of, mutate, paged, render
from datavalley.identity.model import Principal
from datavalley.market import accounts, contracts, products, settlement
from datavalley.market.model import Balance, Contract, Dispute, Payment, Product, Use
from datavalley.market.terms import TERMS_SCHEMA

router = APIRouter(tags=["market"])


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewProduct(Strict):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=4000)
    kind: str
    resource_ids: list[str] = Field(min_length=1, max_length=50)
    price: dict[str, Any]
    terms: dict[str, Any] = Field(json_schema_extra=TERMS_SCHEMA)
    tags: list[str] = Field(default_factory=list, max_length=50)


class Review(Strict):
    approve: bool
    note: str = Field(default="", max_length=4000)


class Note(Strict):
    note: str = Field(default="", max_length=4000)


class Reason(Strict):
    reason: str = Field(default="", max_length=4000)


class NewContract(Strict):
    product_id: str
    purpose: str = Field(min_length=1, max_length=200)
    regions: list[str] | None = None
    valid_days: int | None = None
    max_uses: int | None = None
    privacy: dict[str, Any] | None = None
    psi_modes: list[str] | None = None
    max_quantity: int | None = None


class DirectOffer(Strict):
    product_id: str
    consumer_id: str
    purpose: str = Field(min_length=1, max_length=200)
    price: dict[str, Any] | None = None
    regions: list[str] | None = None
    valid_days: int | None = None
    max_uses: int | None = None
    privacy: dict[str, Any] | None = None
    psi_modes: list[str] | None = None
    max_quantity: int | None = None


class QueryBody(Strict):
    sql: str = Field(min_length=1, max_length=20_000)
    epsilon: float | None = None
    purpose: str | None = None
    region: str = "CN"


class Offer(Strict):
    price: dict[str, Any] | None = None


class Sign(Strict):
    signature: str = Field(min_length=1, max_length=200)


class Suspend(Strict):
    suspended: bool = True
    reason: str = Field(default="", max_length=4000)


class NewUse(Strict):
    operation: str
    purpose: str
    region: str = "CN"
    quantity: int = 1
    privacy_cost: float = 0.0
    request_digest: str
    mode: str | None = None
    min_group_size: int | None = None
    node_key: str | None = Field(default=None, max_length=200)


class NewPayment(Strict):
    amount: int
    reference: str = Field(min_length=1, max_length=100)


class Confirm(Strict):
    confirmed: bool = True


class NewDispute(Strict):
    claim: str = Field(min_length=1, max_length=5000)
    evidence: list[dict[str, Any]] = Field(min_length=1, max_length=100)


class Ruling(Strict):
    refund: int = 0
    penalty: int = 0
    terminate: bool = False
    reason: str = Field(min_length=1, max_length=4000)


def _page(page: Any) -> dict[str, Any]:
    return {"items": [render(i) for i in page.items], "next_cursor": page.next_cursor}


def _dump(body: BaseModel) -> dict[str, Any]:
    return body.model_dump(mode="json")


# --- products ----------------------------------------------------------------------------------------


@router.post("/products", status_code=201, response_model=Mutation[Product])
def create_product(body: NewProduct, request: Request, caller: Principal = Caller) -> JSONResponse:
    """A draft product on resources the provider holds or operates."""
    return mutate(request, caller, products.create_product, body=_dump(body), status=201, **body.model_dump())


@router.get("/products", response_model=Page[Product])
def search_products(
    request: Request,
    caller: Principal = Caller,
    q: str = "",
    kind: str | None = None,
    market: str | None = None,
    provider: str | None = None,
    status: str | None = None,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
) -> Any:
    page = exchange_of(request).read(
        caller,
        products.search_products,
        q=q,
        kind=kind,
        market=market,
        provider=provider,
        status=status,
        limit=limit,
        cursor=cursor,
    )
    return {"items": [render(p) for p in page.items], "next_cursor": page.next_cursor}


@router.get("/products/{product_id}", response_model=Product)
def get_product(product_id: str, request: Request, caller: Principal = Caller) -> Any:
    return render(exchange_of(request).read(caller, products.get_product, product_id))


@router.post("/products/{product_id}/submit", response_model=Mutation[Product])
def submit(product_id: str, request: Request, caller: Principal = Caller) -> JSONResponse:
    return mutate(request, caller, products.submit_product, product_id)


@router.post("/products/{product_id}/review", response_model=Mutation[Product])
def review(product_id: str, body: Review, request: Request, caller: Principal = Caller) -> JSONResponse:
    return mutate(
        request,
        caller,
        products.review_product,
        product_id,
        body=_dump(body),
        approve=body.approve,
        note=body.note,
    )


@router.post("/products/{product_id}/regulator-approval", response_model=Mutation[Product])
def regulator(product_id: str, body: Note, request: Request, caller: Principal = Caller) -> JSONResponse:
    return mutate(request, caller, products.approve_regulator, product_id, body=_dump(body), note=body.note)


@router.post("/products/{product_id}/delist", response_model=Mutation[Product])
def delist(product_id: str, body: Reason, request: Request, caller: Principal = Caller) -> JSONResponse:
    return mutate(request, caller, products.delist_product, product_id, body=_dump(body), reason=body.reason)


# --- contracts ---------------------------------------------------------------------------------------


@router.post("/contracts", status_code=201, response_model=Mutation[Contract])
def request_contract(body: NewContract, request: Request, caller: Principal = Caller) -> JSONResponse:
    return mutate(
        request, caller, contracts.request_contract, body=_dump(body), status=201, **body.model_dump()
    )


@router.post("/contracts/offers", status_code=201, response_model=Mutation[Contract])
def offer_direct(body: DirectOffer, request: Request, caller: Principal = Caller) -> JSONResponse:
    """A directly negotiated deal: the provider offers to a named consumer (starts at OFFERED)."""
    return mutate(request, caller, contracts.offer_direct, body=_dump(body), status=201, **body.model_dump())


@router.get("/contracts", response_model=Page[Contract])
def list_contracts(
    request: Request,
    caller: Principal = Caller,
    state: str | None = None,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
) -> Any:
    return _page(
        exchange_of(request).read(caller, contracts.list_contracts, state=state, limit=limit, cursor=cursor)
    )


@router.get("/contracts/{contract_id}", response_model=Contract)
def get_contract(contract_id: str, request: Request, caller: Principal = Caller) -> Any:
    return render(exchange_of(request).read(caller, contracts.get_contract, contract_id))


@router.get("/contracts/{contract_id}/use-check", response_model=Document)
def use_check(
    contract_id: str,
    request: Request,
    caller: Principal = Caller,
    purpose: str | None = Query(None, max_length=200),
    region: str | None = Query(None, max_length=64),
) -> Any:
    """Dry run of the use check (rights, registration and participant status); 403/409 if refused."""
    from datavalley.market import governance

    return render(
        exchange_of(request).read(
            caller, governance.check_contract_use, contract_id, purpose=purpose, region=region
        )
    )


@router.get("/contracts/{contract_id}/agreement", response_model=Document)
def agreement(contract_id: str, request: Request, caller: Principal = Caller) -> Any:
    """The agreement document, its digest and the exact bytes (base64) each party signs."""
    return exchange_of(request).read(caller, contracts.agreement_of, contract_id)


@router.get("/contracts/{contract_id}/policy", response_model=Document)
def policy(contract_id: str, request: Request, caller: Principal = Caller) -> JSONResponse:
    """The contract's usage policy as ODRL 2.2 JSON-LD."""
    c = exchange_of(request).read(caller, contracts.get_contract, contract_id)
    return JSONResponse(c.policy, media_type="application/ld+json")


@router.post("/contracts/{contract_id}/offer", response_model=Mutation[Contract])
def offer(contract_id: str, body: Offer, request: Request, caller: Principal = Caller) -> JSONResponse:
    return mutate(request, caller, contracts.offer_contract, contract_id, body=_dump(body), price=body.price)


@router.post("/contracts/{contract_id}/accept", response_model=Mutation[Contract])
def accept(contract_id: str, request: Request, caller: Principal = Caller) -> JSONResponse:
    return mutate(request, caller, contracts.accept_contract, contract_id)


@router.post("/contracts/{contract_id}/sign", response_model=Mutation[Contract])
def sign(contract_id: str, body: Sign, request: Request, caller: Principal = Caller) -> JSONResponse:
    return mutate(
        request, caller, contracts.sign_contract, contract_id, body=_dump(body), signature=body.signature
    )


@router.post("/contracts/{contract_id}/suspend", response_model=Mutation[Contract])
def suspend(contract_id: str, body: Suspend, request: Request, caller: Principal = Caller) -> JSONResponse:
    return mutate(
        request,
        caller,
        contracts.suspend_contract,
        contract_id,
        body=_dump(body),
        suspended=body.suspended,
        reason=body.reason,
    )


@router.post("/contracts/{contract_id}/terminate", response_model=Mutation[Contract])
def terminate(contract_id: str, body: Reason, request: Request, caller: Principal = Caller) -> JSONResponse:
    return mutate(
        request, caller, contracts.terminate_contract, contract_id, body=_dump(body), reason=body.reason
    )


@router.post("/contracts/{contract_id}/uses", status_code=201, response_model=Mutation[Use])
def use(contract_id: str, body: NewUse, request: Request, caller: Principal = Caller) -> JSONResponse:
    """A node authorises and records one use (policy check, budget reservation, metering, payment)."""
    return mutate(
        request, caller, contracts.record_use, contract_id, body=_dump(body), status=201, **body.model_dump()
    )


@router.post("/contracts/{contract_id}/queries", response_model=Document)
def query(contract_id: str, body: QueryBody, request: Request, caller: Principal = Caller) -> Any:
    """Private SQL on the provider's node under this contract: checked, metered, noised."""
    from datavalley.node.query import QueryService

    app = request.app
    service = getattr(app.state, "query_service", None)
    if service is None:
        service = app.state.query_service = QueryService(exchange_of(request))
    return service.run(
        caller, contract_id, body.sql, epsilon=body.epsilon, purpose=body.purpose, region=body.region
    )


@router.get("/contracts/{contract_id}/uses", response_model=Page[Use])
def uses(
    contract_id: str,
    request: Request,
    caller: Principal = Caller,
    limit: int = Query(100, ge=1, le=500),
    cursor: str | None = None,
) -> Any:
    return _page(
        exchange_of(request).read(caller, contracts.list_uses, contract_id, limit=limit, cursor=cursor)
    )


@router.get("/contracts/{contract_id}/statement", response_model=Document)
def contract_statement(contract_id: str, request: Request, caller: Principal = Caller) -> Any:
    return exchange_of(request).read(caller, settlement.contract_statement, contract_id)


@router.get(
    "/contracts/{contract_id}/invoice",
    response_model=Document,
    responses={200: {"content": {"text/html": {}, "application/pdf": {}}}},
)
def invoice(
    contract_id: str,
    request: Request,
    start: datetime,
    end: datetime,
    caller: Principal = Caller,
    format: str = "json",
) -> Any:
    inv = exchange_of(request).read(caller, settlement.invoice, contract_id, start=start, end=end)
    if format == "html":
        return HTMLResponse(settlement.invoice_html(inv))
    if format == "pdf":
        return Response(settlement.invoice_pdf(inv), media_type="application/pdf")
    return inv


# --- money -------------------------------------------------------------------------------------------


@router.get("/accounts", response_model=Page[Balance])
def balances(
    request: Request,
    caller: Principal = Caller,
    participant_id: str | None = None,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
) -> Any:
    return paged(exchange_of(request).read(caller, accounts.balances, participant_id), limit, cursor)


@router.get("/accounts/invariants", response_model=Document)
def invariants(request: Request, caller: Principal = Caller) -> Any:
    return exchange_of(request).read(caller, accounts.check_invariants)


@router.get("/accounts/statement", response_model=Document)
def statement(
    request: Request,
    start: datetime,
    end: datetime,
    caller: Principal = Caller,
    participant_id: str | None = None,
) -> Any:
    return exchange_of(request).read(
        caller, settlement.statement, start=start, end=end, participant_id=participant_id
    )


@router.post("/payments/deposits", status_code=201, response_model=Mutation[Payment])
def deposit(body: NewPayment, request: Request, caller: Principal = Caller) -> JSONResponse:
    return mutate(
        request, caller, accounts.request_deposit, body=_dump(body), status=201, **body.model_dump()
    )


@router.post("/payments/withdrawals", status_code=201, response_model=Mutation[Payment])
def withdraw(body: NewPayment, request: Request, caller: Principal = Caller) -> JSONResponse:
    return mutate(
        request, caller, accounts.request_withdrawal, body=_dump(body), status=201, **body.model_dump()
    )


@router.post("/payments/{payment_id}/confirm", response_model=Mutation[Payment])
def confirm(payment_id: str, body: Confirm, request: Request, caller: Principal = Caller) -> JSONResponse:
    return mutate(
        request, caller, accounts.confirm_payment, payment_id, body=_dump(body), confirmed=body.confirmed
    )


@router.get("/payments", response_model=Page[Payment])
def payments(
    request: Request,
    caller: Principal = Caller,
    status: str | None = None,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
) -> Any:
    return _page(
        exchange_of(request).read(caller, accounts.list_payments, status=status, limit=limit, cursor=cursor)
    )


@router.post("/settlement/run", response_model=Mutation[Document])
def run_settlement(request: Request, caller: Principal = Caller) -> JSONResponse:
    return mutate(request, caller, contracts.run_settlement, shape=lambda v: v)


# --- disputes ----------------------------------------------------------------------------------------


@router.post("/contracts/{contract_id}/disputes", status_code=201, response_model=Mutation[Dispute])
def open_dispute(
    contract_id: str, body: NewDispute, request: Request, caller: Principal = Caller
) -> JSONResponse:
    return mutate(
        request,
        caller,
        settlement.open_dispute,
        contract_id,
        body=_dump(body),
        status=201,
        claim=body.claim,
        evidence=body.evidence,
    )


@router.get("/disputes", response_model=Page[Dispute])
def disputes(
    request: Request,
    caller: Principal = Caller,
    status: str | None = None,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
) -> Any:
    return _page(
        exchange_of(request).read(caller, settlement.list_disputes, status=status, limit=limit, cursor=cursor)
    )


@router.get("/disputes/{dispute_id}", response_model=Dispute)
def dispute(dispute_id: str, request: Request, caller: Principal = Caller) -> Any:
    return render(exchange_of(request).read(caller, settlement.get_dispute, dispute_id))


@router.post("/disputes/{dispute_id}/rule", response_model=Mutation[Dispute])
def rule(dispute_id: str, body: Ruling, request: Request, caller: Principal = Caller) -> JSONResponse:
    return mutate(request, caller, settlement.rule_dispute, dispute_id, body=_dump(body), **body.model_dump())
