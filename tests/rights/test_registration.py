"""Registration: node analysis to exchange record, PI and grades, change/renew/cancel, objections, search."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from conftest import World
from datavalley.errors import Conflict, Forbidden, InvalidInput, NotFound, PolicyViolation
from datavalley.events import EventRow
from datavalley.rights.tables import ResourceRow, RightRow
from rights.conftest import Provider, analysis_of, write_trips


def _register(p: Provider, path: Path, **kw: object):  # type: ignore[no-untyped-def]
    args = {
        "name": "Trips 2026",
        "sector": "transport",
        "lawful_source": "collected under driver contracts",
        "analysis": analysis_of(path),
        "tags": ["logistics", "trips"],
        "published": True,
    }
    args.update(kw)
    return p.client.register_resource(**args)  # type: ignore[arg-type]


def _counts(world: World) -> tuple[int, int, int]:
    with world.exchange.session(write=False) as s:
        return tuple(
            int(s.scalar(select(func.count()).select_from(t)) or 0)  # type: ignore[return-value]
            for t in (ResourceRow, RightRow, EventRow)
        )


def test_registration_records_pii_grade_and_three_rights(
    world: World, provider: Provider, trips: Path
) -> None:
    """The holder gets holding, processing & use and product operation; PI is detected, sensitive marked."""
    r = _register(provider, trips).value
    assert r.provider_id == provider.participant_id and r.row_count == 200 and r.version == 1
    kinds = {c["column"]: c["kind"] for c in r.pii["columns"]}
    assert kinds["driver_id"] == "cn_ric" and kinds["driver_phone"] == "cn_mobile"
    assert r.sensitive_pii and r.pii_present
    assert 30 <= r.estimated_individuals <= 50  # 40 distinct drivers
    links = provider.client.chain_of_title(r.id)
    assert sorted(x.kind.value for _, x in links) == ["holding", "processing_use", "product_operation"]
    assert all(x.holder_id == provider.participant_id and d == 0 for d, x in links)


def test_profile_never_holds_personal_values(provider: Provider, trips: Path) -> None:
    """No raw ID number or phone from the file appears anywhere in what reaches the exchange."""
    import csv

    r = _register(provider, trips).value
    blob = repr(r.profile) + repr(r.pii)
    with trips.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert not any(row["driver_id"] in blob or row["driver_phone"] in blob for row in rows)


def test_duplicate_empty_and_bad_input_write_nothing(
    world: World, provider: Provider, trips: Path, tmp_path: Path
) -> None:
    """Same content twice is a Conflict; empty data, missing lawful source, bad sector are InvalidInput."""
    _register(provider, trips)
    before = _counts(world)
    with pytest.raises(Conflict, match="already registered"):
        _register(provider, trips)
    good = analysis_of(trips)
    with pytest.raises(InvalidInput, match="empty"):
        _register(provider, trips, analysis={**good, "row_count": 0})
    with pytest.raises(InvalidInput, match="lawful-source"):
        _register(provider, trips, lawful_source="  ")
    with pytest.raises(InvalidInput, match="sector"):
        _register(provider, trips, sector="Transport & Co")
    with pytest.raises(InvalidInput, match="fingerprint"):
        _register(provider, trips, analysis={**good, "fingerprint": "md5:abc"})
    assert _counts(world) == before


def test_unreadable_and_empty_files_are_refused_on_the_node(tmp_path: Path) -> None:
    """The node refuses a missing, empty or header-only file with the path and the reason."""
    with pytest.raises(InvalidInput, match="does not exist"):
        analysis_of(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InvalidInput, match="empty"):
        analysis_of(tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text("a,b\n")
    with pytest.raises(InvalidInput):
        analysis_of(tmp_path / "header.csv")


def test_only_verified_providers_register(world: World, trips: Path) -> None:
    """A consumer-only or unverified participant cannot register."""
    _, _, token = world.onboard("Consumer Only", ["consumer"])
    with pytest.raises(Forbidden, match="provider"):
        world.client_for(token).register_resource(
            name="x", sector="transport", lawful_source="y", analysis=analysis_of(trips)
        )
    _, _, pending = world.onboard("Pending Provider", ["provider"], verify=False)
    with pytest.raises(Forbidden, match="verified"):
        world.client_for(pending).register_resource(
            name="x", sector="transport", lawful_source="y", analysis=analysis_of(trips)
        )


def test_change_bumps_version_and_schema_drift_is_refused(
    provider: Provider, trips: Path, tmp_path: Path
) -> None:
    """Changed rows give a change event with a new fingerprint; a different schema is refused."""
    r = _register(provider, trips).value
    changed = write_trips(tmp_path / "trips2.csv", extra=5)
    res = provider.client.resource_action(r.id, "change", {"analysis": analysis_of(changed)})
    assert res.value.version == 2 and res.value.fingerprint != r.fingerprint and res.value.row_count == 205
    assert [v["version"] for v in provider.client.versions(r.id)] == [1, 2]
    with pytest.raises(Conflict, match="already has this content"):
        provider.client.resource_action(r.id, "change", {"analysis": analysis_of(changed)})
    drift = tmp_path / "drift.csv"
    drift.write_text("trip_id,driver_id\n1,abc\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match="schema drift"):
        provider.client.resource_action(r.id, "change", {"analysis": analysis_of(drift)})
    assert provider.client.get_resource(r.id).version == 2


def test_visibility_of_unpublished_resources(
    world: World, provider: Provider, consumer: Provider, trips: Path
) -> None:
    """Another participant never sees an unpublished resource, in search or by ID; the operator does."""
    r = _register(provider, trips, published=False).value
    with pytest.raises(NotFound):
        consumer.client.get_resource(r.id)
    assert consumer.client.search("trips")["total"] == 0
    assert world.operator.search("trips")["total"] == 1
    provider.client.resource_action(r.id, "publish")
    found = consumer.client.search("TRIPS", sector="transport", tag=["logistics"])
    assert [x.id for x in found["items"]] == [r.id] and found["facets"]["sector"] == {"transport": 1}
    assert consumer.client.search("trips", tag=["logist"])["total"] == 0  # tags match whole


def test_core_data_is_registered_but_never_published_or_granted(
    world: World, provider: Provider, consumer: Provider, trips: Path
) -> None:
    """Confirming core unpublishes; publishing and grants are then PolicyViolations."""
    from datetime import UTC, datetime, timedelta

    r = _register(provider, trips).value
    world.operator.resource_action(r.id, "classification", {"grade": "core", "reason": "national security"})
    assert provider.client.get_resource(r.id).published is False
    with pytest.raises(PolicyViolation, match="core data"):
        provider.client.resource_action(r.id, "publish")
    with pytest.raises(PolicyViolation, match="core data"):
        provider.client.grant_right(
            r.id,
            kind="processing_use",
            grantee_id=consumer.participant_id,
            purposes=["credit-risk"],
            territories=["CN"],
            valid_until=datetime.now(UTC) + timedelta(days=30),
        )


def test_objection_freezes_and_resolution(
    world: World, provider: Provider, consumer: Provider, trips: Path
) -> None:
    """An objection freezes the resource (no grants); dismissal unfreezes; upholding revokes all rights."""
    from datetime import UTC, datetime, timedelta

    r = _register(provider, trips).value
    o = consumer.client.file_objection(r.id, "these trips are ours").value
    assert provider.client.get_resource(r.id).status.value == "frozen"
    until = datetime.now(UTC) + timedelta(days=30)
    with pytest.raises(Conflict, match="frozen"):
        provider.client.grant_right(
            r.id,
            kind="processing_use",
            grantee_id=consumer.participant_id,
            purposes=["analytics"],
            territories=["CN"],
            valid_until=until,
        )
    world.operator.resolve_objection(o.id, upheld=False, resolution="provenance documents checked")
    assert provider.client.get_resource(r.id).status.value == "registered"
    o2 = consumer.client.file_objection(r.id, "new evidence").value
    world.operator.resolve_objection(o2.id, upheld=True, resolution="unlawful source")
    assert world.operator.get_resource(r.id).status.value == "revoked"
    assert provider.client.rights(active_only=True) == []
    with pytest.raises(Conflict, match="already upheld"):
        world.operator.resolve_objection(o2.id, upheld=True, resolution="again")


def test_renew_and_cancel(provider: Provider, trips: Path) -> None:
    """Renewal extends validity; cancellation ends the registration and every right."""
    r = _register(provider, trips).value
    renewed = provider.client.resource_action(r.id, "renew", {"valid_days": 365}).value
    assert renewed.valid_until > r.valid_until
    cancelled = provider.client.resource_action(r.id, "cancel", {"reason": "retired"}).value
    assert cancelled.status.value == "cancelled"
    assert all(x.status.value == "revoked" for _, x in provider.client.chain_of_title(r.id))
    with pytest.raises(Conflict, match="already cancelled"):
        provider.client.resource_action(r.id, "cancel", {"reason": "again"})


def test_classification_rules_are_operator_editable(world: World, provider: Provider, trips: Path) -> None:
    """A stricter rule set raises the suggested grade of new registrations; bad rules are refused."""
    r1 = _register(provider, trips).value
    assert r1.classification.suggested.value == "general"
    world.operator.set_classification_rules(
        {
            "version": 1,
            "rules": [
                {
                    "id": "transport-drivers",
                    "grade": "important",
                    "description": "driver identities in transport",
                    "sectors": ["transport"],
                    "pii_kinds": ["cn_ric"],
                }
            ],
        }
    )
    other = write_trips(trips.parent / "t3.csv", seed=99)
    r2 = _register(provider, other, name="Trips B").value
    assert r2.classification.suggested.value == "important"
    assert any("transport-drivers" in reason for reason in r2.classification.reasons)
    with pytest.raises(InvalidInput, match=r"rules\[0\]"):
        world.operator.set_classification_rules({"version": 1, "rules": [{"id": "x", "grade": "secret"}]})
    with pytest.raises(Forbidden):
        provider.client.set_classification_rules({"version": 1, "rules": []})
