"""Cross-border tables: facts, node locations, records, sketches, annual counters, the transfer register."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from datavalley.store.base import Base, UTCDateTime


class CrossborderFactsRow(Base):
    """Operator-attested facts about a participant (its jurisdiction is the verified ``country``)."""

    __tablename__ = "crossborder_facts"

    participant_id: Mapped[str] = mapped_column(ForeignKey("participants.id"), primary_key=True)
    ciio: Mapped[bool] = mapped_column(Boolean)
    ftz_zone: Mapped[str | None] = mapped_column(String(32), nullable=True)
    gdpr_role: Mapped[str] = mapped_column(String(16))
    attested_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CrossborderNodeRow(Base):
    """Where a participant's node runs, as inspected and attested by the operator (newest wins)."""

    __tablename__ = "crossborder_nodes"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    participant_id: Mapped[str] = mapped_column(ForeignKey("participants.id"), index=True)
    jurisdiction: Mapped[str] = mapped_column(String(2))
    site: Mapped[str] = mapped_column(String(200))
    evidence_digest: Mapped[str] = mapped_column(String(80))
    attested_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CrossborderRecordRow(Base):
    """A filed record: assessment approval, standard contract, certification, consent, basis, SCC, TIA."""

    __tablename__ = "crossborder_records"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(24))
    exporter_id: Mapped[str] = mapped_column(ForeignKey("participants.id"), index=True)
    recipient_id: Mapped[str | None] = mapped_column(ForeignKey("participants.id"), nullable=True)
    contract_id: Mapped[str | None] = mapped_column(ForeignKey("contracts.id"), nullable=True, index=True)
    resource_id: Mapped[str | None] = mapped_column(ForeignKey("resources.id"), nullable=True)
    number: Mapped[str | None] = mapped_column(String(100), nullable=True)
    scope: Mapped[dict[str, Any]] = mapped_column(JSON)
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime())
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    evidence_digest: Mapped[str] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(16))
    recorded_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (UniqueConstraint("kind", "number", name="uq_crossborder_records_number"),)


class CrossborderSketchRow(Base):
    """A resource version's HLL sketch of salted identifier hashes, computed on the provider's node."""

    __tablename__ = "crossborder_sketches"

    resource_id: Mapped[str] = mapped_column(ForeignKey("resources.id"), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(100), primary_key=True)
    identifier_kind: Mapped[str] = mapped_column(String(24))
    sketch: Mapped[bytes] = mapped_column(LargeBinary)
    estimate: Mapped[float] = mapped_column(Float)
    upper_bound: Mapped[int] = mapped_column(BigInteger)
    submitted_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CrossborderCounterRow(Base):
    """Distinct individuals an exporter sent abroad in a calendar year: the merged sketch and its bounds."""

    __tablename__ = "crossborder_counters"

    exporter_id: Mapped[str] = mapped_column(ForeignKey("participants.id"), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # pi | sensitive
    sketch: Mapped[bytes] = mapped_column(LargeBinary)
    estimate: Mapped[float] = mapped_column(Float)
    upper_bound: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CrossborderTransferRow(Base):
    """The regulator's register: one row per decided cross-border transfer (allowed or refused)."""

    __tablename__ = "crossborder_transfers"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    stage: Mapped[str] = mapped_column(String(16))  # accept | use | request
    contract_id: Mapped[str | None] = mapped_column(ForeignKey("contracts.id"), nullable=True)
    exporter_id: Mapped[str] = mapped_column(ForeignKey("participants.id"))
    recipient_id: Mapped[str] = mapped_column(ForeignKey("participants.id"))
    origin: Mapped[str] = mapped_column(String(2))
    destination: Mapped[str] = mapped_column(String(2))
    operation: Mapped[str | None] = mapped_column(String(40), nullable=True)
    pathway: Mapped[str] = mapped_column(String(24), index=True)
    exemption: Mapped[str | None] = mapped_column(String(24), nullable=True)
    allowed: Mapped[bool] = mapped_column(Boolean)
    personal: Mapped[bool] = mapped_column(Boolean)
    non_personal_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    articles: Mapped[list[str]] = mapped_column(JSON)
    missing: Mapped[list[list[str]]] = mapped_column(JSON)
    records: Mapped[list[str]] = mapped_column(JSON)
    decision: Mapped[dict[str, Any]] = mapped_column(JSON)
    year: Mapped[int] = mapped_column(Integer)
    individuals_ub: Mapped[int] = mapped_column(BigInteger)
    sensitive_ub: Mapped[int] = mapped_column(BigInteger)
    rules_version: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_crossborder_transfers_exporter", "exporter_id", "created_at"),)
