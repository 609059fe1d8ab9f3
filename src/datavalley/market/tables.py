"""Market tables: products, contracts, uses, double-entry accounts, payments, disputes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from datavalley.store.base import Base, UTCDateTime


class ProductRow(Base):
    __tablename__ = "products"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    provider_id: Mapped[str] = mapped_column(ForeignKey("participants.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(24))
    market: Mapped[str] = mapped_column(String(16))
    resource_ids: Mapped[list[str]] = mapped_column(JSON)
    price: Mapped[dict[str, Any]] = mapped_column(JSON)
    terms: Mapped[dict[str, Any]] = mapped_column(JSON)
    tags: Mapped[list[str]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), index=True)
    checklist: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    review_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    # the regulator's approval note (its digest is on the ledger)
    regulator_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    regulator_approved: Mapped[bool] = mapped_column(Boolean)
    search_text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ContractRow(Base):
    __tablename__ = "contracts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), index=True)
    provider_id: Mapped[str] = mapped_column(ForeignKey("participants.id"), index=True)
    consumer_id: Mapped[str] = mapped_column(ForeignKey("participants.id"), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    channel: Mapped[str] = mapped_column(String(16))  # exchange (ordered) | direct (negotiated)
    suspended: Mapped[bool] = mapped_column(Boolean)
    price: Mapped[dict[str, Any]] = mapped_column(JSON)
    policy: Mapped[dict[str, Any]] = mapped_column(JSON)
    prepayment: Mapped[int] = mapped_column(BigInteger)
    fee_bps: Mapped[int] = mapped_column(Integer)
    agreement: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    agreement_digest: Mapped[str | None] = mapped_column(String(80), nullable=True)
    provider_signature: Mapped[str | None] = mapped_column(String(120), nullable=True)
    consumer_signature: Mapped[str | None] = mapped_column(String(120), nullable=True)
    right_ids: Mapped[list[str]] = mapped_column(JSON)  # processing & use rights granted by the contract
    valid_from: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    uses: Mapped[int] = mapped_column(BigInteger)
    budget_spent: Mapped[float] = mapped_column(Float)
    # δ spent by DP key thresholding, summed over uses (migration 0005)
    delta_spent: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    quantity: Mapped[int] = mapped_column(BigInteger)  # metered units so far (rows, MB, queries)
    released: Mapped[int] = mapped_column(BigInteger)  # paid out of escrow to the provider (gross)
    refunded: Mapped[int] = mapped_column(BigInteger)
    funded: Mapped[int] = mapped_column(BigInteger)  # moved into escrow so far (prepayment + renewals)
    paid_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    termination_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # why the contract was last suspended or resumed (its digest is on the ledger)
    suspension_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class UseRow(Base):
    __tablename__ = "contract_uses"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    contract_id: Mapped[str] = mapped_column(ForeignKey("contracts.id"), index=True)
    operation: Mapped[str] = mapped_column(String(32))
    quantity: Mapped[int] = mapped_column(BigInteger)
    privacy_cost: Mapped[float] = mapped_column(Float)
    privacy_delta: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    amount: Mapped[int] = mapped_column(BigInteger)
    request_digest: Mapped[str] = mapped_column(String(80))
    node_key: Mapped[str | None] = mapped_column(String(200), nullable=True)  # the node's own dedupe key
    recorded_by: Mapped[str | None] = mapped_column(
        String(40), nullable=True
    )  # participant whose node recorded it
    attested_by: Mapped[str | None] = mapped_column(
        String(40), nullable=True
    )  # the other party's node, if it did
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (UniqueConstraint("contract_id", "node_key", name="uq_contract_uses_node_key"),)


class AccountRow(Base):
    """One account; ``owner`` is a participant ID, a contract ID (escrow), ``exchange`` or ``rail``."""

    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(16))  # available | withdrawing | escrow | fee_income | clearing
    currency: Mapped[str] = mapped_column(String(3))
    balance: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        UniqueConstraint("owner", "kind", "currency", name="uq_accounts_owner_kind_currency"),
        # Only the rail's clearing account may go below zero: it mirrors money outside the exchange.
        CheckConstraint("kind = 'clearing' OR balance >= 0", name="non_negative"),
    )


class TxnRow(Base):
    """A balanced money transaction; its postings sum to zero."""

    __tablename__ = "money_txns"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    contract_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    memo: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class PostingRow(Base):
    __tablename__ = "postings"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    txn_id: Mapped[str] = mapped_column(ForeignKey("money_txns.id"), index=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    amount: Mapped[int] = mapped_column(BigInteger)  # positive = credit to the account's balance

    __table_args__ = (Index("ix_postings_account", "account_id", "txn_id"),)


class PaymentRow(Base):
    __tablename__ = "payments"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    participant_id: Mapped[str] = mapped_column(ForeignKey("participants.id"), index=True)
    direction: Mapped[str] = mapped_column(String(12))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    rail: Mapped[str] = mapped_column(String(32))
    reference: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(12), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class DisputeRow(Base):
    __tablename__ = "disputes"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    contract_id: Mapped[str] = mapped_column(ForeignKey("contracts.id"), index=True)
    claimant_id: Mapped[str] = mapped_column(ForeignKey("participants.id"))
    respondent_id: Mapped[str] = mapped_column(ForeignKey("participants.id"))
    claim: Mapped[str] = mapped_column(Text)
    evidence: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(12))
    ruling: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ruled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
