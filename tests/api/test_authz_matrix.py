"""The authorisation matrix: every route of the OpenAPI × every kind of caller × own and foreign objects.

One exchange is built with real objects of every kind (participants, members, tokens, keys, resources,
products, contracts, rights, objections, payments, disputes, ledger events), owned by a provider
organisation "alpha" and by a foreign provider "delta". Each caller — the operator, alpha with a full
token, alpha with a token scoped to ``provider`` or to ``consumer`` only, a non-admin alpha member, the
consumer "beta", the foreign provider "delta", a regulator, an auditor, a pending participant and an
unauthenticated client — calls every route with every candidate object. The rule table below says who may
get a 2xx; any other 2xx fails the test. Refused state changes must be refused *as such* (401/403/404, or
a 409 that does not act), never by a 422 that would hide whether the body was understood, and nothing
they touch may change. Reads the rules allow must succeed (so the fixtures are real), and a route the
table does not know fails the test: a new route needs a rule.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conftest import World, make_uscc
from datavalley.api.app import create_app
from datavalley.keys import public_key_b64, registration_message
from market.conftest import ANALYTICS_TERMS, Party, digest_of, fund, list_product, negotiate, onboard
from rights.conftest import analysis_of, write_trips

# a file-delivery product on the trips written by rights.conftest.write_trips (no personal columns)
DELIVERY_TERMS: dict[str, Any] = {
    "purposes": ["insurance-pricing"],
    "max_uses": 200,
    "valid_days": 30,
    "delivery": {"columns": ["trip_id", "origin_city", "dest_city", "distance_km", "fare_cny"]},
}


@pytest.fixture
def database_url() -> None:
    """Authorisation does not depend on storage: one SQLite exchange keeps the matrix fast."""
    return None


@dataclass(frozen=True)
class Caller:
    name: str
    token: str | None
    participant: str | None = None
    member: str | None = None
    roles: frozenset[str] = frozenset()
    verified: bool = False
    admin: bool = False

    def has(self, *roles: str) -> bool:
        return any(r in self.roles for r in roles)

    @property
    def overseer(self) -> bool:
        return self.has("operator", "auditor", "regulator")

    @property
    def trader(self) -> bool:
        return self.verified and self.has("provider", "consumer")


@dataclass(frozen=True)
class Obj:
    """A fixture object: its ID, who owns it, who else is party to it, and whether anyone may see it."""

    name: str
    id: str
    owner: str | None = None
    parties: frozenset[str] = frozenset()
    public: bool = False
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def party(self, c: Caller) -> bool:
        return c.participant is not None and (c.participant == self.owner or c.participant in self.parties)


@dataclass
class Fixture:
    objs: dict[str, Obj]
    callers: list[Caller]
    app: Any


Rule = Callable[[Caller, dict[str, Obj]], bool]


def _party_as(side: str) -> Rule:
    """The caller is the contract's provider (with the provider role) or consumer (with the consumer role)."""

    def rule(c: Caller, o: dict[str, Obj]) -> bool:
        k = o["contract_id"]
        want = k.extra["provider"] if side == "provider" else k.extra["consumer"]
        return c.verified and c.participant == want and c.has(side)

    return rule


def _either_side(c: Caller, o: dict[str, Obj]) -> bool:
    return _party_as("provider")(c, o) or _party_as("consumer")(c, o)


def _sees_participant(c: Caller, o: dict[str, Obj]) -> bool:
    p = o["participant_id"]
    return c.overseer or c.participant == p.id or p.public


def _sees_resource(c: Caller, o: dict[str, Obj]) -> bool:
    r = o["resource_id"]
    return c.overseer or c.participant == r.owner or r.public


def _sees_product(c: Caller, o: dict[str, Obj]) -> bool:
    p = o["product_id"]
    return c.overseer or c.participant == p.owner or p.public


def _contract_reader(c: Caller, o: dict[str, Obj]) -> bool:
    return c.overseer or o["contract_id"].party(c)


def _holder(c: Caller, o: dict[str, Obj]) -> bool:
    return c.verified and c.has("provider") and c.participant == o["resource_id"].owner


def _member_of(c: Caller, o: dict[str, Obj]) -> bool:
    return c.overseer or c.participant == o["member_id"].owner


def _admin_of(key: str) -> Rule:
    return lambda c, o: c.admin and c.participant == o[key].owner


def _any(c: Caller, o: dict[str, Obj]) -> bool:
    return c.token is not None


def _role(*roles: str) -> Rule:
    return lambda c, o: c.has(*roles)


