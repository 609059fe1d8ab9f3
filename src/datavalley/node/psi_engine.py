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

import contextlib
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import APIRouter

from datavalley.client import Client
from datavalley.errors import DatavalleyError, InvalidInput, PolicyViolation
from datavalley.node.psi import (
    ContractResponder,
    ExchangeAuthoriser,
    ExchangePeers,
    RegistryDataSource,
    check_own_key,
)
from datavalley.node.registry import NodeRegistry
from datavalley.psi.datasets import CsvDataset, LinesDataset
from datavalley.psi.initiator import Responder
from datavalley.psi.model import Mode, PsiDataset, PsiOutcome, PsiUsage
from datavalley.psi.normalise import IdKind
from datavalley.psi.secretflow.routes import run_secretflow_psi, secretflow_router
from datavalley.psi.secretflow.runtime import PartyJob, remove, start_party
from datavalley.psi.secretflow.session import (
    KEY,
    EngineSession,
    ProtocolOf,
    SecretFlowResponder,
    engine_usage,
    read_matches,
    write_engine_input,
)
from datavalley.psi.suites import EngineProtocol

__all__ = [
    "contract_engine",
    "engine_protocol",
    "engine_router",
    "run_contract_engine_psi",
    "run_interop_party",
]


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


# --- interop: the other party runs plain SecretFlow ---------------------------------------------------


def run_interop_party(
    client: Client,
    participant: str,
    contract_id: str,
    *,
    session_id: str,
    own_link: str,
    peer_link: str,
    tls: tuple[Path, Path, Path],
    workdir: Path,
    registry: NodeRegistry | None = None,
    ids: Path | None = None,
    id_column: str | None = None,
    peer_set_size: int = 0,
    usage_log: Path | None = None,
    region: str = "CN",
    timeout: float = 600.0,
    python: Path | None = None,
) -> PsiOutcome | PsiUsage:
    """This node's side of a session with a party that runs plain SecretFlow (examples/secretflow_party.py).

    The other party has no datavalley node: the session's ID and both link addresses are agreed out of
    band, and ``tls`` (own certificate, own key, the peer's certificate) pins the peer — its certificate
    is the trust anchor the operators exchanged. Everything on this side is governed as usual: the
    contract (FINALIZED, policy, SecretFlow product), the registered data (provider) and metering — this
    node's record is the only one (there is no attesting node on the other side).

    The provider's node is the engine's sender and learns nothing; the consumer's node is the receiver
    and returns its :class:`PsiOutcome`. The provider's side returns its :class:`PsiUsage`.
    """
    if len(session_id) != 32 or any(c not in "0123456789abcdef" for c in session_id):
        raise InvalidInput("session must be 32 lowercase hex digits agreed with the peer", field="session")
    authoriser = ExchangeAuthoriser(client, participant, region=region, usage_log=usage_log)
    terms = authoriser.terms(contract_id)
    protocol = engine_protocol(client)(contract_id)
    provider = participant == terms.provider
    peer = terms.consumer if provider else terms.provider
    grant = authoriser.authorise(contract_id, peer, Mode.INTERSECTION, peer_set_size)
    dataset: PsiDataset
    if provider:
        if registry is None:
            raise InvalidInput("the provider's node needs its registry", field="registry")
        dataset = RegistryDataSource(registry, client).open(grant)
    else:
        if ids is None:
            raise InvalidInput("the consumer's node needs --ids", field="ids")
        dataset = CsvDataset(ids, id_column, terms.id_kind) if id_column else LinesDataset(ids, terms.id_kind)
    directory = workdir / f"sf-{session_id}"
    started = datetime.now(UTC)
    report = write_engine_input(dataset, directory / "input.csv", with_rows=not provider)
    job = PartyJob(
        link_id=session_id,
        rank=1 if provider else 0,
        parties=(peer_link, own_link) if provider else (own_link, peer_link),
        protocol=protocol.value,
        input=directory / "input.csv",
        key=KEY,
        output=directory / "output.csv",
        workdir=directory,
        timeout_s=timeout,
        tls=tls,
    )
    outcome, count = "failed", None
    try:
        start_party(job, python).wait()
        if not provider:
            count = read_matches(directory / "output.csv", workdir / f"{session_id}-intersection.tsv")
        outcome = "completed"
    finally:
        usage = engine_usage(
            session_id=session_id,
            contract_id=contract_id,
            local=participant,
            peer=peer,
            role="responder" if provider else "initiator",
            protocol=protocol,
            outcome=outcome,
            report=report,
            peer_size=peer_set_size or None,
            result_size=count,
            sent=1 if outcome == "completed" else 0,
            received=0,
            started=started,
        )
        remove(directory)
        if outcome == "completed":
            authoriser.record(usage)
        else:
            with contextlib.suppress(DatavalleyError):
                authoriser.record(usage)
    if provider:
        return usage
    assert count is not None
    return PsiOutcome(
        session_id, Mode.INTERSECTION, count, peer_set_size, usage, workdir / f"{session_id}-intersection.tsv"
    )
