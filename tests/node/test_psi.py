"""PSI sessions bound to exchange contracts: two nodes over real HTTP, each checking the contract with the
exchange; one use per session, charged once and attested by the other side; aggregates released only
after the budget is reserved; refused sessions record nothing; the `psi` CLI drives the same."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner, Result

from conftest import World
from datavalley.errors import (
    BudgetExhausted,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    PolicyViolation,
    Unauthenticated,
)
from datavalley.keys import public_key_b64, write_private_key
from datavalley.node.psi import (
    ExchangeAuthoriser,
    ExchangePeers,
    dp_release,
    release_scales,
    run_contract_psi,
    session_digest,
)
from datavalley.privacy import noise
from datavalley.psi import (
    Bounds,
    ExactAggregate,
    Grant,
    LinesDataset,
    Mode,
    PsiOutcome,
    PsiUsage,
    Responder,
    Suite,
    Workers,
    run_psi,
)
from datavalley.psi.normalise import IdKind, NormalisationReport
from datavalley.psi.standalone import ContractTable
from market.conftest import Party
from node.psi_cli import app
from node.psi_fixtures import (
    Deal,
    Node,
    WatchedAuthoriser,
    bank,
    deal,
    exchange_url,
    make_deal,
    node_registry,
    provider_node,
    psi_workers,
    serve_provider,
    use_entries,
)

__all__ = [
    "bank",
    "deal",
    "exchange_url",
    "make_deal",
    "node_registry",
    "provider_node",
    "psi_workers",
    "serve_provider",
]


def consume(deal: Deal, node: Node, mode: Mode, workers: Workers, tmp_path: Path) -> PsiOutcome:
    """The consumer's node runs a session under its contract (its checks and metering via the exchange)."""
    return run_contract_psi(
        deal.consumer.client,
        deal.consumer.participant_id,
        deal.consumer.key,
        node.url,
        deal.contract.id,
        mode,
        deal.ids,
        tmp_path / "consumer-node",
        workers=workers,
    )


def rogue(
    party: Party, deal: Deal, node: Node, mode: Mode, workers: Workers, tmp_path: Path, contract_id: str = ""
) -> PsiOutcome:
    """A node that skips its own contract check (a local grant table): only the provider's check is left."""
    contract_id = contract_id or deal.contract.id
    return run_psi(
        responder=Responder(node.url, deal.provider.participant_id, deal.provider.key.public_key()),
        local=party.participant_id,
        signing_key=party.key,
        authoriser=ContractTable({contract_id: Grant(contract_id, mode, party.participant_id)}),
        dataset=LinesDataset(deal.ids, IdKind.PHONE),
        contract_id=contract_id,
        mode=mode,
        workdir=tmp_path / "rogue-node",
        columns=("fare_cny",) if mode is Mode.AGGREGATE else (),
        workers=workers,
    )


def nothing_recorded(world: World, deal: Deal, node: Node) -> None:
    contract = deal.provider.client.get_contract(deal.contract.id)
    assert (contract.uses, contract.budget_spent) == (0, 0.0)
    assert deal.provider.client.uses(deal.contract.id) == []
    assert use_entries(world, deal.contract.id) == []
    assert node.usages() == []


def test_intersection_over_http_is_one_use_recorded_by_the_provider_and_attested_by_the_consumer(
    world: World,
    deal: Deal,
    serve_provider: Callable[..., Node],
    psi_workers: Workers,
    tmp_path: Path,
) -> None:
    node = serve_provider()
    outcome = consume(deal, node, Mode.INTERSECTION, psi_workers, tmp_path)
    assert len(deal.truth) > 20 and outcome.cardinality == len(deal.truth)
    assert {value for _, value in outcome.intersection()} == deal.truth
    assert outcome.peer_set_size == len(deal.provider_phones)
    report = outcome.usage.normalisation
    lines = len(deal.ids.read_text("utf-8").splitlines())
    assert (report.records, report.invalid, report.duplicates) == (lines, {"unparseable": 1}, 1)
    contract = deal.consumer.client.get_contract(deal.contract.id)
    assert (contract.uses, contract.budget_spent) == (1, 0.0) and contract.released == 300
    [use] = deal.consumer.client.uses(deal.contract.id)
    assert use.operation == "dv:intersect" and use.request_digest == outcome.usage.transcript
    assert use_entries(world, deal.contract.id) == [
        ("contract.used", deal.provider.participant_id),
        ("contract.use_attested", deal.consumer.participant_id),
    ]
    [logged] = node.usages()
    assert logged["charged"] and logged["use_id"] == use.id and logged["outcome"] == "completed"
    assert logged["transcript"] == outcome.usage.transcript and logged["role"] == "responder"


