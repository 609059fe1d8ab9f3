"""PSI sessions run by SecretFlow's engine under exchange contracts (docs/PSI.md section 9).

The product's terms choose the engine (``terms.psi.engine = "secretflow"``, ``terms.psi.protocol`` RR22 —
the default, for large sets — KKRT or ECDH). Everything else is the node's ordinary PSI governance from
:mod:`datavalley.node.psi`: :class:`~datavalley.node.psi.ExchangeAuthoriser` (contract state, ODRL
policy, metering with ``record_use`` — first record charges, the other side attests),
:class:`~datavalley.node.psi.RegistryDataSource` (the registered data, fingerprint-checked) and
:class:`~datavalley.node.psi.ExchangePeers` (the peer's registered key signs the session messages, and
with them the engine link's TLS certificate).
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import APIRouter

from datavalley.client import Client
from datavalley.errors import PolicyViolation
from datavalley.node.psi import ContractResponder, ExchangeAuthoriser, ExchangePeers, check_own_key
from datavalley.psi.datasets import CsvDataset, LinesDataset
from datavalley.psi.initiator import Responder
from datavalley.psi.model import Mode, PsiDataset, PsiOutcome
from datavalley.psi.normalise import IdKind
from datavalley.psi.secretflow.routes import run_secretflow_psi, secretflow_router
from datavalley.psi.secretflow.session import EngineSession, ProtocolOf, SecretFlowResponder
from datavalley.psi.suites import EngineProtocol

__all__ = ["contract_engine", "engine_protocol", "engine_router", "run_contract_engine_psi"]


def contract_engine(client: Client, contract_id: str) -> EngineProtocol | None:
    """The SecretFlow protocol the contract's product names, or None when it uses our own engine."""
    contract = client.get_contract(contract_id)
    psi = client.get_product(contract.product_id).terms.get("psi") or {}
    if psi.get("engine") != "secretflow":
        return None
    return EngineProtocol(str(psi.get("protocol", "RR22")))


def engine_protocol(client: Client) -> ProtocolOf:
    """The responder's check: the contract's product runs on SecretFlow, with this protocol."""

    def protocol_of(contract_id: str) -> EngineProtocol:
        protocol = contract_engine(client, contract_id)
        if protocol is None:
            raise PolicyViolation(
                f"contract {contract_id}: its product runs PSI on datavalley's own engine, not SecretFlow",
                contract=contract_id,
            )
        return protocol

    return protocol_of


def engine_router(
    responder: ContractResponder,
    *,
    client: Client,
    signing_key: Ed25519PrivateKey,
    workdir: Path,
    host: str = "127.0.0.1",
) -> tuple[SecretFlowResponder, APIRouter]:
    """The SecretFlow route of a provider's node, sharing ``responder``'s authoriser, data and peers."""
    engine = SecretFlowResponder(
        responder.participant,
        responder.authoriser,
        responder.node.data,
        workdir,
        engine_protocol(client),
        host=host,
    )
    return engine, secretflow_router(engine, signing_key=signing_key, peers=responder.peers)


def run_contract_engine_psi(
    client: Client,
    participant: str,
    signing_key: Ed25519PrivateKey,
    responder_url: str,
    contract_id: str,
    ids: Path,
    workdir: Path,
    *,
    protocol: EngineProtocol,
    mode: Mode = Mode.INTERSECTION,
    responder_participant: str | None = None,
    id_kind: IdKind | None = None,
    id_column: str | None = None,
    usage_log: Path | None = None,
    region: str = "CN",
    engine: EngineSession | None = None,
) -> PsiOutcome:
    """The consumer's side of one engine session (:func:`~datavalley.node.psi.run_contract_psi` calls it
    when the product names the SecretFlow engine)."""
    authoriser = ExchangeAuthoriser(client, participant, region=region, usage_log=usage_log)
    terms = authoriser.terms(contract_id)
    peer = responder_participant or (terms.provider if participant == terms.consumer else terms.consumer)
    peers = ExchangePeers(client)
    check_own_key(peers, participant, signing_key)
    kind = id_kind or terms.id_kind
    dataset: PsiDataset = (
        CsvDataset(ids, id_column, kind) if id_column is not None else LinesDataset(ids, kind)
    )
    workdir.mkdir(parents=True, exist_ok=True)
    return run_secretflow_psi(
        responder=Responder(responder_url, peer, peers.public_key(peer)),
        local=participant,
        signing_key=signing_key,
        authoriser=authoriser,
        dataset=dataset,
        contract_id=contract_id,
        protocol=protocol,
        workdir=workdir,
        mode=mode,
        engine=engine,
    )
