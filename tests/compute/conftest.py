"""Compute fixtures: a private-analytics data contract (Guangdong provider, insurer consumer), a cloud
provider with an eastern and a western pool, both listed, and the insurer's contracts on both."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import World
from datavalley import demo_data
from datavalley.compute.worker import Worker, make_handler
from datavalley.market.model import Contract
from datavalley.node.analysis import analyse_source, location_of, registration_payload
from datavalley.node.registry import NodeRegistry
from market.conftest import Party, insurer, logistics, negotiate, onboard

__all__ = ["insurer", "logistics"]


@dataclass
class WorkerAt:
    """A pool worker served on a thread of the test process (as a remote worker would be)."""

    url: str
    token: str
    worker: Worker


COUNT_SQL = "SELECT dest_province, COUNT(*) AS trips FROM trips GROUP BY dest_province"


def data_contract(
    world: World, provider: Party, consumer: Party, path: Path, grade: str = "general"
) -> Contract:
    analysis = analyse_source(str(path))
    rid = provider.client.register_resource(
        name="Freight trips",
        sector="transport",
        lawful_source="driver contracts",
        analysis=registration_payload(analysis),
        published=True,
    ).value.id
    NodeRegistry(world.home).record(rid, location_of(analysis.source, analysis.fingerprint))
    world.operator.resource_action(rid, "classification", {"grade": grade, "reason": "ok"})
    product = provider.client.create_product(
        name="Freight insights",
        kind="private_analytics",
        resource_ids=[rid],
        price={"model": "per_query", "amount": 800},
        terms={
            "purposes": ["insurance-pricing"],
            "max_uses": 20,
            "tables": {"trips": rid},
            "privacy": {
                "min_group_size": 10,
                "epsilon": 2.0,
                "privacy_unit": "driver_id",
                "rules": {
                    "clamps": {"fare_cny": [0, 4000]},
                    "max_rows_per_unit": 10,
                    "max_groups_per_unit": 2,
                    "public_keys": {"dest_province": list(demo_data.PROVINCES)},
                },
            },
        },
    ).value
    provider.client.product_action(product.id, "submit")
    if grade == "important":
        regulator = onboard(world, "Data regulator", ["regulator"])
        regulator.client.product_action(product.id, "regulator-approval")
    world.operator.product_action(product.id, "review", {"approve": True})
    return negotiate(provider, consumer, product.id, max_uses=20)


@dataclass
class Grid:
    cloud: Party
    east: dict[str, Any]
    west: dict[str, Any]
    contracts: dict[str, str]  # pool ID → the insurer's contract


def register_pool(world: World, cloud: Party, **body: Any) -> dict[str, Any]:
    pool = cloud.client.request("POST", "/v1/compute/pools", json=body).json()["data"]
    cloud.client.product_action(pool["product_id"], "submit")
    world.operator.product_action(pool["product_id"], "review", {"approve": True})
    return dict(pool)


@pytest.fixture
def trips_file(tmp_path: Path) -> Path:
    return demo_data.write_trips(tmp_path / "trips.csv", 600)


@pytest.fixture
def contract(world: World, logistics: Party, insurer: Party, trips_file: Path) -> Contract:
    return data_contract(world, logistics, insurer, trips_file)


@pytest.fixture
def grid(world: World, insurer: Party) -> Grid:
    cloud = onboard(world, "Guiyang Cloud", ["provider"])
    east = register_pool(
        world, cloud, name="Shaoguan 2-core", cluster="shaoguan", cores=2, price=45, pue=1.25, green_share=0.1
    )
    west = register_pool(
        world, cloud, name="Gui'an 2-core", cluster="guian", cores=2, price=28, pue=1.15, green_share=0.5
    )
    contracts = {}
    for pool in (east, west):
        c = negotiate(cloud, insurer, pool["product_id"], purpose="compute", max_quantity=3600 * 20)
        contracts[pool["id"]] = c.id
    return Grid(cloud, east, west, contracts)


@pytest.fixture
def worker_url(tmp_path: Path) -> Iterator[WorkerAt]:
    from http.server import ThreadingHTTPServer

    token = secrets.token_urlsafe(24)
    w = Worker("pool_t", 1, tmp_path / "work", token, pin=False)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(w))
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield WorkerAt(f"http://127.0.0.1:{httpd.server_address[1]}", token, w)
    httpd.shutdown()
    httpd.server_close()
    w.close()
