"""Enforcement where data moves: contract acceptance, every use (private SQL, PSI, delivery reads),
records, counting — on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from conftest import World
from crossborder.conftest import MEMBERS, contract_for, deliver, events, foreign
from datavalley.crossborder import sketch
from datavalley.crossborder.node import resource_sketch
from datavalley.crossborder.tables import CrossborderTransferRow
from datavalley.errors import Conflict, Forbidden, InvalidInput, NotFound, PolicyViolation, Unauthenticated
from datavalley.market.model import Product
from market.conftest import Party, fund, list_product, negotiate, onboard, use


def _register(world: World, exporter: str | None = None) -> list[dict]:
    reg = world.client_for(world.operator_token)
    return reg.get("/v1/crossborder/register", exporter_id=exporter, limit=200)["items"]


def _submit(world: World, provider: Party, rid: str) -> dict:
    res = provider.client.get_resource(rid)
    data = resource_sketch(world.home, provider.participant_id, rid, res.pii)
    return provider.client.post(f"/v1/crossborder/resources/{rid}/sketch", {"sketch": sketch.encode(data)})[0]


def _file(provider: Party, **body: object) -> dict:
    body.setdefault("evidence", "signed copy in the archive")
    return provider.client.post("/v1/crossborder/records", body)[0]


def test_aggregate_to_germany_is_recorded_as_non_personal(
    world: World, retailer: Party, german: Party, aggregate_product: Product
) -> None:
    insurer = onboard(world, "Zunyi Insurance", ["consumer"])
    fund(world, insurer, 100_000)
    c = negotiate(retailer, insurer, aggregate_product.id, purpose="market-research")
    use(insurer, c.id, purpose="market-research")
    assert _register(world) == []  # domestic: not a cross-border transfer
    cid = contract_for(retailer, german, aggregate_product.id)
    use(german, cid, purpose="market-research", region="CN")
    rows = _register(world, retailer.participant_id)
    assert [(r["stage"], r["pathway"], r["allowed"], r["destination"]) for r in rows] == [
        ("accept", "non_personal", True, "DE"),
        ("use", "non_personal", True, "DE"),
    ]
    assert "PIPL art. 73(4)" in rows[1]["non_personal_reason"] and rows[1]["personal"] is False
    assert world.client_for(world.operator_token).get("/v1/crossborder/counters") == []
    # the region a party declares is not what decides: the consumer's verified jurisdiction is
    assert len(events(world, "crossborder.transfer")) == 2


def test_row_level_delivery_needs_the_nodes_sketch_and_counts_each_person_once(
    world: World, retailer: Party, german: Party, delivery_product: Product, members: str
) -> None:
    cid = contract_for(retailer, german, delivery_product.id)
    with pytest.raises(PolicyViolation, match="identifier sketch") as exc:
        deliver(retailer, cid)
    assert exc.value.details["sketches_needed"] == [members]
    info = _submit(world, retailer, members)
    assert MEMBERS <= info["upper_bound"] <= MEMBERS * 1.03
    deliver(retailer, cid)  # fewer than 100,000 people, not sensitive, not a CIIO: art. 5(4)
    rows = [r for r in _register(world, retailer.participant_id) if r["stage"] == "use"]
    assert [(r["pathway"], r["personal"]) for r in rows] == [("exempt", True)]
    assert rows[0]["articles"] == ["CAC 2024 art. 5(4)"]
    first = world.client_for(world.operator_token).get("/v1/crossborder/counters")
    # a second delivery and a second foreign recipient of the same people: still counted once
    deliver(retailer, cid, 1)
    other = foreign(world, "Lyon Études SARL", country="FR")
    cid2 = contract_for(retailer, other, delivery_product.id)
    deliver(retailer, cid2, region="CN")
    after = world.client_for(world.operator_token).get("/v1/crossborder/counters")
    assert len(after) == 1 and after[0]["kind"] == "pi"
    assert after[0]["upper_bound"] == first[0]["upper_bound"] >= MEMBERS
    assert len(events(world, "crossborder.counted")) == 3


def _big_sketch(n: int) -> str:
    return sketch.encode(sketch.build("cn_mobile", (f"1380000{i:05d}" for i in range(n)), b"s" * 32))


def test_standard_contract_pathway_refuses_until_filed_then_counts(
    world: World, retailer: Party, german: Party, delivery_product: Product, members: str
) -> None:
    # the node reports 150,000 distinct people (e.g. a larger version): the standard contract pathway
    retailer.client.post(f"/v1/crossborder/resources/{members}/sketch", {"sketch": _big_sketch(150_000)})
    cid = contract_for(
        retailer, german, delivery_product.id
    )  # acceptance: filing is due before the first use
    with pytest.raises(PolicyViolation, match="standard_contract pathway") as exc:
        deliver(retailer, cid)
    assert exc.value.details["missing"] == [["standard_contract", "certification"]]
    # refused: nothing metered, nothing paid, nothing counted, nothing registered at the use stage
    assert german.client.get_contract(cid).uses == 0
    assert world.client_for(world.operator_token).get("/v1/crossborder/counters") == []
    asked = german.client.post(f"/v1/crossborder/contracts/{cid}/transfers", {"operation": "dv:deliver"})[0]
    assert asked["allowed"] is False and asked["decision"]["pathway"] == "standard_contract"
    assert len(events(world, "crossborder.refused")) == 1
    with pytest.raises(InvalidInput, match="number"):
        _file(retailer, kind="standard_contract", contract_id=cid)
    with pytest.raises(Forbidden):
        _file(german, kind="standard_contract", contract_id=cid, number="X-1")
    rec = _file(retailer, kind="standard_contract", contract_id=cid, number="GZ-SC-2026-0042")
    with pytest.raises(Conflict, match="already filed"):
        _file(retailer, kind="standard_contract", contract_id=cid, number="GZ-SC-2026-0042")
    deliver(retailer, cid)
    counters = world.client_for(world.operator_token).get("/v1/crossborder/counters")
    assert counters[0]["upper_bound"] >= 150_000
    used = [r for r in _register(world, retailer.participant_id) if r["stage"] == "use"]
    assert used[-1]["records"] == [rec["id"]] and used[-1]["allowed"]
    retailer.client.post(f"/v1/crossborder/records/{rec['id']}/revoke", {"reason": "contract ended"})
    with pytest.raises(PolicyViolation, match="standard"):
        deliver(retailer, cid, 2)
    # an exemption basis is a record filed for a contract: art. 5(1) exempts, and is not counted
    other = foreign(world, "Amsterdam Travel BV", country="NL")
    cid2 = contract_for(retailer, other, delivery_product.id)
    _file(retailer, kind="basis", contract_id=cid2, scope={"basis": "contract_necessity"})
    deliver(retailer, cid2, region="CN")
    row = [r for r in _register(world) if r["stage"] == "use"][-1]
    assert (row["pathway"], row["exemption"], row["contract_id"]) == ("exempt", "contract_necessity", cid2)
    assert world.client_for(world.operator_token).get("/v1/crossborder/counters") == counters


def test_security_assessment_is_checked_at_acceptance_with_scope_and_expiry(
    world: World, retailer: Party, german: Party, delivery_product: Product, members: str
) -> None:
    op = world.operator
    op.request("PUT", f"/v1/crossborder/participants/{retailer.participant_id}/facts", json={"ciio": True})
    c = german.client.request_contract(delivery_product.id, purpose="market-research").value
    retailer.client.contract_action(c.id, "offer")
    with pytest.raises(PolicyViolation, match="security_assessment"):
        german.client.contract_action(c.id, "accept")
    assert german.client.get_contract(c.id).state.value == "OFFERED"
    now = world.clock.now
    # the approval is the CAC's decision: the regulator records it, the exporter cannot
    cac = onboard(world, "Guizhou CAC", ["regulator"])
    exp = {"exporter_id": retailer.participant_id}
    with pytest.raises(Forbidden):
        _file(retailer, kind="security_assessment", number="CAC-SA-0", **exp)
    with pytest.raises(InvalidInput, match="exporter_id"):
        _file(cac, kind="security_assessment", number="CAC-SA-0")
    with pytest.raises(InvalidInput, match="3 years"):
        _file(cac, kind="security_assessment", number="CAC-SA-1",
              valid_until=(now + timedelta(days=3 * 366)).isoformat(), **exp)  # fmt: skip
    _file(cac, kind="security_assessment", number="CAC-SA-US", scope={"jurisdictions": ["US"]}, **exp)
    with pytest.raises(PolicyViolation, match="security_assessment"):
        german.client.contract_action(c.id, "accept")
    sa = _file(cac, kind="security_assessment", number="CAC-SA-DE", scope={"jurisdictions": ["DE"]},
               valid_until=(now + timedelta(days=25)).isoformat(), **exp)  # fmt: skip
    german.client.contract_action(c.id, "accept")
    retailer.client.sign_agreement(c.id, retailer.key)
    german.client.sign_agreement(c.id, german.key)
    _submit(world, retailer, members)
    deliver(retailer, c.id)
    soon = world.client_for(world.operator_token).get("/v1/crossborder/expiring", within_days=365)
    assert [e["record"]["id"] for e in soon] == [sa["id"]]
    # 25 days left: inside the window for applying for an extension (60 working days, CAC 2024 art. 9)
    assert soon[0]["in_renewal_window"] is True and soon[0]["expired"] is False
    assert world.client_for(world.operator_token).get("/v1/crossborder/expiring", within_days=20) == []
    world.clock.advance(days=26)  # the approval expired; the contract (30 days) still runs
    with pytest.raises(PolicyViolation, match="security_assessment"):
        deliver(retailer, c.id, 1)


def test_sensitive_pi_needs_a_standard_contract_and_consent(
    world: World, retailer: Party, german: Party, tmp_path: Path
) -> None:
    from market.conftest import list_product
    from rights.conftest import analysis_of, write_trips

    path = write_trips(tmp_path / "trips.csv")
    from datavalley.node.analysis import analyse_source, location_of
    from datavalley.node.registry import NodeRegistry

    rid = retailer.client.register_resource(
        name="Trips", sector="transport", lawful_source="driver contracts", analysis=analysis_of(path),
        published=True,
    ).value.id  # fmt: skip
    a = analyse_source(str(path))
    NodeRegistry(world.home).record(rid, location_of(a.source, a.fingerprint))
    world.operator.resource_action(rid, "classification", {"grade": "general", "reason": "reviewed"})
    terms = {
        "purposes": ["market-research"],
        "regions": ["DE", "CN"],
        "valid_days": 30,
        "max_uses": 5,
        "psi_modes": ["intersection", "cardinality"],
        "psi": {"id_column": "driver_id", "id_kind": "cn_ric"},
    }
    product = list_product(world, retailer, rid, kind="set_intersection", terms=terms)  # fmt: skip
    cid = contract_for(retailer, german, product.id)
    # the provider's PSI node asks before a session computes anything (node to node)
    from datavalley.node.psi import ExchangeAuthoriser
    from datavalley.psi.model import Mode

    node = ExchangeAuthoriser(retailer.client, retailer.participant_id, region="DE")
    with pytest.raises(PolicyViolation, match="identifier sketch"):
        node.authorise(cid, german.participant_id, Mode.INTERSECTION, 10)
    _submit(world, retailer, rid)
    with pytest.raises(PolicyViolation, match="standard_contract"):
        node.authorise(cid, german.participant_id, Mode.INTERSECTION, 10)
    assert node.authorise(cid, german.participant_id, Mode.CARDINALITY, 10).mode is Mode.CARDINALITY
    body = {"operation": "dv:intersect", "purpose": "market-research", "region": "DE", "mode": "intersection"}
    with pytest.raises(PolicyViolation, match="standard_contract") as exc:
        retailer.client.record_use(cid, request_digest="sha256:" + "a" * 64, **body)
    assert exc.value.details["missing"] == [["standard_contract", "certification"], ["consent"]]
    _file(retailer, kind="standard_contract", contract_id=cid, number="GZ-SC-9")
    with pytest.raises(PolicyViolation, match="consent"):
        retailer.client.record_use(cid, request_digest="sha256:" + "a" * 64, **body)
    _file(retailer, kind="consent", resource_id=rid)
    assert node.authorise(cid, german.participant_id, Mode.INTERSECTION, 10).mode is Mode.INTERSECTION
    retailer.client.record_use(cid, request_digest="sha256:" + "a" * 64, **body)
    counters = world.client_for(world.operator_token).get("/v1/crossborder/counters")
    assert [c["kind"] for c in counters] == ["sensitive"] and 40 <= counters[0]["upper_bound"] <= 42
    # a cardinality session over the same data only releases a count: non-personal, not counted
    retailer.client.record_use(cid, request_digest="sha256:" + "b" * 64, **{**body, "mode": "cardinality"})
    rows = _register(world, retailer.participant_id)
    assert rows[-1]["pathway"] == "non_personal" and "PSI cardinality" in rows[-1]["non_personal_reason"]


def test_authorisation_and_visibility(
    world: World, retailer: Party, german: Party, delivery_product: Product, members: str
) -> None:
    cid = contract_for(retailer, german, delivery_product.id)
    asked = german.client.post(f"/v1/crossborder/contracts/{cid}/transfers", {"operation": "dv:deliver"})[0]
    assert asked["allowed"] is False  # no sketch yet
    with pytest.raises(Forbidden):
        german.client.request(
            "PUT", f"/v1/crossborder/participants/{german.participant_id}/facts", json={"ciio": False}
        )
    with pytest.raises(Forbidden):
        retailer.client.post(
            f"/v1/crossborder/participants/{retailer.participant_id}/nodes",
            {"jurisdiction": "CN", "site": "x", "evidence": "y"},
        )
    with pytest.raises(Forbidden):
        german.client.post(f"/v1/crossborder/resources/{members}/sketch", {"sketch": _big_sketch(3)})
    outsider = foreign(world, "Nosy Ltd", country="GB", roles=["consumer", "provider"])
    with pytest.raises(Forbidden):
        outsider.client.post(f"/v1/crossborder/resources/{members}/sketch", {"sketch": _big_sketch(3)})
    for path in (f"/v1/crossborder/contracts/{cid}/pipia", f"/v1/crossborder/contracts/{cid}/filing-pack"):
        with pytest.raises(NotFound):
            outsider.client.get(path)
    with pytest.raises(NotFound):
        outsider.client.post(f"/v1/crossborder/contracts/{cid}/transfers", {})
    with pytest.raises(NotFound):
        outsider.client.get(f"/v1/crossborder/participants/{retailer.participant_id}")
    anonymous = world.client_for(None)
    for path in ("/v1/crossborder/rules", "/v1/crossborder/register", "/v1/crossborder/register.csv"):
        with pytest.raises(Unauthenticated):
            anonymous.get(path)
    # the register shows an exporter only its own transfers; the regulator's view has them all
    assert outsider.client.get("/v1/crossborder/register")["items"] == []
    assert german.client.get("/v1/crossborder/register")["items"] == []
    assert len(retailer.client.get("/v1/crossborder/register")["items"]) == len(_register(world)) == 2
    assert outsider.client.get("/v1/crossborder/counters") == []
    assert outsider.client.request("GET", "/v1/crossborder/register.csv").text.count("\n") == 1

    # bad input gets a precise error and changes nothing
    garbage = base64.b64encode(b"\x0a\x01\x07\x0e" + b"\x00" * 60).decode()
    truncated = sketch.encode(base64.b64decode(_big_sketch(10))[:-4])
    for bad in ("not base64!!", garbage, truncated):
        with pytest.raises(InvalidInput):
            retailer.client.post(f"/v1/crossborder/resources/{members}/sketch", {"sketch": bad})
    with pytest.raises(InvalidInput, match="unknown record kind"):
        _file(retailer, kind="adequacy", number="1")
    with pytest.raises(InvalidInput, match=r"scope\.basis"):
        _file(retailer, kind="basis", contract_id=cid, scope={"basis": "because"})
    with pytest.raises(InvalidInput, match="unknown free trade zone"):
        world.operator.request(
            "PUT", f"/v1/crossborder/participants/{retailer.participant_id}/facts",
            json={"ciio": False, "ftz_zone": "atlantis"},
        )  # fmt: skip
    with pytest.raises(InvalidInput, match="within_days"):
        retailer.client.get("/v1/crossborder/expiring", within_days=0)
    with pytest.raises(InvalidInput):
        retailer.client.request("POST", "/v1/crossborder/decide", json={"origin": "CN"})
    with pytest.raises(InvalidInput):
        retailer.client.request("POST", "/v1/crossborder/decide", json={"origin": "CN", "recipient": "DE",
                                                                       "personal": "yes"})  # fmt: skip
    with Session(world.exchange.engine) as s:  # the acceptance and the transfer request only
        assert s.scalar(select(func.count()).select_from(CrossborderTransferRow)) == 2
    assert events(world, "crossborder.sketch_submitted") == []
    assert events(world, "crossborder.record_filed") == []


def test_eu_origin_needs_scc_module_and_tia(world: World, members_file: Path) -> None:
    from datavalley.node.analysis import analyse_source, location_of, registration_payload
    from datavalley.node.registry import NodeRegistry

    cologne = foreign(world, "Kölner Handel AG", roles=["provider"])
    a = analyse_source(str(members_file), sector="retail")
    rid = cologne.client.register_resource(
        name="Kunden", sector="retail", lawful_source="customer contracts", analysis=registration_payload(a),
        published=True,
    ).value.id  # fmt: skip
    NodeRegistry(world.home).record(rid, location_of(a.source, a.fingerprint))
    world.operator.resource_action(rid, "classification", {"grade": "general", "reason": "reviewed"})
    product = list_product(
        world, cologne, rid, kind="file_delivery", price={"model": "per_query", "amount": 100},
        terms={"purposes": ["market-research"], "regions": ["CN"], "valid_days": 30, "max_uses": 5},
    )  # fmt: skip
    world.operator.request(
        "PUT", f"/v1/crossborder/participants/{cologne.participant_id}/facts",
        json={"ciio": False, "gdpr_role": "controller"},
    )  # fmt: skip
    shanghai = onboard(world, "Shanghai Research", ["consumer"])
    fund(world, shanghai, 100_000)
    world.operator.request(
        "PUT", f"/v1/crossborder/participants/{shanghai.participant_id}/facts",
        json={"ciio": False, "gdpr_role": "processor"},
    )  # fmt: skip
    cid = contract_for(cologne, shanghai, product.id)
    body = {"region": "CN", "quantity": 10}
    with pytest.raises(PolicyViolation, match="gdpr_scc") as exc:
        deliver(cologne, cid, **body)
    assert exc.value.details["missing"] == [["scc"], ["tia"]]
    _file(cologne, kind="scc", contract_id=cid, scope={"module": "Module Two"})
    with pytest.raises(PolicyViolation, match="transfer impact"):
        deliver(cologne, cid, **body)
    _file(cologne, kind="tia", contract_id=cid)
    deliver(cologne, cid, **body)
    row = [r for r in _register(world) if r["stage"] == "use"][-1]
    assert (row["origin"], row["destination"], row["pathway"]) == ("DE", "CN", "gdpr_scc")
    assert "GDPR art. 46(2)(c)" in row["articles"]
    decision = world.client_for(world.operator_token).get("/v1/crossborder/register")["items"][-1]
    assert decision["pathway"] == "gdpr_scc"


def test_concurrent_first_transfers_of_the_year_count_once(
    world: World, retailer: Party, delivery_product: Product, members: str
) -> None:
    """Two foreign recipients' deliveries race to create the exporter's counter for the year: both succeed,
    the people are counted once, and each transfer is registered."""
    import threading

    _submit(world, retailer, members)
    recipients = [foreign(world, f"Recipient {i}", country=c) for i, c in enumerate(("DE", "FR", "JP"))]
    cids = [contract_for(retailer, r, delivery_product.id) for r in recipients]
    barrier = threading.Barrier(len(cids))
    errors: list[BaseException] = []

    def go(cid: str) -> None:
        try:
            barrier.wait()
            deliver(retailer, cid, region="CN")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(c,)) for c in cids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    counters = world.client_for(world.operator_token).get("/v1/crossborder/counters")
    assert len(counters) == 1 and MEMBERS <= counters[0]["upper_bound"] <= MEMBERS * 1.03
    assert len([r for r in _register(world) if r["stage"] == "use"]) == len(cids)
    assert len(events(world, "crossborder.counted")) == len(cids)
