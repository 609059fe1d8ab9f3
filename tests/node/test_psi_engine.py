"""SecretFlow's engine under exchange contracts: the product's terms choose it; the same governance
(contract, policy, registered data, one use charged by one node and attested by the other, refusals that
record nothing) as our own engine. Runs the real engine in the managed environment."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import World
from datavalley.errors import InvalidInput, PolicyViolation
from datavalley.node.psi import PREFIX, contract_responder, responder_app, run_contract_psi
from datavalley.node.psi_engine import engine_router
from datavalley.psi import Mode
from datavalley.psi.suites import EngineProtocol
from market.conftest import Party
from node.psi_fixtures import (
    PSI_TERMS,
    Deal,
    WatchedAuthoriser,
    bank,
    list_psi_product,
    make_deal,
    node_registry,
    psi_workers,
    use_entries,
)
from psi.support import ThreadServer
from psi.test_secretflow import engine

__all__ = ["bank", "engine", "make_deal", "node_registry", "psi_workers"]

SF_TERMS: dict[str, Any] = {
    **copy.deepcopy(PSI_TERMS),
    "psi_modes": ["intersection"],
    "psi": {"id_column": "driver_phone", "id_kind": "phone", "engine": "secretflow", "protocol": "RR22"},
}
SF_TERMS.pop("privacy")


@pytest.fixture
def sf_node(
    logistics: Party, node_registry: Any, psi_workers: Any, tmp_path: Path, engine: Path
) -> Iterator[Callable[[], str]]:
    servers: list[ThreadServer] = []

    def serve() -> str:
        usage_log = tmp_path / "provider-node" / "psi-usage.jsonl"
        responder = contract_responder(
            participant=logistics.participant_id,
            signing_key=logistics.key,
            client=logistics.client,
            registry=node_registry,
            workdir=tmp_path / "provider-node" / "psi",
            workers=psi_workers,
            authoriser=WatchedAuthoriser(logistics.client, logistics.participant_id, usage_log=usage_log),
        )
        app = responder_app(responder)
        sf, router = engine_router(
            responder, client=logistics.client, signing_key=logistics.key, workdir=tmp_path / "sf"
        )
        app.include_router(router, prefix=PREFIX)
        server = ThreadServer(app).__enter__()
        servers.append(server)
        serve.engine = sf  # type: ignore[attr-defined]
        return f"http://127.0.0.1:{server.port}{PREFIX}"

    yield serve
    for s in servers:
        s.__exit__()


def _consume(deal: Deal, url: str, tmp_path: Path, mode: Mode = Mode.INTERSECTION) -> Any:
    return run_contract_psi(
        deal.consumer.client,
        deal.consumer.participant_id,
        deal.consumer.key,
        url,
        deal.contract.id,
        mode,
        deal.ids,
        tmp_path / "consumer-node",
    )


def test_a_secretflow_product_runs_on_the_engine_charged_once_and_attested(
    world: World, make_deal: Callable[..., Deal], sf_node: Callable[[], str], tmp_path: Path
) -> None:
    deal = make_deal(SF_TERMS)
    url = sf_node()
    outcome = _consume(deal, url, tmp_path)
    sf_node.engine.join(60)  # type: ignore[attr-defined]
    assert outcome.usage.suite is EngineProtocol.RR22
    assert {value for _, value in outcome.intersection()} == deal.truth and len(deal.truth) > 20
    assert outcome.peer_set_size == len(deal.provider_phones)
    contract = deal.consumer.client.get_contract(deal.contract.id)
    assert contract.uses == 1 and contract.budget_spent == 0.0
    [use] = deal.consumer.client.uses(deal.contract.id)
    assert use.operation == "dv:intersect" and use.request_digest == outcome.usage.transcript
    recorded = sorted(kind for kind, _ in use_entries(world, deal.contract.id))
    assert recorded == ["contract.use_attested", "contract.used"]


def test_an_engine_product_refuses_modes_that_reveal_more_and_a_terminated_contract(
    world: World, make_deal: Callable[..., Deal], sf_node: Callable[[], str], tmp_path: Path
) -> None:
    deal = make_deal(SF_TERMS)
    url = sf_node()
    with pytest.raises(PolicyViolation):
        _consume(deal, url, tmp_path, Mode.CARDINALITY)
    deal.consumer.client.contract_action(deal.contract.id, "terminate", {"reason": "no longer needed"})
    with pytest.raises(PolicyViolation):
        _consume(deal, url, tmp_path)
    assert deal.consumer.client.uses(deal.contract.id) == []
    assert use_entries(world, deal.contract.id) == []


@pytest.mark.parametrize(
    ("psi", "modes", "field"),
    [
        ({"engine": "secretflow"}, ["cardinality"], "terms.psi_modes"),
        ({"engine": "secretflow", "protocol": "OT"}, ["intersection"], "terms.psi.protocol"),
        ({"engine": "mpc"}, ["intersection"], "terms.psi.engine"),
        ({"protocol": "RR22"}, ["intersection"], "terms.psi.protocol"),
    ],
)
def test_engine_terms_are_checked_when_the_product_is_created(
    world: World, logistics: Party, psi: dict[str, Any], modes: list[str], field: str
) -> None:
    terms = {**copy.deepcopy(SF_TERMS), "psi_modes": modes}
    terms["psi"] = {"id_column": "driver_phone", "id_kind": "phone", **psi}
    with pytest.raises(InvalidInput) as err:
        list_psi_product(world, logistics, "r_unused", terms)
    assert err.value.details["field"] == field


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "secretflow_party.py"


def test_a_party_running_plain_secretflow_joins_a_contract_with_the_example_script(
    world: World,
    make_deal: Callable[..., Deal],
    node_registry: Any,
    engine: Path,
    tmp_path: Path,
) -> None:
    """The consumer runs only spu (examples/secretflow_party.py); the provider's datavalley node checks
    the contract, reads the registered data and records the use; the consumer learns the intersection."""
    import secrets
    import subprocess
    import threading

    from datavalley.node.psi_engine import run_interop_party
    from datavalley.psi.secretflow.session import _free_port
    from datavalley.psi.secretflow.tls import session_certificate

    deal = make_deal(SF_TERMS)
    node_tls = session_certificate("node", "interop", tmp_path / "node-tls")
    bank_tls = session_certificate("bank", "interop", tmp_path / "bank-tls")
    session = secrets.token_hex(16)
    node_link, bank_link = (f"127.0.0.1:{_free_port('127.0.0.1')}" for _ in range(2))
    ids = tmp_path / "bank-ids.txt"
    ids.write_text("".join(f"{p}\n" for p in sorted(deal.consumer_phones)), encoding="utf-8")
    out = tmp_path / "matches.txt"
    bank = subprocess.Popen(
        [
            str(engine),
            "-I",
            str(EXAMPLE),
            "--role",
            "receiver",
            "--session",
            session,
            "--protocol",
            "RR22",
            "--self",
            bank_link,
            "--peer",
            node_link,
            "--ids",
            str(ids),
            "--cert",
            str(bank_tls.cert_path),
            "--key",
            str(bank_tls.key_path),
            "--peer-cert",
            str(node_tls.cert_path),
            "--out",
            str(out),
            "--timeout",
            "60",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    results: list[Any] = []
    node = threading.Thread(
        target=lambda: results.append(
            run_interop_party(
                deal.provider.client,
                deal.provider.participant_id,
                deal.contract.id,
                session_id=session,
                own_link=node_link,
                peer_link=bank_link,
                tls=(node_tls.cert_path, node_tls.key_path, bank_tls.cert_path),
                workdir=tmp_path / "provider-node" / "psi",
                registry=node_registry,
                timeout=60,
            )
        )
    )
    node.start()
    _, err = bank.communicate(timeout=120)
    node.join(120)
    (tmp_path / "bank.err").write_bytes(err)  # kept for the failure report
    assert bank.returncode == 0, err.decode()[-2000:]
    assert set(out.read_text("utf-8").split()) == deal.truth
    [usage] = results
    assert usage.outcome == "completed" and usage.role == "responder"
    contract = deal.consumer.client.get_contract(deal.contract.id)
    assert contract.uses == 1
    assert [kind for kind, _ in use_entries(world, deal.contract.id)] == ["contract.used"]
    assert not any((tmp_path / "provider-node" / "psi").glob("sf-*"))
