"""The SecretFlow backend: real engine subprocesses (the managed environment), real signed HTTP, TLS link.

The managed environment comes from ``DATAVALLEY_SECRETFLOW_PYTHON`` / ``datavalley psi
secretflow-setup`` (``make test`` creates it); without it these tests fail under CI and skip locally.
"""

from __future__ import annotations

import contextlib
import os
import random
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI

from datavalley.errors import DatavalleyError, InvalidInput, PolicyViolation, Unavailable
from datavalley.psi import Mode, Responder
from datavalley.psi.datasets import MemoryDataset
from datavalley.psi.model import Grant, StaticPeers
from datavalley.psi.normalise import IdKind, InvalidId, normalise
from datavalley.psi.secretflow import SecretFlowResponder, engine_key, locate, run_secretflow_psi
from datavalley.psi.secretflow.runtime import PartyJob, SecretFlowFailed, run_party
from datavalley.psi.secretflow.session import OpenEngineRequest
from datavalley.psi.standalone import ContractTable, FileDataSource
from datavalley.psi.suites import EngineProtocol
from psi.support import CONTRACT, INITIATOR, RESPONDER, ThreadServer, valid_ric


def _engine() -> Path:
    try:
        return locate()
    except Unavailable:
        if os.environ.get("CI"):
            raise
        pytest.skip("the managed SecretFlow environment is not installed (datavalley psi secretflow-setup)")


@pytest.fixture(scope="module")
def engine() -> Path:
    return _engine()


class Nodes:
    def __init__(
        self, tmp: Path, responder_ids: list[str], protocol: EngineProtocol, **grant: object
    ) -> None:
        self.initiator_key = Ed25519PrivateKey.generate()
        self.responder_key = Ed25519PrivateKey.generate()
        g = Grant(CONTRACT, Mode.INTERSECTION, INITIATOR, "main")
        self.responder_auth = ContractTable({CONTRACT: g})
        self.initiator_auth = ContractTable({CONTRACT: g})
        data = FileDataSource({"main": MemoryDataset(responder_ids, IdKind.CN_RIC)})
        self.sf = SecretFlowResponder(
            RESPONDER, self.responder_auth, data, tmp / "responder", lambda _c: protocol, timeout=60
        )
        from datavalley.psi.secretflow import secretflow_router

        app = FastAPI()
        peers = StaticPeers({INITIATOR: self.initiator_key.public_key()})
        app.include_router(
            secretflow_router(self.sf, signing_key=self.responder_key, peers=peers), prefix="/psi/v1"
        )
        self.server = ThreadServer(app).__enter__()
        self.responder = Responder(
            f"http://127.0.0.1:{self.server.port}/psi/v1", RESPONDER, self.responder_key.public_key()
        )
        self.tmp = tmp

    def run(self, ids: list[str], protocol: EngineProtocol, mode: Mode = Mode.INTERSECTION):  # type: ignore[no-untyped-def]
        from datavalley.psi.secretflow.session import EngineSession

        return run_secretflow_psi(
            responder=self.responder,
            local=INITIATOR,
            signing_key=self.initiator_key,
            authoriser=self.initiator_auth,
            dataset=MemoryDataset(ids, IdKind.CN_RIC),
            contract_id=CONTRACT,
            protocol=protocol,
            workdir=self.tmp / "initiator",
            mode=mode,
            engine=EngineSession(timeout=60),
        )

    def close(self) -> None:
        self.sf.join(60)
        self.server.__exit__()


@pytest.fixture
def nodes(tmp_path: Path, engine: Path) -> Iterator[callable]:  # type: ignore[valid-type]
    made: list[Nodes] = []

    def make(responder_ids: list[str], protocol: EngineProtocol) -> Nodes:
        n = Nodes(tmp_path, responder_ids, protocol)
        made.append(n)
        return n

    yield make
    for n in made:
        n.close()


