"""Rights and status govern every use: each state that must stop use × each kind of use (private SQL through
the node's query service, a PSI session between two nodes, a plain metered use) is refused with its precise
status and reason, and nothing is computed, released or charged. Status changes propagate to contracts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from conftest import World
from datavalley import demo_data
from datavalley.errors import Conflict, DatavalleyError, PolicyViolation
from datavalley.events import EventRow
from datavalley.market.model import Contract
from datavalley.node.analysis import analyse_source, location_of, registration_payload
from datavalley.node.psi import run_contract_psi
from datavalley.node.registry import NodeRegistry
from datavalley.psi import Mode, Workers
from datavalley.rights.tables import ResourceRow, RightRow
from market.conftest import Party, assert_money_ok, negotiate, onboard, use
from node.psi_fixtures import Node, list_psi_product, node_registry, psi_workers, serve_provider

__all__ = ["node_registry", "psi_workers", "serve_provider"]

SQL = "SELECT dest_province, COUNT(*) AS trips FROM trips GROUP BY dest_province"
SQL_TERMS = {
    "purposes": ["insurance-pricing"],
    "max_uses": 10,
    "tables": {"trips": ""},
    "privacy": {
        "min_group_size": 10,
        "epsilon": 2.0,
        "privacy_unit": "driver_id",
        "rules": {"clamps": {"fare_cny": [0, 4000]}, "max_rows_per_unit": 10, "max_groups_per_unit": 2},
    },
}


@dataclass
class Deal:
    """A registered trips file behind a private-analytics and a PSI product, a FINALIZED contract on each."""

    resource_id: str
    sql: Contract
    psi: Contract


@dataclass
class Setup:
    world: World
    provider: Party
    consumer: Party
    other: Party
    node: Node
    ids: Path
    tmp: Path
    workers: Workers
    registry: NodeRegistry
    deal: Deal = None  # type: ignore[assignment]

    def new_deal(self) -> Deal:
        n = len(list(self.tmp.glob("trips-*.csv")))
        trips = demo_data.write_trips(self.tmp / f"trips-{n}.csv", 400 + n)
        analysis = analyse_source(str(trips))
        rid = self.provider.client.register_resource(
            name=f"Freight trips {n}",
            sector="transport",
            lawful_source="driver service contracts",
            analysis=registration_payload(analysis),
            published=True,
        ).value.id
        loc = location_of(analysis.source, analysis.fingerprint)
        NodeRegistry(self.world.home).record(rid, loc)  # the exchange's embedded node (private SQL)
        self.registry.record(rid, loc)  # the provider's PSI node
        op = self.world.operator
        op.resource_action(rid, "classification", {"grade": "general", "reason": "reviewed"})
        product = self.provider.client.create_product(
            name="Trip insights",
            kind="private_analytics",
            resource_ids=[rid],
            price={"model": "per_query", "amount": 400},
            terms={**SQL_TERMS, "tables": {"trips": rid}},
        ).value
        self.provider.client.product_action(product.id, "submit")
        op.product_action(product.id, "review", {"approve": True})
        sql = negotiate(self.provider, self.consumer, product.id, max_uses=10, valid_days=30)
        psi_product = list_psi_product(self.world, self.provider, rid)
        psi = negotiate(
            self.provider, self.consumer, psi_product.id, purpose="credit-risk", max_uses=10, valid_days=30
        )
        self.deal = Deal(rid, sql, psi)
        return self.deal


@pytest.fixture
def setup(
    world: World,
    logistics: Party,
    insurer: Party,
    tmp_path: Path,
    node_registry: NodeRegistry,
    serve_provider: Callable[..., Node],
    psi_workers: Workers,
) -> Setup:
    """The provider's node serving PSI, a funded consumer with its ID list, and a third participant who
    objects or receives a transfer; :meth:`Setup.new_deal` adds a resource with two live contracts."""
    ids = tmp_path / "customers.txt"
    ids.write_text("\n".join(f"1390000{i:04d}" for i in range(30)) + "\n", "utf-8")
    other = onboard(world, "Qianlong Rural Bank", ["consumer", "provider"])
    s = Setup(world, logistics, insurer, other, serve_provider(), ids, tmp_path, psi_workers, node_registry)
    s.new_deal()
    return s


def _sql(s: Setup) -> Any:
    return s.consumer.client.query(s.deal.sql.id, SQL, epsilon=0.5)


def _psi(s: Setup) -> Any:
    return run_contract_psi(
        s.consumer.client,
        s.consumer.participant_id,
        s.consumer.key,
        s.node.url,
        s.deal.psi.id,
        Mode.CARDINALITY,
        s.ids,
        s.tmp / "consumer-node",
        workers=s.workers,
    )


def _plain(s: Setup) -> Any:
    return use(s.consumer, s.deal.sql.id)


USES: dict[str, Callable[[Setup], Any]] = {"private_sql": _sql, "psi": _psi, "record_use": _plain}


def _objection(s: Setup) -> str:
    return s.other.client.file_objection(s.deal.resource_id, "these trips are ours").value.id


def _upheld(s: Setup) -> None:
    s.world.operator.resolve_objection(_objection(s), upheld=True, resolution="the source is not lawful")


def _revoked(s: Setup) -> None:
    s.world.operator.resource_action(s.deal.resource_id, "revoke", {"reason": "unlawful source"})


def _cancelled(s: Setup) -> None:
    s.provider.client.resource_action(
        s.deal.resource_id, "cancel", {"reason": "withdrawn", "terminate_contracts": True}
    )


def _right_revoked(s: Setup) -> None:
    for c in (s.deal.sql, s.deal.psi):
        s.provider.client.revoke_right(c.right_ids[0], "consumer breached the terms")


def _contracts_suspended(s: Setup, suspended: bool) -> None:
    for c in (s.deal.sql, s.deal.psi):
        s.provider.client.contract_action(c.id, "suspend", {"suspended": suspended, "reason": "audit"})


def _provider_status(s: Setup, action: str) -> None:
    s.world.operator.change_participant_status(s.provider.participant_id, action, "audit")


def _events(world: World, contract_id: str, prefix: str) -> list[EventRow]:
    with Session(world.exchange.engine) as db:
        rows = db.scalars(select(EventRow).where(EventRow.type.like(f"{prefix}%")).order_by(EventRow.id))
        return [e for e in rows if contract_id in e.subjects]


def _refused_everywhere(s: Setup, error: type[DatavalleyError], reason: str) -> None:
    """Each kind of use is refused with ``error`` and ``reason``; nothing is computed or charged."""
    uses = {c.id: s.world.operator.get_contract(c.id) for c in (s.deal.sql, s.deal.psi)}
    served = len(s.node.usages())
    for kind, attempt in USES.items():
        with pytest.raises(error) as caught:
            attempt(s)
        assert caught.value.details.get("reason") == reason, (kind, caught.value.message)
        assert caught.value.http_status == (409 if error is Conflict else 403)
    assert len(s.node.usages()) == served  # the provider's node computed nothing
    for cid, before in uses.items():
        after = s.world.operator.get_contract(cid)
        assert (after.uses, after.budget_spent, after.released) == (
            before.uses,
            before.budget_spent,
            before.released,
        )


def test_reversible_states_stop_every_kind_of_use_and_use_resumes_after(setup: Setup) -> None:
    """The control first (each kind of use is metered once), then each state that suspends use without
    ending the contracts: frozen by an objection, contracts suspended, the provider suspended, the term
    over, and last the provider's title transferred away."""
    s = setup
    check = s.consumer.client.check_use(s.deal.sql.id, purpose="insurance-pricing", region="CN")
    assert check["right_ids"] == [s.deal.sql.right_ids[0]] and check["resource_ids"] == [s.deal.resource_id]
    assert _sql(s)["charged"] == pytest.approx(0.5)
    assert _psi(s).cardinality >= 0
    assert _plain(s).value.contract_id == s.deal.sql.id
    assert (s.world.operator.get_contract(s.deal.sql.id).uses, len(s.node.usages())) == (2, 1)

    objection = _objection(s)
    _refused_everywhere(s, Conflict, "resource_frozen")
    s.world.operator.resolve_objection(objection, upheld=False, resolution="the holder proved the source")
    for c in (s.deal.sql, s.deal.psi):  # both parties were told when use stopped and when it may resume
        events = _events(s.world, c.id, "contract.resource_")
        assert [e.type for e in events] == ["contract.resource_frozen", "contract.resource_unfrozen"]
        assert {s.provider.participant_id, s.consumer.participant_id} <= set(events[0].subjects)

    _contracts_suspended(s, True)
    _refused_everywhere(s, PolicyViolation, "contract_suspended")
    _contracts_suspended(s, False)

    _provider_status(s, "suspend")
    _refused_everywhere(s, Conflict, "participant_suspended")
    _provider_status(s, "reinstate")

    s.world.clock.advance(days=31)
    _refused_everywhere(s, PolicyViolation, "contract_not_in_term")
    s.world.clock.advance(days=-31)

    assert _plain(s).value.contract_id == s.deal.sql.id  # every state above was lifted: use resumes
    s.provider.client.transfer_holding(s.deal.resource_id, s.other.participant_id)
    _refused_everywhere(s, Conflict, "provider_title_lost")
    for c in (s.deal.sql, s.deal.psi):
        assert s.world.operator.get_contract(c.id).state.value == "FINALIZED"
    assert_money_ok(s.world)