# (method, path) -> who may get a 2xx. Reads (GET) are all called; state changes only by callers the rule
# refuses (an allowed call would change the fixture for the rest of the matrix).
RULES: dict[tuple[str, str], Rule] = {
    # identity
    ("GET", "/v1/whoami"): _any,
    ("POST", "/v1/participants"): _role("operator"),
    ("GET", "/v1/participants"): _any,
    ("GET", "/v1/participants/{participant_id}"): _sees_participant,
    ("POST", "/v1/participants/{participant_id}/verify"): _role("operator"),
    ("POST", "/v1/participants/{participant_id}/suspend"): _role("operator"),
    ("POST", "/v1/participants/{participant_id}/reinstate"): _role("operator"),
    ("POST", "/v1/participants/{participant_id}/members"): lambda c, o: (
        c.admin and c.participant == o["participant_id"].id and c.has("consumer")
    ),
    ("GET", "/v1/participants/{participant_id}/members"): lambda c, o: (
        c.overseer or c.participant == o["participant_id"].id
    ),
    ("GET", "/v1/members/{member_id}"): _member_of,
    ("POST", "/v1/members/{member_id}/deactivate"): _admin_of("member_id"),
    ("POST", "/v1/members/{member_id}/tokens"): lambda c, o: (
        c.participant == o["member_id"].owner
        and (c.admin or c.member == o["member_id"].id)
        and c.has("consumer")
    ),
    ("GET", "/v1/members/{member_id}/tokens"): lambda c, o: (
        c.overseer or (c.participant == o["member_id"].owner and (c.admin or c.member == o["member_id"].id))
    ),
    ("POST", "/v1/tokens/{token_id}/revoke"): lambda c, o: (
        c.has("operator")
        or (c.participant == o["token_id"].owner and (c.admin or c.member == o["token_id"].extra["member"]))
    ),
    ("POST", "/v1/participants/{participant_id}/keys"): lambda c, o: (
        c.admin and c.participant == o["participant_id"].id
    ),
    ("GET", "/v1/participants/{participant_id}/keys"): _sees_participant,
    ("POST", "/v1/keys/{key_id}/revoke"): lambda c, o: (
        c.has("operator") or (c.admin and c.participant == o["key_id"].owner)
    ),
    # ledger
    ("GET", "/v1/ledger/verifier-key"): _any,
    ("GET", "/v1/ledger/checkpoint"): _any,
    ("GET", "/v1/ledger/checkpoint.note"): _any,
    ("GET", "/v1/ledger/checkpoints/{size}"): _any,
    ("GET", "/v1/ledger/entries"): _any,
    ("GET", "/v1/ledger/proofs/inclusion"): _any,
    ("GET", "/v1/ledger/proofs/consistency"): _any,
    ("GET", "/v1/ledger/receipts/{event_id}"): lambda c, o: c.overseer or o["event_id"].party(c),
    ("GET", "/v1/ledger/export"): lambda c, o: c.overseer,
    ("POST", "/v1/ledger/witnesses"): _role("operator"),
    # a cosignature is authorised by the registered witness's signature itself (a bad one is refused)
    ("POST", "/v1/ledger/cosignatures"): _any,
    # products
    ("POST", "/v1/products"): lambda c, o: c.verified and c.has("provider"),
    ("GET", "/v1/products"): _any,
    ("GET", "/v1/products/{product_id}"): _sees_product,
    ("POST", "/v1/products/{product_id}/submit"): lambda c, o: (
        c.verified and c.has("provider") and c.participant == o["product_id"].owner
    ),
    ("POST", "/v1/products/{product_id}/review"): _role("operator"),
    ("POST", "/v1/products/{product_id}/regulator-approval"): _role("regulator"),
    ("POST", "/v1/products/{product_id}/delist"): lambda c, o: (
        c.has("operator") or (c.verified and c.has("provider") and c.participant == o["product_id"].owner)
    ),
    # contracts
    ("POST", "/v1/contracts"): lambda c, o: c.verified and c.has("consumer"),
    ("POST", "/v1/contracts/offers"): lambda c, o: c.verified and c.has("provider"),
    ("GET", "/v1/contracts"): _any,
    ("GET", "/v1/contracts/{contract_id}"): _contract_reader,
    ("GET", "/v1/contracts/{contract_id}/agreement"): _contract_reader,
    ("GET", "/v1/contracts/{contract_id}/policy"): _contract_reader,
    ("POST", "/v1/contracts/{contract_id}/offer"): _party_as("provider"),
    ("POST", "/v1/contracts/{contract_id}/accept"): _party_as("consumer"),
    ("POST", "/v1/contracts/{contract_id}/sign"): _either_side,
    ("POST", "/v1/contracts/{contract_id}/suspend"): lambda c, o: (
        c.has("operator") or _party_as("provider")(c, o)
    ),
    ("POST", "/v1/contracts/{contract_id}/terminate"): lambda c, o: c.has("operator") or _either_side(c, o),
    ("POST", "/v1/contracts/{contract_id}/uses"): _either_side,
    ("POST", "/v1/contracts/{contract_id}/queries"): _party_as("consumer"),
    ("GET", "/v1/contracts/{contract_id}/uses"): _contract_reader,
    ("GET", "/v1/contracts/{contract_id}/statement"): _contract_reader,
    ("GET", "/v1/contracts/{contract_id}/invoice"): _contract_reader,
    ("POST", "/v1/contracts/{contract_id}/disputes"): _either_side,
    # money
    ("GET", "/v1/accounts"): _any,
    ("GET", "/v1/accounts/invariants"): lambda c, o: c.overseer,
    ("GET", "/v1/accounts/statement"): _any,
    ("POST", "/v1/payments/deposits"): lambda c, o: c.trader,
    ("POST", "/v1/payments/withdrawals"): lambda c, o: c.trader,
    ("POST", "/v1/payments/{payment_id}/confirm"): _role("operator"),
    ("GET", "/v1/payments"): _any,
    ("POST", "/v1/settlement/run"): _role("operator"),
    ("GET", "/v1/disputes"): _any,
    ("GET", "/v1/disputes/{dispute_id}"): lambda c, o: c.overseer or o["dispute_id"].party(c),
    ("POST", "/v1/disputes/{dispute_id}/rule"): _role("operator"),
    # registry
    ("POST", "/v1/resources"): lambda c, o: c.verified and c.has("provider"),
    ("GET", "/v1/resources/{resource_id}"): _sees_resource,
    ("GET", "/v1/catalog/resources/{resource_id}"): _sees_resource,
    ("GET", "/v1/resources/{resource_id}/versions"): _sees_resource,
    ("POST", "/v1/resources/{resource_id}/change"): _holder,
    ("POST", "/v1/resources/{resource_id}/renew"): _holder,
    ("POST", "/v1/resources/{resource_id}/cancel"): _holder,
    ("POST", "/v1/resources/{resource_id}/revoke"): _role("operator"),
    ("POST", "/v1/resources/{resource_id}/publish"): _holder,
    ("POST", "/v1/resources/{resource_id}/unpublish"): _holder,
    ("POST", "/v1/resources/{resource_id}/classification"): _role("operator"),
    ("GET", "/v1/resources/{resource_id}/title"): _sees_resource,
    ("GET", "/v1/resources/{resource_id}/rights"): _sees_resource,
    ("POST", "/v1/resources/{resource_id}/rights"): _holder,
    ("POST", "/v1/resources/{resource_id}/public-data-authorisations"): _holder,
    ("POST", "/v1/resources/{resource_id}/transfer"): _holder,
    ("POST", "/v1/rights/{right_id}/revoke"): lambda c, o: (
        c.has("operator") or (c.verified and c.has("provider") and c.participant == o["right_id"].owner)
    ),
    ("GET", "/v1/rights"): _any,
    ("POST", "/v1/resources/{resource_id}/objections"): lambda c, o: (
        c.verified and _sees_resource(c, o) and c.participant != o["resource_id"].owner
    ),
    ("GET", "/v1/resources/{resource_id}/objections"): _sees_resource,
    ("POST", "/v1/objections/{objection_id}/resolve"): _role("operator"),
    ("GET", "/v1/resources/{resource_id}/certificate"): _sees_resource,
    ("GET", "/v1/resources/{resource_id}/certificate.html"): _sees_resource,
    ("GET", "/v1/catalog/search"): _any,
    ("GET", "/v1/catalog/dcat"): _any,
    ("GET", "/v1/classification/rules"): _any,
    ("POST", "/v1/classification/rules"): _role("operator"),
    # the certificate ID is the capability: whoever was shown a certificate may ask whether it still holds
    ("GET", "/v1/certificates/{certificate_id}/status"): _any,
    # a dry run of the use check, for the nodes of the parties
    ("GET", "/v1/contracts/{contract_id}/use-check"): lambda c, o: o["contract_id"].party(c),
    # cross-border: the engine and rules are public knowledge; facts and node locations are the operator's
    # attestation; records are filed by the exporter (a provider) for its own resources and contracts and
    # withdrawn by it, the regulator or the operator; the register shows overseers everything, an exporter
    # its own; the PIPIA and filing pack are the contract's documents
    ("GET", "/v1/crossborder/rules"): _any,
    ("POST", "/v1/crossborder/decide"): _any,
    ("GET", "/v1/crossborder/participants/{participant_id}"): lambda c, o: (
        c.overseer or c.participant == o["participant_id"].id
    ),
    ("PUT", "/v1/crossborder/participants/{participant_id}/facts"): _role("operator"),
    ("POST", "/v1/crossborder/participants/{participant_id}/nodes"): _role("operator"),
    ("POST", "/v1/crossborder/resources/{resource_id}/sketch"): _holder,
    # the body files consent evidence for alpha's resource
    ("POST", "/v1/crossborder/records"): lambda c, o: (
        c.verified and c.has("provider") and c.name.startswith("alpha")
    ),
    ("GET", "/v1/crossborder/records"): _any,
    ("POST", "/v1/crossborder/records/{record_id}/revoke"): lambda c, o: (
        c.has("operator", "regulator")
        or (c.verified and c.has("provider") and c.participant == o["record_id"].owner)
    ),
    ("POST", "/v1/crossborder/contracts/{contract_id}/transfers"): _either_side,
    ("GET", "/v1/crossborder/register"): _any,
    ("GET", "/v1/crossborder/register.csv"): _any,
    ("GET", "/v1/crossborder/counters"): _any,
    ("GET", "/v1/crossborder/expiring"): _any,
    ("GET", "/v1/crossborder/contracts/{contract_id}/pipia"): _contract_reader,
    ("GET", "/v1/crossborder/contracts/{contract_id}/filing-pack"): _contract_reader,
    # compute: providers register pools (seen by their owner, overseers, and everyone once listed);
    # consumers submit jobs under their own data contracts and their nodes run them; the operator places
    ("GET", "/v1/compute/topology"): _any,
    ("POST", "/v1/compute/pools"): lambda c, o: c.verified and c.has("provider"),
    ("GET", "/v1/compute/pools"): _any,
    ("GET", "/v1/compute/pools/{pool_id}"): lambda c, o: (
        c.overseer or c.participant == o["pool_id"].owner or o["pool_id"].public
    ),
    # the body submits a job under beta's contract
    ("POST", "/v1/compute/jobs"): lambda c, o: c.verified and c.has("consumer") and c.name == "beta",
    ("GET", "/v1/compute/jobs"): _any,
    ("GET", "/v1/compute/jobs/{job_id}"): lambda c, o: c.overseer or o["job_id"].party(c),
    ("GET", "/v1/compute/jobs/{job_id}/explain"): lambda c, o: c.overseer or o["job_id"].party(c),
    ("POST", "/v1/compute/jobs/{job_id}/run"): lambda c, o: (
        c.verified and c.has("consumer") and c.participant == o["job_id"].owner
    ),
    ("POST", "/v1/compute/rounds"): _role("operator"),
    # the query asks for beta's statement
    ("GET", "/v1/compute/statement"): lambda c, o: c.overseer or c.name == "beta",
    # delivery management: the consumer issues sharing tokens; either side (with its role) revokes them;
    # parties and overseers read the recipients; a provider traces a leaked copy within its own contracts
    ("POST", "/v1/delivery/contracts/{contract_id}/tokens"): _party_as("consumer"),
    ("GET", "/v1/delivery/contracts/{contract_id}/recipients"): _contract_reader,
    ("POST", "/v1/delivery/contracts/{contract_id}/recipients/{recipient}/revoke"): _either_side,
    ("POST", "/v1/delivery/tokens/{token_id}/revoke"): lambda c, o: _either_side(
        c, {"contract_id": o["token_id"].extra["contract"]}
    ),
    ("POST", "/v1/delivery/trace"): lambda c, o: c.verified and c.has("provider"),
}

