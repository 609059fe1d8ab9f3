"""Registration, rights, objections, certificates and catalog routes (docs/PROTOCOL.md, section 6)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from datavalley.api.deps import Caller, Document, Mutation, Page, exchange_of, mutate, paged, render
from datavalley.catalog import search as catalog_search
from datavalley.identity.model import Principal
from datavalley.rights import grading, registration, rights
from datavalley.rights.model import Objection as ObjectionRecord
from datavalley.rights.model import Resource, Right

router = APIRouter(tags=["registration"])


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterResource(Strict):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=4000)
    tags: list[str] = Field(default_factory=list, max_length=50)
    sector: str
    declared_grade: str = "general"
    lawful_source: str = Field(max_length=4000)
    public_data: bool = False
    published: bool = False
    valid_days: int = registration.DEFAULT_VALIDITY_DAYS
    analysis: dict[str, Any]


class ChangeResource(Strict):
    analysis: dict[str, Any]


class Reason(Strict):
    reason: str = Field(default="", max_length=4000)


class Cancel(Strict):
    reason: str = Field(default="", max_length=4000)
    terminate_contracts: bool = False


class Renew(Strict):
    valid_days: int = registration.DEFAULT_VALIDITY_DAYS


class Classify(Strict):
    grade: str
    reason: str = Field(default="", max_length=4000)


class Grant(Strict):
    kind: str
    grantee_id: str
    purposes: list[str]
    territories: list[str]
    valid_until: datetime
    valid_from: datetime | None = None
    sublicensable: bool = False
    parent_id: str | None = None


class Authorise(Strict):
    operator_id: str
    purposes: list[str]
    territories: list[str]
    valid_until: datetime


class Transfer(Strict):
    to_id: str
    include_use_rights: bool = True


class Objection(Strict):
    reason: str = Field(min_length=1, max_length=4000)


class Resolve(Strict):
    upheld: bool
    resolution: str = Field(min_length=1, max_length=4000)


class Rules(Strict):
    rules: dict[str, Any]


class TitleItem(BaseModel):
    depth: int
    right: Right


class SearchPage(Page[Resource]):
    total: int
    facets: dict[str, Any]


def _dump(body: BaseModel) -> dict[str, Any]:
    return body.model_dump(mode="json")


@router.post("/resources", status_code=201, response_model=Mutation[Resource])
def register_resource(body: RegisterResource, request: Request, caller: Principal = Caller) -> JSONResponse:
    """First registration of a data resource from a node's analysis (provider)."""
    kwargs = body.model_dump()
    return mutate(request, caller, registration.register_resource, body=_dump(body), status=201, **kwargs)


@router.get("/resources/{resource_id}", response_model=Resource)
def get_resource(resource_id: str, request: Request, caller: Principal = Caller) -> Any:
    return render(exchange_of(request).read(caller, registration.get_resource, resource_id))


@router.get("/catalog/resources/{resource_id}", response_model=Resource)
def catalog_entry(resource_id: str, request: Request, caller: Principal = Caller) -> Any:
    """A catalog entry (the DCAT distribution's access URL): the resource as the caller may see it."""
    return render(exchange_of(request).read(caller, registration.get_resource, resource_id))


@router.get("/resources/{resource_id}/versions", response_model=Page[Document])
def versions(
    resource_id: str,
    request: Request,
    caller: Principal = Caller,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
) -> Any:
    return paged(exchange_of(request).read(caller, registration.version_history, resource_id), limit, cursor)


@router.post("/resources/{resource_id}/change", response_model=Mutation[Resource])
def change(
    resource_id: str, body: ChangeResource, request: Request, caller: Principal = Caller
) -> JSONResponse:
    """Re-register changed content (same schema, new fingerprint)."""
    return mutate(
        request, caller, registration.change_resource, resource_id, body=_dump(body), analysis=body.analysis
    )


@router.post("/resources/{resource_id}/renew", response_model=Mutation[Resource])
def renew(resource_id: str, body: Renew, request: Request, caller: Principal = Caller) -> JSONResponse:
    return mutate(
        request,
        caller,
        registration.renew_resource,
        resource_id,
        body=_dump(body),
        valid_days=body.valid_days,
    )


