"""PSI sessions run by SecretFlow's engine, governed exactly like our own (docs/PSI.md section 9).

The nodes keep every duty of :mod:`datavalley.psi`: the contract check (the same
:class:`~datavalley.psi.model.PsiAuthoriser`), the registered data (the same
:class:`~datavalley.psi.model.PsiDataSource`), the same normalisation on both sides, signed control
messages (:mod:`datavalley.psi.wire`), metering and the ledger (``authoriser.record``: the first side
to record charges, the other attests). Only the set comparison moves into the engine, whose two
subprocesses talk over their own TLS link (:mod:`.tls`).

What each side learns (semi-honest): the initiator (the contract's consumer, SecretFlow's receiver)
learns the intersection and the responder's set size; the responder (the sender) learns the initiator's
set size and nothing else (``broadcast_result`` is off). The engine's OPRF protocols (RR22, KKRT) and
ECDH-PSI all reveal the intersection itself to the receiver, so only ``intersection`` mode is offered on
this backend: a ``cardinality`` or ``aggregate`` session would reveal more than its terms say and is
refused before anything runs.

Engine input: one CSV per side, ``key`` = hex SHA-256 of the normalised ID (docs/PSI.md section 1),
plus, on the initiator, the row number and the normalised ID so the output needs no lookup.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import secrets
import shutil
import socket
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from datavalley.errors import DatavalleyError, Forbidden, InvalidInput, PolicyViolation
from datavalley.psi.model import Grant, Mode, PsiAuthoriser, PsiDataset, PsiDataSource, PsiOutcome, PsiUsage
from datavalley.psi.normalise import IdKind, InvalidId, NormalisationReport, normalise
from datavalley.psi.secretflow.runtime import PartyJob, PartyReport, locate, remove, start_party
from datavalley.psi.secretflow.tls import check_peer_certificate, session_certificate
from datavalley.psi.suites import EngineProtocol

__all__ = [
    "VERSION",
    "EngineSession",
    "OpenEngineRequest",
    "SecretFlowResponder",
    "engine_key",
    "run_engine_psi",
    "session_digest",
    "write_engine_input",
]

log = logging.getLogger(__name__)

VERSION = "dv-sf/1"
KEY = "key"
_MAX_ADDRESS = 255


def engine_key(normalised: str) -> str:
    """What the engine compares: hex SHA-256 of the normalised ID's UTF-8 (both sides, and interop)."""
    return hashlib.sha256(normalised.encode()).hexdigest()


