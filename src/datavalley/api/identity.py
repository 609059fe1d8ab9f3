"""Identity routes: participants, members, tokens, keys."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from datavalley.api.deps import Caller, Document, Mutation, Page, exchange_of, mutate, render
from datavalley.identity import service as svc
from datavalley.identity.model import ApiToken, IssuedToken, Member, Participant, ParticipantKey, Principal

router = APIRouter(tags=["identity"])


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterParticipant(Strict):
    name: str = Field(min_length=1, max_length=200)
    kind: str
    country: str = "CN"
    registry_id: str
    roles: list[str]
    admin_name: str = Field(min_length=1, max_length=200)


class StatusChange(Strict):
    reason: str = Field(default="", max_length=2000)


class AddMember(Strict):
    name: str = Field(min_length=1, max_length=200)
    kind: str = "person"
    roles: list[str]
    admin: bool = False


class IssueToken(Strict):
    scopes: list[str] | None = None
    ttl_days: int | None = None
    description: str = Field(default="", max_length=200)


class RegisteredParticipant(BaseModel):
    participant: Participant
    admin_member: Member


class RegisterKey(Strict):
    public_key: str
    proof: str


def _page(page: Any) -> dict[str, Any]:
    return {"items": [render(i) for i in page.items], "next_cursor": page.next_cursor}


def _registered(value: tuple[Participant, Member]) -> dict[str, Any]:
    return {"participant": render(value[0]), "admin_member": render(value[1])}


def _redact_secret(body: dict[str, Any]) -> dict[str, Any]:
    data = dict(body["data"])
    data["secret"] = None
    return {**body, "data": data}


@router.get("/whoami", response_model=Document)
def whoami(request: Request, caller: Principal = Caller) -> dict[str, Any]:
    """The caller's member, participant and effective roles."""
    return exchange_of(request).read(caller, svc.whoami)


@router.post("/participants", status_code=201, response_model=Mutation[RegisteredParticipant])
def register_participant(
    body: RegisterParticipant, request: Request, caller: Principal = Caller
) -> JSONResponse:
    """Register an organisation (pending) and its first admin member. Operator only."""
    return mutate(
        request,
        caller,
        svc.register_participant,
        body=body.model_dump(),
        status=201,
        shape=_registered,
        **body.model_dump(),
    )


@router.get("/participants", response_model=Page[Participant])
def list_participants(
    request: Request,
    caller: Principal = Caller,
    status: str | None = None,
    cursor: str | None = None,
    limit: int = Query(50, ge=1, le=500),
) -> dict[str, Any]:
    """Participants visible to the caller, oldest first, cursor-paginated."""
    return _page(
        exchange_of(request).read(caller, svc.list_participants, status=status, cursor=cursor, limit=limit)
    )


@router.get("/participants/{participant_id}", response_model=Participant)
def get_participant(participant_id: str, request: Request, caller: Principal = Caller) -> Any:
    return render(exchange_of(request).read(caller, svc.get_participant, participant_id))


def _status_route(action: str) -> Any:
    def handler(
        participant_id: str, request: Request, body: StatusChange | None = None, caller: Principal = Caller
    ) -> JSONResponse:
        reason = body.reason if body else ""
        return mutate(
            request,
            caller,
            svc.change_participant_status,
            participant_id,
            action,
            body={"reason": reason},
            reason=reason,
        )

    handler.__name__ = f"{action}_participant"
    handler.__doc__ = f"Operator: {action} a participant."
    return handler


for _action in ("verify", "suspend", "reinstate"):
    router.post(f"/participants/{{participant_id}}/{_action}", response_model=Mutation[Participant])(
        _status_route(_action)
    )


@router.post("/participants/{participant_id}/members", status_code=201, response_model=Mutation[Member])
def add_member(
    participant_id: str, body: AddMember, request: Request, caller: Principal = Caller
) -> JSONResponse:
    """Add a member (participant admins)."""
    return mutate(
        request,
        caller,
        svc.add_member,
        participant_id,
        body=body.model_dump(),
        status=201,
        **body.model_dump(),
    )


@router.get("/participants/{participant_id}/members", response_model=Page[Member])
def list_members(
    participant_id: str,
    request: Request,
    caller: Principal = Caller,
    cursor: str | None = None,
    limit: int = Query(50, ge=1, le=500),
) -> dict[str, Any]:
    return _page(
        exchange_of(request).read(caller, svc.list_members, participant_id, cursor=cursor, limit=limit)
    )


@router.get("/members/{member_id}", response_model=Member)
def get_member(member_id: str, request: Request, caller: Principal = Caller) -> Any:
    return render(exchange_of(request).read(caller, svc.get_member, member_id))


@router.post("/members/{member_id}/deactivate", response_model=Mutation[Member])
def deactivate_member(member_id: str, request: Request, caller: Principal = Caller) -> JSONResponse:
    return mutate(request, caller, svc.deactivate_member, member_id)


@router.post("/members/{member_id}/tokens", status_code=201, response_model=Mutation[IssuedToken])
def issue_token(
    member_id: str, body: IssueToken, request: Request, caller: Principal = Caller
) -> JSONResponse:
    """Issue a token; the secret is in this answer only (a replay with the same Idempotency-Key omits it)."""
    return mutate(
        request,
        caller,
        svc.issue_token,
        member_id,
        body=body.model_dump(),
        status=201,
        shape=lambda t: render(t) if isinstance(t, IssuedToken) else t,
        redact=_redact_secret,
        **body.model_dump(),
    )


@router.get("/members/{member_id}/tokens", response_model=Page[ApiToken])
def list_tokens(
    member_id: str,
    request: Request,
    caller: Principal = Caller,
    cursor: str | None = None,
    limit: int = Query(50, ge=1, le=500),
) -> dict[str, Any]:
    return _page(exchange_of(request).read(caller, svc.list_tokens, member_id, cursor=cursor, limit=limit))


@router.post("/tokens/{token_id}/revoke", response_model=Mutation[ApiToken])
def revoke_token(token_id: str, request: Request, caller: Principal = Caller) -> JSONResponse:
    return mutate(request, caller, svc.revoke_token, token_id)


@router.post("/participants/{participant_id}/keys", status_code=201, response_model=Mutation[ParticipantKey])
def register_key(
    participant_id: str, body: RegisterKey, request: Request, caller: Principal = Caller
) -> JSONResponse:
    """Register an Ed25519 public key with proof of possession (docs/PROTOCOL.md, 'Key registration')."""
    return mutate(
        request,
        caller,
        svc.register_key,
        participant_id,
        body=body.model_dump(),
        status=201,
        **body.model_dump(),
    )


@router.get("/participants/{participant_id}/keys", response_model=Page[ParticipantKey])
def list_keys(
    participant_id: str,
    request: Request,
    caller: Principal = Caller,
    cursor: str | None = None,
    limit: int = Query(50, ge=1, le=500),
) -> dict[str, Any]:
    return _page(exchange_of(request).read(caller, svc.list_keys, participant_id, cursor=cursor, limit=limit))


@router.post("/keys/{key_id}/revoke", response_model=Mutation[ParticipantKey])
def revoke_key(key_id: str, request: Request, caller: Principal = Caller) -> JSONResponse:
    return mutate(request, caller, svc.revoke_key, key_id)
