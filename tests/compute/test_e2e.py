"""A private SQL job placed by the scheduler on a western pool, run by that pool's worker process,
metered on the consumer's pool contract (core-hours → money, energy, emissions) and on the ledger."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from compute.conftest import COUNT_SQL, Grid
from conftest import World
from datavalley.compute import jobs, topology
from datavalley.errors import Conflict
from datavalley.market.model import Contract
from market.conftest import Party, assert_money_ok


def test_private_sql_job_runs_on_the_western_pool_and_is_settled(
    world: World, insurer: Party, contract: Contract, grid: Grid
) -> None:
    c = insurer.client
    sub = c.request(
        "POST",
        "/v1/compute/jobs",
        json={"contract_id": contract.id, "sql": COUNT_SQL, "epsilon": 0.5, "latency_class": "interactive"},
    ).json()
    job = sub["data"]
    assert sub["receipts"], "submission and placement are on the ledger"
    # general data from Guangdong: both pools allowed; the western one is cheaper and greener
    assert job["status"] == "placed" and job["pool_id"] == grid.west["id"]
    assert job["constraints"]["data_province"] == "guangdong"
    assert job["constraints"]["allowed_provinces"] is None
    why = c.get(f"/v1/compute/jobs/{job['id']}/explain")
    alts = {a["pool"]: a for a in why["placement"]["alternatives"]}
    assert alts[grid.east["id"]]["cost_fen"] > alts[grid.west["id"]]["cost_fen"]
    assert alts[grid.east["id"]]["kg_co2"] > alts[grid.west["id"]]["kg_co2"]
    assert any("east→west" in r for r in why["placement"]["reasons"])
    assert why["placement"]["method"] in ("milp", "milp-time-limit")

    before = c.get_contract(grid.contracts[grid.west["id"]])
    # a node that died right after taking the job left it running: the next run resumes it
    me = world.exchange.authenticate(insurer.token)
    world.exchange.run(me, jobs.start_job, job["id"], render=lambda j: {"status": j.status})
    out = c.request("POST", f"/v1/compute/jobs/{job['id']}/run", json={}).json()
    assert out["pool"]["id"] == grid.west["id"] and out["pool"]["engine"] == "duckdb"
    assert out["result"]["columns"] == ["dest_province", "trips"] and out["result"]["cached"] is False
    done = out["job"]
    assert done["status"] == "done" and done["core_seconds"] >= 1
    # money: core-seconds × 28 fen per core-hour, rounded up, released from the pool contract's escrow
    assert done["amount"] == math.ceil(done["core_seconds"] * 28 / 3600)
    after = c.get_contract(grid.contracts[grid.west["id"]])
    assert after.released - before.released == done["amount"] and after.quantity == done["core_seconds"]
    # energy and emissions from the pool's PUE, Guizhou's grid and the green share
    ch = done["core_seconds"] / 3600
    assert done["energy_kwh"] == pytest.approx(ch * 10 / 1000 * 1.15)
    f = topology.PROVINCES["guizhou"].grid_factor
    assert 0.5 * done["energy_kwh"] * f * 0.6 < done["kg_co2"] < 0.5 * done["energy_kwh"] * f * 1.4
    stmt = c.get("/v1/compute/statement")
    assert stmt["lines"][0]["job_id"] == job["id"] and stmt["totals"]["amount"] == done["amount"]
    # the consumer's money statement carries the same compute lines beside the escrow postings
    period = (world.clock.now - timedelta(hours=1), world.clock.now + timedelta(hours=1))
    money = c.statement(*period)
    assert money["compute"]["totals"] == stmt["totals"]
    # settled to the pool provider: the release (minus the exchange fee) is on its statement
    cs = grid.cloud.client.contract_statement(grid.contracts[grid.west["id"]])
    paid = [x for x in grid.cloud.client.statement(*period)["lines"] if x["txn"] == "escrow.release"]
    assert sum(x["amount"] for x in paid) == cs["provider_net"] == done["amount"] - cs["fees"]
    assert out["receipts"], "the metering is on the ledger"
    # a finished job does not run again; the data contract was charged once (the private SQL use)
    with pytest.raises(Conflict, match="only placed jobs start"):
        c.request("POST", f"/v1/compute/jobs/{job['id']}/run", json={})
    assert c.get_contract(contract.id).uses == 1
    assert c.get_contract(grid.contracts[grid.west["id"]]).uses == 1
    assert_money_ok(world)
