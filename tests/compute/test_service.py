"""Compute services through the API and CLI (SQLite; the end-to-end case runs on both backends):
residency derived from the registry, carbon-aware start times, refusals that change nothing, roles,
pools reviewed like any product, and the worker protocol's own checks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cli.test_cli import run
from compute.conftest import COUNT_SQL, Grid, WorkerAt, data_contract, register_pool
from conftest import World
from datavalley.compute.tables import ComputeJobRow
from datavalley.errors import Conflict, Forbidden, InvalidInput, NotFound
from datavalley.market.model import Contract
from market.conftest import Party, onboard


@pytest.fixture
def database_url() -> Iterator[str | None]:
    yield None  # SQLite only here: these cases test compute logic, not storage


def jobs_count(world: World) -> int:
    with Session(world.exchange.engine) as s:
        return int(s.scalar(select(func.count()).select_from(ComputeJobRow)) or 0)


def submit(party: Party, **body: object) -> dict:
    return dict(party.client.request("POST", "/v1/compute/jobs", json=body).json()["data"])


def test_important_data_stays_in_its_province(
    world: World, logistics: Party, insurer: Party, grid: Grid, tmp_path: Path
) -> None:
    from datavalley import demo_data

    c = data_contract(world, logistics, insurer, demo_data.write_trips(tmp_path / "t.csv", 500), "important")
    job = submit(insurer, contract_id=c.id, sql=COUNT_SQL, latency_class="batch")
    assert job["constraints"]["grades"] == ["important"]
    assert job["constraints"]["allowed_provinces"] == ["guangdong"]
    # the western pool is cheaper and greener, but Guizhou is not Guangdong
    assert job["pool_id"] == grid.east["id"]
    why = insurer.client.get(f"/v1/compute/jobs/{job['id']}/explain")
    assert "residency: important data stays in guangdong" in why["placement"]["reasons"]
    alts = {a["pool"]: a for a in why["placement"]["alternatives"]}
    assert alts[grid.west["id"]]["excluded"].startswith("residency")


def test_job_lifecycle_refusals_and_cli(
    world: World,
    insurer: Party,
    logistics: Party,
    contract: Contract,
    grid: Grid,
    worker_url: WorkerAt,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the western pool's worker is "remote" (another process or machine would do): DATAVALLEY_POOLS
    monkeypatch.setenv("DATAVALLEY_POOLS", f"{grid.west['id']}={worker_url.url}")
    monkeypatch.setenv("DATAVALLEY_POOL_TOKEN", worker_url.token)
    # refusals: each changes nothing
    cases = [
        ({"contract_id": contract.id, "sql": COUNT_SQL, "cores": 0}, InvalidInput),
        ({"contract_id": contract.id, "sql": COUNT_SQL, "latency_class": "urgent"}, InvalidInput),
        ({"contract_id": contract.id, "sql": COUNT_SQL, "deadline_h": 1000}, InvalidInput),
        ({"contract_id": contract.id, "sql": COUNT_SQL, "kind": "training"}, InvalidInput),
        ({"contract_id": contract.id, "sql": COUNT_SQL, "surprise": 1}, InvalidInput),
        ({"contract_id": "c_nope", "sql": COUNT_SQL}, NotFound),
    ]
    for body, err in cases:
        with pytest.raises(err):
            insurer.client.request("POST", "/v1/compute/jobs", json=body)
    # a provider-only participant cannot submit, not even under a contract it provides
    with pytest.raises((Forbidden, NotFound)):
        logistics.client.request(
            "POST", "/v1/compute/jobs", json={"contract_id": contract.id, "sql": COUNT_SQL}
        )
    assert jobs_count(world) == 0
    # too big for every pool: recorded, unplaced, with each pool's reason
    big = submit(insurer, contract_id=contract.id, sql=COUNT_SQL, cores=4)
    assert big["status"] == "unplaced" and big["placement"]["reasons"][-1].startswith("unplaced")
    assert all(a["excluded"].startswith("size") for a in big["placement"]["alternatives"])
    with pytest.raises(NotFound):  # other participants do not see it
        logistics.client.get(f"/v1/compute/jobs/{big['id']}")
    with pytest.raises(NotFound):  # nor run it
        logistics.client.request("POST", f"/v1/compute/jobs/{big['id']}/run", json={})
    with pytest.raises(Forbidden):  # placement rounds are the operator's
        insurer.client.request("POST", "/v1/compute/rounds")
    again = world.operator.request("POST", "/v1/compute/rounds").json()
    assert again["data"] == {"jobs": 1, "method": "milp", "placed": 0} and again["receipts"]

    # a batch job submitted at midnight in China waits for Guizhou's low-carbon hours
    t = world.clock.now.replace(minute=0, second=0, microsecond=0)
    while t.hour != 16 or t <= world.clock.now:  # the next midnight in China, after the contracts began
        t += timedelta(hours=1)
    world.clock.now = t
    job = submit(insurer, contract_id=contract.id, sql=COUNT_SQL, latency_class="batch", deadline_h=24)
    assert job["status"] == "placed" and job["pool_id"] == grid.west["id"]
    assert job["start_at"] > world.clock.now.isoformat()
    assert any("time-shifted" in r for r in job["placement"]["reasons"])
    with pytest.raises(Conflict, match="carbon-aware shift"):
        insurer.client.request("POST", f"/v1/compute/jobs/{job['id']}/run", json={})
    assert insurer.client.get(f"/v1/compute/jobs/{job['id']}")["status"] == "placed"

    # the CLI: topology, submit, explain, clear errors with exit codes
    home = ["--home", str(world.home), "--token", insurer.token]
    code, out, _ = run(capsys, *home, "--json", "pools", "topology")
    assert code == 0 and json.loads(out)["version"] and len(json.loads(out)["clusters"]) == 10
    code, out, _ = run(
        capsys,
        *home,
        "--json",
        "jobs",
        "submit",
        COUNT_SQL,
        "--contract",
        contract.id,
        "--latency-class",
        "interactive",
    )
    assert code == 0
    now = json.loads(out)["data"]
    # interactive: starts on submission (the CLI's exchange runs on the real clock)
    assert now["pool_id"] == grid.west["id"] and now["status"] == "placed" and now["start_at"]
    code, out, _ = run(capsys, *home, "jobs", "explain", now["id"])
    assert code == 0 and grid.west["id"] in out and "east→west" in out
    # run through the API: the job goes to the remote worker named in DATAVALLEY_POOLS, no local process
    inter = submit(insurer, contract_id=contract.id, sql=COUNT_SQL, latency_class="interactive")
    ran = insurer.client.request("POST", f"/v1/compute/jobs/{inter['id']}/run", json={}).json()
    assert ran["job"]["status"] == "done" and worker_url.worker.served == 1
    code, _, err = run(capsys, *home, "jobs", "submit", COUNT_SQL, "--contract", contract.id, "--cores", "0")
    assert code == 2 and "cores" in err
    code, _, err = run(capsys, *home, "jobs", "status", "job_missing")
    assert code != 0 and "does not exist" in err
    assert jobs_count(world) == 4


def test_pools_are_reviewed_like_products(world: World, insurer: Party) -> None:
    cloud = onboard(world, "Zhangjiakou Cloud", ["provider"])
    with pytest.raises(Forbidden):
        insurer.client.request(
            "POST", "/v1/compute/pools", json={"name": "x", "cluster": "wuhu", "cores": 2, "price": 30}
        )
    for body in (
        {"name": "x", "cluster": "atlantis", "cores": 2, "price": 30},
        {"name": "x", "cluster": "wuhu", "cores": 0, "price": 30},
        {"name": "x", "cluster": "wuhu", "cores": 2, "price": 30, "province": "guizhou"},
        {"name": "x", "cluster": "wuhu", "cores": 2, "price": 30, "green_share": 1.5},
        {"name": "x", "cluster": "wuhu", "cores": 2, "price": 30, "windows": [[25, 3]]},
    ):
        with pytest.raises(InvalidInput):
            cloud.client.request("POST", "/v1/compute/pools", json=body)
    hot = cloud.client.request(
        "POST",
        "/v1/compute/pools",
        json={"name": "hot", "cluster": "zhangjiakou", "cores": 2, "price": 30, "pue": 1.4},
    ).json()["data"]
    cloud.client.product_action(hot["product_id"], "submit")
    with pytest.raises(Conflict, match="pue_target"):
        world.operator.product_action(hot["product_id"], "review", {"approve": True})
    ok = register_pool(world, cloud, name="cool", cluster="zhangjiakou", cores=2, price=30)
    assert ok["pue"] == 1.25 and ok["west"] is False and ok["grid_factor"] == 0.7252
    listed = insurer.client.get("/v1/compute/pools")["items"]
    assert [p["id"] for p in listed] == [ok["id"]]  # the unlisted pool is not visible to others
    product = insurer.client.get_product(ok["product_id"])
    assert product.kind.value == "compute_pool" and product.price.model.value == "per_core_hour"
    with pytest.raises(InvalidInput, match="priced per core-hour"):
        cloud.client.create_product(
            name="p",
            kind="compute_pool",
            resource_ids=["r"],
            price={"model": "per_query", "amount": 1},
            terms={"purposes": ["compute"], "pool_id": ok["id"]},
        )
    # a pool product cannot be created by hand on somebody else's pool
    other = onboard(world, "Pirate Cloud", ["provider"])
    with pytest.raises((Forbidden, InvalidInput)):
        other.client.create_product(
            name="p",
            kind="compute_pool",
            resource_ids=["r"],
            price={"model": "per_core_hour", "amount": 1},
            terms={"purposes": ["compute"], "pool_id": ok["id"]},
        )


def test_worker_refuses_without_token_and_malformed_jobs(worker_url: WorkerAt, tmp_path: Path) -> None:
    url, token = worker_url.url, worker_url.token
    assert httpx.get(f"{url}/v1/health").json()["cores"] == 1
    r = httpx.post(f"{url}/v1/jobs", json={"job_id": "x"})
    assert r.status_code == 401
    auth = {"Authorization": f"Bearer {token}"}
    bad = [
        {"job_id": "../etc", "cores": 1},
        {"job_id": "j", "cores": 2},
        {"job_id": "j", "cores": 1, "engine": "bash", "sql": "x", "epsilon": 1, "rules": {}, "tables": []},
        {
            "job_id": "j",
            "cores": 1,
            "sql": "SELECT 1",
            "epsilon": 1,
            "rules": {},
            "tables": [{"name": "Bad-Name", "format": "csv", "columns": {"a": "integer"}, "data_b64": ""}],
        },
        {
            "job_id": "j",
            "cores": 1,
            "sql": "SELECT 1",
            "epsilon": 1,
            "rules": {},
            "tables": [{"name": "t", "format": "csv", "columns": {"a": "integer"}, "data_b64": "***"}],
        },
    ]
    for body in bad:
        r = httpx.post(f"{url}/v1/jobs", json=body, headers=auth)
        assert r.status_code == 422, (body, r.text)
    r = httpx.post(f"{url}/v1/jobs", content=b"not json", headers=auth)
    assert r.status_code == 422
    # a query outside the private SQL grammar is refused by the same compiler the node uses
    import base64

    data = base64.b64encode(b"a\n1\n2\n").decode()
    r = httpx.post(
        f"{url}/v1/jobs",
        headers=auth,
        json={
            "job_id": "j",
            "cores": 1,
            "sql": "SELECT a FROM t",
            "epsilon": 1.0,
            "rules": {"min_group_size": 2},
            "tables": [{"name": "t", "format": "csv", "columns": {"a": "integer"}, "data_b64": data}],
        },
    )
    assert r.status_code == 422 and "a" not in r.json().get("rows", [])
    assert not any((tmp_path / "work").iterdir()), "staged data is deleted"


@pytest.mark.slow
def test_the_worker_runs_the_same_job_on_duckdb_and_spark(worker_url: WorkerAt, tmp_path: Path) -> None:
    """The protocol's two engines give the same exact aggregates (Spark local[cores], started once)."""
    import base64

    from datavalley import demo_data

    url, token = worker_url.url, worker_url.token
    path = demo_data.write_trips(tmp_path / "trips.csv", 400)
    body = {
        "job_id": "j1",
        "cores": 1,
        "sql": COUNT_SQL,
        "epsilon": 0.5,
        "rules": {
            "privacy_unit": "driver_id",
            "min_group_size": 2,
            "max_rows_per_unit": 10,
            "max_groups_per_unit": 2,
            "public_keys": {"dest_province": list(demo_data.PROVINCES)},
        },
        "tables": [
            {
                "name": "trips",
                "format": "csv",
                "data_b64": base64.b64encode(path.read_bytes()).decode(),
                "columns": {
                    "trip_id": "text",
                    "driver_id": "integer",
                    "driver_phone": "integer",
                    "driver_name": "text",
                    "origin_city": "text",
                    "dest_city": "text",
                    "dest_province": "text",
                    "distance_km": "integer",
                    "fare_cny": "integer",
                    "departed_at": "timestamp",
                    "month": "text",
                },
            }
        ],
    }
    auth = {"Authorization": f"Bearer {token}"}
    duck = httpx.post(f"{url}/v1/jobs", json=body, headers=auth, timeout=120).json()
    spark = httpx.post(f"{url}/v1/jobs", json={**body, "engine": "spark"}, headers=auth, timeout=300).json()
    assert duck["engine"] == "duckdb" and spark["engine"] == "spark", spark
    assert duck["digest"] == spark["digest"] and duck["columns"] == spark["columns"]
    assert sorted(map(tuple, duck["rows"])) == sorted(map(tuple, spark["rows"]))
    assert sum(r[-1] for r in duck["rows"]) > 0 and duck["core_seconds"] >= 1
