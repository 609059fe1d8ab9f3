"""The initiator's driver: runs one PSI session against a responder node over HTTP (httpx).

The initiator is always the receiver (docs/PSI.md section 3). :func:`run_psi` prepares the local set,
checks the local contract, opens the session, then pushes its blinded batches and pulls the responder's
concurrently (so both nodes' worker pools stay busy), compares on disk, and finishes.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from datavalley.canonical import canonical_json
from datavalley.errors import DatavalleyError, IntegrityError, PolicyViolation, Unavailable, error_from_dict
from datavalley.psi import elgamal
from datavalley.psi.model import Mode, PsiAuthoriser, PsiDataset, PsiOutcome, PsiUsage, ReleasedAggregate
from datavalley.psi.normalise import NormalisationReport
from datavalley.psi.prepare import OwnSet, matched_ids, prepare
from datavalley.psi.responder import Transcript, invalid_element
from datavalley.psi.spill import BucketSpill, match_sorted
from datavalley.psi.suites import ELEMENT_BYTES, TAG_BYTES, InvalidElement, Suite, new_secret
from datavalley.psi.wire import (
    HEADER_META,
    HEADER_SIGNATURE,
    OpenRequest,
    sha256,
    sign_request,
    verify_response,
)
from datavalley.psi.workers import Workers, task_blind, task_sum, task_tags

__all__ = ["Responder", "run_psi"]

_PAYLOAD = 8  # a position (uint64) after each tag in the comparison spills


@dataclass(frozen=True)
class Responder:
    """Where and who the responder is: ``url`` includes the router's prefix (``http://host:port/psi/v1``)."""

    url: str
    participant: str
    public_key: Ed25519PublicKey


class _Channel:
    """Signed requests to the responder, verified answers, errors rebuilt from their bodies."""

    def __init__(
        self, client: httpx.Client, responder: Responder, local: str, key: Ed25519PrivateKey, deadline: float
    ) -> None:
        self.client = client
        self.responder = responder
        self.local = local
        self.key = key
        self.deadline = deadline
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        self.sent = 0
        self.received = 0

    def next_seq(self) -> int:
        with self._lock:
            return next(self._seq)

    def post(
        self, route: str, body: bytes = b"", *, seq: int | None = None
    ) -> tuple[bytes, dict[str, Any] | None]:
        """POST ``body`` to ``route``; retries answers marked ``retry`` (not ready yet) until the deadline."""
        delay = 0.05
        while True:
            try:
                return self._post_once(route, body, self.next_seq() if seq is None else seq)
            except Unavailable as exc:
                if not exc.details.get("retry") or time.monotonic() > self.deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _post_once(self, route: str, body: bytes, seq: int) -> tuple[bytes, dict[str, Any] | None]:
        url = httpx.URL(self.responder.url.rstrip("/") + route)
        headers = sign_request(
            self.key,
            method="POST",
            path=url.path,
            peer=self.local,
            to=self.responder.participant,
            time=int(time.time()),
            seq=seq,
            body=body,
        )
        request_signature = base64.b64decode(headers["DV-Signature"])
        try:
            resp = self.client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise Unavailable(f"PSI responder {self.responder.url} cannot be reached: {exc}") from exc
        meta = resp.headers.get(HEADER_META)
        signature = resp.headers.get(HEADER_SIGNATURE, "")
        try:
            verify_response(
                self.responder.public_key, request_signature, resp.status_code, meta, resp.content, signature
            )
        except DatavalleyError:
            if resp.status_code == 200:
                raise
            # An error the responder could not bind to our request (our signature did not verify there).
            verify_response(self.responder.public_key, b"", resp.status_code, meta, resp.content, signature)
        with self._lock:
            self.sent += len(body)
            self.received += len(resp.content)
        if resp.status_code != 200:
            raise error_from_dict(resp.json())
        return resp.content, (json.loads(meta) if meta else None)


def _tag_records(tags: bytes, first: int) -> npt.NDArray[np.uint8]:
    n = len(tags) // TAG_BYTES
    out = np.zeros((n, TAG_BYTES + _PAYLOAD), dtype=np.uint8)
    out[:, :TAG_BYTES] = np.frombuffer(tags, dtype=np.uint8).reshape(n, TAG_BYTES)
    if first >= 0:
        out[:, TAG_BYTES:] = np.arange(first, first + n, dtype="<u8").view(np.uint8).reshape(n, _PAYLOAD)
    return out


