"""Domain events and the transactional outbox.

Every state change calls :func:`emit` inside the unit of work that makes the change, so the event row
commits (or rolls back) with it. The ledger's sequencer later turns each event into one log entry.

An event carries no personal data by design: the actor and subjects are opaque IDs, and the payload is
kept beside the event (``payload``, erasable) while only its canonical-JSON digest (``payload_digest``)
ever reaches the ledger. See docs/PROTOCOL.md, "Ledger entries".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from datavalley.canonical import digest
from datavalley.store.base import Base, BigId, UTCDateTime


class EventRow(Base):
    """One domain event in the outbox; ``ledger_index`` is set once the ledger has sequenced it."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    type: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str | None] = mapped_column(String(40))
    actor_participant: Mapped[str | None] = mapped_column(String(40))
    subjects: Mapped[list[str]] = mapped_column(JSON)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    payload_digest: Mapped[str] = mapped_column(String(80))
    # The payload itself stays in the exchange database (never on the ledger) and may be erased.
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    ledger_index: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("ledger_entries.idx"), nullable=True, unique=True
    )

    __table_args__ = (
        Index(
            "ix_events_unsequenced",
            "id",
            sqlite_where=text("ledger_index IS NULL"),
            postgresql_where=text("ledger_index IS NULL"),
        ),
    )


@dataclass(frozen=True)
class Actor:
    """Who caused an event: a member (and its participant), or the exchange itself (both None)."""

    member_id: str | None
    participant_id: str | None


SYSTEM = Actor(None, None)


def emit(
    session: Session,
    now: datetime,
    actor: Actor,
    type: str,
    subjects: list[str],
    payload: dict[str, Any],
) -> EventRow:
    """Record a domain event in the current transaction and return it (its ``id`` is assigned).

    ``payload`` must be canonical-JSON-able and should hold IDs, states and digests, not personal data.
    Raises :class:`datavalley.errors.InvalidInput` if the payload cannot be canonicalised.
    """
    row = EventRow(
        type=type,
        actor=actor.member_id,
        actor_participant=actor.participant_id,
        subjects=list(subjects),
        occurred_at=now,
        payload_digest=digest(payload),
        payload=payload,
    )
    session.add(row)
    session.flush()
    return row
