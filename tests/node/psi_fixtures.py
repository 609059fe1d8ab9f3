"""PSI-under-contract fixtures: a logistics provider whose registered trips file backs a listed
set_intersection product, an insurer with a FINALIZED contract on it and its own phone list, and the
provider's responder node behind a real uvicorn server on a loopback port (in a thread of the test, or
as `datavalley psi serve` in its own process talking to the exchange over HTTP)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import World
from datavalley import demo_data
from datavalley.api.app import create_app
from datavalley.keys import write_private_key
from datavalley.market.model import Contract, Product
from datavalley.node.analysis import analyse_source, location_of, registration_payload
from datavalley.node.psi import (
    PREFIX,
    ContractResponder,
    ExchangeAuthoriser,
    contract_responder,
    responder_app,
)
from datavalley.node.registry import NodeRegistry
from datavalley.psi import ExactAggregate, ReleasedAggregate, Workers
from datavalley.psi.normalise import IdKind, InvalidId, normalise
from market.conftest import Party, negotiate, onboard
from psi.support import ThreadServer, free_port

PSI_TERMS: dict[str, Any] = {
    "purposes": ["credit-risk"],
    "max_uses": 10,
    "psi_modes": ["aggregate", "cardinality", "intersection"],
    "psi": {"id_column": "driver_phone", "id_kind": "phone", "columns": {"fare_cny": [0, 4000]}},
    # one aggregate session spends the whole budget: the second one must be refused
    "privacy": {"epsilon": 10.0, "epsilon_per_session": 10.0},
}


def phone(raw: object) -> str | None:
    """The PSI normal form of a phone number, None when invalid (what both nodes compute)."""
    try:
        return normalise(IdKind.PHONE, raw)
    except InvalidId:
        return None


@dataclass
class Deal:
    """The provider's data and product, the consumer's contract and its ID list, with their truth."""

    provider: Party
    consumer: Party
    resource_id: str
    product: Product
    contract: Contract
    trips: Path
    ids: Path
    provider_phones: set[str]
    consumer_phones: set[str]
    fares: dict[str, list[int]]  # normalised phone -> fares of its trips

    @property
    def truth(self) -> set[str]:
        return self.provider_phones & self.consumer_phones


@pytest.fixture(scope="session")
def psi_workers() -> Iterator[Workers]:
    """One small pool for every node of these tests (threads: no process spawn per test)."""
    pool = Workers(2, threads=True)
    yield pool
    pool.close()


def register_trips(world: World, provider: Party, path: Path, registry: NodeRegistry) -> str:
    analysis = analyse_source(str(path))
    rid = provider.client.register_resource(
        name="Freight trips",
        sector="transport",
        lawful_source="driver service contracts",
        analysis=registration_payload(analysis),
        published=True,
    ).value.id
    registry.record(rid, location_of(analysis.source, analysis.fingerprint))
    world.operator.resource_action(rid, "classification", {"grade": "general", "reason": "reviewed"})
    return rid


def list_psi_product(world: World, provider: Party, rid: str, terms: dict[str, Any] | None = None) -> Product:
    product = provider.client.create_product(
        name="Driver matching",
        kind="set_intersection",
        resource_ids=[rid],
        price={"model": "per_query", "amount": 300},
        terms=terms or PSI_TERMS,
    ).value
    provider.client.product_action(product.id, "submit")
    return world.operator.product_action(product.id, "review", {"approve": True}).value


def write_consumer_ids(path: Path, provider_phones: list[str]) -> Path:
    """Half of the provider's drivers (spelled differently), numbers it lacks, a duplicate, a bad line."""
    shared = provider_phones[::2]
    lines = [f"+86 {p[3:6]} {p[6:10]} {p[10:]}" for p in shared]
    lines += [f"1390000{i:04d}" for i in range(40)]
    lines += [shared[0], "not a phone"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def node_registry(tmp_path: Path) -> NodeRegistry:
    """The provider node's own registry (its home is not the exchange's)."""
    return NodeRegistry(tmp_path / "provider-node")


@pytest.fixture
def bank(world: World) -> Party:
    """A third participant with a registered key and no contract with the provider."""
    return onboard(world, "Qianlong Rural Bank", ["consumer"])


@pytest.fixture
def make_deal(
    world: World, logistics: Party, insurer: Party, tmp_path: Path, node_registry: NodeRegistry
) -> Callable[..., Deal]:
    def make(terms: dict[str, Any] | None = None, **contract_terms: Any) -> Deal:
        trips = demo_data.write_trips(tmp_path / "trips.csv", 2_000)
        fares: dict[str, list[int]] = {}
        with trips.open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                p = phone(row["driver_phone"])
                if p is not None:
                    fares.setdefault(p, []).append(int(row["fare_cny"]))
        rid = register_trips(world, logistics, trips, node_registry)
        product = list_psi_product(world, logistics, rid, terms)
        contract_terms.setdefault("purpose", "credit-risk")
        contract = negotiate(logistics, insurer, product.id, **contract_terms)
        ids = write_consumer_ids(tmp_path / "customers.txt", sorted(fares))
        mine = {p for line in ids.read_text("utf-8").splitlines() if (p := phone(line)) is not None}
        return Deal(logistics, insurer, rid, product, contract, trips, ids, set(fares), mine, fares)

    return make


@pytest.fixture
def deal(make_deal: Callable[..., Deal]) -> Deal:
    return make_deal(max_uses=10)


class WatchedAuthoriser(ExchangeAuthoriser):
    """The real authoriser, keeping what its release hook saw and gave out (for the tests to compare)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.exact: list[ExactAggregate] = []
        self.released: list[ReleasedAggregate] = []

    def release(self, exact: ExactAggregate) -> ReleasedAggregate:
        self.exact.append(exact)
        out = super().release(exact)
        self.released.append(out)
        return out


@dataclass
class Node:
    """The provider's responder node, served over HTTP on loopback."""

    responder: ContractResponder
    url: str
    usage_log: Path

    def usages(self) -> list[dict[str, Any]]:
        if not self.usage_log.exists():
            return []
        return [json.loads(line) for line in self.usage_log.read_text("utf-8").splitlines()]


@pytest.fixture
def serve_provider(
    logistics: Party, node_registry: NodeRegistry, psi_workers: Workers, tmp_path: Path
) -> Iterator[Callable[..., Node]]:
    """Start the provider's node (optionally with another authoriser class) behind uvicorn."""
    servers: list[ThreadServer] = []

    def serve(authoriser: type[ExchangeAuthoriser] = WatchedAuthoriser) -> Node:
        usage_log = tmp_path / "provider-node" / "psi-usage.jsonl"
        responder = contract_responder(
            participant=logistics.participant_id,
            signing_key=logistics.key,
            client=logistics.client,
            registry=node_registry,
            workdir=tmp_path / "provider-node" / "psi",
            workers=psi_workers,
            authoriser=authoriser(logistics.client, logistics.participant_id, usage_log=usage_log),
        )
        server = ThreadServer(responder_app(responder)).__enter__()
        servers.append(server)
        return Node(responder, f"http://127.0.0.1:{server.port}{PREFIX}", usage_log)

    yield serve
    for s in servers:
        s.__exit__()


TESTS = Path(__file__).resolve().parents[1]  # on the node process's PYTHONPATH


@pytest.fixture
def exchange_url(world: World) -> Iterator[str]:
    """The test's exchange, served over HTTP on loopback (as `datavalley serve` would)."""
    with ThreadServer(create_app(world.exchange)) as server:
        yield f"http://127.0.0.1:{server.port}"


@pytest.fixture
def provider_node(
    deal: Deal, exchange_url: str, node_registry: NodeRegistry, tmp_path: Path
) -> Iterator[str]:
    """`datavalley psi serve` for the provider, in its own process; yields its PSI URL."""
    key = tmp_path / "provider.pem"
    write_private_key(key, deal.provider.key)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    home = node_registry.path.parent.parent
    args = ["--home", str(home), "psi", "serve", "--key", str(key), "--port", str(port), "--workers", "1"]
    args += ["--server", exchange_url, "--token", deal.provider.token]
    log = (tmp_path / "provider-node.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "node.psi_cli", *args], env=env, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, (tmp_path / "provider-node.log").read_text()
            assert time.monotonic() < deadline, "the provider's node did not start"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/psi/v1"
    finally:
        server.terminate()
        server.wait(20)
        log.close()


def ledger(world: World, contract_id: str) -> list[dict[str, Any]]:
    """The ledger entries whose subjects name ``contract_id``, oldest first."""
    op = world.operator
    size = int(op.checkpoint()["size"])
    out = []
    for start in range(0, size, 1000):
        for entry in op.clear_entries(start, min(size, start + 1000)):
            if contract_id in entry["subjects"]:
                out.append(entry)
    return out


def use_entries(world: World, contract_id: str) -> list[tuple[str, str]]:
    """``(type, participant)`` of the contract's use and attestation entries on the ledger."""
    kinds = ("contract.used", "contract.use_attested")
    return [(e["type"], e["participant"]) for e in ledger(world, contract_id) if e["type"] in kinds]


__all__ = [
    "PSI_TERMS",
    "Deal",
    "Node",
    "WatchedAuthoriser",
    "bank",
    "deal",
    "exchange_url",
    "ledger",
    "make_deal",
    "node_registry",
    "phone",
    "provider_node",
    "psi_workers",
    "serve_provider",
    "use_entries",
]