def session_digest(contract_id: str, session_id: str, protocol: EngineProtocol) -> str:
    """The request digest both nodes report for the session's use (equal on both sides)."""
    body = json.dumps(
        {
            "v": "dv-sf-use/1",
            "contract_id": contract_id,
            "session_id": session_id,
            "protocol": protocol.value,
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    return "sha256:" + hashlib.sha256(body).hexdigest()


def write_engine_input(dataset: PsiDataset, path: Path, *, with_rows: bool) -> NormalisationReport:
    """Normalise ``dataset`` into the engine's CSV (distinct keys; invalid IDs counted by reason)."""
    seen: set[int] = set()  # 128-bit prefixes of the keys: a collision at 10^8 IDs has p < 10^-22
    invalid: Counter[str] = Counter()
    records = duplicates = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow([KEY, "row", "id"] if with_rows else [KEY])
        for row, (raw, _) in enumerate(dataset.records(())):
            records += 1
            try:
                value = normalise(dataset.id_kind, raw)
            except InvalidId as exc:
                invalid[exc.reason] += 1
                continue
            key = engine_key(value)
            short = int(key[:32], 16)
            if short in seen:
                duplicates += 1
                continue
            seen.add(short)
            out.writerow([key, row, value] if with_rows else [key])
    return NormalisationReport(records, dict(invalid), duplicates)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _address(value: object) -> str:
    if not isinstance(value, str) or len(value) > _MAX_ADDRESS:
        raise InvalidInput("link must be 'host:port'", field="link")
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput(f"link must be 'host:port', got {value!r}", field="link")
    return value


@dataclass(frozen=True)
class OpenEngineRequest:
    """The initiator's proposal: contract, protocol, its set size, its link address and certificate."""

    request_id: str
    contract_id: str
    mode: Mode
    protocol: EngineProtocol
    id_kind: IdKind
    set_size: int
    link: str
    cert: str

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "v": VERSION,
                "request_id": self.request_id,
                "contract_id": self.contract_id,
                "mode": self.mode.value,
                "protocol": self.protocol.value,
                "id_kind": self.id_kind.value,
                "set_size": self.set_size,
                "link": self.link,
                "cert": self.cert,
            }
        ).encode()

    @classmethod
    def parse(cls, data: bytes) -> OpenEngineRequest:
        """Parse and check (raises :class:`InvalidInput` naming the field)."""
        try:
            body = json.loads(data)
        except ValueError as exc:
            raise InvalidInput(f"open request is not JSON: {exc}", field="body") from None
        if not isinstance(body, dict) or body.get("v") != VERSION:
            raise InvalidInput(f"open request must be a JSON object with v = {VERSION!r}", field="v")

        def text(name: str) -> str:
            value = body.get(name)
            if not isinstance(value, str) or not value:
                raise InvalidInput(f"open request: {name} must be a non-empty string", field=name)
            return value

        def choice(name: str, enum: Any) -> Any:
            try:
                return enum(text(name))
            except ValueError:
                allowed = ", ".join(e.value for e in enum)
                raise InvalidInput(f"open request: {name} must be one of {allowed}", field=name) from None

        request_id = text("request_id")
        if len(request_id) != 32 or any(c not in "0123456789abcdef" for c in request_id):
            raise InvalidInput("open request: request_id must be 32 lowercase hex digits", field="request_id")
        size = body.get("set_size")
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size < 2**40:
            raise InvalidInput("open request: set_size must be a non-negative integer", field="set_size")
        return cls(
            request_id=request_id,
            contract_id=text("contract_id"),
            mode=choice("mode", Mode),
            protocol=choice("protocol", EngineProtocol),
            id_kind=choice("id_kind", IdKind),
            set_size=size,
            link=_address(body.get("link")),
            cert=text("cert"),
        )


def _only_intersection(mode: Mode, contract_id: str) -> None:
    if mode is not Mode.INTERSECTION:
        raise PolicyViolation(
            f"the SecretFlow PSI backend runs intersection sessions only: its protocols reveal the "
            f"intersection to the receiver, which a {mode.value} session must not learn",
            contract=contract_id,
            mode=mode.value,
        )


def engine_usage(
    *,
    session_id: str,
    contract_id: str,
    local: str,
    peer: str,
    role: str,
    protocol: EngineProtocol,
    outcome: str,
    report: NormalisationReport,
    peer_size: int | None,
    result_size: int | None,
    sent: int,
    received: int,
    started: datetime,
) -> PsiUsage:
    return PsiUsage(
        session_id=session_id,
        contract_id=contract_id,
        local=local,
        peer=peer,
        role=role,
        mode=Mode.INTERSECTION,
        suite=protocol,
        outcome=outcome,
        local_set_size=report.set_size,
        peer_set_size=peer_size,
        normalisation=report,
        result_size=result_size,
        bytes_sent=sent,
        bytes_received=received,
        transcript=session_digest(contract_id, session_id, protocol),
        release=None,
        started_at=started,
        finished_at=datetime.now(UTC),
    )


# --- the responder (SecretFlow's sender) -------------------------------------------------------------


#: Which engine protocol a contract's product allows (raises :class:`PolicyViolation` when it names
#: another backend). The node's contract hook reads the product terms; tests pass a constant.
ProtocolOf = Callable[[str], EngineProtocol]