def _sets(seed: int, n: int = 1500) -> tuple[list[str], list[str], set[str]]:
    rng = random.Random(seed)
    common = {valid_ric(rng) for _ in range(n // 3)}
    only_a = {valid_ric(rng) for _ in range(n // 3)} - common
    only_b = {valid_ric(rng) for _ in range(n // 3)} - common
    a = list(common | only_a)
    b = list(common | only_b)
    rng.shuffle(a)
    rng.shuffle(b)
    # formatting the normaliser removes, a duplicate and invalid IDs on both sides
    a += [f"{a[0][:6]} {a[0][6:]}", "not-an-id", a[1]]
    b += ["110101199913320000", b[0].lower()]
    return a, b, {normalise(IdKind.CN_RIC, x) for x in common}


@pytest.mark.parametrize("protocol", list(EngineProtocol))
def test_intersection_through_the_engine_is_exact_and_metered_on_both_sides(
    nodes: callable,  # type: ignore[valid-type]
    protocol: EngineProtocol,
    tmp_path: Path,
) -> None:
    a, b, expected = _sets(zlib.crc32(protocol.value.encode()))
    pair = nodes(b, protocol)
    outcome = pair.run(a, protocol)
    pair.sf.join(60)
    matches = outcome.intersection()
    assert {value for _, value in matches} == expected
    assert [row for row, _ in matches] == sorted(row for row, _ in matches)
    for row, value in matches:  # each row number points at that ID in the initiator's input
        assert normalise(IdKind.CN_RIC, a[row]) == value
    assert outcome.cardinality == len(expected)
    valid_b = set()
    for x in b:
        with contextlib.suppress(InvalidId):
            valid_b.add(normalise(IdKind.CN_RIC, x))
    assert outcome.peer_set_size == len(valid_b)  # de-duplicated valid IDs only
    (mine,) = pair.initiator_auth.usages
    (theirs,) = pair.responder_auth.usages
    assert mine.outcome == theirs.outcome == "completed"
    assert mine.transcript == theirs.transcript  # the attestation digest agrees
    assert (mine.role, theirs.role) == ("initiator", "responder")
    assert mine.suite is theirs.suite is protocol
    assert mine.normalisation.duplicates == 2 and mine.normalisation.invalid_total == 1
    assert theirs.normalisation.invalid_total == 1
    assert theirs.normalisation.duplicates == len(b) - 1 - len(valid_b)
    assert mine.local_set_size == theirs.peer_set_size
    # nothing derived from registered data lingers on either node
    assert not any((tmp_path / "responder").glob("sf-*"))
    assert [p.name for p in (tmp_path / "initiator").iterdir()] == [f"{outcome.session_id}-intersection.tsv"]


def test_modes_that_would_reveal_more_are_refused_before_anything_runs(
    nodes: callable,  # type: ignore[valid-type]
    tmp_path: Path,
) -> None:
    pair = nodes(["110101199003070016"], EngineProtocol.RR22)
    for mode in (Mode.CARDINALITY, Mode.AGGREGATE):
        with pytest.raises(PolicyViolation, match="intersection sessions only"):
            pair.run(["110101199003070016"], EngineProtocol.RR22, mode)
    assert pair.initiator_auth.usages == [] and pair.responder_auth.usages == []
    assert not (tmp_path / "initiator").exists() or not any((tmp_path / "initiator").iterdir())


def test_the_product_decides_the_protocol(nodes: callable) -> None:  # type: ignore[valid-type]
    pair = nodes(["110101199003070016"], EngineProtocol.RR22)
    with pytest.raises(PolicyViolation, match="SecretFlow RR22, not ECDH"):
        pair.run(["110101199003070016"], EngineProtocol.ECDH)
    assert pair.initiator_auth.usages == [] and pair.responder_auth.usages == []


def test_a_refused_contract_starts_no_engine(nodes: callable, tmp_path: Path) -> None:  # type: ignore[valid-type]
    pair = nodes(["110101199003070016"], EngineProtocol.RR22)
    pair.responder_auth.grants.clear()
    with pytest.raises(PolicyViolation, match="no contract"):
        pair.run(["110101199003070016"], EngineProtocol.RR22)
    assert not any((tmp_path / "responder").glob("sf-*"))
    assert pair.responder_auth.usages == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"v": "dv-sf/0"}, "v"),
        ({"mode": "everything"}, "mode"),
        ({"protocol": "OT"}, "protocol"),
        ({"set_size": -1}, "set_size"),
        ({"set_size": True}, "set_size"),
        ({"link": "127.0.0.1"}, "link"),
        ({"link": "127.0.0.1:99999"}, "link"),
        ({"request_id": "x" * 32}, "request_id"),
        ({"cert": ""}, "cert"),
    ],
)
def test_malformed_open_requests_name_the_field(change: dict[str, object], field: str) -> None:
    import json

    good = OpenEngineRequest(
        "0" * 32, "c_1", Mode.INTERSECTION, EngineProtocol.RR22, IdKind.PHONE, 3, "127.0.0.1:1234", "pem"
    )
    body = {**json.loads(good.to_json()), **change}
    with pytest.raises(InvalidInput) as err:
        OpenEngineRequest.parse(json.dumps(body).encode())
    assert err.value.details["field"] == field
    assert OpenEngineRequest.parse(good.to_json()) == good


def test_the_link_refuses_a_certificate_that_was_not_exchanged(engine: Path, tmp_path: Path) -> None:
    from datavalley.psi.secretflow.runtime import start_party
    from datavalley.psi.secretflow.session import _free_port
    from datavalley.psi.secretflow.tls import session_certificate

    ids = tmp_path / "ids.csv"
    ids.write_text("key\n" + "\n".join(engine_key(str(i)) for i in range(50)) + "\n")
    a = session_certificate("p_a", "s", tmp_path / "a")
    b = session_certificate("p_b", "s", tmp_path / "b")
    mallory = session_certificate("p_m", "s", tmp_path / "m")
    link = (f"127.0.0.1:{_free_port('127.0.0.1')}", f"127.0.0.1:{_free_port('127.0.0.1')}")
    common = {"link_id": "tls-test", "parties": link, "protocol": "RR22", "key": "key", "timeout_s": 8.0}
    # rank 1 expects Mallory's certificate: the handshake fails on both sides and nothing is compared
    jobs = [
        PartyJob(
            rank=0,
            input=ids,
            output=tmp_path / "o0.csv",
            workdir=tmp_path / "w0",
            connect_retries=2,
            tls=(a.cert_path, a.key_path, b.cert_path),
            **common,
        ),  # type: ignore[arg-type]
        PartyJob(
            rank=1,
            input=ids,
            output=tmp_path / "o1.csv",
            workdir=tmp_path / "w1",
            connect_retries=2,
            tls=(b.cert_path, b.key_path, mallory.cert_path),
            **common,
        ),  # type: ignore[arg-type]
    ]
    running = [start_party(job, engine) for job in jobs]
    for party in running:
        with pytest.raises(SecretFlowFailed):
            party.wait()
    assert not (tmp_path / "o0.csv").exists()


def test_engine_errors_are_reported_not_raised_raw(engine: Path, tmp_path: Path) -> None:
    job = PartyJob(
        link_id="",
        rank=0,
        parties=("127.0.0.1:1", "127.0.0.1:2"),
        protocol="RR22",
        input=tmp_path / "missing.csv",
        key="key",
        output=tmp_path / "o.csv",
        workdir=tmp_path / "w",
        timeout_s=5,
        connect_retries=2,
    )
    with pytest.raises(SecretFlowFailed, match="link_id must be a non-empty string") as err:
        run_party(job, engine)
    assert isinstance(err.value, DatavalleyError) and err.value.http_status == 502
