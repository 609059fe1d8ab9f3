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


# --- one draw per (contract, query, data version); failures metered; personal keys refused ------------

from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from sqlite3 import connect as sqlite_connect  # noqa: E402

from sqlalchemy import select  # noqa: E402

from datavalley.errors import DatavalleyError  # noqa: E402
from datavalley.identity.model import Principal  # noqa: E402
from datavalley.market.tables import ContractRow, UseRow  # noqa: E402
from datavalley.node import query as node_query  # noqa: E402


def _uses(world: World, contract_id: str) -> list[tuple[float, float]]:
    def read(ctx: object) -> list[tuple[float, float]]:
        rows = ctx.session.execute(  # type: ignore[attr-defined]
            select(UseRow.privacy_cost, UseRow.privacy_delta).where(UseRow.contract_id == contract_id)
        )
        return [(float(a), float(b)) for a, b in rows]

    return world.exchange.read(Principal.system(), read)


def test_concurrent_identical_queries_get_one_answer_and_one_charge(
    world: World, insurer: Party, contract: Contract
) -> None:
    sql = "SELECT dest_province, AVG(fare_cny) AS fare, COUNT(*) AS n FROM trips GROUP BY dest_province"
    clients = [world.client_for(insurer.token) for _ in range(8)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda c: c.query(contract.id, sql, epsilon=0.25), clients))
    assert len({json.dumps(a["rows"]) for a in answers}) == 1  # one draw, whoever asked
    assert sorted(a["cached"] for a in answers) == [False] + [True] * 7
    assert sum(a["charged"] for a in answers) == pytest.approx(0.25)
    c = insurer.client.get_contract(contract.id)
    assert c.uses == 1 and c.budget_spent == pytest.approx(0.25)
    assert answers[0]["intervals"].startswith("ci95 covers the added noise only")


def test_a_lost_release_is_charged_again_and_delta_is_charged(
    world: World, insurer: Party, contract: Contract
) -> None:
    first = insurer.client.query(contract.id, COUNT_SQL, epsilon=0.25)
    assert insurer.client.query(contract.id, COUNT_SQL, epsilon=0.25)["cached"] is True
    with sqlite_connect(world.home / "node" / "releases.db") as db:  # the node's store is lost
        db.execute("DELETE FROM outcomes")
    again = insurer.client.query(contract.id, COUNT_SQL, epsilon=0.25)
    assert again["cached"] is False and again["charged"] == pytest.approx(0.25)
    assert again["use_id"] != first["use_id"]
    c = insurer.client.get_contract(contract.id)
    assert c.uses == 2 and c.budget_spent == pytest.approx(0.5)
    # δ spent by DP thresholding (keys found in the data) is charged too; public keys spend none
    thresholded = insurer.client.query(
        contract.id, "SELECT origin_city, COUNT(*) AS n FROM trips GROUP BY origin_city", epsilon=0.25
    )
    assert thresholded["delta"] > 0 and again["delta"] == 0
    assert sorted(_uses(world, contract.id)) == sorted(
        [(0.25, 0.0), (0.25, 0.0), (0.25, thresholded["delta"])]
    )

    def spent(ctx: object) -> float:
        row = ctx.session.get(ContractRow, contract.id)  # type: ignore[attr-defined]
        return float(row.delta_spent)

    assert world.exchange.read(Principal.system(), spent) == pytest.approx(thresholded["delta"])


def test_a_failure_on_the_data_is_generic_charged_and_repeats_identically(
    world: World, insurer: Party, contract: Contract, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A size limit the query exceeds only because of the data (more groups than the engine returns).
    monkeypatch.setattr(node_query, "ENGINE_MAX_GROUPS", 1)
    sql = "SELECT origin_city, COUNT(*) AS n FROM trips GROUP BY origin_city"
    with pytest.raises(DatavalleyError) as first:
        insurer.client.query(contract.id, sql, epsilon=0.25)
    assert type(first.value) is DatavalleyError and first.value.message == node_query.FAILED_MESSAGE
    c = insurer.client.get_contract(contract.id)
    assert c.uses == 1 and c.budget_spent == pytest.approx(0.25)  # charged like an answer
    with pytest.raises(DatavalleyError) as second:
        insurer.client.query(contract.id, sql, epsilon=0.25)
    assert second.value.message == first.value.message
    assert insurer.client.get_contract(contract.id).uses == 1  # the stored outcome: no second charge


def test_side_channels_and_personal_keys_are_refused_through_the_api_before_any_charge(
    insurer: Party, contract: Contract
) -> None:
    attacks = [
        "SELECT COUNT(*) AS n FROM trips WHERE departed_at > '2026-02-30 00:00:00'",
        "SELECT COUNT(*) AS n FROM trips WHERE distance_km > 1e308 * 10",
        "SELECT COUNT(*) AS n FROM trips WHERE " + " OR ".join(f"month = '{i}'" for i in range(300)),
        "SELECT COUNT(*) AS n FROM trips WHERE " + " + ".join(["fare_cny"] * 400) + " > 0",
    ]
    for sql in attacks:
        with pytest.raises(InvalidInput):
            insurer.client.query(contract.id, sql, epsilon=0.25)
    for column in ("driver_name", "driver_phone"):  # classified as personal information at registration
        with pytest.raises(PolicyViolation, match="personal information"):
            insurer.client.query(
                contract.id, f"SELECT {column}, COUNT(*) AS n FROM trips GROUP BY {column}", epsilon=0.25
            )
    assert insurer.client.get_contract(contract.id).uses == 0
    ok = insurer.client.query(
        contract.id,
        "SELECT dest_province, COUNT(*) AS n FROM trips WHERE fare_cny * 9223372036854775807 > 1e308 "
        "AND departed_at > '2026-01-01 00:00:00' GROUP BY dest_province HAVING n / 0 > 1",
        epsilon=0.25,
    )
    assert ok["rows"] == [] and ok["charged"] == pytest.approx(0.25)
    assert insurer.client.get_contract(contract.id).uses == 1