def test_aggregate_release_is_noised_near_the_truth_charged_once_and_the_budget_then_refuses(
    world: World,
    deal: Deal,
    serve_provider: Callable[..., Node],
    psi_workers: Workers,
    tmp_path: Path,
) -> None:
    node = serve_provider()
    auth = node.responder.authoriser
    assert isinstance(auth, WatchedAuthoriser)
    outcome = consume(deal, node, Mode.AGGREGATE, psi_workers, tmp_path)
    assert outcome.cardinality == len(deal.truth) and outcome.aggregate is not None
    [exact] = auth.exact
    assert exact.count == len(deal.truth) and exact.bounds == {"fare_cny": Bounds(0, 4000)}
    # pre-aggregated per ID: each matched driver contributes the SUM of the fares of all its trips,
    # clamped to the per-ID bounds [0, 4000] before encryption
    assert exact.sums["fare_cny"] == sum(min(max(sum(deal.fares[p]), 0), 4000) for p in deal.truth)
    assert any(len(deal.fares[p]) > 1 for p in deal.truth)  # drivers with several trips are covered
    assert (
        "SUM(fare_cny) over all of the provider's rows of each ID"
        in outcome.aggregate.definitions["fare_cny"]
    )
    assert "[0, 4000]" in outcome.aggregate.definitions["fare_cny"]
    assert "distinct matched IDs" in outcome.aggregate.definitions["count"]
    plan = release_scales(10.0, exact.bounds)
    assert sum(cost for _, _, cost in plan.values()) <= 10.0
    released = outcome.aggregate
    assert [released] == auth.released and released.mechanism == "discrete_laplace(epsilon=10)"
    tolerance = {k: noise.accuracy("laplace", scale, 1e-9) for k, (_, scale, _) in plan.items()}
    # the count is the consumer's own (it sent it): released as is, no budget spent on it
    assert released.count == exact.count and set(plan) == {"fare_cny"}
    assert abs(released.sums["fare_cny"] - exact.sums["fare_cny"]) <= tolerance["fare_cny"]
    contract = deal.consumer.client.get_contract(deal.contract.id)
    assert contract.uses == 1 and contract.budget_spent == pytest.approx(10.0)
    [use] = deal.consumer.client.uses(deal.contract.id)
    digest = session_digest(deal.contract.id, outcome.session_id, Mode.AGGREGATE)
    assert use.privacy_cost == pytest.approx(10.0) and use.request_digest == digest
    assert use_entries(world, deal.contract.id) == [
        ("contract.used", deal.provider.participant_id),
        ("contract.use_attested", deal.consumer.participant_id),
    ]
    # the budget is spent: the consumer's node refuses before contacting the provider ...
    with pytest.raises(BudgetExhausted, match="exceeds the budget left"):
        consume(deal, node, Mode.AGGREGATE, psi_workers, tmp_path)
    # ... and a node that skips that check is refused by the provider: nothing released, nothing charged
    with pytest.raises(BudgetExhausted, match="exceeds the budget left"):
        rogue(deal.consumer, deal, node, Mode.AGGREGATE, psi_workers, tmp_path)
    assert len(auth.exact) == 1 and len(auth.released) == 1
    assert deal.consumer.client.get_contract(deal.contract.id).uses == 1
    assert len(use_entries(world, deal.contract.id)) == 2


class SpendsAfterOpen(WatchedAuthoriser):
    """The provider's authoriser; after granting, another session spends the whole budget (a race)."""

    def authorise(self, contract_id: str, peer: str, mode: Mode, set_size: int) -> Grant:
        grant = super().authorise(contract_id, peer, mode, set_size)
        self.client.record_use(
            contract_id,
            operation="dv:intersect",
            purpose="credit-risk",
            mode="aggregate",
            privacy_cost=10.0,
            request_digest="sha256:" + "0" * 64,
            node_key="psi:concurrent",
        )
        return grant


def test_a_refused_reservation_releases_nothing(
    world: World,
    deal: Deal,
    serve_provider: Callable[..., Node],
    psi_workers: Workers,
    tmp_path: Path,
) -> None:
    node = serve_provider(SpendsAfterOpen)
    auth = node.responder.authoriser
    assert isinstance(auth, SpendsAfterOpen)
    with pytest.raises(BudgetExhausted, match="exceeds the budget left"):
        consume(deal, node, Mode.AGGREGATE, psi_workers, tmp_path)
    assert len(auth.exact) == 1 and auth.released == []  # decrypted, reservation refused, never noised
    contract = deal.consumer.client.get_contract(deal.contract.id)
    assert contract.uses == 1 and contract.budget_spent == pytest.approx(10.0)  # the concurrent use only
    [logged] = node.usages()
    assert logged["outcome"] == "failed" and logged["release"] is None and not logged["charged"]


