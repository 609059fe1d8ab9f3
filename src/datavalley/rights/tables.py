"""Registration and rights tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from datavalley.store.base import Base, UTCDateTime


class ResourceRow(Base):
    __tablename__ = "resources"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    provider_id: Mapped[str] = mapped_column(ForeignKey("participants.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(JSON)
    format: Mapped[str] = mapped_column(String(32))
    schema: Mapped[list[list[str]]] = mapped_column(JSON)
    row_count: Mapped[int] = mapped_column(BigInteger)
    fingerprint: Mapped[str] = mapped_column(String(100), index=True)
    version: Mapped[int] = mapped_column(Integer)
    profile: Mapped[dict[str, Any]] = mapped_column(JSON)
    pii: Mapped[dict[str, Any]] = mapped_column(JSON)
    pii_present: Mapped[bool] = mapped_column(Boolean, index=True)
    sensitive_pii: Mapped[bool] = mapped_column(Boolean)
    estimated_individuals: Mapped[int] = mapped_column(BigInteger)
    sector: Mapped[str] = mapped_column(String(64), index=True)
    suggested_grade: Mapped[str] = mapped_column(String(16))
    grade_reasons: Mapped[list[str]] = mapped_column(JSON)
    declared_grade: Mapped[str] = mapped_column(String(16))
    confirmed_grade: Mapped[str | None] = mapped_column(String(16), nullable=True)
    confirmed_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    effective_grade: Mapped[str] = mapped_column(String(16), index=True)
    public_data: Mapped[bool] = mapped_column(Boolean)
    published: Mapped[bool] = mapped_column(Boolean, index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    lawful_source: Mapped[str] = mapped_column(Text)
    # Lower-cased text the catalog searches: name, description, tags, column names, sector.
    search_text: Mapped[str] = mapped_column(Text)
    valid_until: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ResourceVersionRow(Base):
    """Every registered content version of a resource (first registration and each change)."""

    __tablename__ = "resource_versions"

    resource_id: Mapped[str] = mapped_column(ForeignKey("resources.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    fingerprint: Mapped[str] = mapped_column(String(100))
    row_count: Mapped[int] = mapped_column(BigInteger)
    schema: Mapped[list[list[str]]] = mapped_column(JSON)
    event_id: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RightRow(Base):
    __tablename__ = "rights"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    resource_id: Mapped[str] = mapped_column(ForeignKey("resources.id"), index=True)
    kind: Mapped[str] = mapped_column(String(24))
    holder_id: Mapped[str] = mapped_column(ForeignKey("participants.id"), index=True)
    grantor_id: Mapped[str | None] = mapped_column(ForeignKey("participants.id"), nullable=True)
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("rights.id"), nullable=True, index=True)
    purposes: Mapped[list[str]] = mapped_column(JSON)
    territories: Mapped[list[str]] = mapped_column(JSON)
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime())
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    sublicensable: Mapped[bool] = mapped_column(Boolean)
    public_data_authorisation: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ObjectionRow(Base):
    __tablename__ = "objections"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    resource_id: Mapped[str] = mapped_column(ForeignKey("resources.id"), index=True)
    objector_id: Mapped[str] = mapped_column(ForeignKey("participants.id"))
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    resolution: Mapped[str | None] = mapped_column(Text, nullable=True)


class CertificateRow(Base):
    __tablename__ = "certificates"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    resource_id: Mapped[str] = mapped_column(ForeignKey("resources.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    event_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    # The signed document once issued (receipts exist only after the event is sequenced).
    document: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (UniqueConstraint("resource_id", "version", name="uq_certificates_resource_version"),)


class RuleSetRow(Base):
    """Versions of the operator-editable classification rule set (newest wins)."""

    __tablename__ = "classification_rules"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    rules: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