# Objects whose IDs only their parties (and overseers) may ever read in an answer.
SECRET = {
    "pending",
    "pending_regulator",
    "alpha_member",
    "delta_member",
    "alpha_member_token",
    "delta_member_token",
    "delta_hidden",
    "alpha_draft",
    "delta_draft",
    "alpha_beta_contract",
    "delta_beta_contract",
    "alpha_right",
    "delta_right",
    "objection",
    "payment",
    "dispute",
    "delivery_contract",
    "delivery_token",
    "alpha_record",
    "delta_record",
    "alpha_other_record",
    "delta_pool",
    "job",
}

# Query strings that make a read meaningful (the route answers 2xx to an allowed caller).
QUERY: dict[str, dict[str, Any]] = {
    "/v1/ledger/entries": {"start": 0, "end": 3},
    "/v1/ledger/proofs/inclusion": {"size": 2, "index": 0},
    "/v1/ledger/proofs/consistency": {"old_size": 1, "new_size": 2},
    "/v1/accounts/statement": {"start": "2020-01-01T00:00:00Z", "end": "2100-01-01T00:00:00Z"},
    "/v1/contracts/{contract_id}/statement": {},
    "/v1/contracts/{contract_id}/invoice": {"start": "2020-01-01T00:00:00Z", "end": "2100-01-01T00:00:00Z"},
    "/v1/contracts/{contract_id}/use-check": {"purpose": "insurance-pricing", "region": "CN"},
    "/v1/compute/statement": {"participant_id": "beta"},
}


