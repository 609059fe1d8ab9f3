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