def test_dp_release_alone_noises_the_sums_and_spends_nothing_on_the_known_count() -> None:
    exact = ExactAggregate(
        "c_1", "psi_1", 500, {"a": 120_000, "b": -300}, {"a": Bounds(0, 400), "b": Bounds(-5, 2)}
    )
    plan = release_scales(3.0, exact.bounds)
    assert {k: s for k, (s, _, _) in plan.items()} == {"a": 400, "b": 5}
    # the whole ε goes to the two sums (1.5 each), none to the count the consumer already knows
    assert 3.0 * (1 - 1e-9) <= sum(cost for _, _, cost in plan.values()) <= 3.0
    assert plan["a"][1] == pytest.approx(400 / 1.5, rel=1e-6)
    out = [dp_release(3.0)(exact) for _ in range(50)]
    assert len({r.sums["a"] for r in out}) > 1  # noise is drawn per release
    for r in out:
        assert r.count == 500
        assert abs(r.sums["a"] - 120_000) <= noise.accuracy("laplace", plan["a"][1], 1e-9)
        assert abs(r.sums["b"] + 300) <= noise.accuracy("laplace", plan["b"][1], 1e-9)


def test_peers_without_the_contract_or_a_live_contract_are_refused_and_nothing_is_recorded(
    world: World,
    deal: Deal,
    bank: Party,
    serve_provider: Callable[..., Node],
    psi_workers: Workers,
    tmp_path: Path,
) -> None:
    node = serve_provider()
    # a participant without a contract: its own node cannot even see the contract ...
    with pytest.raises(NotFound, match=deal.contract.id):
        run_contract_psi(
            bank.client,
            bank.participant_id,
            bank.key,
            node.url,
            deal.contract.id,
            Mode.CARDINALITY,
            deal.ids,
            tmp_path / "bank-node",
            workers=psi_workers,
        )
    # ... and if it tries anyway, the provider refuses it: it is not the other party
    with pytest.raises(Forbidden, match=f"participant {bank.participant_id} is not a party"):
        rogue(bank, deal, node, Mode.CARDINALITY, psi_workers, tmp_path)
    # a contract the provider is not party to (or none at all)
    with pytest.raises(NotFound, match="c_unknown"):
        rogue(deal.consumer, deal, node, Mode.CARDINALITY, psi_workers, tmp_path, contract_id="c_unknown")
    # the provider's own node is not the receiver: it cannot start a session either
    with pytest.raises(PolicyViolation, match="receiver"):
        run_contract_psi(
            deal.provider.client,
            deal.provider.participant_id,
            deal.provider.key,
            node.url,
            deal.contract.id,
            Mode.CARDINALITY,
            deal.ids,
            tmp_path / "p",
            workers=psi_workers,
            responder_participant=deal.consumer.participant_id,
        )
    # a suspended contract: refused by the consumer's node, and by the provider's
    deal.provider.client.contract_action(deal.contract.id, "suspend", {"suspended": True, "reason": "audit"})
    with pytest.raises(PolicyViolation, match="is suspended"):
        consume(deal, node, Mode.CARDINALITY, psi_workers, tmp_path)
    with pytest.raises(PolicyViolation, match="is suspended"):
        rogue(deal.consumer, deal, node, Mode.CARDINALITY, psi_workers, tmp_path)
    deal.provider.client.contract_action(deal.contract.id, "suspend", {"suspended": False})
    # a terminated contract
    deal.consumer.client.contract_action(deal.contract.id, "terminate", {"reason": "no longer needed"})
    with pytest.raises(PolicyViolation, match="is TERMINATED"):
        consume(deal, node, Mode.CARDINALITY, psi_workers, tmp_path)
    with pytest.raises(PolicyViolation, match="is TERMINATED"):
        rogue(deal.consumer, deal, node, Mode.CARDINALITY, psi_workers, tmp_path)
    nothing_recorded(world, deal, node)


