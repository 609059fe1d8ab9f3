"""PSI fixtures: a shared worker pool and responder nodes behind real HTTP servers on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI

from datavalley.psi import (
    Bounds,
    Grant,
    Mode,
    PsiDataset,
    PsiNode,
    Responder,
    StaticPeers,
    Workers,
    psi_router,
)
from datavalley.psi.standalone import ContractTable, FileDataSource
from psi.support import CONTRACT, INITIATOR, RESPONDER, LaplaceRelease, Pair, ThreadServer


@pytest.fixture(scope="session")
def workers() -> Iterator[Workers]:
    pool = Workers(2)
    yield pool
    pool.close()


@pytest.fixture
def make_pair(workers: Workers, tmp_path: Path) -> Iterator[Callable[..., Pair]]:
    """Build a responder (serving ``dataset`` under a grant of ``mode``) behind a real HTTP server."""
    servers: list[ThreadServer] = []

    def make(
        dataset: PsiDataset,
        mode: Mode = Mode.INTERSECTION,
        *,
        columns: dict[str, Bounds] | None = None,
        receiver: str = INITIATOR,
        refuse: bool = False,
        clock: Callable[..., object] | None = None,
        known_peers: Sequence[str] = (INITIATOR,),
    ) -> Pair:
        initiator_key = Ed25519PrivateKey.generate()
        responder_key = Ed25519PrivateKey.generate()
        grant = Grant(CONTRACT, mode, receiver, "main", columns or {})
        responder_auth = ContractTable({} if refuse else {CONTRACT: grant})
        initiator_auth = ContractTable({CONTRACT: grant})
        release = LaplaceRelease()
        data = FileDataSource({"main": dataset})
        kwargs = {"clock": clock} if clock is not None else {}
        node = PsiNode(
            participant=RESPONDER,
            authoriser=responder_auth,
            data=data,
            release=release,
            workdir=tmp_path / "responder",
            workers=workers,
            **kwargs,  # type: ignore[arg-type]
        )
        app = FastAPI()
        peers = StaticPeers({p: initiator_key.public_key() for p in known_peers})
        app.include_router(psi_router(node, signing_key=responder_key, peers=peers), prefix="/psi/v1")
        server = ThreadServer(app).__enter__()
        servers.append(server)
        url = f"http://127.0.0.1:{server.port}/psi/v1"
        return Pair(
            node,
            responder_auth,
            initiator_auth,
            release,
            Responder(url, RESPONDER, responder_key.public_key()),
            initiator_key,
            workers,
            tmp_path,
            data,
        )

    yield make
    for s in servers:
        s.__exit__()