def _positions(records: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint64]:
    return records[:, TAG_BYTES:].copy().view("<u8").ravel()


def run_psi(
    *,
    responder: Responder,
    local: str,
    signing_key: Ed25519PrivateKey,
    authoriser: PsiAuthoriser,
    dataset: PsiDataset,
    contract_id: str,
    mode: Mode,
    workdir: Path,
    suite: Suite = Suite.X25519,
    columns: tuple[str, ...] = (),
    workers: Workers | None = None,
    client: httpx.Client | None = None,
    timeout: float = 3600.0,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> PsiOutcome:
    """Run one session as initiator (and receiver) and return what this side learned.

    The local ``authoriser`` is asked first (with the de-duplicated set size) and records the usage at the
    end. In intersection mode the matches are written to ``workdir/<session>-intersection.tsv``.

    Raises :class:`PolicyViolation`/:class:`Forbidden` (either side refused), :class:`InvalidInput`
    (bad input or a malformed answer), :class:`Unauthenticated`, :class:`Unavailable`,
    :class:`IntegrityError` (the two sides' transcripts differ).
    """
    started = clock()
    pool = workers or Workers()
    pool.start()
    http = client or httpx.Client(timeout=httpx.Timeout(300.0, connect=10.0))
    directory = workdir / f"psi-{secrets.token_hex(8)}"
    try:
        own = prepare(dataset, suite=suite, workers=pool, directory=directory / "own")
        grant = authoriser.authorise(contract_id, responder.participant, mode, own.size)
        if grant.mode is not mode or grant.receiver != local:
            raise PolicyViolation(
                f"contract {contract_id} permits mode {grant.mode.value!r} with receiver {grant.receiver}; "
                f"this node ({local}) asked for {mode.value!r}",
                contract=contract_id,
            )
        channel = _Channel(http, responder, local, signing_key, time.monotonic() + timeout)
        request = OpenRequest(
            secrets.token_hex(16), contract_id, mode, suite, dataset.id_kind, own.size, columns
        )
        answer_bytes, _ = channel.post("/sessions", request.to_json(), seq=0)
        answer = json.loads(answer_bytes)
        run = _Run(channel, answer, own, suite, mode, pool, directory, dataset, workdir)
        try:
            outcome = run.execute()
        except BaseException:
            run.own_tags.close()  # the comparison spills' files are open until the comparison
            run.peer_tags.close()
            run.fail(authoriser, local, contract_id, started, clock)
            raise
        usage = run.usage(authoriser, local, contract_id, started, clock, "completed")
        return PsiOutcome(
            answer["session_id"], mode, outcome[0], run.peer_total, usage, outcome[1], outcome[2]
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        if workers is None:
            pool.close()
        if client is None:
            http.close()


class _Run:
    """One open session on the initiator side."""

    def __init__(
        self,
        channel: _Channel,
        answer: dict[str, Any],
        own: OwnSet,
        suite: Suite,
        mode: Mode,
        workers: Workers,
        directory: Path,
        dataset: PsiDataset,
        workdir: Path,
    ) -> None:
        self.channel = channel
        self.session = str(answer["session_id"])
        self.batch = int(answer["batch_size"])
        if int(answer["tag_bytes"]) != TAG_BYTES:
            raise IntegrityError(f"responder uses {answer['tag_bytes']}-byte tags, expected {TAG_BYTES}")
        self.publics = [base64.b64decode(h) for h in answer["elgamal_keys"]]
        self.columns = len(answer["columns"])
        self.record = int(answer["record_bytes"])
        expected = ELEMENT_BYTES + (elgamal.ciphertext_bytes(self.columns) if mode is Mode.AGGREGATE else 0)
        if self.record != expected:
            raise IntegrityError(f"responder records are {self.record} bytes, expected {expected}")
        self.own, self.suite, self.mode, self.workers = own, suite, mode, workers
        self.dataset, self.workdir = dataset, workdir
        self.secret = new_secret(suite)
        self.transcript = Transcript()
        self.own_tags = BucketSpill(directory / "match", "own", TAG_BYTES + _PAYLOAD, TAG_BYTES)
        self.peer_tags = BucketSpill(directory / "match", "peer", TAG_BYTES + _PAYLOAD, TAG_BYTES)
        self.ciphertexts = directory / "ciphertexts.bin"
        self.peer_total = 0
        self.result_size: int | None = None
        self.release_digest: str | None = None
        self.exchanged = False

    def _route(self, tail: str) -> str:
        return f"/sessions/{self.session}/{tail}"

    def _push(self, k: int) -> None:
        recs = self.own.batch(k, self.batch)
        blinded = self.workers.run(task_blind, self.suite, self.secret, OwnSet.points(recs))
        self.exchanged = True
        tags, _ = self.channel.post(self._route(f"blinded/{k}"), blinded)
        self.transcript.add("A", k, blinded)
        if self.mode is Mode.INTERSECTION:
            if len(tags) != recs.shape[0] * TAG_BYTES:
                raise IntegrityError(f"responder answered {len(tags)} tag bytes for {recs.shape[0]} elements")
            self.transcript.add("TA", k, tags)
            self.own_tags.add(_tag_records(tags, k * self.batch))

    def _pull(self, k: int, fd: int) -> int:
        data, meta = self.channel.post(self._route(f"peer/{k}"))
        total, count = int((meta or {})["total"]), int((meta or {})["count"])
        # the responder's set size is fixed by batch 0; every batch must be complete and agree with it,
        # so a responder that stops before sending its whole set (or shrinks it midway) is detected
        if k > 0 and total != self.peer_total:
            raise IntegrityError(
                f"responder batch {k} says its set has {total} IDs, batch 0 said {self.peer_total}"
            )
        if count != max(0, min(self.batch, total - k * self.batch)):
            raise IntegrityError(
                f"responder batch {k} holds {count} records; a set of {total} needs "
                f"{max(0, min(self.batch, total - k * self.batch))} in it"
            )
        if len(data) != count * self.record:
            raise IntegrityError(
                f"responder batch {k}: {len(data)} bytes for {count} records of {self.record}"
            )
        self.transcript.add("B", k, data)
        records = np.frombuffer(data, dtype=np.uint8).reshape(count, self.record)
        try:
            tags = self.workers.run(task_tags, self.suite, self.secret, records[:, :ELEMENT_BYTES].tobytes())
        except InvalidElement as exc:
            raise invalid_element(exc, f"responder batch {k}", k * self.batch) from None
        self.peer_tags.add(_tag_records(tags, k * self.batch))
        if self.mode is Mode.AGGREGATE and count:
            os.pwrite(
                fd, records[:, ELEMENT_BYTES:].tobytes(), k * self.batch * (self.record - ELEMENT_BYTES)
            )
        return total

    def execute(self) -> tuple[int, Path | None, ReleasedAggregate | None]:
        fd = os.open(self.ciphertexts, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with ThreadPoolExecutor(2 * self.workers.processes, thread_name_prefix="psi-io") as ex:
                futures: list[Future[Any]] = [
                    ex.submit(self._push, k) for k in range(self.own.batches(self.batch))
                ]
                first: Future[int] = ex.submit(self._pull, 0, fd)
                futures.append(first)
                self.peer_total = first.result()
                futures += [
                    ex.submit(self._pull, k, fd)
                    for k in range(1, (self.peer_total + self.batch - 1) // self.batch)
                ]
                _, pending = wait(futures, return_when="FIRST_EXCEPTION")
                if pending:  # something failed: stop what has not started, then raise it
                    for f in pending:
                        f.cancel()
                for f in futures:
                    if not f.cancelled():
                        f.result()
            if self.mode is not Mode.INTERSECTION:
                for k in range(self.own.batches(self.batch)):
                    tags, _ = self.channel.post(self._route(f"tags/{k}"))
                    self.transcript.add("TA", k, tags)
                    self.own_tags.add(_tag_records(tags, -1))
            self.own_tags.close()
            self.peer_tags.close()
            own_pos, peer_pos = [], []
            for b in range(64):
                own_b, peer_b = self.own_tags.bucket(b, sort=False), self.peer_tags.bucket(b, sort=False)
                i, j = match_sorted(own_b, peer_b, TAG_BYTES)
                own_pos.append(_positions(own_b[i]))
                peer_pos.append(_positions(peer_b[j]))
            mine = np.sort(np.concatenate(own_pos)) if own_pos else np.zeros(0, dtype=np.uint64)
            theirs = np.sort(np.concatenate(peer_pos)) if peer_pos else np.zeros(0, dtype=np.uint64)
            count = int(theirs.shape[0])
            self.result_size = count
            if self.mode is Mode.INTERSECTION:
                return count, self._intersection(mine), None
            if self.mode is Mode.AGGREGATE:
                return count, None, self._aggregate(theirs, fd)
            return count, None, None
        finally:
            os.close(fd)

    def _intersection(self, positions: npt.NDArray[np.uint64]) -> Path:
        out = self.workdir / f"{self.session}-intersection.tsv"
        if self.own.size:
            prepared = np.memmap(self.own.path, dtype=np.uint8, mode="r")
            row_field = prepared.reshape(self.own.size, self.own.record_size)[:, 32:40]
            # index only the 8-byte row field: 8 bytes per match in memory, not whole records
            rows = np.sort(np.ascontiguousarray(row_field[positions.astype(np.intp)]).view("<u8").ravel())
            del prepared, row_field
        else:
            rows = np.zeros(0, dtype=np.uint64)
        matched_ids(self.dataset, self.dataset.id_kind, rows, out)
        return out

    def _aggregate(self, positions: npt.NDArray[np.uint64], fd: int) -> ReleasedAggregate:
        size = elgamal.ciphertext_bytes(self.columns)
        partial: list[Future[bytes]] = []
        for start in range(0, positions.shape[0], 8192):
            blob = b"".join(os.pread(fd, size, int(p) * size) for p in positions[start : start + 8192])
            partial.append(self.workers.submit(task_sum, blob, self.columns))
        total = elgamal.sum_ciphertexts(b"".join(f.result() for f in partial), self.columns)
        body = json.dumps(
            {
                "count": int(positions.shape[0]),
                "ciphertext": base64.b64encode(elgamal.rerandomise(total, self.publics)).decode(),
            }
        ).encode()
        answer, _ = self.channel.post(self._route("aggregate"), body)
        released = json.loads(answer)
        self.transcript.add("agg", 0, body)
        self.transcript.add("rel", 0, canonical_json(released))
        self.release_digest = sha256(canonical_json(released))
        return ReleasedAggregate(
            int(released["count"]),
            {str(k): int(v) for k, v in released["sums"].items()},
            str(released["mechanism"]),
            {str(k): str(v) for k, v in (released.get("definitions") or {}).items()},
        )

    def usage(
        self,
        authoriser: PsiAuthoriser,
        local: str,
        contract_id: str,
        started: datetime,
        clock: Callable[[], datetime],
        outcome: str,
    ) -> PsiUsage:
        answer, _ = self.channel.post(self._route("finish"), json.dumps({"outcome": outcome}).encode())
        finished = json.loads(answer)
        theirs = finished["transcript"]
        if finished.get("responder_set_size") not in (None, self.peer_total):
            raise IntegrityError(
                f"PSI session {self.session}: the responder served {self.peer_total} IDs but reports a set "
                f"of {finished['responder_set_size']}",
                session=self.session,
            )
        record = self._record(authoriser, local, contract_id, started, clock, outcome)
        if theirs != record.transcript:
            raise IntegrityError(
                f"PSI session {self.session}: the responder's transcript {theirs} differs from "
                f"ours {record.transcript}",
                session=self.session,
            )
        return record

    def _record(
        self,
        authoriser: PsiAuthoriser,
        local: str,
        contract_id: str,
        started: datetime,
        clock: Callable[[], datetime],
        outcome: str,
    ) -> PsiUsage:
        usage = PsiUsage(
            session_id=self.session,
            contract_id=contract_id,
            local=local,
            peer=self.channel.responder.participant,
            role="initiator",
            mode=self.mode,
            suite=self.suite,
            outcome=outcome,
            local_set_size=self.own.size,
            peer_set_size=self.peer_total,
            normalisation=self.own.report or NormalisationReport(),
            result_size=self.result_size,
            bytes_sent=self.channel.sent,
            bytes_received=self.channel.received,
            transcript=self.transcript.digest(),
            release=self.release_digest,
            started_at=started,
            finished_at=clock(),
        )
        authoriser.record(usage)
        return usage

    def fail(
        self,
        authoriser: PsiAuthoriser,
        local: str,
        contract_id: str,
        started: datetime,
        clock: Callable[[], datetime],
    ) -> None:
        """Best effort after an error: tell the responder, and record the session if data was exchanged."""
        with contextlib.suppress(DatavalleyError):
            self.channel.post(self._route("finish"), b'{"outcome": "failed"}')
        if self.exchanged:
            self._record(authoriser, local, contract_id, started, clock, "failed")