def test_a_mode_outside_the_contract_is_refused_by_both_nodes(
    world: World,
    make_deal: Callable[..., Deal],
    serve_provider: Callable[..., Node],
    psi_workers: Workers,
    tmp_path: Path,
) -> None:
    deal = make_deal(psi_modes=["cardinality"], max_uses=5)
    node = serve_provider()
    for mode in (Mode.INTERSECTION, Mode.AGGREGATE):
        with pytest.raises(PolicyViolation, match=f"mode '{mode.value}' is not among the agreed modes"):
            consume(deal, node, mode, psi_workers, tmp_path)
        with pytest.raises(PolicyViolation, match=f"mode '{mode.value}' is not among the agreed modes"):
            rogue(deal.consumer, deal, node, mode, psi_workers, tmp_path)
    nothing_recorded(world, deal, node)
    assert consume(deal, node, Mode.CARDINALITY, psi_workers, tmp_path).cardinality == len(deal.truth)


def test_a_provider_file_changed_since_registration_is_refused(
    world: World, deal: Deal, serve_provider: Callable[..., Node], psi_workers: Workers, tmp_path: Path
) -> None:
    node = serve_provider()
    with deal.trips.open("a", encoding="utf-8") as fh:
        fh.write("T9999999,110101199001011234,13800000000,x,a,b,c,1,1,2026-01-01 00:00:00,2026-01\r\n")
    with pytest.raises(Conflict, match="not the registered version"):
        consume(deal, node, Mode.CARDINALITY, psi_workers, tmp_path)
    nothing_recorded(world, deal, node)