# status changes that end the registration or the consumer's right: contracts end, refunded
ENDING: dict[str, Callable[[Setup], None]] = {
    "objection_upheld": _upheld,
    "resource_revoked": _revoked,
    "resource_cancelled": _cancelled,
    "right_revoked": _right_revoked,
}


def test_status_changes_that_end_rights_terminate_the_contracts_refund_and_refuse_every_use(
    setup: Setup,
) -> None:
    s = setup
    for n, (state, reach) in enumerate(ENDING.items()):
        deal = s.deal if n == 0 else s.new_deal()
        before = {b.kind: b.balance for b in s.consumer.client.balances()}["available"]
        reach(s)
        _refused_everywhere(s, PolicyViolation, "contract_not_live")
        for c in (deal.sql, deal.psi):
            after = s.world.operator.get_contract(c.id)
            assert after.state.value == "TERMINATED" and after.termination_reason, state
            assert after.refunded == after.funded == c.prepayment > 0 and after.uses == 0
            [ended] = _events(s.world, c.id, "contract.governance_ended")
            assert ended.payload is not None and ended.payload["refunded"] == c.prepayment
            assert {s.provider.participant_id, s.consumer.participant_id} <= set(ended.subjects)
            assert _events(s.world, c.id, "contract.used") == []
        refunded = deal.sql.prepayment + deal.psi.prepayment
        assert {b.kind: b.balance for b in s.consumer.client.balances()}["available"] == before + refunded
    assert_money_ok(s.world)