def _query(path: str, f: Fixture) -> dict[str, Any] | None:
    """QUERY with fixture object names (a value naming a participant fixture) replaced by their IDs."""
    q = QUERY.get(path)
    if q is None:
        return None
    return {
        k: f.objs[v].id if isinstance(v, str) and v in ("alpha", "beta", "delta") else v for k, v in q.items()
    }


# Reads whose answer to an allowed caller may itself be a refusal (403 policy_violation): dry runs.
DRY_RUNS = {"/v1/contracts/{contract_id}/use-check"}

# Which fixture objects fill each path parameter.
CANDIDATES: dict[str, list[str]] = {
    "participant_id": ["alpha", "delta", "pending", "pending_regulator"],
    "member_id": ["alpha_member", "delta_member"],
    "token_id": ["alpha_member_token", "delta_member_token"],
    "key_id": ["alpha_key", "delta_key"],
    "resource_id": ["alpha_resource", "delta_resource", "delta_hidden", "objected_resource"],
    "product_id": ["alpha_product", "delta_product", "alpha_draft", "delta_draft"],
    "contract_id": ["alpha_beta_contract", "delta_beta_contract"],
    "right_id": ["alpha_right", "delta_right"],
    "objection_id": ["objection"],
    "payment_id": ["payment"],
    "dispute_id": ["dispute"],
    "event_id": ["alpha_event", "delta_event"],
    "size": ["size"],
    "certificate_id": ["alpha_certificate", "delta_certificate"],
    "record_id": ["alpha_record", "delta_record"],
    "pool_id": ["alpha_pool", "delta_pool"],
    "job_id": ["job"],
    "recipient": ["recipient"],
}

# Path parameters whose name another domain uses too: under these prefixes they take other objects.
CANDIDATES_UNDER: dict[str, dict[str, list[str]]] = {
    "/v1/delivery/": {
        "contract_id": ["delivery_contract", "delta_beta_contract"],
        "token_id": ["delivery_token"],
    },
}


def _new_key_body(participant: str) -> dict[str, Any]:
    key = Ed25519PrivateKey.generate()
    pub = public_key_b64(key)
    return {
        "public_key": pub,
        "proof": base64.b64encode(key.sign(registration_message(participant, pub))).decode(),
    }


