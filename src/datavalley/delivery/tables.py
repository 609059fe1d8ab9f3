"""Delivery tables: recipients of a delivery contract, their sharing tokens (hashed) and metered reads."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from datavalley.store.base import Base, UTCDateTime


class RecipientRow(Base):
    """One recipient of a delivery contract: its own watermark key, its own tokens."""

    __tablename__ = "delivery_recipients"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    contract_id: Mapped[str] = mapped_column(ForeignKey("contracts.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (UniqueConstraint("contract_id", "name", name="uq_delivery_recipients_contract_name"),)


class SharingTokenRow(Base):
    """A Delta Sharing bearer token: SHA-256 of the secret only, bound to one recipient of one contract."""

    __tablename__ = "delivery_tokens"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    recipient_id: Mapped[str] = mapped_column(ForeignKey("delivery_recipients.id"), index=True)
    contract_id: Mapped[str] = mapped_column(ForeignKey("contracts.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class DeliveryReadRow(Base):
    """One metered read (a query or a change-feed request): what left the node, never the data."""

    __tablename__ = "delivery_reads"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    contract_id: Mapped[str] = mapped_column(ForeignKey("contracts.id"), index=True)
    recipient_id: Mapped[str] = mapped_column(ForeignKey("delivery_recipients.id"), index=True)
    use_id: Mapped[str] = mapped_column(String(40))
    table_name: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    rows: Mapped[int] = mapped_column(BigInteger)
    bytes: Mapped[int] = mapped_column(BigInteger)
    files: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