@router.post("/resources/{resource_id}/cancel", response_model=Mutation[Resource])
def cancel(resource_id: str, body: Cancel, request: Request, caller: Principal = Caller) -> JSONResponse:
    """Holder cancels; refused under live contracts unless ``terminate_contracts`` (they end, refunded)."""
    return mutate(
        request,
        caller,
        registration.cancel_resource,
        resource_id,
        body=_dump(body),
        reason=body.reason,
        terminate_contracts=body.terminate_contracts,
    )


@router.post("/resources/{resource_id}/revoke", response_model=Mutation[Resource])
def revoke(resource_id: str, body: Reason, request: Request, caller: Principal = Caller) -> JSONResponse:
    """Operator revokes a registration (reason required)."""
    return mutate(
        request, caller, registration.revoke_resource, resource_id, body=_dump(body), reason=body.reason
    )


@router.post("/resources/{resource_id}/publish", response_model=Mutation[Resource])
def publish(resource_id: str, request: Request, caller: Principal = Caller) -> JSONResponse:
    return mutate(request, caller, registration.set_published, resource_id, published=True)


@router.post("/resources/{resource_id}/unpublish", response_model=Mutation[Resource])
def unpublish(resource_id: str, request: Request, caller: Principal = Caller) -> JSONResponse:
    return mutate(request, caller, registration.set_published, resource_id, published=False)


@router.post("/resources/{resource_id}/classification", response_model=Mutation[Resource])
def classify(resource_id: str, body: Classify, request: Request, caller: Principal = Caller) -> JSONResponse:
    """Operator confirms or corrects the grade."""
    return mutate(
        request,
        caller,
        registration.confirm_classification,
        resource_id,
        body=_dump(body),
        grade=body.grade,
        reason=body.reason,
    )


@router.get("/resources/{resource_id}/title", response_model=Page[TitleItem])
def title(
    resource_id: str,
    request: Request,
    caller: Principal = Caller,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
) -> Any:
    """The chain of title: every right on the resource, parents before children, with depth."""
    links = exchange_of(request).read(caller, rights.chain_of_title, resource_id)
    return paged([{"depth": link.depth, "right": render(link.right)} for link in links], limit, cursor)


@router.get("/resources/{resource_id}/rights", response_model=Page[Right])
def resource_rights(
    resource_id: str,
    request: Request,
    caller: Principal = Caller,
    active_only: bool = True,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
) -> Any:
    items = exchange_of(request).read(
        caller, rights.list_rights, resource_id=resource_id, active_only=active_only
    )
    return paged(items, limit, cursor)


@router.post("/resources/{resource_id}/rights", status_code=201, response_model=Mutation[Right])
def grant(resource_id: str, body: Grant, request: Request, caller: Principal = Caller) -> JSONResponse:
    """Grant processing & use or product operation (a licence)."""
    return mutate(
        request, caller, rights.grant_right, resource_id, body=_dump(body), status=201, **body.model_dump()
    )


@router.post(
    "/resources/{resource_id}/public-data-authorisations", status_code=201, response_model=Mutation[Right]
)
def authorise(
    resource_id: str, body: Authorise, request: Request, caller: Principal = Caller
) -> JSONResponse:
    """A public body authorises an operating entity to run products on its public data."""
    return mutate(
        request,
        caller,
        rights.authorise_public_data_operation,
        resource_id,
        body=_dump(body),
        status=201,
        **body.model_dump(),
    )


@router.post("/resources/{resource_id}/transfer", response_model=Mutation[list[Right]])
def transfer(resource_id: str, body: Transfer, request: Request, caller: Principal = Caller) -> JSONResponse:
    return mutate(
        request,
        caller,
        rights.transfer_holding,
        resource_id,
        body=_dump(body),
        shape=lambda v: [render(r) for r in v],
        **body.model_dump(),
    )


@router.post("/rights/{right_id}/revoke", response_model=Mutation[list[Right]])
def revoke_right(right_id: str, body: Reason, request: Request, caller: Principal = Caller) -> JSONResponse:
    """Revoke a right and everything derived from it."""
    return mutate(
        request,
        caller,
        rights.revoke_right,
        right_id,
        body=_dump(body),
        shape=lambda v: [render(r) for r in v],
        reason=body.reason,
    )


