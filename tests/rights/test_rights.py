"""The three rights: grants within scope, sub-licensing, transfer, cascade revocation, public data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conftest import World
from datavalley.errors import Conflict, Forbidden, InvalidInput, NotFound
from rights.conftest import Provider, analysis_of


def _resource(p: Provider, path: Path, **kw: object) -> str:
    args = {
        "name": "Trips",
        "sector": "transport",
        "lawful_source": "driver contracts",
        "analysis": analysis_of(path),
        "published": True,
    }
    args.update(kw)
    return p.client.register_resource(**args).value.id  # type: ignore[arg-type]


def _days(n: int) -> datetime:
    return datetime.now(UTC) + timedelta(days=n)


def test_grant_within_scope_and_excess_refused(
    world: World, provider: Provider, consumer: Provider, trips: Path
) -> None:
    """A grant inside the holder's right works; one exceeding a granted parent is Forbidden, naming why."""
    rid = _resource(provider, trips)
    g = provider.client.grant_right(
        rid,
        kind="processing_use",
        grantee_id=consumer.participant_id,
        purposes=["credit-risk"],
        territories=["CN"],
        valid_until=_days(90),
        sublicensable=True,
    ).value
    assert g.grantor_id == provider.participant_id and g.parent_id is not None
    _, _, third_token = world.onboard("Third Co", ["consumer"])
    third = world.client_for(third_token)
    third_id = third.whoami()["participant_id"]
    with pytest.raises(Forbidden, match="purposes"):
        consumer.client.grant_right(
            rid,
            kind="processing_use",
            grantee_id=third_id,
            purposes=["marketing"],
            territories=["CN"],
            valid_until=_days(30),
        )
    with pytest.raises(Forbidden, match="term"):
        consumer.client.grant_right(
            rid,
            kind="processing_use",
            grantee_id=third_id,
            purposes=["credit-risk"],
            territories=["CN"],
            valid_until=_days(400),
        )
    with pytest.raises(Forbidden, match="territories"):
        consumer.client.grant_right(
            rid,
            kind="processing_use",
            grantee_id=third_id,
            purposes=["credit-risk"],
            territories=["HK"],
            valid_until=_days(30),
        )
    sub = consumer.client.grant_right(
        rid,
        kind="processing_use",
        grantee_id=third_id,
        purposes=["credit-risk"],
        territories=["CN"],
        valid_until=_days(30),
    ).value
    assert sub.parent_id == g.id
    with pytest.raises(Forbidden, match="not sub-licensable"):
        third.grant_right(
            rid,
            kind="processing_use",
            grantee_id=consumer.participant_id,
            purposes=["credit-risk"],
            territories=["CN"],
            valid_until=_days(10),
        )


def test_bad_grants_are_refused(world: World, provider: Provider, consumer: Provider, trips: Path) -> None:
    """Holding is never granted; no right, self-grants, unverified grantees and bad terms are refused."""
    rid = _resource(provider, trips)
    with pytest.raises(InvalidInput, match="transferred, never granted"):
        provider.client.grant_right(
            rid,
            kind="holding",
            grantee_id=consumer.participant_id,
            purposes=["x"],
            territories=["CN"],
            valid_until=_days(10),
        )
    with pytest.raises(Forbidden, match="holds no effective"):
        consumer.client.grant_right(
            rid,
            kind="processing_use",
            grantee_id=provider.participant_id,
            purposes=["x"],
            territories=["CN"],
            valid_until=_days(10),
        )
    with pytest.raises(InvalidInput, match="itself"):
        provider.client.grant_right(
            rid,
            kind="processing_use",
            grantee_id=provider.participant_id,
            purposes=["x"],
            territories=["CN"],
            valid_until=_days(10),
        )
    pending, _, _ = world.onboard("Pending Co", ["consumer"], verify=False)
    with pytest.raises(Conflict, match="verified"):
        provider.client.grant_right(
            rid,
            kind="processing_use",
            grantee_id=pending.id,
            purposes=["x"],
            territories=["CN"],
            valid_until=_days(10),
        )
    with pytest.raises(InvalidInput, match="after"):
        provider.client.grant_right(
            rid,
            kind="processing_use",
            grantee_id=consumer.participant_id,
            purposes=["x"],
            territories=["CN"],
            valid_until=_days(-1),
        )
    with pytest.raises(NotFound):
        provider.client.grant_right(
            "r_missing",
            kind="processing_use",
            grantee_id=consumer.participant_id,
            purposes=["x"],
            territories=["CN"],
            valid_until=_days(10),
        )


