"""PSI test support: nodes over real HTTP on loopback, a contract-table authoriser, an OpenDP release hook."""

from __future__ import annotations

import random
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import opendp.prelude as dp
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI

from datavalley.psi import (
    ExactAggregate,
    Mode,
    PsiDataset,
    PsiNode,
    PsiOutcome,
    ReleasedAggregate,
    Responder,
    Suite,
    Workers,
    run_psi,
)
from datavalley.psi.normalise import IdKind
from datavalley.psi.standalone import ContractTable, FileDataSource
from datavalley.psi.wire import OpenRequest, sign_request

dp.enable_features("contrib")

INITIATOR = "p_consumer"
RESPONDER = "p_provider"
CONTRACT = "c_psi"


@dataclass
class LaplaceRelease:
    """A real noise hook: OpenDP's discrete Laplace on the integer count and each integer sum."""

    epsilon: float = 1.0
    seen: list[ExactAggregate] = field(default_factory=list)

    def __call__(self, exact: ExactAggregate) -> ReleasedAggregate:
        self.seen.append(exact)
        space = dp.atom_domain(T="i64"), dp.absolute_distance(T="i64")
        count = dp.m.make_laplace(*space, scale=1.0 / self.epsilon)(exact.count)
        sums = {}
        for column, value in exact.sums.items():
            b = exact.bounds[column]
            sensitivity = max(abs(b.lower), abs(b.upper))
            sums[column] = dp.m.make_laplace(*space, scale=sensitivity / self.epsilon)(value)
        return ReleasedAggregate(int(count), {k: int(v) for k, v in sums.items()}, "discrete_laplace")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThreadServer:
    """uvicorn serving ``app`` on a loopback port from a thread of the test process."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@dataclass
class Pair:
    """A responder node served over HTTP and everything an initiator needs to talk to it."""

    node: PsiNode
    responder_auth: ContractTable
    initiator_auth: ContractTable
    release: LaplaceRelease
    responder: Responder
    initiator_key: Ed25519PrivateKey
    workers: Workers
    workdir: Path
    data: FileDataSource

    def run(
        self,
        ids: PsiDataset,
        *,
        mode: Mode = Mode.INTERSECTION,
        suite: Suite = Suite.X25519,
        columns: tuple[str, ...] = (),
        key: Ed25519PrivateKey | None = None,
        local: str = INITIATOR,
    ) -> PsiOutcome:
        return run_psi(
            responder=self.responder,
            local=local,
            signing_key=key or self.initiator_key,
            authoriser=self.initiator_auth,
            dataset=ids,
            contract_id=CONTRACT,
            mode=mode,
            workdir=self.workdir / "initiator",
            suite=suite,
            columns=columns,
            workers=self.workers,
        )


_RIC_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def valid_ric(rng: random.Random) -> str:
    """A random resident ID number with a real birth date and a correct check character."""
    body = f"{rng.choice(['110101', '310104', '440305'])}{rng.randint(1950, 2005)}{rng.randint(1, 12):02d}"
    body += f"{rng.randint(1, 28):02d}{rng.randint(0, 999):03d}"
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, _RIC_WEIGHTS, strict=True)) % 11]


class RawPeer:
    """Hand-made signed requests to a responder, for the tests that misbehave on purpose."""

    def __init__(self, pair: Pair, key: Ed25519PrivateKey | None = None, peer: str = INITIATOR) -> None:
        self.pair = pair
        self.key = key or pair.initiator_key
        self.peer = peer

    def post(self, route: str, body: bytes = b"", *, seq: int, skew: int = 0) -> httpx.Response:
        url = httpx.URL(self.pair.responder.url + route)
        headers = sign_request(
            self.key,
            method="POST",
            path=url.path,
            peer=self.peer,
            to=RESPONDER,
            time=int(time.time()) + skew,
            seq=seq,
            body=body,
        )
        return httpx.post(url, content=body, headers=headers, timeout=30)

    def open(
        self,
        set_size: int,
        *,
        mode: Mode = Mode.INTERSECTION,
        suite: Suite = Suite.X25519,
        request_id: str | None = None,
    ) -> tuple[httpx.Response, bytes]:
        request = OpenRequest(
            request_id or secrets.token_hex(16), CONTRACT, mode, suite, IdKind.TEXT, set_size
        )
        body = request.to_json()
        return self.post("/sessions", body, seq=0), body


def laplace_release(exact: ExactAggregate) -> ReleasedAggregate:
    """The OpenDP release hook as a module-level function (for node processes started by the tests)."""
    return LaplaceRelease()(exact)