@router.get("/rights", response_model=Page[Right])
def my_rights(
    request: Request,
    caller: Principal = Caller,
    holder_id: str | None = None,
    active_only: bool = True,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
) -> Any:
    items = exchange_of(request).read(
        caller, rights.list_rights, holder_id=holder_id, active_only=active_only
    )
    return paged(items, limit, cursor)


@router.post("/resources/{resource_id}/objections", status_code=201, response_model=Mutation[ObjectionRecord])
def object_(resource_id: str, body: Objection, request: Request, caller: Principal = Caller) -> JSONResponse:
    """File an objection: the resource is frozen until the operator resolves it."""
    return mutate(
        request,
        caller,
        registration.file_objection,
        resource_id,
        body=_dump(body),
        status=201,
        reason=body.reason,
    )


@router.get("/resources/{resource_id}/objections", response_model=Page[ObjectionRecord])
def objections(
    resource_id: str,
    request: Request,
    caller: Principal = Caller,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
) -> Any:
    return paged(exchange_of(request).read(caller, registration.list_objections, resource_id), limit, cursor)


@router.post("/objections/{objection_id}/resolve", response_model=Mutation[ObjectionRecord])
def resolve(objection_id: str, body: Resolve, request: Request, caller: Principal = Caller) -> JSONResponse:
    return mutate(
        request,
        caller,
        registration.resolve_objection,
        objection_id,
        body=_dump(body),
        upheld=body.upheld,
        resolution=body.resolution,
    )


@router.get("/resources/{resource_id}/certificate", response_model=Document)
def certificate(
    resource_id: str, request: Request, caller: Principal = Caller, version: int | None = Query(None, ge=1)
) -> Any:
    """The signed registration certificate of a version (default: current), issued on first request."""
    from datavalley.rights import certify

    ex = exchange_of(request)
    ex.ledger.sequence_pending()
    ex.ledger.publish()
    outcome = ex.run(caller, certify.certificate, resource_id, version=version, render=lambda v: v)
    return outcome.body


@router.get("/certificates/{certificate_id}/status")
def certificate_status(certificate_id: str, request: Request, caller: Principal = Caller) -> Any:
    """The signed current status of a certificate: valid, superseded, cancelled or revoked."""
    from datavalley.rights import cert_status

    return exchange_of(request).read(caller, cert_status.certificate_status, certificate_id)


@router.get("/resources/{resource_id}/certificate.html", response_class=HTMLResponse)
def certificate_html(
    resource_id: str, request: Request, caller: Principal = Caller, version: int | None = Query(None, ge=1)
) -> str:
    from datavalley.rights.certificates import render_html

    return render_html(certificate(resource_id, request, caller, version))


@router.get("/catalog/search", response_model=SearchPage)
def search(
    request: Request,
    caller: Principal = Caller,
    q: str = "",
    sector: str | None = None,
    grade: str | None = None,
    provider: str | None = None,
    pii_present: bool | None = None,
    tag: list[str] = Query(default_factory=list),
    status: str | None = None,
    cursor: str | None = None,
    limit: int = Query(20, ge=1, le=500),
) -> Any:
    """Full-text and faceted search over the resources the caller may see."""
    result = exchange_of(request).read(
        caller,
        catalog_search.search_resources,
        q=q,
        sector=sector,
        grade=grade,
        provider=provider,
        pii_present=pii_present,
        tags=tag,
        status=status,
        cursor=cursor,
        limit=limit,
    )
    return {
        "items": [render(r) for r in result.page.items],
        "next_cursor": result.page.next_cursor,
        "total": result.total,
        "facets": result.facets,
    }


@router.get("/catalog/dcat", response_model=Document)
def dcat(request: Request, caller: Principal = Caller) -> Any:
    """The public catalog as DCAT-AP 3 JSON-LD."""
    from datavalley.rights import certify

    return exchange_of(request).read(
        caller, certify.public_catalog, base_url=str(request.base_url).rstrip("/")
    )


@router.get("/classification/rules", response_model=Document)
def get_rules(request: Request, caller: Principal = Caller) -> Any:
    return exchange_of(request).read(caller, grading.get_rules)


@router.post("/classification/rules", response_model=Mutation[Document])
def set_rules(body: Rules, request: Request, caller: Principal = Caller) -> JSONResponse:
    """Operator replaces the classification rule set (a new version)."""
    return mutate(request, caller, grading.set_rules, body=_dump(body), shape=lambda v: v, rules=body.rules)
