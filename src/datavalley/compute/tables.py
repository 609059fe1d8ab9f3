"""Compute tables: pools (each listed as a compute-pool product) and jobs with their placements."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from datavalley.store.base import Base, UTCDateTime


class ComputePoolRow(Base):
    __tablename__ = "compute_pools"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    provider_id: Mapped[str] = mapped_column(ForeignKey("participants.id"), index=True)
    product_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    name: Mapped[str] = mapped_column(String(200))
    cluster: Mapped[str] = mapped_column(String(40), index=True)
    province: Mapped[str] = mapped_column(String(40))
    cores: Mapped[int] = mapped_column(Integer)
    memory_gb: Mapped[int] = mapped_column(Integer)
    gpus: Mapped[int] = mapped_column(Integer)
    pue: Mapped[float] = mapped_column(Float)
    green_share: Mapped[float] = mapped_column(Float)
    watts_per_core: Mapped[float] = mapped_column(Float)
    price: Mapped[int] = mapped_column(BigInteger)  # fen per core-hour
    windows: Mapped[list[list[int]]] = mapped_column(JSON)  # [[from_hour, to_hour], ...] UTC+8; [] = always
    status: Mapped[str] = mapped_column(String(16))  # active | retired
    topology_version: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ComputeJobRow(Base):
    __tablename__ = "compute_jobs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    consumer_id: Mapped[str] = mapped_column(ForeignKey("participants.id"), index=True)
    kind: Mapped[str] = mapped_column(String(24))
    contract_id: Mapped[str] = mapped_column(String(40), index=True)  # the data contract it works under
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)  # kind-specific (private_sql: sql, epsilon)
    cores: Mapped[int] = mapped_column(Integer)
    memory_gb: Mapped[int] = mapped_column(Integer)
    duration_s: Mapped[int] = mapped_column(Integer)
    latency_class: Mapped[str] = mapped_column(String(16))  # interactive | batch
    deadline: Mapped[datetime] = mapped_column(UTCDateTime())
    constraints: Mapped[dict[str, Any]] = mapped_column(JSON)  # derived from the registry, never declared
    status: Mapped[str] = mapped_column(String(16), index=True)
    pool_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    pool_contract_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    start_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    placement: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # why: the explanation
    core_seconds: Mapped[int] = mapped_column(BigInteger)
    energy_kwh: Mapped[float] = mapped_column(Float)
    kg_co2: Mapped[float] = mapped_column(Float)
    amount: Mapped[int] = mapped_column(BigInteger)  # fen charged on the pool contract
    use_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    result_digest: Mapped[str | None] = mapped_column(String(80), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