class ReadOnce(LinesDataset):
    """An ID stream that can be read only once (a pipe): the initiator fails after the exchange."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, IdKind.PHONE)
        self.reads = 0

    def records(self, columns: tuple[str, ...]) -> Iterator[tuple[object, tuple[int | None, ...]]]:
        self.reads += 1
        if self.reads > 1:
            raise InvalidInput(f"{self.path} was already read")
        return super().records(columns)


def test_a_session_abandoned_after_the_output_was_served_is_still_charged(
    world: World, deal: Deal, serve_provider: Callable[..., Node], psi_workers: Workers, tmp_path: Path
) -> None:
    node = serve_provider()
    consumer = deal.consumer
    with pytest.raises(InvalidInput, match="already read"):
        run_psi(
            responder=Responder(node.url, deal.provider.participant_id, deal.provider.key.public_key()),
            local=consumer.participant_id,
            signing_key=consumer.key,
            authoriser=ExchangeAuthoriser(consumer.client, consumer.participant_id),
            dataset=ReadOnce(deal.ids),
            contract_id=deal.contract.id,
            mode=Mode.INTERSECTION,
            workdir=tmp_path / "consumer-node",
            workers=psi_workers,
        )
    [logged] = node.usages()
    assert logged["outcome"] == "failed" and logged["charged"]
    contract = consumer.client.get_contract(deal.contract.id)
    assert contract.uses == 1  # recorded by the provider; the failed initiator attests nothing
    assert use_entries(world, deal.contract.id) == [("contract.used", deal.provider.participant_id)]


def test_peer_keys_come_from_the_exchange_newest_unrevoked_first(logistics: Party, bank: Party) -> None:
    peers = ExchangePeers(logistics.client, ttl=0)
    assert public_key_b64(peers.public_key(bank.participant_id)) == public_key_b64(bank.key)
    newer = Ed25519PrivateKey.generate()
    registered = bank.client.register_key(bank.participant_id, newer).value
    assert public_key_b64(peers.public_key(bank.participant_id)) == public_key_b64(newer)
    bank.client.revoke_key(registered.id)
    assert public_key_b64(peers.public_key(bank.participant_id)) == public_key_b64(bank.key)
    with pytest.raises(Unauthenticated, match="not a known participant"):
        peers.public_key("p_nobody")
    cached = ExchangePeers(logistics.client, ttl=3600)
    first = public_key_b64(cached.public_key(bank.participant_id))
    bank.client.register_key(bank.participant_id, Ed25519PrivateKey.generate())
    assert public_key_b64(cached.public_key(bank.participant_id)) == first


def test_authorise_grants_the_provider_its_resource_and_bounds_and_the_consumer_nothing_to_serve(
    deal: Deal,
) -> None:
    provider = ExchangeAuthoriser(deal.provider.client, deal.provider.participant_id)
    consumer = ExchangeAuthoriser(deal.consumer.client, deal.consumer.participant_id)
    c, size = deal.contract.id, 10
    grant = provider.authorise(c, deal.consumer.participant_id, Mode.AGGREGATE, size)
    assert grant == Grant(
        c,
        Mode.AGGREGATE,
        deal.consumer.participant_id,
        deal.resource_id,
        {"fare_cny": Bounds(0, 4000)},
        definitions=provider.terms(c).definitions(),
    )
    assert set(grant.definitions) == {"count", "fare_cny"}
    assert provider.authorise(c, deal.consumer.participant_id, Mode.CARDINALITY, size).columns == {}
    assert consumer.authorise(c, deal.provider.participant_id, Mode.AGGREGATE, size) == Grant(
        c, Mode.AGGREGATE, deal.consumer.participant_id
    )


def test_an_expired_session_is_recorded_best_effort_a_completed_one_must_be(
    deal: Deal, tmp_path: Path
) -> None:
    log = tmp_path / "usage.jsonl"
    provider = ExchangeAuthoriser(deal.provider.client, deal.provider.participant_id, usage_log=log)
    now = provider.clock()
    usage = PsiUsage(
        session_id="psi_gone",
        contract_id=deal.contract.id,
        local=deal.provider.participant_id,
        peer=deal.consumer.participant_id,
        role="responder",
        mode=Mode.CARDINALITY,
        suite=Suite.X25519,
        outcome="expired",
        local_set_size=10,
        peer_set_size=5,
        normalisation=NormalisationReport(10),
        result_size=None,
        bytes_sent=10 * 32 + 5 * 12,  # everything the initiator needed was served: charged
        bytes_received=5 * 32,
        transcript="sha256:" + "1" * 64,
        release=None,
        started_at=now,
        finished_at=now,
    )
    deal.consumer.client.contract_action(deal.contract.id, "terminate", {"reason": "ended"})
    provider.record(usage)  # noticed while serving another peer: must not fail that peer's request
    with pytest.raises(PolicyViolation, match="is TERMINATED"):
        provider.record(replace(usage, session_id="psi_done", outcome="completed"))
    logged = [json.loads(line) for line in log.read_text("utf-8").splitlines()]
    assert [(u["outcome"], u["charged"], u["use_id"], u["error"]["error"]) for u in logged] == [
        ("expired", True, None, "policy_violation"),
        ("completed", True, None, "policy_violation"),
    ]
    unserved = replace(usage, session_id="psi_short", bytes_sent=10 * 32)
    assert ExchangeAuthoriser.charged(usage) and not ExchangeAuthoriser.charged(unserved)
    assert not ExchangeAuthoriser.charged(replace(usage, role="initiator", outcome="failed"))


def test_psi_cli_serve_and_run_between_two_processes(
    deal: Deal, exchange_url: str, provider_node: str, tmp_path: Path
) -> None:
    key = tmp_path / "consumer.pem"
    write_private_key(key, deal.consumer.key)
    runner = CliRunner()
    common = ["--server", exchange_url, "--token", deal.consumer.token, "--contract", deal.contract.id]
    common += ["--peer-url", provider_node, "--ids", str(deal.ids), "--key", str(key), "--workers", "1"]
    common += ["--workdir", str(tmp_path / "consumer-node")]

    def run(*args: str) -> Result:
        return runner.invoke(app, ["--home", str(tmp_path / "consumer-home"), *args], catch_exceptions=True)

    result = run("--json", "psi", "run", *common, "--mode", "cardinality")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["cardinality"] == len(deal.truth) and data["peer"] == deal.provider.participant_id
    assert data["input"]["invalid"] == {"unparseable": 1} and data["input"]["duplicates"] == 1
    assert data["aggregate"] is None and data["mode"] == "cardinality"

    result = run("psi", "run", *common, "--mode", "aggregate")
    assert result.exit_code == 0, result.output
    for row in ("released count", "released SUM(fare_cny)", "AVG(fare_cny) = SUM / count"):
        assert row in result.output
    assert "at 95 %" in result.output and "discrete_laplace(epsilon=10)" in result.output

    out = tmp_path / "matches.tsv"
    result = run("psi", "run", *common, "--mode", "intersection", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "cardinality |X ∩ Y|" in result.output and str(len(deal.truth)) in result.output
    assert {line.split("\t")[1] for line in out.read_text("utf-8").splitlines()} == deal.truth

    result = run("psi", "run", *common, "--mode", "aggregate")
    assert isinstance(result.exception, BudgetExhausted)
    contract = deal.consumer.client.get_contract(deal.contract.id)
    assert contract.uses == 3 and contract.budget_spent == pytest.approx(10.0)
    log = tmp_path / "provider-node" / "node" / "psi-usage.jsonl"
    usage = [json.loads(line) for line in log.read_text("utf-8").splitlines()]
    assert [(u["mode"], u["outcome"], u["charged"]) for u in usage] == [
        ("cardinality", "completed", True),
        ("aggregate", "completed", True),
        ("intersection", "completed", True),
    ]