class SecretFlowResponder:
    """The provider's side: authorises, writes its registered set for the engine, runs the sender.

    Each session's files live in ``workdir/<session>/`` and are deleted when its run ends.
    """

    def __init__(
        self,
        participant: str,
        authoriser: PsiAuthoriser,
        data: PsiDataSource,
        workdir: Path,
        protocol_of: ProtocolOf,
        *,
        host: str = "127.0.0.1",
        python: Path | None = None,
        timeout: float = 600.0,
    ) -> None:
        self.participant = participant
        self.authoriser = authoriser
        self.data = data
        self.workdir = workdir
        self.protocol_of = protocol_of
        self.host = host
        self.python = python
        self.timeout = timeout
        self._threads: list[threading.Thread] = []

    def open(self, peer: str, body: bytes) -> dict[str, Any]:
        """Handle an open request from ``peer``: check everything, start the sender, answer."""
        locate(self.python)  # fail fast (503, with the fix) on a node without the engine
        request = OpenEngineRequest.parse(body)
        _only_intersection(request.mode, request.contract_id)
        allowed = self.protocol_of(request.contract_id)
        if request.protocol is not allowed:
            raise PolicyViolation(
                f"contract {request.contract_id} runs PSI with SecretFlow {allowed.value}, "
                f"not {request.protocol.value}",
                contract=request.contract_id,
            )
        grant = self.authoriser.authorise(request.contract_id, peer, request.mode, request.set_size)
        _receiver_is(grant, peer)
        started = datetime.now(UTC)
        session_id = secrets.token_hex(16)
        directory = self.workdir / f"sf-{session_id}"
        try:
            dataset = self.data.open(grant)
            if dataset.id_kind is not request.id_kind:
                raise InvalidInput(
                    f"the peer's IDs are {request.id_kind.value}, this side's are {dataset.id_kind.value}",
                    field="id_kind",
                )
            report = write_engine_input(dataset, directory / "input.csv", with_rows=False)
            own = session_certificate(self.participant, session_id, directory)
            ca = check_peer_certificate(request.cert, directory)
            link = f"{self.host}:{_free_port(self.host)}"
            job = PartyJob(
                link_id=session_id,
                rank=1,
                parties=(request.link, link),
                protocol=request.protocol.value,
                input=directory / "input.csv",
                key=KEY,
                output=directory / "output.csv",
                workdir=directory,
                timeout_s=self.timeout,
                tls=(own.cert_path, own.key_path, ca),
            )
            running = start_party(job, self.python)
        except BaseException:
            remove(directory)
            raise

        def finish() -> None:
            outcome, error = "completed", None
            try:
                running.wait()
            except DatavalleyError as exc:
                outcome, error = "failed", exc
                log.warning("SecretFlow PSI session %s failed: %s", session_id, exc)
            finally:
                remove(directory)
            usage = engine_usage(
                session_id=session_id,
                contract_id=request.contract_id,
                local=self.participant,
                peer=peer,
                role="responder",
                protocol=request.protocol,
                outcome=outcome,
                report=report,
                peer_size=request.set_size,
                result_size=None,
                sent=0 if error else 1,
                received=len(body),
                started=started,
            )
            # best effort: when the responder cannot record, the initiator's record charges the use
            with contextlib.suppress(DatavalleyError):
                self.authoriser.record(usage)

        thread = threading.Thread(target=finish, name=f"sf-psi-{session_id[:8]}", daemon=True)
        thread.start()
        self._threads.append(thread)
        return {
            "v": VERSION,
            "session_id": session_id,
            "link": link,
            "cert": own.pem,
            "set_size": report.set_size,
        }

    def join(self, timeout: float | None = None) -> None:
        """Wait for the sessions started so far to end and be recorded (tests, shutdown)."""
        for thread in list(self._threads):
            thread.join(timeout)
        self._threads = [t for t in self._threads if t.is_alive()]


def _receiver_is(grant: Grant, initiator: str) -> None:
    if grant.receiver != initiator:
        raise Forbidden(
            f"contract {grant.contract_id} lets {grant.receiver} learn the result, not {initiator}",
            contract=grant.contract_id,
        )


# --- the initiator (SecretFlow's receiver) -----------------------------------------------------------


@dataclass(frozen=True)
class EngineSession:
    """Where the initiator's engine listens and how it identifies the responder."""

    host: str = "127.0.0.1"
    python: Path | None = None
    timeout: float = 600.0


