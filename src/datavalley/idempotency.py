"""Idempotency-Key records: a POST repeated with the same key replays the first answer.

The record is written in the same transaction as the change it answers for, so a request either happened
once (and replays) or did not happen at all. Secrets in an answer (a new API token) are redacted before
the answer is stored: a replay says the token exists but cannot show it again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from datavalley.store.base import Base, UTCDateTime


class IdempotencyRow(Base):
    __tablename__ = "idempotency_keys"

    principal: Mapped[str] = mapped_column(String(40), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_digest: Mapped[str] = mapped_column(String(80))
    status: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    event_ids: Mapped[list[int]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
