"""Private SQL through the API: a consumer's query under its contract, answered on the provider's node —
noise and suppression, the budget drained and never overdrawn, repeats free, bad queries charge nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import World
from datavalley import demo_data
from datavalley.errors import BudgetExhausted, Conflict, InvalidInput, NotFound, PolicyViolation
from datavalley.market.model import Contract
from datavalley.node.analysis import analyse_source, location_of, registration_payload
from datavalley.node.registry import NodeRegistry
from market.conftest import Party, negotiate

PROVINCES = demo_data.PROVINCES


@pytest.fixture
def trips_file(tmp_path: Path) -> Path:
    return demo_data.write_trips(tmp_path / "trips.csv", 3_000)


@pytest.fixture
def contract(world: World, logistics: Party, insurer: Party, trips_file: Path) -> Contract:
    analysis = analyse_source(str(trips_file))
    rid = logistics.client.register_resource(
        name="Freight trips",
        sector="transport",
        lawful_source="driver contracts",
        analysis=registration_payload(analysis),
        published=True,
    ).value.id
    NodeRegistry(world.home).record(rid, location_of(analysis.source, analysis.fingerprint))
    world.operator.resource_action(rid, "classification", {"grade": "general", "reason": "ok"})
    product = logistics.client.create_product(
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
                    "public_keys": {"dest_province": list(PROVINCES)},
                },
            },
        },
    ).value
    logistics.client.product_action(product.id, "submit")
    world.operator.product_action(product.id, "review", {"approve": True})
    return negotiate(logistics, insurer, product.id, max_uses=20)


COUNT_SQL = "SELECT dest_province, COUNT(*) AS trips FROM trips GROUP BY dest_province"


def test_query_releases_noisy_aggregates_and_meters_the_contract(
    world: World, insurer: Party, contract: Contract, trips_file: Path
) -> None:
    answer = insurer.client.query(contract.id, COUNT_SQL, epsilon=0.5)
    assert answer["cached"] is False and answer["charged"] == pytest.approx(0.5)
    assert answer["budget_left"] == pytest.approx(1.5) and answer["columns"] == ["dest_province", "trips"]
    released = {row[0]: row[1] for row in answer["rows"]}
    # public keys: every declared province is either released or counted as suppressed (noisy units < k)
    assert set(released) <= set(PROVINCES) and len(released) + answer["suppressed_groups"] == len(PROVINCES)
    import csv

    with trips_file.open(encoding="utf-8") as fh:
        truth: dict[str, int] = {}
        for r in csv.DictReader(fh):
            truth[r["dest_province"]] = truth.get(r["dest_province"], 0) + 1
    for i, (province, noisy) in enumerate(released.items()):
        cell = answer["noise"][i][1]
        lo, hi = cell["ci95"]
        assert cell["scale"] > 0 and lo <= noisy <= hi
        # contributions are bounded (≤ 2 provinces × 10 trips per driver), so the truth is an upper bound
        assert noisy <= truth[province] + 5 * cell["scale"]
    after = insurer.client.get_contract(contract.id)
    assert after.uses == 1 and after.budget_spent == pytest.approx(0.5) and after.released == 800
    # the same query again: the cached release, no cost, no use
    again = insurer.client.query(
        contract.id,
        "select dest_province,   COUNT(*) as trips\nFROM trips GROUP BY dest_province",
        epsilon=0.5,
    )
    assert again["cached"] is True and again["charged"] == 0 and again["rows"] == answer["rows"]
    assert insurer.client.get_contract(contract.id).uses == 1


def test_budget_drains_and_a_query_beyond_it_releases_nothing(insurer: Party, contract: Contract) -> None:
    sums = "SELECT dest_province, AVG(fare_cny) AS fare FROM trips GROUP BY dest_province"
    insurer.client.query(contract.id, sums, epsilon=1.0)
    insurer.client.query(contract.id, COUNT_SQL, epsilon=0.75)
    with pytest.raises(BudgetExhausted, match="budget"):
        insurer.client.query(contract.id, "SELECT COUNT(*) AS n FROM trips", epsilon=0.5)
    c = insurer.client.get_contract(contract.id)
    assert c.budget_spent == pytest.approx(1.75) and c.uses == 2


def test_bad_queries_are_refused_before_anything_is_spent(
    world: World, logistics: Party, insurer: Party, contract: Contract
) -> None:
    with pytest.raises(PolicyViolation):
        insurer.client.query(contract.id, "SELECT driver_id, fare_cny FROM trips")
    with pytest.raises(InvalidInput):
        insurer.client.query(contract.id, "SELEC COUNT(*) FROM trips")
    with pytest.raises(InvalidInput):
        insurer.client.query(contract.id, "SELECT COUNT(*) FROM trips WHERE no_such_column = 1")
    with pytest.raises(PolicyViolation):
        insurer.client.query(contract.id, "SELECT COUNT(*) FROM read_csv('/etc/passwd')")
    assert insurer.client.get_contract(contract.id).budget_spent == 0
    with pytest.raises(NotFound):  # not a party
        logistics.client.query("c_unknown", COUNT_SQL)
    insurer.client.contract_action(contract.id, "terminate", {"reason": "done"})
    with pytest.raises(PolicyViolation, match="TERMINATED"):
        insurer.client.query(contract.id, COUNT_SQL)


def test_changed_data_is_not_queried_under_the_old_registration(
    insurer: Party, contract: Contract, trips_file: Path
) -> None:
    with trips_file.open("a", encoding="utf-8") as fh:
        fh.write(
            "T9999999,110101199001011234,13800000000,张三,贵阳,遵义,贵州,10,20,"
            "2026-02-01 00:00:00,2026-02\r\n"
        )
    with pytest.raises(Conflict, match="not the registered version"):
        insurer.client.query(contract.id, COUNT_SQL)


def test_query_from_the_cli(
    world: World, insurer: Party, contract: Contract, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli.test_cli import run

    args = ["--home", str(world.home), "--token", insurer.token]
    code, out, _ = run(
        capsys, *args, "query", "run", COUNT_SQL, "--contract", contract.id, "--epsilon", "0.25"
    )
    assert code == 0 and "±95%" in out and "budget left 1.75" in out
    code, out, _ = run(
        capsys, *args, "--json", "query", "run", COUNT_SQL, "--contract", contract.id, "--epsilon", "0.25"
    )
    assert code == 0 and json.loads(out)["cached"] is True
    code, _, err = run(capsys, *args, "query", "run", "SELECT * FROM trips", "--contract", contract.id)
    assert code == 7 and err.strip()  # PolicyViolation: the message says what is not allowed
