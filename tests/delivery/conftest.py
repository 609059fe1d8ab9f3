"""Delivery fixtures: one exchange home with a provider, two consumers and delivery contracts, served by a
real ``datavalley serve`` subprocess over loopback HTTP (the official client reads from it).

Session-scoped: the server and the contracts are built once (SQLite; the PostgreSQL side of
the service layer is covered by the market tests, which run every use through the same ``record_use``).
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Clock, World
from datavalley import demo_data
from datavalley.api.app import create_app
from datavalley.client import Client
from datavalley.exchange import Exchange
from datavalley.home import init_home, settings_for
from datavalley.market.model import Contract
from datavalley.node.analysis import analyse_source, location_of, registration_payload
from datavalley.node.registry import NodeRegistry
from market.conftest import Party, fund, negotiate, onboard

ROWS = 2_000
FILE_ROWS = 400
PROVINCES = ["贵州", "云南", "四川"]
MONTH_FROM, MONTH_TO = "2026-02", "2026-06"
OFFERED = [
    "trip_id",
    "driver_id",
    "driver_phone",
    "dest_city",
    "dest_province",
    "distance_km",
    "fare_cny",
    "departed_at",
    "month",
]
DELIVERY_TERMS: dict[str, Any] = {
    "purposes": ["insurance-pricing"],
    "max_uses": 200,
    "valid_days": 30,
    "delivery": {
        "columns": OFFERED,
        "pi": "pseudonymise",
        "licensed_pi": [],
        "row_filter": [
            {"column": "dest_province", "isAnyOf": PROVINCES},
            {"column": "month", "gteq": MONTH_FROM, "lt": MONTH_TO},
        ],
        "watermark": {"columns": {"fare_cny": 0, "distance_km": 0}},
    },
}
DATAVALLEY = str(Path(sys.executable).parent / "datavalley")


@dataclass
class Deployment:
    home: Path
    world: World
    url: str
    logistics: Party
    insurer: Party
    bank: Party
    resource_id: str
    product_id: str
    contract: Contract  # the insurer's contract: delivered
    capped: Contract  # the bank's contract: two reads only
    idle: Contract  # the bank's second contract: never delivered
    data: Path
    tmp: Path

    def profile(self, contract_id: str, token: str, recipient: str, out: Path) -> Path:
        """``datavalley delivery profile`` (in-process CLI) against the running server."""
        code = cli(
            self, token, "delivery", "profile", contract_id, "--out", str(out), "--recipient", recipient
        )
        assert code == 0
        return out


def cli(dep: Deployment, token: str, *args: str) -> int:
    """The CLI in-process (same code as the console script) against the running server; the exit code."""
    from typer.testing import CliRunner

    from datavalley.cli.main import app
    from datavalley.errors import DatavalleyError

    env = {"DATAVALLEY_SERVER": dep.url, "DATAVALLEY_TOKEN": token, "DATAVALLEY_HOME": str(dep.home)}
    result = CliRunner().invoke(app, list(args), env=env)
    if isinstance(result.exception, DatavalleyError):
        return result.exception.exit_code
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code


def policy_rows(path: Path) -> list[dict[str, str]]:
    """The rows the contract's row filter keeps, straight from the provider's CSV."""
    with path.open(encoding="utf-8") as fh:
        return [
            r
            for r in csv.DictReader(fh)
            if r["dest_province"] in PROVINCES and MONTH_FROM <= r["month"] < MONTH_TO
        ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _register(world: World, party: Party, path: Path) -> str:
    analysis = analyse_source(str(path))
    rid = party.client.register_resource(
        name="Freight trips",
        sector="transport",
        lawful_source="driver service contracts",
        analysis=registration_payload(analysis),
        published=True,
    ).value.id
    NodeRegistry(world.home).record(rid, location_of(analysis.source, analysis.fingerprint))
    world.operator.resource_action(rid, "classification", {"grade": "general", "reason": "reviewed"})
    return rid


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp("delivery")
    home = tmp / "home"
    done = init_home(home)
    # the server boots (imports, migrations) while the parties, data and contracts are set up
    port = _free_port()
    env = {**os.environ, "DATAVALLEY_HOME": str(home), "DATAVALLEY_DELIVERY_FILE_ROWS": str(FILE_ROWS)}
    log = (tmp / "server.log").open("w")
    proc = subprocess.Popen(
        [DATAVALLEY, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    ex = Exchange.open(settings_for(home))
    app = create_app(ex)
    clients: list[Client] = []

    def client_for(token: str | None) -> Client:
        c = Client.in_process(app, token)
        clients.append(c)
        return c

    world = World(ex, home, Clock(), done.token.secret, done.operator.id, done.admin.id, client_for)
    try:
        yield from _serve(tmp, home, world, proc, log, url)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        for c in clients:
            c.close()
        ex.close()


def _serve(
    tmp: Path, home: Path, world: World, proc: subprocess.Popen[bytes], log: Any, url: str
) -> Iterator[Deployment]:
    logistics = onboard(world, "Qiantong Logistics", ["provider", "consumer"])
    insurer = onboard(world, "Guizhou Mutual Insurance", ["consumer"])
    bank = onboard(world, "Guiyang Bank", ["consumer"])
    fund(world, insurer, 1_000_000)
    fund(world, bank, 1_000_000)
    data = demo_data.write_trips(tmp / "trips.csv", ROWS)
    rid = _register(world, logistics, data)
    product = logistics.client.create_product(
        name="Freight trips extract",
        kind="file_delivery",
        resource_ids=[rid],
        price={"model": "per_query", "amount": 300},
        terms=DELIVERY_TERMS,
        tags=["logistics"],
    ).value
    logistics.client.product_action(product.id, "submit")
    product = world.operator.product_action(product.id, "review", {"approve": True}).value
    contract = negotiate(logistics, insurer, product.id, max_uses=100)
    capped = negotiate(logistics, bank, product.id, max_uses=2)
    idle = negotiate(logistics, bank, product.id, max_uses=5)

    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            log.flush()
            raise RuntimeError("datavalley serve did not start:\n" + (tmp / "server.log").read_text())
        time.sleep(0.05)
    yield Deployment(
        home, world, url, logistics, insurer, bank, rid, product.id, contract, capped, idle, data, tmp
    )


def table_url(profile: Path, contract_id: str, product_id: str) -> str:
    """``<profile>#<share>.<schema>.<table>`` (share = contract, schema = product, table = resource name)."""
    return f"{profile}#{contract_id.lower()}.{product_id.lower()}.freight_trips"


def profile_json(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text("utf-8")))