def run_engine_psi(
    *,
    post: Callable[[str, bytes], bytes],
    local: str,
    peer: str,
    authoriser: PsiAuthoriser,
    dataset: PsiDataset,
    contract_id: str,
    protocol: EngineProtocol,
    workdir: Path,
    mode: Mode = Mode.INTERSECTION,
    engine: EngineSession | None = None,
) -> PsiOutcome:
    """Run one session as the initiator; ``post(route, body)`` sends a signed request to the responder.

    The matches are written to ``workdir/<session>-intersection.tsv`` (``<row>\\t<normalised ID>``, rows
    in input order), as :func:`datavalley.psi.run_psi` does. The session is recorded with the local
    authoriser when it completes (or, failed, best effort).
    """
    _only_intersection(mode, contract_id)
    engine = engine or EngineSession()
    started = datetime.now(UTC)
    request_id = secrets.token_hex(16)
    directory = workdir / f"sf-{request_id}"
    try:
        report = write_engine_input(dataset, directory / "input.csv", with_rows=True)
        grant = authoriser.authorise(contract_id, peer, mode, report.set_size)
        _receiver_is(grant, local)
        own = session_certificate(local, request_id, directory)
        link = f"{engine.host}:{_free_port(engine.host)}"
        request = OpenEngineRequest(
            request_id, contract_id, mode, protocol, dataset.id_kind, report.set_size, link, own.pem
        )
        sent = request.to_json()
        raw = post("/secretflow/sessions", sent)
        try:
            answer = json.loads(raw)
            session_id = str(answer["session_id"])
            peer_link = _address(answer["link"])
            peer_size = int(answer["set_size"])
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f"malformed answer from the responder: {exc}", field="answer") from None
        ca = check_peer_certificate(answer.get("cert"), directory)
        job = PartyJob(
            link_id=session_id,
            rank=0,
            parties=(link, peer_link),
            protocol=protocol.value,
            input=directory / "input.csv",
            key=KEY,
            output=directory / "output.csv",
            workdir=directory,
            timeout_s=engine.timeout,
            tls=(own.cert_path, own.key_path, ca),
        )

        def usage(outcome: str, result: int | None) -> PsiUsage:
            return engine_usage(
                session_id=session_id,
                contract_id=contract_id,
                local=local,
                peer=peer,
                role="initiator",
                protocol=protocol,
                outcome=outcome,
                report=report,
                peer_size=peer_size,
                result_size=result,
                sent=len(sent),
                received=len(raw),
                started=started,
            )

        try:
            party: PartyReport = start_party(job, engine.python).wait()
            result = workdir / f"{session_id}-intersection.tsv"
            count = read_matches(directory / "output.csv", result)
        except BaseException:
            with contextlib.suppress(DatavalleyError):
                authoriser.record(usage("failed", None))
            raise
        if party.intersection_count is not None and party.intersection_count != count:
            raise InvalidInput(
                f"the engine reported {party.intersection_count} matches but wrote {count}",
                field="output",
            )
        recorded = usage("completed", count)
        authoriser.record(recorded)
        return PsiOutcome(session_id, mode, count, peer_size, recorded, result)
    finally:
        remove(directory)


def read_matches(output: Path, result: Path) -> int:
    """The engine's output CSV (key,row,id) as our intersection file, rows in input order.

    The engine writes the receiver's matching rows in input order; the rare other case is sorted here.
    """
    tmp = result.with_suffix(".part")
    count, last, ordered = 0, -1, True
    with output.open(encoding="utf-8", newline="") as src, tmp.open("w", encoding="utf-8") as dst:
        for record in csv.DictReader(src):
            row = int(record["row"])
            ordered = ordered and row > last
            last = row
            dst.write(f"{row}\t{record['id']}\n")
            count += 1
    if not ordered:
        lines = tmp.read_text(encoding="utf-8").splitlines(keepends=True)
        lines.sort(key=lambda line: int(line.split("\t", 1)[0]))
        tmp.write_text("".join(lines), encoding="utf-8")
    shutil.move(tmp, result)
    return count