def test_cancelling_under_live_contracts_is_refused_unless_the_provider_terminates_them(setup: Setup) -> None:
    s = setup
    _plain(s)  # one use paid: 400 released, 9 prepaid uses left in escrow
    with pytest.raises(Conflict, match="live contract") as caught:
        s.provider.client.resource_action(s.deal.resource_id, "cancel", {"reason": "withdrawn"})
    assert set(caught.value.details["contracts"]) == {s.deal.sql.id, s.deal.psi.id}
    assert s.provider.client.get_resource(s.deal.resource_id).status.value == "registered"
    assert s.world.operator.get_contract(s.deal.sql.id).state.value == "FINALIZED"
    _cancelled(s)
    sql = s.world.operator.get_contract(s.deal.sql.id)
    assert sql.state.value == "TERMINATED" and "withdrawn" in (sql.termination_reason or "")
    assert (sql.released, sql.refunded, sql.escrow) == (400, sql.funded - 400, 0)
    assert_money_ok(s.world)


def _db(world: World, stmt: Any) -> None:
    with Session(world.exchange.engine) as db, db.begin():
        db.execute(stmt)


# Defence in depth: states no service path leaves a live contract in (propagation ends it first), set
# directly in the database; record_use and private SQL must still refuse them.
DIRECT: dict[str, tuple[type[Any], str, Callable[[Setup], dict[str, Any]], type[DatavalleyError], str]] = {
    "resource_revoked": (
        ResourceRow,
        "resource",
        lambda s: {"status": "revoked"},
        Conflict,
        "resource_revoked",
    ),
    "resource_cancelled": (
        ResourceRow,
        "resource",
        lambda s: {"status": "cancelled"},
        Conflict,
        "resource_cancelled",
    ),
    "resource_expired": (
        ResourceRow,
        "resource",
        lambda s: {"valid_until": s.world.clock.now - timedelta(days=1)},
        Conflict,
        "resource_expired",
    ),
    "right_revoked": (RightRow, "right", lambda s: {"status": "revoked"}, PolicyViolation, "right_revoked"),
    "right_expired": (
        RightRow,
        "right",
        lambda s: {"valid_until": s.world.clock.now - timedelta(seconds=1)},
        PolicyViolation,
        "right_expired",
    ),
    "right_region": (
        RightRow,
        "right",
        lambda s: {"territories": ["HK"]},
        PolicyViolation,
        "right_out_of_scope",
    ),
    "right_purpose": (
        RightRow,
        "right",
        lambda s: {"purposes": ["marketing"]},
        PolicyViolation,
        "right_out_of_scope",
    ),
    "right_missing": (
        RightRow,
        "right",
        lambda s: {"holder_id": s.other.participant_id},
        PolicyViolation,
        "right_missing",
    ),
}


def test_record_use_refuses_states_set_behind_the_services_back(setup: Setup) -> None:
    s = setup
    for state, (table, which, values, error, reason) in DIRECT.items():
        key = s.deal.resource_id if which == "resource" else s.deal.sql.right_ids[0]
        changed = values(s)
        with Session(s.world.exchange.engine) as db, db.begin():
            row = db.get(table, key)
            original = {k: getattr(row, k) for k in changed}
            db.execute(update(table).where(table.id == key).values(**changed))
        for attempt in (_plain, _sql):
            with pytest.raises(error) as caught:
                attempt(s)
            assert caught.value.details.get("reason") == reason, (state, caught.value.message)
        with Session(s.world.exchange.engine) as db, db.begin():
            db.execute(update(table).where(table.id == key).values(**original))
    assert _plain(s).value.contract_id == s.deal.sql.id  # restored: the same use is allowed again
    after = s.world.operator.get_contract(s.deal.sql.id)
    assert (after.uses, after.budget_spent) == (1, 0.5)