def _body(method: str, path: str, c: Caller, o: dict[str, Obj], f: Fixture) -> dict[str, Any] | None:
    """A body the route accepts (valid for an allowed caller), so a refusal is an authorisation decision."""
    objs = f.objs
    later = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    grantee = objs["delta" if c.participant == objs["beta"].id else "beta"].id
    grant = {
        "kind": "processing_use",
        "grantee_id": grantee,
        "purposes": ["insurance-pricing"],
        "territories": ["CN"],
        "valid_until": later,
    }
    contract = o.get("contract_id")
    bodies: dict[str, dict[str, Any]] = {
        "/v1/participants": {
            "name": "Intruder Co",
            "kind": "enterprise",
            "registry_id": make_uscc("9144030027962"),
            "roles": ["consumer"],
            "admin_name": "intruder",
        },
        "/v1/participants/{participant_id}/verify": {"reason": "checked"},
        "/v1/participants/{participant_id}/suspend": {"reason": "checked"},
        "/v1/participants/{participant_id}/reinstate": {"reason": "checked"},
        "/v1/participants/{participant_id}/members": {"name": "new member", "roles": ["consumer"]},
        "/v1/members/{member_id}/tokens": {"description": "matrix"},
        "/v1/participants/{participant_id}/keys": _new_key_body(o["participant_id"].id)
        if "participant_id" in o
        else {},
        "/v1/ledger/witnesses": {"verifier_key": objs["witness"].id},
        "/v1/ledger/cosignatures": {"size": 1, "line": "— matrix-witness AAAA"},
        "/v1/products": {
            "name": "Matrix product",
            "kind": "private_analytics",
            "resource_ids": [objs["alpha_resource"].id],
            "price": {"model": "per_query", "amount": 100},
            "terms": ANALYTICS_TERMS,
        },
        "/v1/products/{product_id}/review": {"approve": False, "note": "matrix"},
        "/v1/products/{product_id}/regulator-approval": {"note": "matrix"},
        "/v1/products/{product_id}/delist": {"reason": "matrix"},
        "/v1/contracts": {"product_id": objs["alpha_product"].id, "purpose": "insurance-pricing"},
        "/v1/contracts/offers": {
            "product_id": objs["alpha_product"].id,
            "consumer_id": objs["beta"].id,
            "purpose": "insurance-pricing",
        },
        "/v1/contracts/{contract_id}/offer": {},
        "/v1/contracts/{contract_id}/sign": {"signature": base64.b64encode(b"\0" * 64).decode()},
        "/v1/contracts/{contract_id}/suspend": {"suspended": True, "reason": "matrix"},
        "/v1/contracts/{contract_id}/terminate": {"reason": "matrix"},
        "/v1/contracts/{contract_id}/uses": {
            "operation": "dv:aggregateQuery",
            "purpose": "insurance-pricing",
            "request_digest": digest_of("matrix"),
            "privacy_cost": 0.1,
            "min_group_size": 10,
        },
        "/v1/contracts/{contract_id}/queries": {"sql": "SELECT count(*) FROM trips"},
        "/v1/contracts/{contract_id}/disputes": {
            "claim": "matrix",
            "evidence": contract.extra.get("evidence", [{}]) if contract else [{}],
        },
        "/v1/payments/deposits": {"amount": 100, "reference": "matrix"},
        "/v1/payments/withdrawals": {"amount": 1, "reference": "matrix"},
        "/v1/payments/{payment_id}/confirm": {"confirmed": False},
        "/v1/disputes/{dispute_id}/rule": {"reason": "matrix"},
        "/v1/resources": {
            "name": "Matrix data",
            "sector": "transport",
            "lawful_source": "matrix",
            "analysis": objs["spare_analysis"].extra["analysis"],
        },
        "/v1/resources/{resource_id}/change": {"analysis": objs["spare_analysis"].extra["analysis"]},
        "/v1/resources/{resource_id}/renew": {"valid_days": 400},
        "/v1/resources/{resource_id}/cancel": {"reason": "matrix"},
        "/v1/resources/{resource_id}/revoke": {"reason": "matrix"},
        "/v1/resources/{resource_id}/classification": {"grade": "general", "reason": "matrix"},
        "/v1/resources/{resource_id}/rights": grant,
        "/v1/resources/{resource_id}/public-data-authorisations": {
            "operator_id": objs["beta"].id,
            "purposes": ["insurance-pricing"],
            "territories": ["CN"],
            "valid_until": later,
        },
        "/v1/resources/{resource_id}/transfer": {"to_id": objs["beta"].id},
        "/v1/rights/{right_id}/revoke": {"reason": "matrix"},
        "/v1/resources/{resource_id}/objections": {"reason": "matrix objection"},
        "/v1/objections/{objection_id}/resolve": {"upheld": False, "resolution": "matrix"},
        "/v1/classification/rules": {"rules": {}},
        "/v1/crossborder/decide": {"origin": "CN", "recipient": "DE"},
        "/v1/crossborder/participants/{participant_id}/facts": {"ciio": False},
        "/v1/crossborder/participants/{participant_id}/nodes": {
            "jurisdiction": "CN",
            "site": "matrix",
            "evidence": "matrix",
        },
        "/v1/crossborder/resources/{resource_id}/sketch": {"sketch": "A" * 64},
        "/v1/crossborder/records": {
            "kind": "consent",
            "evidence": "matrix",
            "resource_id": objs["alpha_resource"].id,
        },
        "/v1/crossborder/records/{record_id}/revoke": {"reason": "matrix"},
        "/v1/compute/pools": {"name": "Matrix pool", "cluster": "guian", "cores": 2, "price": 10},
        "/v1/compute/jobs": {
            "contract_id": objs["alpha_beta_contract"].id,
            "sql": "SELECT count(*) FROM trips",
        },
        "/v1/compute/jobs/{job_id}/run": {"engine": "duckdb"},
        "/v1/delivery/contracts/{contract_id}/tokens": {"recipient": "intruder"},
    }
    if method == "GET":
        return None
    return bodies.get(path, {})


def _fill(path: str, o: dict[str, Obj]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: o[m.group(1)].id, path)


def _combos(path: str, objs: dict[str, Obj]) -> list[dict[str, Obj]]:
    names = re.findall(r"\{(\w+)\}", path)
    here = dict(CANDIDATES)
    for prefix, over in CANDIDATES_UNDER.items():
        if path.startswith(prefix):
            here.update(over)
    out: list[dict[str, Obj]] = [{}]
    for n in names:
        assert n in here, f"path parameter {n!r} of {path} has no fixture objects: add them"
        out = [{**o, n: objs[c]} for o in out for c in here[n]]
    return out


