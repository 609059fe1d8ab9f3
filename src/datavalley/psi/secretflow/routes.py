"""The SecretFlow backend's routes and the initiator's signed channel (docs/PSI.md section 9).

Mounted beside :func:`datavalley.psi.psi_router` under the same prefix; requests and answers are signed
exactly like the rest of the PSI wire (:func:`datavalley.psi.http.signed_endpoint`).
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import APIRouter, Request, Response

from datavalley.psi.http import signed_endpoint
from datavalley.psi.initiator import Responder, _Channel
from datavalley.psi.model import Mode, PeerDirectory, PsiAuthoriser, PsiDataset, PsiOutcome
from datavalley.psi.secretflow.session import EngineSession, SecretFlowResponder, run_engine_psi
from datavalley.psi.suites import EngineProtocol

__all__ = ["run_secretflow_psi", "secretflow_router"]


def secretflow_router(
    responder: SecretFlowResponder, *, signing_key: Ed25519PrivateKey, peers: PeerDirectory
) -> APIRouter:
    """``POST /secretflow/sessions``: open a session run by the engine (this node is the sender)."""
    router = APIRouter()
    call = signed_endpoint(responder.participant, signing_key=signing_key, peers=peers)

    @router.post("/secretflow/sessions")
    async def open_session(request: Request) -> Response:
        return await call(request, lambda s, b: (responder.open(s.peer, b), None))

    return router


def run_secretflow_psi(
    *,
    responder: Responder,
    local: str,
    signing_key: Ed25519PrivateKey,
    authoriser: PsiAuthoriser,
    dataset: PsiDataset,
    contract_id: str,
    protocol: EngineProtocol,
    workdir: Path,
    mode: Mode = Mode.INTERSECTION,
    engine: EngineSession | None = None,
    client: httpx.Client | None = None,
) -> PsiOutcome:
    """Run one engine session as initiator against ``responder`` (see :func:`run_engine_psi`)."""
    engine = engine or EngineSession()
    http = client or httpx.Client(timeout=httpx.Timeout(120.0, connect=10.0))
    try:
        channel = _Channel(http, responder, local, signing_key, time.monotonic() + engine.timeout)
        return run_engine_psi(
            post=lambda route, body: channel.post(route, body)[0],
            local=local,
            peer=responder.participant,
            authoriser=authoriser,
            dataset=dataset,
            contract_id=contract_id,
            protocol=protocol,
            workdir=workdir,
            mode=mode,
            engine=engine,
        )
    finally:
        if client is None:
            http.close()
