"""Ledger tables: entries, perfect-subtree node hashes, the log head, checkpoints, witnesses, cosignatures.

The log stores every perfect subtree hash (``ledger_nodes``, level >= 1; level 0 is the entry's leaf hash),
so any proof is O(log n) lookups and nothing ever rebuilds the tree (docs/PROTOCOL.md, "Ledger storage").
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, LargeBinary, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from datavalley.store.base import Base, UTCDateTime


class LedgerEntryRow(Base):
    __tablename__ = "ledger_entries"

    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32), index=True)
    entry: Mapped[bytes] = mapped_column(LargeBinary)


class LedgerNodeRow(Base):
    __tablename__ = "ledger_nodes"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class LedgerStateRow(Base):
    """The single row that is the log's head; locking it serialises sequencing and signing."""

    __tablename__ = "ledger_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigInteger)
    # The compact range of the whole tree: the perfect-subtree roots of [0, size), 32 bytes each.
    frontier: Mapped[bytes] = mapped_column(LargeBinary)


class CheckpointRow(Base):
    __tablename__ = "ledger_checkpoints"

    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class WitnessRow(Base):
    __tablename__ = "ledger_witnesses"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    verifier_key: Mapped[str] = mapped_column(String(400))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CosignatureRow(Base):
    __tablename__ = "ledger_cosignatures"

    size: Mapped[int] = mapped_column(ForeignKey("ledger_checkpoints.size"), primary_key=True)
    witness: Mapped[str] = mapped_column(ForeignKey("ledger_witnesses.name"), primary_key=True)
    timestamp: Mapped[int] = mapped_column(BigInteger)
    line: Mapped[str] = mapped_column(Text)
