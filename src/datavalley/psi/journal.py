"""The responder's session journal: which PSI sessions are open, so a restart aborts them cleanly.

A session's secrets (its blinding scalar and ElGamal keys) live only in the responder's memory — writing
them to disk would let anyone who reads the node's disk later unblind a peer's set. So a session cannot
resume after the node restarts; instead the journal (``WORKDIR/sessions.db``, SQLite, 0600) records every
open session with the node instance that serves it, and a node starting on the same workdir:

* marks every session of an instance that is gone (closed, or its process no longer exists) as
  *aborted*, with the reason, deletes its files, and answers any later request for it with
  :class:`~datavalley.errors.Conflict` naming that reason — so the initiator fails at once instead of
  waiting for an expiry, and records the session as failed (not charged, docs/PSI.md §7);
* keeps sessions of other live instances sharing the workdir untouched.

Nothing is charged for an aborted session: the responder meters a session only when it ends in memory
(``finish`` or expiry). An aggregate that was already released before the restart was charged at its
release (the reservation precedes the release) and stays charged; the journal says so in the reason.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["SessionJournal"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (id TEXT PRIMARY KEY, pid INTEGER NOT NULL, alive INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
  id TEXT PRIMARY KEY, instance TEXT NOT NULL, peer TEXT NOT NULL, contract_id TEXT NOT NULL,
  mode TEXT NOT NULL, state TEXT NOT NULL, reason TEXT, released INTEGER NOT NULL DEFAULT 0,
  opened_at TEXT NOT NULL
);
"""

RESTART_REASON = (
    "aborted: the responder node restarted while the session was open (session secrets are kept in "
    "memory only); nothing was charged for it"
)
RESTART_AFTER_RELEASE = (
    "aborted: the responder node restarted after releasing the aggregate; the release was charged when "
    "it was made and stays charged"
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SessionJournal:
    """Open sessions of the responder nodes that use ``workdir`` (thread-safe)."""

    def __init__(self, workdir: Path) -> None:
        self.path = workdir / "sessions.db"
        self.instance = os.urandom(8).hex()
        self._db: sqlite3.Connection | None = None
        self._closed = False
        self._lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        """The journal database, created (0600) with this instance's row on first use; call with the lock."""
        if self._db is None:
            if self._closed:
                raise sqlite3.ProgrammingError("the session journal is closed")
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.path.touch(mode=0o600, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            db.execute("INSERT INTO instances VALUES (?, ?, 1)", (self.instance, os.getpid()))
            self._db = db
        return self._db

    def recover(self) -> list[tuple[str, str]]:
        """Abort the open sessions of instances that are gone; returns ``[(session, reason)]``."""
        with self._lock:
            if not self.path.exists():
                return []
            db = self._conn()
            dead = [
                i
                for i, pid, alive in db.execute("SELECT id, pid, alive FROM instances").fetchall()
                if i != self.instance and (not alive or not _alive(pid))
            ]
            aborted: list[tuple[str, str]] = []
            db.execute("BEGIN IMMEDIATE")
            try:
                for inst in dead:
                    rows = db.execute(
                        "SELECT id, released FROM sessions WHERE instance = ? AND state = 'open'", (inst,)
                    ).fetchall()
                    for sid, released in rows:
                        reason = RESTART_AFTER_RELEASE if released else RESTART_REASON
                        db.execute(
                            "UPDATE sessions SET state = 'aborted', reason = ? WHERE id = ?", (reason, sid)
                        )
                        aborted.append((sid, reason))
                    db.execute("DELETE FROM instances WHERE id = ?", (inst,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return aborted

    def opened(self, session_id: str, peer: str, contract_id: str, mode: str) -> None:
        with self._lock:
            self._conn().execute(
                "INSERT INTO sessions (id, instance, peer, contract_id, mode, state, opened_at) "
                "VALUES (?, ?, ?, ?, ?, 'open', ?)",
                (session_id, self.instance, peer, contract_id, mode, datetime.now(UTC).isoformat()),
            )

    def released(self, session_id: str) -> None:
        with self._lock:
            if self._db is not None:
                self._db.execute("UPDATE sessions SET released = 1 WHERE id = ?", (session_id,))

    def ended(self, session_id: str, reason: str) -> None:
        with self._lock:
            if self._db is not None:
                self._db.execute(
                    "UPDATE sessions SET state = 'ended', reason = ? WHERE id = ?", (reason, session_id)
                )

    def aborted(self, session_id: str, reason: str) -> None:
        with self._lock:
            if self._db is not None:
                self._db.execute(
                    "UPDATE sessions SET state = 'aborted', reason = ? WHERE id = ?", (reason, session_id)
                )

    def reason(self, session_id: str, peer: str) -> str | None:
        """Why ``peer``'s session ended, if this journal knows it ended (None if unknown or open)."""
        with self._lock:
            if self._closed or (self._db is None and not self.path.exists()):
                return None
            row = (
                self._conn()
                .execute("SELECT state, reason FROM sessions WHERE id = ? AND peer = ?", (session_id, peer))
                .fetchone()
            )
        if row is None or row[0] == "open":
            return None
        return str(row[1] or row[0])

    def close(self) -> None:
        """Mark this instance gone (its open sessions are aborted by the next node that starts)."""
        with self._lock:
            self._closed = True
            if self._db is None:
                return
            try:
                self._db.execute("UPDATE instances SET alive = 0 WHERE id = ?", (self.instance,))
            finally:
                self._db.close()
                self._db = None