def test_revocation_cascades(world: World, provider: Provider, consumer: Provider, trips: Path) -> None:
    """Revoking a grant revokes every right derived from it, in one event; the grantee cannot revoke."""
    rid = _resource(provider, trips)
    g = provider.client.grant_right(
        rid,
        kind="product_operation",
        grantee_id=consumer.participant_id,
        purposes=["*"],
        territories=["*"],
        valid_until=_days(90),
        sublicensable=True,
    ).value
    _, _, t = world.onboard("Sub Co", ["consumer"])
    sub_id = world.client_for(t).whoami()["participant_id"]
    sub = consumer.client.grant_right(
        rid,
        kind="product_operation",
        grantee_id=sub_id,
        purposes=["reports"],
        territories=["CN"],
        valid_until=_days(30),
    ).value
    with pytest.raises(Forbidden, match="cannot revoke"):
        consumer.client.revoke_right(g.id)
    res = provider.client.revoke_right(g.id, "contract ended")
    assert {r.id for r in res.value} == {g.id, sub.id} and all(r.status.value == "revoked" for r in res.value)
    assert len(res.receipts) == 1
    with pytest.raises(Conflict, match="already revoked"):
        provider.client.revoke_right(sub.id)
    root = next(x for _, x in provider.client.chain_of_title(rid) if x.parent_id is None)
    with pytest.raises(Conflict, match="root right"):
        world.operator.revoke_right(root.id)


def test_transfer_moves_holding_and_keeps_grants(provider: Provider, consumer: Provider, trips: Path) -> None:
    """After a transfer the new holder grants; existing grants survive, re-parented; chain shows both."""
    rid = _resource(provider, trips)
    g = provider.client.grant_right(
        rid,
        kind="processing_use",
        grantee_id=consumer.participant_id,
        purposes=["analytics"],
        territories=["CN"],
        valid_until=_days(60),
    ).value
    moved = provider.client.transfer_holding(rid, consumer.participant_id).value
    assert {m.kind.value for m in moved} == {"holding", "processing_use", "product_operation"}
    assert consumer.client.get_resource(rid).provider_id == consumer.participant_id
    chain = consumer.client.chain_of_title(rid)
    statuses = [(x.kind.value, x.holder_id, x.status.value) for _, x in chain]
    assert ("holding", provider.participant_id, "transferred") in statuses
    assert ("holding", consumer.participant_id, "active") in statuses
    grant_now = next(x for _, x in chain if x.id == g.id)
    assert grant_now.status.value == "active" and grant_now.parent_id in {m.id for m in moved}
    with pytest.raises(Forbidden):
        provider.client.transfer_holding(rid, provider.participant_id)


def test_public_data_authorised_operation(world: World, provider: Provider, trips: Path) -> None:
    """A public body authorises an operator on public data; others and non-public data are refused."""
    authority, _, token = world.onboard("Big Data Authority", ["provider"], kind="public_body")
    gov = world.client_for(token)
    rid = gov.register_resource(
        name="Enterprise registry",
        sector="public_administration",
        lawful_source="statutory registration duties",
        analysis=analysis_of(trips),
        public_data=True,
        published=True,
    ).value.id
    auth = gov.authorise_public_data(
        rid,
        operator_id=provider.participant_id,
        purposes=["credit-reports"],
        territories=["CN-52"],
        valid_until=_days(365),
    ).value
    assert (
        auth.public_data_authorisation
        and auth.kind.value == "product_operation"
        and not auth.scope.sublicensable
    )
    with pytest.raises(Forbidden, match="public body"):
        provider.client.authorise_public_data(
            rid,
            operator_id=provider.participant_id,
            purposes=["x"],
            territories=["CN"],
            valid_until=_days(10),
        )
    with pytest.raises(Forbidden, match="public bodies"):
        provider.client.register_resource(
            name="x", sector="transport", lawful_source="y", analysis=analysis_of(trips), public_data=True
        )
    assert authority.kind.value == "public_body"
