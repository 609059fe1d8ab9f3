"""Domain events and the transactional outbox.

Every state change calls :func:`emit` inside the unit of work that makes the change, so the event row
commits (or rolls back) with it. The ledger's sequencer later turns each event into one log entry.

An event carries no personal data by design: the actor and subjects are opaque IDs, and the payload is
kept beside the event (``payload``, erasable) while only its canonical-JSON digest (``payload_digest``)
ever reaches the ledger. Even the IDs reach it only as salted commitments
(:mod:`datavalley.ledger.commitment`),
so the published log does not say who deals with whom. See docs/PROTOCOL.md, "Ledger entries".
"""

from __future__ import annotations

import json.encoder
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, String, Text, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from datavalley.canonical import digest
from datavalley.ledger.commitment import commit_fields, new_key
from datavalley.store.base import Base, BigId, UTCDateTime

#: The stdlib's JSON string encoder (RFC 8259 escaping, non-ASCII kept), untyped in typeshed.
_ENCODE_STR: Callable[[str], str] = json.encoder.encode_basestring  # type: ignore[attr-defined,unused-ignore]


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
    # The ledger entry, canonical JSON with "index":null; the sequencer substitutes the index (PROTOCOL 3).
    entry: Mapped[str] = mapped_column(Text)
    ledger_index: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Hex of the entry's commitment key (ledger/commitment.py): opens the published entry for the parties.
    commit_key: Mapped[str | None] = mapped_column(String(64), nullable=True)

    __table_args__ = (
        Index("ix_events_ledger_index", "ledger_index"),
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


INDEX_PLACEHOLDER = '"index":null'
#: Version 2 entries carry commitments instead of IDs (ledger/commitment.py); version 1 ones were clear.
ENTRY_VERSION = 2


def _str(value: str | None) -> str:
    return "null" if value is None else str(_ENCODE_STR(value))


def entry_template(
    type: str,
    actor: Actor,
    subjects: list[str],
    now: datetime,
    payload_digest: str,
    version: int = ENTRY_VERSION,
) -> str:
    """The event's ledger entry as RFC 8785 canonical JSON, with ``"index":null`` for the sequencer to fill.

    Built by hand because it is on every write path: keys are emitted in sorted order and every string
    goes through the same escaper ``json.dumps(ensure_ascii=False)`` uses, which for strings, integers and
    null *is* RFC 8785 (a test compares it with :func:`datavalley.canonical.canonical_json`). The actor
    (an ID or null) precedes ``index``, so the first ``"index":null`` is always the key, never a value.
    """
    return (
        '{"actor":'
        + _str(actor.member_id)
        + ","
        + INDEX_PLACEHOLDER
        + ',"participant":'
        + _str(actor.participant_id)
        + ',"payload":'
        + _str(payload_digest)
        + ',"subjects":['
        + ",".join(_str(s) for s in subjects)
        + "]"
        + ',"time":'
        + _str(now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        + ',"type":'
        + _str(type)
        + ',"v":'
        + str(version)
        + "}"
    )


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
    payload_digest = digest(payload)
    key = new_key()
    c_actor, c_participant, c_subjects, c_payload = commit_fields(
        key, actor.member_id, actor.participant_id, list(subjects), payload_digest
    )
    row = EventRow(
        type=type,
        actor=actor.member_id,
        actor_participant=actor.participant_id,
        subjects=list(subjects),
        occurred_at=now,
        payload_digest=payload_digest,
        payload=payload,
        entry=entry_template(type, Actor(c_actor, c_participant), c_subjects, now, c_payload),
        commit_key=key.hex(),
    )
    session.add(row)
    session.flush()
    return row