@pytest.fixture
def fixture(world: World, tmp_path: Path) -> Fixture:
    op = world.operator
    alpha = onboard(world, "Alpha Logistics", ["provider", "consumer"])
    beta = onboard(world, "Beta Insurance", ["consumer"])
    delta = onboard(world, "Delta Freight", ["provider", "consumer"])
    fund(world, beta, 1_000_000)
    fund(world, alpha, 10_000)
    _, reg_admin, reg_token = world.onboard("City Regulator", ["regulator"], kind="public_body")
    reg_p = op.get_member(reg_admin.id).participant_id
    _, aud_admin, aud_token = world.onboard("Audit Firm", ["auditor"])
    aud_p = op.get_member(aud_admin.id).participant_id
    # a regulator that is not verified yet holds no oversight
    preg_p, preg_admin, preg_token = world.onboard(
        "Pending Regulator", ["regulator"], kind="public_body", verify=False
    )
    pending_p, pending_admin, pending_token = world.onboard(
        "Pending Co", ["provider", "consumer"], verify=False
    )

    def resource(party: Party, seed: int, published: bool) -> str:
        path = write_trips(tmp_path / f"trips{seed}.csv", seed=seed)
        rid = party.client.register_resource(
            name=f"Trips {seed}",
            sector="transport",
            lawful_source="driver service contracts",
            analysis=analysis_of(path),
            published=published,
        ).value.id
        op.resource_action(rid, "classification", {"grade": "general", "reason": "reviewed"})
        return rid

    ra, rd, rd_hidden, r_obj = (
        resource(alpha, 11, True),
        resource(delta, 12, True),
        resource(delta, 13, False),
        (resource(alpha, 14, True)),
    )
    spare = analysis_of(write_trips(tmp_path / "spare.csv", seed=99))
    pa = list_product(world, alpha, ra)
    pd = list_product(world, delta, rd)
    pa_draft = alpha.client.create_product(
        name="Alpha draft",
        kind="private_analytics",
        resource_ids=[ra],
        price={"model": "per_query", "amount": 5},
        terms=ANALYTICS_TERMS,
    ).value
    pd_draft = delta.client.create_product(
        name="Delta draft",
        kind="private_analytics",
        resource_ids=[rd],
        price={"model": "per_query", "amount": 5},
        terms=ANALYTICS_TERMS,
    ).value
    cab = negotiate(alpha, beta, pa.id)
    cdb = beta.client.request_contract(pd.id, purpose="insurance-pricing").value
    alpha_right = next(r for r in beta.client.rights() if r.resource_id == ra)
    delta_right = delta.client.grant_right(
        rd,
        kind="processing_use",
        grantee_id=alpha.participant_id,
        purposes=["insurance-pricing"],
        territories=["CN"],
        valid_until=datetime.now(UTC) + timedelta(days=60),
    ).value
    objection = beta.client.file_objection(r_obj, "this data is ours").value
    payment = beta.client.deposit(500, "matrix deposit").value
    # evidence for a dispute: the receipt of one of the contract's own events (beta is a party)
    cab_events = _events_of(world, cab.id)
    ev_receipt = beta.client.receipt(cab_events[0])
    dispute = beta.client.open_dispute(cab.id, claim="undelivered", evidence=[ev_receipt]).value
    delta_events = _events_of(world, pd_draft.id)
    alpha_member = alpha.client.add_member(alpha.participant_id, name="analyst", roles=["consumer"]).value
    alpha_member_token = alpha.client.issue_token(alpha_member.id).value
    delta_member = delta.client.add_member(delta.participant_id, name="clerk", roles=["consumer"]).value
    delta_member_token = delta.client.issue_token(delta_member.id).value
    alpha_key = alpha.client.list_keys(alpha.participant_id).items[0]
    delta_key = delta.client.list_keys(delta.participant_id).items[0]
    alpha_prov = alpha.client.issue_token(alpha.member_id, scopes=["provider"]).value.secret
    alpha_cons = alpha.client.issue_token(alpha.member_id, scopes=["consumer"]).value.secret
    witness_key = _witness_vkey()
    # certificates (their IDs are capabilities), cross-border records of each exporter
    alpha_cert = alpha.client.certificate(ra)["certificate_id"]
    delta_cert = delta.client.certificate(rd)["certificate_id"]
    records = {
        rid: who.client.request(
            "POST",
            "/v1/crossborder/records",
            json={"kind": "consent", "evidence": "consent forms", "resource_id": rid},
        ).json()["data"]["id"]
        for who, rid in ((alpha, ra), (delta, rd), (alpha, r_obj))
    }
    # compute: alpha's pool is listed, delta's is still a draft; beta's job under its data contract
    pools = {}
    for who in (alpha, delta):
        pools[who.participant_id] = who.client.request(
            "POST",
            "/v1/compute/pools",
            json={"name": "Pool", "cluster": "guian", "cores": 2, "price": 30},
        ).json()["data"]
    alpha.client.product_action(pools[alpha.participant_id]["product_id"], "submit")
    op.product_action(pools[alpha.participant_id]["product_id"], "review", {"approve": True})
    job = beta.client.request(
        "POST", "/v1/compute/jobs", json={"contract_id": cab.id, "sql": "SELECT count(*) FROM trips"}
    ).json()["data"]
    # delivery: a file-delivery contract alpha → beta and one of beta's sharing tokens
    pdel = list_product(world, alpha, ra, kind="file_delivery", terms=DELIVERY_TERMS)
    cdel = negotiate(alpha, beta, pdel.id)
    issued = beta.client.request(
        "POST", f"/v1/delivery/contracts/{cdel.id}/tokens", json={"recipient": "analyst"}
    ).json()["data"]

    pc = frozenset({"provider", "consumer"})
    ap, bp, dp = alpha.participant_id, beta.participant_id, delta.participant_id
    callers = [
        Caller("unauthenticated", None),
        Caller(
            "operator",
            world.operator_token,
            world.operator_participant,
            world.operator_member,
            frozenset({"operator"}),
            True,
            True,
        ),
        Caller("alpha", alpha.token, ap, alpha.member_id, pc, True, True),
        Caller("alpha/provider-scope", alpha_prov, ap, alpha.member_id, frozenset({"provider"}), True, True),
        Caller("alpha/consumer-scope", alpha_cons, ap, alpha.member_id, frozenset({"consumer"}), True, True),
        Caller("alpha/member", alpha_member_token.secret, ap, alpha_member.id, frozenset({"consumer"}), True),
        Caller("beta", beta.token, bp, beta.member_id, frozenset({"consumer"}), True, True),
        Caller("delta", delta.token, dp, delta.member_id, pc, True, True),
        Caller("regulator", reg_token, reg_p, reg_admin.id, frozenset({"regulator"}), True, True),
        Caller("auditor", aud_token, aud_p, aud_admin.id, frozenset({"auditor"}), True, True),
        Caller("pending", pending_token, pending_p.id, pending_admin.id, pc, False, True),
        Caller("pending regulator", preg_token, preg_p.id, preg_admin.id, frozenset(), False, True),
    ]
    contract_extra = {"provider": ap, "consumer": bp, "evidence": [ev_receipt]}
    delivery_obj = Obj(
        "delivery_contract", cdel.id, ap, frozenset({bp}), extra={"provider": ap, "consumer": bp}
    )
    objs = [
        Obj("alpha", ap, ap, public=True),
        Obj("beta", bp, bp, public=True),
        Obj("delta", dp, dp, public=True),
        Obj("pending", pending_p.id, pending_p.id),
        Obj("pending_regulator", preg_p.id, preg_p.id),
        Obj("alpha_member", alpha_member.id, ap),
        Obj("delta_member", delta_member.id, dp),
        Obj("alpha_member_token", alpha_member_token.token.id, ap, extra={"member": alpha_member.id}),
        Obj("delta_member_token", delta_member_token.token.id, dp, extra={"member": delta_member.id}),
        Obj("alpha_key", alpha_key.id, ap),
        Obj("delta_key", delta_key.id, dp),
        Obj("alpha_resource", ra, ap, public=True),
        Obj("delta_resource", rd, dp, public=True),
        Obj("delta_hidden", rd_hidden, dp),
        Obj("objected_resource", r_obj, ap, public=True),
        Obj("alpha_product", pa.id, ap, public=True),
        Obj("delta_product", pd.id, dp, public=True),
        Obj("alpha_draft", pa_draft.id, ap),
        Obj("delta_draft", pd_draft.id, dp),
        Obj("alpha_beta_contract", cab.id, ap, frozenset({bp}), extra=contract_extra),
        Obj("delta_beta_contract", cdb.id, dp, frozenset({bp}), extra={"provider": dp, "consumer": bp}),
        Obj("alpha_right", alpha_right.id, ap, frozenset({bp})),
        Obj("delta_right", delta_right.id, dp, frozenset({ap})),
        Obj("objection", objection.id, ap, frozenset({bp})),
        Obj("payment", payment.id, bp),
        Obj("dispute", dispute.id, ap, frozenset({bp})),
        Obj("alpha_event", str(cab_events[0]), ap, frozenset({bp})),
        Obj("delta_event", str(delta_events[0]), dp),
        Obj("size", "1"),
        Obj("witness", witness_key),
        Obj("spare_analysis", "", extra={"analysis": spare}),
        Obj("alpha_certificate", alpha_cert, ap, public=True),
        Obj("delta_certificate", delta_cert, dp, public=True),
        # consent evidence for a resource of a contract is part of that contract's documents; evidence
        # for another resource (alpha_other_record) is nobody else's business
        Obj("alpha_record", records[ra], ap, frozenset({bp})),
        Obj("delta_record", records[rd], dp, frozenset({bp})),
        Obj("alpha_other_record", records[r_obj], ap),
        Obj("alpha_pool", pools[ap]["id"], ap, public=True),
        Obj("delta_pool", pools[dp]["id"], dp),
        Obj("job", job["id"], bp),
        delivery_obj,
        Obj("delivery_token", issued["token_id"], ap, frozenset({bp}), extra={"contract": delivery_obj}),
        Obj("recipient", "analyst"),
    ]
    return Fixture({o.name: o for o in objs}, callers, create_app(world.exchange))


