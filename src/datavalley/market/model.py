"""Market values: products, prices, contracts, uses, accounts and disputes.

Money is always an ``int`` of minor units (fen for CNY); there are no floats anywhere near a balance.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class ProductKind(StrEnum):
    PRIVATE_ANALYTICS = "private_analytics"  # SQL aggregates on the provider's node
    SET_INTERSECTION = "set_intersection"  # PSI with the consumer's own data
    FILE_DELIVERY = "file_delivery"  # a licensed extract
    COMPUTE_POOL = "compute_pool"  # core-hours on a compute pool (datavalley.compute)

    @property
    def action(self) -> str:
        """The ODRL action a contract for this kind of product permits."""
        return {
            "private_analytics": "dv:aggregateQuery",
            "set_intersection": "dv:intersect",
            "file_delivery": "dv:deliver",
            "compute_pool": "dv:compute",
        }[self.value]


class PriceModel(StrEnum):
    FREE = "free"
    ONE_OFF = "one_off"  # paid once, released on first delivery/use
    SUBSCRIPTION = "subscription"  # per period, renewed by settlement runs
    PER_QUERY = "per_query"  # per use (query, intersection)
    PER_ROW = "per_row"  # per delivered row
    PER_MB = "per_mb"  # per delivered megabyte
    PER_CORE_HOUR = "per_core_hour"  # amount per core-hour, metered in core-seconds


class Market(StrEnum):
    """The "multi-level" market: primary (public data under authorisation) and secondary (enterprise)."""

    PRIMARY = "primary"
    SECONDARY = "secondary"


class ListingStatus(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"  # waiting for the operator (and a regulator, for important data)
    LISTED = "listed"
    REJECTED = "rejected"
    DELISTED = "delisted"  # no new orders; running contracts continue


class ContractState(StrEnum):
    """Dataspace Protocol contract negotiation states."""

    REQUESTED = "REQUESTED"
    OFFERED = "OFFERED"
    ACCEPTED = "ACCEPTED"
    AGREED = "AGREED"
    VERIFIED = "VERIFIED"
    FINALIZED = "FINALIZED"
    TERMINATED = "TERMINATED"


@dataclass(frozen=True)
class Price:
    """A price: model, amount in minor units, currency; tiers give a lower unit price above a quantity.

    ``period_days`` is the subscription period; ``tiers`` is ``((from_quantity, amount), ...)`` ascending —
    the unit price for the n-th unit is the amount of the last tier whose ``from_quantity`` ≤ n.
    """

    model: PriceModel
    amount: int
    currency: str = "CNY"
    period_days: int | None = None
    tiers: tuple[tuple[int, int], ...] = ()

    def unit_price(self, nth: int) -> int:
        """The price of the ``nth`` unit (1-based) for metered models."""
        price = self.amount
        for start, amount in self.tiers:
            if nth >= start:
                price = amount
        return price

    def cost(self, already: int, quantity: int) -> int:
        """Price of ``quantity`` more units when ``already`` have been used."""
        if self.model == PriceModel.PER_CORE_HOUR:
            # quantity is core-seconds; cumulative rounding up, so splitting use never changes the total
            return -(-(already + quantity) * self.amount // 3600) - -(-already * self.amount // 3600)
        if self.model not in (PriceModel.PER_QUERY, PriceModel.PER_ROW, PriceModel.PER_MB):
            return 0
        if not self.tiers:
            return self.amount * quantity
        return sum(self.unit_price(n) for n in range(already + 1, already + quantity + 1))

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model.value,
            "amount": self.amount,
            "currency": self.currency,
            "period_days": self.period_days,
            "tiers": [list(t) for t in self.tiers],
        }

    @staticmethod
    def from_json(d: dict[str, Any]) -> Price:
        return Price(
            PriceModel(d["model"]),
            int(d["amount"]),
            d.get("currency", "CNY"),
            d.get("period_days"),
            tuple((int(a), int(b)) for a, b in d.get("tiers") or ()),
        )


@dataclass(frozen=True)
class Product:
    id: str
    provider_id: str
    name: str
    description: str
    kind: ProductKind
    market: Market
    resource_ids: tuple[str, ...]
    price: Price
    terms: dict[str, Any]  # the policy template: purposes, regions, max_uses, valid_days, privacy
    tags: tuple[str, ...]
    status: ListingStatus
    checklist: tuple[dict[str, Any], ...]
    review_note: str | None
    regulator_approved: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Contract:
    id: str
    product_id: str
    provider_id: str
    consumer_id: str
    state: ContractState
    channel: str
    suspended: bool
    price: Price
    policy: dict[str, Any]  # ODRL 2.2 Agreement (JSON-LD)
    prepayment: int
    fee_bps: int
    agreement_digest: str | None
    provider_signature: str | None
    consumer_signature: str | None
    right_ids: tuple[str, ...]
    valid_from: datetime | None
    valid_until: datetime | None
    uses: int
    budget_spent: float
    quantity: int
    funded: int
    escrow: int
    released: int
    refunded: int
    paid_until: datetime | None
    created_at: datetime
    updated_at: datetime
    termination_reason: str | None


@dataclass(frozen=True)
class Use:
    """One metered use of a contract: what was done, how much, what it cost — never the result."""

    id: str
    contract_id: str
    operation: str
    quantity: int
    privacy_cost: float
    amount: int
    request_digest: str
    uses_left: int | None
    budget_left: float | None
    created_at: datetime


@dataclass(frozen=True)
class Balance:
    account_id: str
    owner: str  # participant ID, contract ID or "exchange"/"rail"
    kind: str
    balance: int
    currency: str


@dataclass(frozen=True)
class Payment:
    """A top-up or withdrawal through a payment rail (built-in: operator-confirmed bank transfers)."""

    id: str
    participant_id: str
    direction: str  # deposit | withdrawal
    amount: int
    currency: str
    rail: str
    reference: str
    status: str  # pending | confirmed | rejected
    created_at: datetime
    confirmed_at: datetime | None


@dataclass(frozen=True)
class Dispute:
    id: str
    contract_id: str
    claimant_id: str
    respondent_id: str
    claim: str
    evidence: tuple[dict[str, Any], ...]  # verified ledger receipts: event, index, entry digest
    status: str  # open | ruled
    ruling: dict[str, Any] | None
    created_at: datetime
    ruled_at: datetime | None
