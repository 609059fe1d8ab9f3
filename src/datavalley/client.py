"""``datavalley.client.Client``: a typed Python SDK over the HTTP API (httpx).

Every method maps to one API route (docs/PROTOCOL.md); errors come back as the same
:mod:`datavalley.errors` classes the server raised. A client can talk to a server by URL or, for the CLI's
local mode, to an in-process app over :class:`InProcessTransport` without opening a socket.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import TypeAdapter

from datavalley.errors import DatavalleyError, Unavailable, error_from_dict
from datavalley.identity.model import ApiToken, IssuedToken, Member, Participant, ParticipantKey
from datavalley.keys import public_key_b64, registration_message
from datavalley.market.model import Balance, Contract, Dispute, Payment, Product, Use
from datavalley.rights.model import Objection, Resource, Right
from datavalley.store.pages import Page

T = TypeVar("T")


@dataclass(frozen=True)
class Result(Generic[T]):
    """The answer to a state change: the value and its ledger receipts (keep them: they are evidence)."""

    value: T
    receipts: list[dict[str, Any]]
    replayed: bool = False


class InProcessTransport(httpx.BaseTransport):
    """Serve requests from an ASGI app in this process (the CLI's local mode; no socket, same API)."""

    def __init__(self, app: Any) -> None:
        self._asgi = httpx.ASGITransport(app=app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def call() -> httpx.Response:
            response = await self._asgi.handle_async_request(request)
            content = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=content)

        return asyncio.run(call())


def _parse(kind: type[T], data: Any) -> T:
    return TypeAdapter(kind).validate_python(data)


class Client:
    """A datavalley API client. ``Client("http://host:8000", token="dvt_…")``."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        token: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 60.0,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, transport=transport, timeout=timeout)
        self.base_url = base_url

    @classmethod
    def in_process(cls, app: Any, token: str | None) -> Client:
        """A client bound to an in-process app (see :class:`InProcessTransport`)."""
        return cls("http://datavalley.local", token, transport=InProcessTransport(app))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing ------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        """Send a request (a JSON body, or raw ``content``); raise the server's error class for any non-2xx
        answer."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            if content is not None:
                resp = self._http.request(method, path, content=content, params=clean, headers=headers)
            else:
                resp = self._http.request(method, path, json=json, params=clean, headers=headers)
        except httpx.TransportError as exc:
            raise Unavailable(f"cannot reach the exchange at {self.base_url}: {exc}") from exc
        if resp.status_code >= 400:
            try:
                body = resp.json()
            except ValueError:
                body = {"error": "internal_error", "message": f"HTTP {resp.status_code}: {resp.text[:200]}"}
            if not isinstance(body, dict) or "error" not in body:
                body = {"error": "internal_error", "message": f"HTTP {resp.status_code}: {body!r}"[:300]}
            raise error_from_dict(body)
        return resp

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params).json()

    def post(
        self, path: str, body: Any = None, *, idempotency_key: str | None = None
    ) -> tuple[Any, list[Any], bool]:
        resp = self.request(
            "POST", path, json=body if body is not None else {}, idempotency_key=idempotency_key
        )
        payload = resp.json()
        return payload["data"], payload.get("receipts", []), resp.headers.get("Idempotent-Replayed") == "true"

    def page(self, type_: type[T], path: str, **params: Any) -> Page[T]:
        """One page of any list route (``limit``, ``cursor`` and filters as query parameters)."""
        return self._page(type_, path, **params)

    def _page(self, type_: type[T], path: str, **params: Any) -> Page[T]:
        data = self.get(path, **params)
        return Page([_parse(type_, i) for i in data["items"]], data["next_cursor"])

    def _all(self, path: str, **params: Any) -> list[Any]:
        """Every item of a ``{items, next_cursor}`` list, following the cursors (raw JSON items)."""
        out: list[Any] = []
        cursor = None
        while True:
            data = self.get(path, cursor=cursor, limit=500, **params)
            out.extend(data["items"])
            cursor = data.get("next_cursor")
            if cursor is None:
                return out

    def _iterate(self, type_: type[T], path: str, **params: Any) -> Iterator[T]:
        cursor = None
        while True:
            page = self._page(type_, path, cursor=cursor, **params)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    # --- identity ------------------------------------------------------------------------------

    def whoami(self) -> dict[str, Any]:
        return dict(self.get("/v1/whoami"))

    def register_participant(
        self,
        *,
        name: str,
        kind: str,
        registry_id: str,
        roles: list[str],
        admin_name: str,
        country: str = "CN",
        idempotency_key: str | None = None,
    ) -> Result[tuple[Participant, Member]]:
        body = {
            "name": name,
            "kind": kind,
            "country": country,
            "registry_id": registry_id,
            "roles": roles,
            "admin_name": admin_name,
        }
        data, receipts, replayed = self.post("/v1/participants", body, idempotency_key=idempotency_key)
        value = (_parse(Participant, data["participant"]), _parse(Member, data["admin_member"]))
        return Result(value, receipts, replayed)

    def list_participants(
        self, *, status: str | None = None, cursor: str | None = None, limit: int = 50
    ) -> Page[Participant]:
        return self._page(Participant, "/v1/participants", status=status, cursor=cursor, limit=limit)

    def iter_participants(self, *, status: str | None = None) -> Iterator[Participant]:
        return self._iterate(Participant, "/v1/participants", status=status)

    def get_participant(self, participant_id: str) -> Participant:
        return _parse(Participant, self.get(f"/v1/participants/{participant_id}"))

    def change_participant_status(
        self, participant_id: str, action: str, reason: str = ""
    ) -> Result[Participant]:
        data, receipts, replayed = self.post(
            f"/v1/participants/{participant_id}/{action}", {"reason": reason}
        )
        return Result(_parse(Participant, data), receipts, replayed)

    def add_member(
        self,
        participant_id: str,
        *,
        name: str,
        roles: list[str],
        kind: str = "person",
        admin: bool = False,
        idempotency_key: str | None = None,
    ) -> Result[Member]:
        body = {"name": name, "roles": roles, "kind": kind, "admin": admin}
        data, receipts, replayed = self.post(
            f"/v1/participants/{participant_id}/members", body, idempotency_key=idempotency_key
        )
        return Result(_parse(Member, data), receipts, replayed)

    def list_members(
        self, participant_id: str, *, cursor: str | None = None, limit: int = 50
    ) -> Page[Member]:
        return self._page(Member, f"/v1/participants/{participant_id}/members", cursor=cursor, limit=limit)

    def get_member(self, member_id: str) -> Member:
        return _parse(Member, self.get(f"/v1/members/{member_id}"))

    def deactivate_member(self, member_id: str) -> Result[Member]:
        data, receipts, replayed = self.post(f"/v1/members/{member_id}/deactivate")
        return Result(_parse(Member, data), receipts, replayed)

    def issue_token(
        self,
        member_id: str,
        *,
        scopes: list[str] | None = None,
        ttl_days: int | None = None,
        description: str = "",
        idempotency_key: str | None = None,
    ) -> Result[IssuedToken]:
        body = {"scopes": scopes, "ttl_days": ttl_days, "description": description}
        data, receipts, replayed = self.post(
            f"/v1/members/{member_id}/tokens", body, idempotency_key=idempotency_key
        )
        if data.get("secret") is None:  # a replay: the secret was shown once and is gone
            data = {**data, "secret": ""}
        return Result(_parse(IssuedToken, data), receipts, replayed)

    def list_tokens(self, member_id: str, *, cursor: str | None = None, limit: int = 50) -> Page[ApiToken]:
        return self._page(ApiToken, f"/v1/members/{member_id}/tokens", cursor=cursor, limit=limit)

    def revoke_token(self, token_id: str) -> Result[ApiToken]:
        data, receipts, replayed = self.post(f"/v1/tokens/{token_id}/revoke")
        return Result(_parse(ApiToken, data), receipts, replayed)

    def register_key(self, participant_id: str, private_key: Ed25519PrivateKey) -> Result[ParticipantKey]:
        """Register the public half of ``private_key``; the proof of possession is signed locally."""
        pub = public_key_b64(private_key)
        proof = base64.b64encode(private_key.sign(registration_message(participant_id, pub))).decode()
        data, receipts, replayed = self.post(
            f"/v1/participants/{participant_id}/keys", {"public_key": pub, "proof": proof}
        )
        return Result(_parse(ParticipantKey, data), receipts, replayed)

    def list_keys(
        self, participant_id: str, *, cursor: str | None = None, limit: int = 50
    ) -> Page[ParticipantKey]:
        return self._page(
            ParticipantKey, f"/v1/participants/{participant_id}/keys", cursor=cursor, limit=limit
        )

    def revoke_key(self, key_id: str) -> Result[ParticipantKey]:
        data, receipts, replayed = self.post(f"/v1/keys/{key_id}/revoke")
        return Result(_parse(ParticipantKey, data), receipts, replayed)

    # --- registration and rights --------------------------------------------------------------

    def register_resource(
        self,
        *,
        name: str,
        sector: str,
        lawful_source: str,
        analysis: dict[str, Any],
        description: str = "",
        tags: list[str] | None = None,
        declared_grade: str = "general",
        public_data: bool = False,
        published: bool = False,
        idempotency_key: str | None = None,
    ) -> Result[Resource]:
        body = {
            "name": name,
            "sector": sector,
            "lawful_source": lawful_source,
            "analysis": analysis,
            "description": description,
            "tags": tags or [],
            "declared_grade": declared_grade,
            "public_data": public_data,
            "published": published,
        }
        data, receipts, replayed = self.post("/v1/resources", body, idempotency_key=idempotency_key)
        return Result(_parse(Resource, data), receipts, replayed)

    def get_resource(self, resource_id: str) -> Resource:
        return _parse(Resource, self.get(f"/v1/resources/{resource_id}"))

    def resource_action(
        self, resource_id: str, action: str, body: dict[str, Any] | None = None
    ) -> Result[Resource]:
        """change, renew, cancel, revoke, publish, unpublish, classification."""
        data, receipts, replayed = self.post(f"/v1/resources/{resource_id}/{action}", body or {})
        return Result(_parse(Resource, data), receipts, replayed)

    def versions(self, resource_id: str) -> list[dict[str, Any]]:
        return list(self._all(f"/v1/resources/{resource_id}/versions"))

    def grant_right(
        self,
        resource_id: str,
        *,
        kind: str,
        grantee_id: str,
        purposes: list[str],
        territories: list[str],
        valid_until: datetime,
        sublicensable: bool = False,
        parent_id: str | None = None,
    ) -> Result[Right]:
        body = {
            "kind": kind,
            "grantee_id": grantee_id,
            "purposes": purposes,
            "territories": territories,
            "valid_until": valid_until.isoformat(),
            "sublicensable": sublicensable,
            "parent_id": parent_id,
        }
        data, receipts, replayed = self.post(f"/v1/resources/{resource_id}/rights", body)
        return Result(_parse(Right, data), receipts, replayed)

    def authorise_public_data(
        self,
        resource_id: str,
        *,
        operator_id: str,
        purposes: list[str],
        territories: list[str],
        valid_until: datetime,
    ) -> Result[Right]:
        body = {
            "operator_id": operator_id,
            "purposes": purposes,
            "territories": territories,
            "valid_until": valid_until.isoformat(),
        }
        data, receipts, replayed = self.post(f"/v1/resources/{resource_id}/public-data-authorisations", body)
        return Result(_parse(Right, data), receipts, replayed)

    def transfer_holding(
        self, resource_id: str, to_id: str, *, include_use_rights: bool = True
    ) -> Result[list[Right]]:
        data, receipts, replayed = self.post(
            f"/v1/resources/{resource_id}/transfer",
            {"to_id": to_id, "include_use_rights": include_use_rights},
        )
        return Result([_parse(Right, r) for r in data], receipts, replayed)

    def revoke_right(self, right_id: str, reason: str = "") -> Result[list[Right]]:
        data, receipts, replayed = self.post(f"/v1/rights/{right_id}/revoke", {"reason": reason})
        return Result([_parse(Right, r) for r in data], receipts, replayed)

    def chain_of_title(self, resource_id: str) -> list[tuple[int, Right]]:
        items = self._all(f"/v1/resources/{resource_id}/title")
        return [(int(i["depth"]), _parse(Right, i["right"])) for i in items]

    def rights(self, *, holder_id: str | None = None, active_only: bool = True) -> list[Right]:
        items = self._all("/v1/rights", holder_id=holder_id, active_only=active_only)
        return [_parse(Right, r) for r in items]

    def file_objection(self, resource_id: str, reason: str) -> Result[Objection]:
        data, receipts, replayed = self.post(f"/v1/resources/{resource_id}/objections", {"reason": reason})
        return Result(_parse(Objection, data), receipts, replayed)

    def resolve_objection(self, objection_id: str, *, upheld: bool, resolution: str) -> Result[Objection]:
        data, receipts, replayed = self.post(
            f"/v1/objections/{objection_id}/resolve", {"upheld": upheld, "resolution": resolution}
        )
        return Result(_parse(Objection, data), receipts, replayed)

    def certificate(self, resource_id: str, version: int | None = None) -> dict[str, Any]:
        return dict(self.get(f"/v1/resources/{resource_id}/certificate", version=version))

    def certificate_status(self, certificate_id: str) -> dict[str, Any]:
        """The exchange's signed current status of a certificate (check it with ``verify_status``)."""
        return dict(self.get(f"/v1/certificates/{certificate_id}/status"))

    def certificate_html(self, resource_id: str, version: int | None = None) -> str:
        clean = {"version": version} if version else None
        return self.request("GET", f"/v1/resources/{resource_id}/certificate.html", params=clean).text

    def search(self, q: str = "", **filters: Any) -> dict[str, Any]:
        """Catalog search: ``items`` (Resources), ``next_cursor``, ``total``, ``facets``."""
        data = dict(self.get("/v1/catalog/search", q=q, **filters))
        data["items"] = [_parse(Resource, r) for r in data["items"]]
        return data

    def dcat(self) -> dict[str, Any]:
        return dict(self.get("/v1/catalog/dcat"))

    def classification_rules(self) -> dict[str, Any]:
        return dict(self.get("/v1/classification/rules"))

    def set_classification_rules(self, rules: dict[str, Any]) -> Result[dict[str, Any]]:
        data, receipts, replayed = self.post("/v1/classification/rules", {"rules": rules})
        return Result(data, receipts, replayed)

    # --- market ---------------------------------------------------------------------------------

    def create_product(
        self,
        *,
        name: str,
        kind: str,
        resource_ids: list[str],
        price: dict[str, Any],
        terms: dict[str, Any],
        description: str = "",
        tags: list[str] | None = None,
    ) -> Result[Product]:
        body = {
            "name": name,
            "kind": kind,
            "resource_ids": resource_ids,
            "price": price,
            "terms": terms,
            "description": description,
            "tags": tags or [],
        }
        data, receipts, replayed = self.post("/v1/products", body)
        return Result(_parse(Product, data), receipts, replayed)

    def product_action(
        self, product_id: str, action: str, body: dict[str, Any] | None = None
    ) -> Result[Product]:
        """submit, review {approve, note}, regulator-approval {note}, delist {reason}."""
        data, receipts, replayed = self.post(f"/v1/products/{product_id}/{action}", body or {})
        return Result(_parse(Product, data), receipts, replayed)

    def get_product(self, product_id: str) -> Product:
        return _parse(Product, self.get(f"/v1/products/{product_id}"))

    def search_products(self, q: str = "", **filters: Any) -> Page[Product]:
        return self._page(Product, "/v1/products", q=q, **filters)

    def request_contract(self, product_id: str, *, purpose: str, **terms: Any) -> Result[Contract]:
        data, receipts, replayed = self.post(
            "/v1/contracts", {"product_id": product_id, "purpose": purpose, **terms}
        )
        return Result(_parse(Contract, data), receipts, replayed)

    def offer_direct(
        self, product_id: str, consumer_id: str, *, purpose: str, **terms: Any
    ) -> Result[Contract]:
        body = {"product_id": product_id, "consumer_id": consumer_id, "purpose": purpose, **terms}
        data, receipts, replayed = self.post("/v1/contracts/offers", body)
        return Result(_parse(Contract, data), receipts, replayed)

    def contract_action(
        self,
        contract_id: str,
        action: str,
        body: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> Result[Contract]:
        """offer {price?}, accept, sign {signature}, suspend {suspended, reason}, terminate {reason}."""
        data, receipts, replayed = self.post(
            f"/v1/contracts/{contract_id}/{action}", body or {}, idempotency_key=idempotency_key
        )
        return Result(_parse(Contract, data), receipts, replayed)

    def get_contract(self, contract_id: str) -> Contract:
        return _parse(Contract, self.get(f"/v1/contracts/{contract_id}"))

    def contracts(self, *, state: str | None = None) -> list[Contract]:
        """Every contract you are party to (follows the cursor pages)."""
        return list(self._iterate(Contract, "/v1/contracts", state=state))

    def agreement(self, contract_id: str) -> dict[str, Any]:
        return dict(self.get(f"/v1/contracts/{contract_id}/agreement"))

    def sign_agreement(self, contract_id: str, private_key: Ed25519PrivateKey) -> Result[Contract]:
        """Fetch the agreement, sign its message with ``private_key`` and submit the signature."""
        message = base64.b64decode(self.agreement(contract_id)["message"])
        signature = base64.b64encode(private_key.sign(message)).decode()
        return self.contract_action(contract_id, "sign", {"signature": signature})

    def check_use(
        self, contract_id: str, *, purpose: str | None = None, region: str | None = None
    ) -> dict[str, Any]:
        """Dry run of the exchange's use check; raises PolicyViolation/Conflict (``details.reason``)."""
        params = {k: v for k, v in (("purpose", purpose), ("region", region)) if v is not None}
        return dict(self.get(f"/v1/contracts/{contract_id}/use-check", **params))

    def record_use(self, contract_id: str, *, idempotency_key: str | None = None, **use: Any) -> Result[Use]:
        data, receipts, replayed = self.post(
            f"/v1/contracts/{contract_id}/uses", use, idempotency_key=idempotency_key
        )
        return Result(_parse(Use, data), receipts, replayed)

    def query(
        self, contract_id: str, sql: str, *, epsilon: float | None = None, purpose: str | None = None
    ) -> Any:
        """Private SQL under a contract: rows, per-cell noise, suppressed groups, cost and budget left."""
        body = {"sql": sql, "epsilon": epsilon, "purpose": purpose}
        return self.request("POST", f"/v1/contracts/{contract_id}/queries", json=body).json()

    def uses(self, contract_id: str) -> list[Use]:
        return list(self._iterate(Use, f"/v1/contracts/{contract_id}/uses"))

    def contract_statement(self, contract_id: str) -> dict[str, Any]:
        return dict(self.get(f"/v1/contracts/{contract_id}/statement"))

    def invoice(self, contract_id: str, start: datetime, end: datetime, fmt: str = "json") -> Any:
        params = {"start": start.isoformat(), "end": end.isoformat(), "format": fmt}
        resp = self.request("GET", f"/v1/contracts/{contract_id}/invoice", params=params)
        return resp.json() if fmt == "json" else (resp.text if fmt == "html" else resp.content)

    def balances(self, participant_id: str | None = None) -> list[Balance]:
        return [_parse(Balance, b) for b in self._all("/v1/accounts", participant_id=participant_id)]

    def invariants(self) -> dict[str, Any]:
        return dict(self.get("/v1/accounts/invariants"))

    def statement(self, start: datetime, end: datetime, participant_id: str | None = None) -> dict[str, Any]:
        return dict(
            self.get(
                "/v1/accounts/statement",
                start=start.isoformat(),
                end=end.isoformat(),
                participant_id=participant_id,
            )
        )

    def deposit(self, amount: int, reference: str, *, idempotency_key: str | None = None) -> Result[Payment]:
        data, receipts, replayed = self.post(
            "/v1/payments/deposits",
            {"amount": amount, "reference": reference},
            idempotency_key=idempotency_key,
        )
        return Result(_parse(Payment, data), receipts, replayed)

    def withdraw(self, amount: int, reference: str, *, idempotency_key: str | None = None) -> Result[Payment]:
        data, receipts, replayed = self.post(
            "/v1/payments/withdrawals",
            {"amount": amount, "reference": reference},
            idempotency_key=idempotency_key,
        )
        return Result(_parse(Payment, data), receipts, replayed)

    def confirm_payment(self, payment_id: str, *, confirmed: bool = True) -> Result[Payment]:
        data, receipts, replayed = self.post(f"/v1/payments/{payment_id}/confirm", {"confirmed": confirmed})
        return Result(_parse(Payment, data), receipts, replayed)

    def payments(self, *, status: str | None = None) -> list[Payment]:
        return list(self._iterate(Payment, "/v1/payments", status=status))

    def run_settlement(self) -> dict[str, Any]:
        data, _, _ = self.post("/v1/settlement/run")
        return dict(data)

    def open_dispute(
        self, contract_id: str, *, claim: str, evidence: list[dict[str, Any]]
    ) -> Result[Dispute]:
        data, receipts, replayed = self.post(
            f"/v1/contracts/{contract_id}/disputes", {"claim": claim, "evidence": evidence}
        )
        return Result(_parse(Dispute, data), receipts, replayed)

    def rule_dispute(self, dispute_id: str, *, reason: str, **ruling: Any) -> Result[Dispute]:
        data, receipts, replayed = self.post(f"/v1/disputes/{dispute_id}/rule", {"reason": reason, **ruling})
        return Result(_parse(Dispute, data), receipts, replayed)

    def disputes(self, *, status: str | None = None) -> list[Dispute]:
        return list(self._iterate(Dispute, "/v1/disputes", status=status))

    # --- ledger --------------------------------------------------------------------------------

    def verifier_key(self) -> dict[str, str]:
        return dict(self.get("/v1/ledger/verifier-key"))

    def checkpoint(self) -> dict[str, Any]:
        return dict(self.get("/v1/ledger/checkpoint"))

    def entries(self, start: int, end: int) -> list[bytes]:
        data = self.get("/v1/ledger/entries", start=start, end=end)
        return [base64.b64decode(e) for e in data["entries"]]

    def clear_entries(self, start: int, end: int) -> list[dict[str, Any]]:
        """Entries ``[start, end)`` as JSON objects, opened (and checked) where this caller holds an opening;
        the others keep their commitments (docs/PROTOCOL.md, "Ledger privacy")."""
        from datavalley.ledger.commitment import reveal

        data = self.get("/v1/ledger/entries", start=start, end=end)
        openings = {o["index"]: o for o in data.get("openings", [])}
        out = []
        for i, e in enumerate(data["entries"]):
            raw = base64.b64decode(e)
            out.append(
                reveal(raw, openings.get(data["start"] + i, {}))
                if data["start"] + i in openings
                else json.loads(raw)
            )
        return out

    def inclusion_proof(
        self, size: int, *, index: int | None = None, leaf_hash: bytes | None = None
    ) -> dict[str, Any]:
        lh = base64.b64encode(leaf_hash).decode() if leaf_hash is not None else None
        return dict(self.get("/v1/ledger/proofs/inclusion", size=size, index=index, leaf_hash=lh))

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        data = self.get("/v1/ledger/proofs/consistency", old_size=old_size, new_size=new_size)
        return [base64.b64decode(p) for p in data["proof"]]

    def receipt(self, event_id: int) -> dict[str, Any]:
        return dict(self.get(f"/v1/ledger/receipts/{event_id}"))

    def export_ledger(self) -> dict[str, Any]:
        return dict(self.get("/v1/ledger/export"))

    def register_witness(self, verifier_key: str) -> Result[dict[str, Any]]:
        data, receipts, replayed = self.post("/v1/ledger/witnesses", {"verifier_key": verifier_key})
        return Result(data, receipts, replayed)

    def cosign(self, size: int, line: str) -> dict[str, Any]:
        data, _, _ = self.post("/v1/ledger/cosignatures", {"size": size, "line": line})
        return dict(data)


__all__ = ["Client", "DatavalleyError", "InProcessTransport", "Result"]