def _events_of(world: World, subject: str) -> list[int]:
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from datavalley.events import EventRow

    world.exchange.ledger.sequence_pending()
    world.exchange.ledger.publish()
    with Session(world.exchange.engine) as s:
        rows = s.scalars(select(EventRow).order_by(EventRow.id)).all()
        return [r.id for r in rows if subject in r.subjects]


def _witness_vkey() -> str:
    from datavalley.ledger.note import CosignatureSigner

    return CosignatureSigner("matrix-witness", Ed25519PrivateKey.generate()).verifier().verifier_key_string()


_STATE_SQL: str | None = None


def _state(world: World) -> tuple[int, ...]:
    """Row counts of every table: a refused call changes none of them."""
    from datavalley.store.schema import metadata

    global _STATE_SQL
    if _STATE_SQL is None:
        names = sorted(n for n in metadata.tables if n not in ("idempotency", "certificates"))
        _STATE_SQL = "SELECT " + ", ".join(f"(SELECT count(*) FROM {n})" for n in names)
    with world.exchange.engine.connect() as conn:
        return tuple(conn.exec_driver_sql(_STATE_SQL).one())


def test_every_route_every_role_own_and_foreign(world: World, fixture: Fixture) -> None:
    app = fixture.app
    spec = app.openapi()
    routes = [
        (method.upper(), path)
        for path, ops in spec["paths"].items()
        for method in ops
        if path.startswith("/v1/") and path != "/v1/health"
    ]
    unknown = [r for r in routes if r not in RULES]
    assert not unknown, f"routes without an authorisation rule in the matrix: {unknown}"
    asyncio.run(_walk(world, fixture, routes))


