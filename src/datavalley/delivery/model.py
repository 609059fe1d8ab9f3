"""Delivery values: recipients, issued sharing tokens, grants (who a bearer token speaks for), reads."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Recipient:
    """A recipient of a delivery contract (its own tokens, its own watermark)."""

    id: str
    contract_id: str
    name: str
    active_tokens: int
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class IssuedToken:
    """A new sharing token: the secret is shown once and stored only as its SHA-256."""

    id: str
    recipient_id: str
    contract_id: str
    secret: str
    expires_at: datetime
    revoked_token_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Grant:
    """What a valid sharing token speaks for: one recipient of one live delivery contract."""

    token_id: str
    recipient_id: str
    contract_id: str
    product_id: str
    provider_id: str
    consumer_id: str
    expires_at: datetime


@dataclass(frozen=True)
class Read:
    """One metered read: the use recorded under the contract and what left the node."""

    id: str
    use_id: str
    contract_id: str
    table: str
    version: int
    rows: int
    bytes: int
    files: int
    amount: int
