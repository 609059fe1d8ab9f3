"""The responder side of PSI sessions: one :class:`PsiNode` per node, serving any number of sessions.

The responder is always the *sender* (docs/PSI.md section 3): it double-blinds the initiator's elements,
serves its own blinded set, and in aggregate mode is the provider that decrypts and releases. Every
method is blocking and thread-safe; ``psi/http.py`` calls them from the server's thread pool.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from datavalley.canonical import canonical_json
from datavalley.errors import Conflict, DatavalleyError, InvalidInput, NotFound, PolicyViolation, Unavailable
from datavalley.psi import elgamal
from datavalley.psi.journal import SessionJournal
from datavalley.psi.model import ExactAggregate, Grant, Mode, PsiAuthoriser, PsiDataSource, PsiUsage, Release
from datavalley.psi.normalise import NormalisationReport
from datavalley.psi.prepare import MAX_SET_SIZE, OwnSet, prepare
from datavalley.psi.spill import BucketSpill
from datavalley.psi.suites import ELEMENT_BYTES, TAG_BYTES, InvalidElement, new_secret
from datavalley.psi.wire import OpenRequest, sha256
from datavalley.psi.workers import Workers, task_blind, task_blind_encrypt, task_tags
from datavalley.store.base import new_id

__all__ = ["PsiNode", "Transcript", "invalid_element"]

log = logging.getLogger(__name__)

BATCH_SIZE = 8192
SHUTDOWN_REASON = (
    "aborted: the responder node shut down while the session was open; nothing was charged for it"
)
_WAIT = 20.0  # seconds a pull waits for data before answering "not ready, retry"


def invalid_element(exc: InvalidElement, where: str, offset: int = 0) -> InvalidInput:
    return InvalidInput(
        f"{where}: element {offset + exc.index} is invalid: {exc.reason}",
        field="body",
        index=offset + exc.index,
    )


class Transcript:
    """Digests of every message body by stream and batch; equal on both sides of an honest run."""

    def __init__(self) -> None:
        self._entries: dict[str, str] = {}
        self._lock = threading.Lock()

    def add(self, stream: str, k: int, body: bytes) -> None:
        with self._lock:
            self._entries[f"{stream}/{k}"] = sha256(body)

    def digest(self) -> str:
        with self._lock:
            return sha256(canonical_json(sorted(self._entries.items())))


@dataclass
class _Session:
    id: str
    peer: str
    request: OpenRequest
    grant: Grant
    secret: bytes
    directory: Path
    started: datetime
    last: datetime
    xs: list[int] = field(default_factory=list)
    publics: list[bytes] = field(default_factory=list)
    seqs: set[int] = field(default_factory=set)
    received: set[int] = field(default_factory=set)
    spilled: int = 0
    own: OwnSet | None = None
    error: DatavalleyError | None = None
    ready: set[int] = field(default_factory=set)
    sorted_ready: bool = False
    released: bool = False
    result_size: int | None = None
    release_digest: str | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    exchanged: bool = False
    cancelled: bool = False
    transcript: Transcript = field(default_factory=Transcript)
    tags: BucketSpill | None = None
    producer: threading.Thread | None = None
    cond: threading.Condition = field(default_factory=threading.Condition)

    @property
    def batches_in(self) -> int:
        return (self.request.set_size + BATCH_SIZE - 1) // BATCH_SIZE

    @property
    def record_out(self) -> int:
        extra = elgamal.ciphertext_bytes(len(self.xs)) if self.request.mode is Mode.AGGREGATE else 0
        return ELEMENT_BYTES + extra


class PsiNode:
    """Serves PSI sessions for one participant (the responder role).

    ``release`` is the provider's noise hook (aggregate mode); ``workers`` is shared by all sessions.
    """

    def __init__(
        self,
        *,
        participant: str,
        authoriser: PsiAuthoriser,
        data: PsiDataSource,
        release: Release,
        workdir: Path,
        workers: Workers | None = None,
        ttl: timedelta = timedelta(minutes=10),
        max_lifetime: timedelta = timedelta(hours=6),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.participant = participant
        self.authoriser = authoriser
        self.data = data
        self.release = release
        self.workdir = workdir
        self.workers = workers or Workers()
        self.ttl = ttl
        self.max_lifetime = max_lifetime
        self.clock = clock
        self._sessions: dict[str, _Session] = {}
        self._ended: dict[str, str] = {}
        self._open_ids: dict[str, datetime] = {}
        self._lock = threading.Lock()
        self.journal = SessionJournal(workdir)
        for sid, reason in self.journal.recover():
            shutil.rmtree(workdir / sid, ignore_errors=True)
            log.warning("PSI session %s %s", sid, reason)

    # --- session lookup, replay and expiry ----------------------------------------------------------

    def _expire(self) -> None:
        now = self.clock()
        with self._lock:
            expired = [
                s
                for s in self._sessions.values()
                if now - s.last > self.ttl or now - s.started > self.max_lifetime
            ]
            for s in expired:
                del self._sessions[s.id]
                self._ended[s.id] = (
                    f"expired at {(min(s.last + self.ttl, s.started + self.max_lifetime)).isoformat()}"
                    + self._incomplete(s)
                )
                self.journal.ended(s.id, self._ended[s.id])
            self._open_ids = {k: t for k, t in self._open_ids.items() if now - t <= timedelta(minutes=10)}
        for s in expired:
            self._end(s, "expired")

    def _session(self, peer: str, session_id: str, seq: int) -> _Session:
        self._expire()
        with self._lock:
            s = self._sessions.get(session_id)
            if s is None:
                reason = self._ended.get(session_id) or self.journal.reason(session_id, peer)
                if reason is not None:
                    raise Conflict(f"PSI session {session_id} has ended ({reason})", session=session_id)
                raise NotFound(f"PSI session {session_id} does not exist", session=session_id)
            if s.peer != peer:
                raise NotFound(f"PSI session {session_id} does not exist", session=session_id)
            if seq < 1 or seq in s.seqs:
                raise Conflict(
                    f"message seq {seq} of PSI session {session_id} was already used (replay?)"
                    if seq >= 1
                    else f"message seq must be >= 1, got {seq}",
                    session=session_id,
                    seq=seq,
                )
            s.seqs.add(seq)
            s.last = self.clock()
            return s

    # --- open ---------------------------------------------------------------------------------------

    def open(self, peer: str, seq: int, body: bytes) -> dict[str, Any]:
        """Authorise and create a session (docs/PSI.md section 3, step 2). Nothing exists if this raises."""
        self._expire()
        req = OpenRequest.parse(body)
        if seq != 0:
            raise InvalidInput(f"an open request carries seq 0, got {seq}", field="seq")
        with self._lock:
            if req.request_id in self._open_ids:
                raise Conflict(
                    f"open request {req.request_id} was already received (replay?)", request_id=req.request_id
                )
            self._open_ids[req.request_id] = self.clock()
        grant = self.authoriser.authorise(req.contract_id, peer, req.mode, req.set_size)
        self._check_grant(peer, req, grant)
        dataset = self.data.open(grant)
        if dataset.id_kind is not req.id_kind:
            raise InvalidInput(
                f"the initiator's IDs are {req.id_kind}, this node's set for contract {req.contract_id} "
                f"holds {dataset.id_kind}",
                field="id_kind",
            )
        sid = new_id("psi")
        now = self.clock()
        directory = self.workdir / sid
        s = _Session(sid, peer, req, grant, new_secret(req.suite), directory, now, now)
        if req.mode is Mode.AGGREGATE:
            s.xs, s.publics = elgamal.keygen(len(req.columns))
        if req.mode is not Mode.INTERSECTION:
            s.tags = BucketSpill(directory / "tags", "in", TAG_BYTES, TAG_BYTES)
            if s.batches_in == 0:
                self._sort_tags(s)
        with self._lock:
            self._sessions[sid] = s
        self.journal.opened(sid, peer, req.contract_id, req.mode.value)
        bounds = tuple(grant.columns[c] for c in req.columns)
        s.producer = threading.Thread(
            target=self._produce, args=(s, dataset, bounds), name=f"psi-{sid}", daemon=True
        )
        s.producer.start()
        return {
            "session_id": sid,
            "expires_at": (now + self.ttl).isoformat().replace("+00:00", "Z"),
            "mode": req.mode.value,
            "suite": req.suite.value,
            "batch_size": BATCH_SIZE,
            "tag_bytes": TAG_BYTES,
            "record_bytes": s.record_out,
            "columns": list(req.columns),
            "elgamal_keys": [base64.b64encode(h).decode("ascii") for h in s.publics],
        }

    def _check_grant(self, peer: str, req: OpenRequest, grant: Grant) -> None:
        c = req.contract_id
        if grant.contract_id != c:
            raise PolicyViolation(f"the authoriser granted contract {grant.contract_id}, not {c}", contract=c)
        if grant.mode is not req.mode:
            raise PolicyViolation(
                f"contract {c} permits PSI mode {grant.mode.value!r}, not {req.mode.value!r}", contract=c
            )
        if grant.receiver != peer:
            raise PolicyViolation(
                f"contract {c} names {grant.receiver} as the receiver of the result; only it may start "
                f"a session (peer: {peer})",
                contract=c,
            )
        limit = min(grant.max_set_size or MAX_SET_SIZE, MAX_SET_SIZE)
        if req.set_size > limit:
            raise PolicyViolation(
                f"contract {c} allows sets of up to {limit} IDs, got {req.set_size}", contract=c
            )
        absent = [col for col in req.columns if col not in grant.columns]
        if absent:
            raise PolicyViolation(
                f"contract {c} does not permit aggregating column(s) {absent} "
                f"(allowed: {sorted(grant.columns)})",
                contract=c,
            )
        for col in req.columns:
            b = grant.columns[col]
            if req.set_size * (b.upper - b.lower) > elgamal.MAX_RANGE:
                raise InvalidInput(
                    f"column {col!r}: {req.set_size} rows × range {b.upper - b.lower} exceeds the "
                    f"decryptable sum range {elgamal.MAX_RANGE}; narrow the bounds",
                    field="columns",
                )

    # --- the responder's own blinded set, produced in the background ------------------------------

    def _produce(self, s: _Session, dataset: Any, bounds: tuple[Any, ...]) -> None:
        try:
            own = prepare(
                dataset,
                suite=s.request.suite,
                workers=self.workers,
                directory=s.directory / "own",
                columns=s.request.columns,
                bounds=bounds,
            )
            with s.cond:
                s.own = own
                s.cond.notify_all()
            out = s.directory / "outgoing.bin"
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                pending: list[tuple[int, Future[bytes]]] = []
                for k in range(own.batches(BATCH_SIZE)):
                    if s.cancelled:  # the session ended while its set was being blinded
                        return
                    recs = own.batch(k, BATCH_SIZE)
                    if s.request.mode is Mode.AGGREGATE:
                        fut = self.workers.submit(
                            task_blind_encrypt,
                            s.request.suite,
                            s.secret,
                            own.points(recs),
                            s.xs,
                            own.values(recs),
                        )
                    else:
                        fut = self.workers.submit(task_blind, s.request.suite, s.secret, own.points(recs))
                    pending.append((k, fut))
                    if len(pending) >= 2 * self.workers.processes:
                        self._store(s, fd, *pending.pop(0))
                for item in pending:
                    self._store(s, fd, *item)
            finally:
                os.close(fd)
        except DatavalleyError as exc:
            with s.cond:
                s.error = exc
                s.cond.notify_all()
        except Exception as exc:  # a worker crash must reach the peer as an error, not as a hang
            with s.cond:
                s.error = Unavailable(f"PSI session {s.id} failed to prepare its set: {exc}", session=s.id)
                s.cond.notify_all()

    def _store(self, s: _Session, fd: int, k: int, fut: Future[bytes]) -> None:
        data = fut.result()
        os.pwrite(fd, data, k * BATCH_SIZE * s.record_out)
        with s.cond:
            s.ready.add(k)
            s.cond.notify_all()

    def _wait(self, s: _Session, ready: Callable[[], bool], what: str) -> None:
        with s.cond:
            if not s.cond.wait_for(lambda: ready() or s.error is not None, timeout=_WAIT):
                raise Unavailable(
                    f"{what} of PSI session {s.id} is not ready yet; retry", session=s.id, retry=True
                )
            if s.error is not None:
                raise s.error

    # --- messages -----------------------------------------------------------------------------------

    def blinded(self, peer: str, session_id: str, seq: int, k: int, body: bytes) -> bytes:
        """Batch ``k`` of the initiator's blinded set; answers its tags in intersection mode."""
        s = self._session(peer, session_id, seq)
        if not 0 <= k < s.batches_in:
            raise InvalidInput(
                f"batch {k} is out of range: the initiator's set has {s.batches_in} batches", field="batch"
            )
        expected = min(BATCH_SIZE, s.request.set_size - k * BATCH_SIZE)
        if len(body) != expected * ELEMENT_BYTES:
            raise InvalidInput(
                f"batch {k} must hold {expected} elements of 32 bytes ({expected * 32} bytes), "
                f"got {len(body)} bytes",
                field="body",
            )
        with s.cond:
            if k in s.received:
                raise Conflict(
                    f"batch {k} of PSI session {session_id} was already received", session=session_id
                )
            s.received.add(k)
        try:
            tags = self.workers.run(task_tags, s.request.suite, s.secret, body)
        except InvalidElement as exc:
            with s.cond:
                s.received.discard(k)
            raise invalid_element(exc, f"batch {k}", k * BATCH_SIZE) from None
        s.exchanged = True
        s.bytes_in += len(body)
        s.transcript.add("A", k, body)
        if s.request.mode is Mode.INTERSECTION:
            s.bytes_out += len(tags)
            s.transcript.add("TA", k, tags)
            return tags
        assert s.tags is not None
        s.tags.add(np.frombuffer(tags, dtype=np.uint8).reshape(-1, TAG_BYTES))
        with s.cond:
            s.spilled += 1
            complete = s.spilled == s.batches_in
        if complete:
            threading.Thread(target=self._sort_tags, args=(s,), daemon=True).start()
        return b""

    def _sort_tags(self, s: _Session) -> None:
        assert s.tags is not None
        try:
            s.tags.close()
            with (s.directory / "sorted.bin").open("wb") as fh:
                for bucket in s.tags.buckets():
                    fh.write(bucket.tobytes())
            s.tags.remove()
        except OSError as exc:  # the session ended (its files are gone) while sorting
            with s.cond:
                s.error = Unavailable(f"PSI session {s.id} failed to sort its tags: {exc}", session=s.id)
                s.cond.notify_all()
            return
        with s.cond:
            s.sorted_ready = True
            s.cond.notify_all()

    def peer_batch(self, peer: str, session_id: str, seq: int, k: int) -> tuple[bytes, dict[str, int]]:
        """Batch ``k`` of this node's blinded set (with ciphertexts in aggregate mode)."""
        s = self._session(peer, session_id, seq)
        self._wait(s, lambda: s.own is not None, "the responder's set")
        assert s.own is not None
        total = s.own.size
        if not 0 <= k < max(1, s.own.batches(BATCH_SIZE)):
            raise InvalidInput(
                f"batch {k} is out of range: the responder's set has {s.own.batches(BATCH_SIZE)} batches",
                field="batch",
            )
        count = max(0, min(BATCH_SIZE, total - k * BATCH_SIZE))
        data = b""
        if count:
            self._wait(s, lambda: k in s.ready, f"batch {k}")
            with (s.directory / "outgoing.bin").open("rb") as fh:
                fh.seek(k * BATCH_SIZE * s.record_out)
                data = fh.read(count * s.record_out)
        s.exchanged = True
        s.bytes_out += len(data)
        s.transcript.add("B", k, data)
        return data, {"total": total, "count": count}

    def sorted_tags(self, peer: str, session_id: str, seq: int, k: int) -> tuple[bytes, dict[str, int]]:
        """Batch ``k`` of the tags of the initiator's set, sorted (cardinality and aggregate modes)."""
        s = self._session(peer, session_id, seq)
        if s.request.mode is Mode.INTERSECTION:
            raise Conflict("sorted tags exist only in cardinality and aggregate modes", session=session_id)
        if not 0 <= k < max(1, s.batches_in):
            raise InvalidInput(f"batch {k} is out of range ({s.batches_in} batches)", field="batch")
        self._wait(s, lambda: s.sorted_ready, "the sorted tags")
        count = max(0, min(BATCH_SIZE, s.request.set_size - k * BATCH_SIZE))
        with (s.directory / "sorted.bin").open("rb") as fh:
            fh.seek(k * BATCH_SIZE * TAG_BYTES)
            data = fh.read(count * TAG_BYTES)
        s.bytes_out += len(data)
        s.transcript.add("TA", k, data)
        return data, {"total": s.request.set_size, "count": count}

    def aggregate(self, peer: str, session_id: str, seq: int, body: bytes) -> dict[str, Any]:
        """Decrypt the consumer's encrypted sums, release them through the noise hook, answer the release."""
        s = self._session(peer, session_id, seq)
        if s.request.mode is not Mode.AGGREGATE:
            raise Conflict(
                f"PSI session {session_id} runs in {s.request.mode} mode, not aggregate", session=session_id
            )
        self._wait(s, lambda: s.own is not None, "the responder's set")
        assert s.own is not None
        try:
            msg = json.loads(body)
            count = msg["count"]
            ciphertext = base64.b64decode(msg["ciphertext"], validate=True)
        except (ValueError, KeyError, TypeError):
            raise InvalidInput(
                'aggregate request must be {"count": int, "ciphertext": base64}', field="body"
            ) from None
        if (
            not isinstance(count, int)
            or isinstance(count, bool)
            or not 0 <= count <= min(s.own.size, s.request.set_size)
        ):
            raise InvalidInput(
                f"aggregate count {count!r} is not in [0, {min(s.own.size, s.request.set_size)}]",
                field="count",
            )
        with s.cond:
            if len(s.received) < s.batches_in:
                raise Conflict(
                    f"PSI session {session_id}: the initiator declared {s.request.set_size} IDs "
                    f"({s.batches_in} batches) but has sent {len(s.received)} batches; no aggregate is "
                    "released over a partial set",
                    session=session_id,
                )
            if s.released:
                raise Conflict(
                    f"PSI session {session_id} has already released its aggregate", session=session_id
                )
            s.released = True
        bounds = {c: s.grant.columns[c] for c in s.request.columns}
        limits = [count * (bounds[c].upper - bounds[c].lower) for c in s.request.columns]
        shifted = self.workers.run(elgamal.decrypt, s.xs, ciphertext, limits)
        sums = {c: v + count * bounds[c].lower for c, v in zip(s.request.columns, shifted, strict=True)}
        wanted = {"count", *s.request.columns}
        definitions = {k: v for k, v in s.grant.definitions.items() if k in wanted}
        exact = ExactAggregate(s.grant.contract_id, s.id, count, sums, bounds, definitions)
        released = self.release(exact)
        self.journal.released(s.id)
        answer = released.to_dict()
        s.result_size = count
        s.release_digest = sha256(canonical_json(answer))
        s.transcript.add("agg", 0, body)
        s.transcript.add("rel", 0, canonical_json(answer))
        s.bytes_in += len(body)
        return answer

    def finish(self, peer: str, session_id: str, seq: int, body: bytes) -> dict[str, Any]:
        """End a session: record its usage and answer the responder's set size and transcript digest."""
        s = self._session(peer, session_id, seq)
        try:
            outcome = json.loads(body).get("outcome")
        except (ValueError, AttributeError):
            outcome = None
        if outcome not in ("completed", "failed"):
            raise InvalidInput('finish request must be {"outcome": "completed" | "failed"}', field="outcome")
        short = self._incomplete(s)
        if outcome == "completed" and short:
            outcome = "failed"  # a session whose initiator withheld part of its set did not complete
        with self._lock:
            self._sessions.pop(s.id, None)
            self._ended[s.id] = f"finished ({outcome}){short}"
        self.journal.ended(s.id, self._ended[s.id])
        usage = self._end(s, outcome)
        if short and json.loads(body).get("outcome") == "completed":
            raise Conflict(
                f"PSI session {session_id} cannot complete{short}; it is recorded as failed",
                session=session_id,
            )
        return {
            "responder_set_size": usage.local_set_size if usage else None,
            "transcript": s.transcript.digest(),
        }

    @staticmethod
    def _incomplete(s: _Session) -> str:
        """``""`` if the initiator sent its whole declared set, else what is missing (for reasons)."""
        if len(s.received) >= s.batches_in:
            return ""
        return (
            f": the initiator declared {s.request.set_size} IDs ({s.batches_in} batches) but sent only "
            f"{len(s.received)} batches"
        )

    def _end(self, s: _Session, outcome: str) -> PsiUsage | None:
        s.cancelled = True
        if s.tags is not None:  # a session that ends before the whole set arrived has its spill open
            s.tags.close()
        usage = None
        if s.exchanged:
            own = s.own
            usage = PsiUsage(
                session_id=s.id,
                contract_id=s.grant.contract_id,
                local=self.participant,
                peer=s.peer,
                role="responder",
                mode=s.request.mode,
                suite=s.request.suite,
                outcome=outcome,
                local_set_size=own.size if own else 0,
                peer_set_size=s.request.set_size,
                normalisation=own.report if own else NormalisationReport(),
                result_size=s.result_size,
                bytes_sent=s.bytes_out,
                bytes_received=s.bytes_in,
                transcript=s.transcript.digest(),
                release=s.release_digest,
                started_at=s.started,
                finished_at=self.clock(),
            )
            self.authoriser.record(usage)
        if s.producer is not None and s.producer is not threading.current_thread():
            s.producer.join(timeout=10)  # cancelled: it stops at its next batch
        shutil.rmtree(s.directory, ignore_errors=True)
        s.secret = b""
        s.xs = []
        return usage

    def close(self) -> None:
        """Stop the worker pool, abort every open session (journalled with the reason, not charged) and
        drop their files."""
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for s in sessions:
            s.cancelled = True
            self.journal.aborted(s.id, SHUTDOWN_REASON)
        for s in sessions:
            if s.tags is not None:
                s.tags.close()
            if s.producer is not None and s.producer is not threading.current_thread():
                s.producer.join(timeout=60)  # it stops at its next batch; its files go with it
            shutil.rmtree(s.directory, ignore_errors=True)
        self.journal.close()
        self.workers.close()