async def _walk(world: World, fixture: Fixture, routes: list[tuple[str, str]]) -> None:
    """Every call in one event loop (a loop per request would dominate the run time)."""
    http = httpx.AsyncClient(
        base_url="http://datavalley.local", transport=httpx.ASGITransport(app=fixture.app)
    )
    unexpected: list[str] = []
    wrong_refusal: list[str] = []
    missing: list[str] = []
    changed: list[str] = []
    leaks: list[str] = []
    # what each caller must never see in any answer: others' hidden objects and relationships
    secrets_of = {
        c.name: {
            o.name: o.id for o in fixture.objs.values() if o.name in SECRET and not (o.public or o.party(c))
        }
        for c in fixture.callers
    }
    calls = 0
    times: dict[str, float] = {}
    for method, path in routes:
        t0 = time.perf_counter()
        rule = RULES[(method, path)]
        # row counts before the route's calls: refused calls change nothing, so the count after one is the
        # count before the next (reads may, e.g. certificates signed on first request: counted afresh)
        state = _state(world) if method != "GET" else ()
        for o in _combos(path, fixture.objs):
            url = _fill(path, o)
            for c in fixture.callers:
                allowed = c.token is not None and rule(c, o)
                if method != "GET" and allowed:
                    continue  # an allowed state change would alter the fixture for everyone after it
                headers = {"Authorization": f"Bearer {c.token}"} if c.token else {}
                r = await http.request(
                    method,
                    url,
                    headers=headers,
                    params=_query(path, fixture),
                    json=_body(method, path, c, o, fixture),
                )
                calls += 1
                where = (
                    f"{c.name} {method} {url} ({', '.join(v.name for v in o.values())}) -> {r.status_code}"
                )
                if r.is_success and method == "GET" and not c.overseer:
                    leaked = [n for n, i in secrets_of[c.name].items() if i in r.text]
                    if leaked:
                        leaks.append(f"{where}: shows {leaked}")
                if allowed:
                    if path in DRY_RUNS and r.status_code == 403 and '"policy_violation"' in r.text:
                        continue  # the dry run's answer: this use would be refused (the contract is not live)
                    if r.status_code in (401, 403, 404, 422):
                        missing.append(f"{where}: {r.text[:200]}")
                    continue
                if r.is_success:
                    unexpected.append(where)
                elif c.token is None and r.status_code != 401:
                    wrong_refusal.append(where)
                elif r.status_code == 422 or r.status_code >= 500:
                    wrong_refusal.append(f"{where}: {r.text[:200]}")
                if method != "GET" and (after := _state(world)) != state:
                    changed.append(where)
                    state = after
        times[f"{method} {path}"] = time.perf_counter() - t0
    await http.aclose()
    if os.environ.get("DV_MATRIX_TIMES"):
        for k, v in sorted(times.items(), key=lambda kv: -kv[1])[:25]:
            print(f"{v:7.2f}s {k}")
    assert not unexpected, "unexpected 2xx:\n" + "\n".join(unexpected)
    assert not leaks, "answers that reveal others' objects or relationships:\n" + "\n".join(leaks)
    assert not changed, "refused calls that changed the database:\n" + "\n".join(changed)
    assert not wrong_refusal, "refused, but not as an authorisation decision:\n" + "\n".join(wrong_refusal)
    assert not missing, "allowed reads that failed (fixture or rule is wrong):\n" + "\n".join(missing)
    assert calls > 1000, calls


def test_refused_callers_learn_nothing_from_input_validation(world: World, fixture: Fixture) -> None:
    """A caller the rule refuses gets its refusal (401/403/404) even with malformed input: validation of
    a body, a query parameter or a file comes after authorisation, never before (a 422 would tell it the
    route would otherwise have accepted it)."""
    bad: dict[tuple[str, str], dict[str, Any]] = {
        ("POST", "/v1/compute/jobs/{job_id}/run"): {"json": {"engine": "bogus"}},
        ("POST", "/v1/delivery/trace"): {"params": {"filename": "leak.exe"}, "content": b""},
    }

    async def walk() -> list[str]:
        http = httpx.AsyncClient(
            base_url="http://datavalley.local", transport=httpx.ASGITransport(app=fixture.app)
        )
        wrong: list[str] = []
        for (method, path), request in bad.items():
            for o in _combos(path, fixture.objs):
                for c in fixture.callers:
                    if c.token is not None and RULES[(method, path)](c, o):
                        continue
                    headers = {"Authorization": f"Bearer {c.token}"} if c.token else {}
                    r = await http.request(method, _fill(path, o), headers=headers, **request)
                    if r.status_code not in (401, 403, 404):
                        wrong.append(f"{c.name} {method} {_fill(path, o)} -> {r.status_code}")
        await http.aclose()
        return wrong

    wrong = asyncio.run(walk())
    assert not wrong, "malformed input judged before authorisation:\n" + "\n".join(wrong)
