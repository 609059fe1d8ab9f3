"""The official ``delta-sharing`` client against a real ``datavalley serve``: profiles, the policy-filtered
table (full, limit, predicate hints), time travel, the change feed, metering, caps, isolation, revocation
and signed file URLs."""

from __future__ import annotations

import csv
import json
import stat
import time
from pathlib import Path
from typing import Any

import delta_sharing
import httpx
import pandas as pd
import pytest
from delta_sharing.protocol import DeltaSharingProfile, Table
from delta_sharing.reader import DeltaSharingReader
from delta_sharing.rest_client import DataSharingRestClient
from requests.exceptions import HTTPError

from datavalley.node.analysis import analyse_source, location_of, registration_payload
from datavalley.node.registry import NodeRegistry
from delivery.conftest import (
    OFFERED,
    Deployment,
    cli,
    policy_rows,
    profile_json,
    table_url,
)

PSEUDONYMISED = {"driver_id", "driver_phone"}

# The official client (delta-sharing 1.4.1) passes copy=False to pandas.concat, which pandas 3 deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:The copy keyword is deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def analyst(deployment: Deployment) -> Path:
    """The consumer downloads its profile with the CLI (the server itself runs the real console script)."""
    dep = deployment
    out = dep.tmp / "analyst.share"
    args = ("delivery", "profile", dep.contract.id, "--out", str(out), "--recipient", "analyst")
    assert cli(dep, dep.insurer.token, *args) == 0
    return out


@pytest.fixture(scope="module")
def full(deployment: Deployment, analyst: Path) -> pd.DataFrame:
    return delta_sharing.load_as_pandas(table_url(analyst, deployment.contract.id, deployment.product_id))


def test_profile_file_follows_the_spec_and_is_private(deployment: Deployment, analyst: Path) -> None:
    prof = profile_json(analyst)
    assert set(prof) == {"shareCredentialsVersion", "endpoint", "bearerToken", "expirationTime"}
    assert prof["shareCredentialsVersion"] == 1
    assert prof["endpoint"] == f"{deployment.url}/delta-sharing/"
    assert prof["bearerToken"].startswith("dvs_")
    assert stat.S_IMODE(analyst.stat().st_mode) == 0o600
    # the token expires with the contract
    assert prof["expirationTime"].startswith(deployment.contract.valid_until.isoformat()[:19])  # type: ignore[union-attr]
    # the exchange keeps only its hash
    from sqlalchemy import select

    from datavalley.delivery.tables import SharingTokenRow

    with deployment.world.exchange.session(write=False) as s:
        hashes = list(s.scalars(select(SharingTokenRow.token_hash)))
    assert prof["bearerToken"] not in hashes
    assert all(len(h) == 64 for h in hashes)


def test_listing_shows_only_the_contracts_share(deployment: Deployment, analyst: Path) -> None:
    client = delta_sharing.SharingClient(str(analyst))
    shares = client.list_shares()
    assert [s.name for s in shares] == [deployment.contract.id.lower()]
    tables = client.list_all_tables()
    assert [(t.share, t.schema, t.name) for t in tables] == [
        (deployment.contract.id.lower(), deployment.product_id.lower(), "freight_trips")
    ]
    schemas = client.list_schemas(shares[0])
    assert [s.name for s in schemas] == [deployment.product_id.lower()]


def test_full_read_is_exactly_the_policy_filtered_table(deployment: Deployment, full: pd.DataFrame) -> None:
    expected = policy_rows(deployment.data)
    assert 0 < len(expected) < 3_000
    assert list(full.columns) == OFFERED  # driver_name and origin_city are not offered
    assert sorted(full["trip_id"]) == sorted(r["trip_id"] for r in expected)
    by_id = {r["trip_id"]: r for r in expected}
    pseudonyms: dict[str, str] = {}
    for row in full.to_dict("records"):
        src = by_id[row["trip_id"]]
        assert row["dest_province"] == src["dest_province"]
        assert row["month"] == src["month"]
        # watermarked columns move by at most one unit
        assert abs(int(row["fare_cny"]) - int(src["fare_cny"])) <= 1
        assert abs(int(row["distance_km"]) - int(src["distance_km"])) <= 1
        for col in PSEUDONYMISED:
            assert row[col].startswith("pn_") and src[col] not in row[col]
            # one person, one pseudonym (joins still work), never the raw value
            assert pseudonyms.setdefault(src[col], row[col]) == row[col]
    assert len(set(pseudonyms.values())) == len(pseudonyms)
    # the watermark changed some values (else it would carry no mark)
    moved = sum(int(r["fare_cny"]) != int(by_id[r["trip_id"]]["fare_cny"]) for r in full.to_dict("records"))
    assert moved > len(full) // 4


def test_limit_and_predicate_hints(deployment: Deployment, analyst: Path, full: pd.DataFrame) -> None:
    url = table_url(analyst, deployment.contract.id, deployment.product_id)
    limited = delta_sharing.load_as_pandas(url, limit=7)
    assert len(limited) == 7
    assert set(limited["trip_id"]) <= set(full["trip_id"])
    cutoff = sorted(full["trip_id"])[len(full) // 5]
    profile = DeltaSharingProfile.read_from_file(str(analyst))
    rest = DataSharingRestClient(profile)
    table = Table("freight_trips", deployment.contract.id.lower(), deployment.product_id.lower())
    hinted = DeltaSharingReader(table, rest).predicateHints([f"trip_id <= '{cutoff}'"]).to_pandas()
    wanted = set(full.loc[full["trip_id"] <= cutoff, "trip_id"])
    assert wanted <= set(hinted["trip_id"]) <= set(full["trip_id"])
    assert len(hinted) < len(full)  # the server skipped files it could prove irrelevant
    jhint = json.dumps(
        {
            "op": "lessThanOrEqual",
            "children": [
                {"op": "column", "name": "trip_id", "valueType": "string"},
                {"op": "literal", "value": cutoff, "valueType": "string"},
            ],
        }
    )
    jhinted = delta_sharing.load_as_pandas(url, jsonPredicateHints=jhint)
    assert wanted <= set(jhinted["trip_id"]) and len(jhinted) < len(full)
    # hints that cannot be parsed are ignored, never an error
    odd = DeltaSharingReader(table, rest).predicateHints(["trip_id LIKE 'T%'"]).to_pandas()
    assert len(odd) == len(full)


def test_every_query_is_a_metered_use_with_a_receipt(deployment: Deployment, analyst: Path) -> None:
    dep = deployment
    before = dep.insurer.client.uses(dep.contract.id)
    token = profile_json(analyst)["bearerToken"]
    share, schema = dep.contract.id.lower(), dep.product_id.lower()
    resp = httpx.post(
        f"{dep.url}/delta-sharing/shares/{share}/schemas/{schema}/tables/freight_trips/query",
        json={},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/x-ndjson")
    assert resp.headers["delta-table-version"] == "1"
    lines = [json.loads(x) for x in resp.text.splitlines()]
    assert list(lines[0]) == ["protocol"] and list(lines[1]) == ["metaData"]
    files = [x["file"] for x in lines[2:]]
    after = dep.insurer.client.uses(dep.contract.id)
    assert len(after) == len(before) + 1
    use = next(u for u in after if u.id == resp.headers["x-datavalley-use"])
    assert use.operation == "dv:deliver"
    assert use.quantity == sum(json.loads(f["stats"])["numRecords"] for f in files)
    assert use.amount == 300  # per-query price
    assert int(resp.headers["x-datavalley-receipt-index"]) >= 0


def test_signed_urls_head_range_and_tampering(deployment: Deployment, analyst: Path) -> None:
    dep = deployment
    token = profile_json(analyst)["bearerToken"]
    share, schema = dep.contract.id.lower(), dep.product_id.lower()
    resp = httpx.post(
        f"{dep.url}/delta-sharing/shares/{share}/schemas/{schema}/tables/freight_trips/query",
        json={"limitHint": 1},
        headers={"Authorization": f"Bearer {token}"},
    )
    url = json.loads(resp.text.splitlines()[2])["file"]["url"]
    size = json.loads(resp.text.splitlines()[2])["file"]["size"]
    head = httpx.head(url)
    assert head.status_code == 200 and int(head.headers["content-length"]) == size
    part = httpx.get(url, headers={"Range": "bytes=0-3"})
    assert part.status_code == 206 and part.content == b"PAR1"
    assert part.headers["content-length"] == "4"
    tampered = url.replace("sig=", "sig=0")
    assert httpx.get(tampered).status_code == 403
    longer = url.replace("exp=", "exp=9")
    assert httpx.get(longer).status_code == 403
    other = url.replace("part-00000", "part-00001")
    assert httpx.get(other).status_code == 403
    assert httpx.get(url.split("?")[0]).status_code in (403, 404)


def test_contracts_and_recipients_never_see_each_other(deployment: Deployment, analyst: Path) -> None:
    dep = deployment
    token = profile_json(analyst)["bearerToken"]
    h = {"Authorization": f"Bearer {token}"}
    other_share = dep.capped.id.lower()
    for path in (
        f"/shares/{other_share}",
        f"/shares/{other_share}/schemas",
        f"/shares/{other_share}/all-tables",
        f"/shares/{other_share}/schemas/{dep.product_id.lower()}/tables/freight_trips/metadata",
    ):
        r = httpx.get(f"{dep.url}/delta-sharing{path}", headers=h)
        assert r.status_code == 404, path
        assert set(r.json()) == {"errorCode", "message"}
    assert httpx.get(f"{dep.url}/delta-sharing/shares").status_code == 401
    bad = httpx.get(f"{dep.url}/delta-sharing/shares", headers={"Authorization": "Bearer dvs_nope"})
    assert bad.status_code == 401 and bad.json()["errorCode"] == "UNAUTHENTICATED"
    # an exchange API token is not a sharing token
    api = httpx.get(
        f"{dep.url}/delta-sharing/shares", headers={"Authorization": f"Bearer {dep.insurer.token}"}
    )
    assert api.status_code == 401
    # the provider cannot mint consumer profiles (403), the other consumer cannot see the contract (404)
    x, y = str(dep.tmp / "x.share"), str(dep.tmp / "y.share")
    assert cli(dep, dep.logistics.token, "delivery", "profile", dep.contract.id, "--out", x) == 4
    assert cli(dep, dep.bank.token, "delivery", "profile", dep.contract.id, "--out", y) == 5
    assert not (dep.tmp / "x.share").exists() and not (dep.tmp / "y.share").exists()


def test_pagination(deployment: Deployment, analyst: Path) -> None:
    dep = deployment
    h = {"Authorization": f"Bearer {profile_json(analyst)['bearerToken']}"}
    zero = httpx.get(f"{dep.url}/delta-sharing/shares", params={"maxResults": 0}, headers=h).json()
    assert zero["items"] == [] and zero["nextPageToken"]
    rest = httpx.get(
        f"{dep.url}/delta-sharing/shares", params={"pageToken": zero["nextPageToken"]}, headers=h
    ).json()
    assert [s["name"] for s in rest["items"]] == [dep.contract.id.lower()] and "nextPageToken" not in rest
    bad = httpx.get(f"{dep.url}/delta-sharing/shares", params={"maxResults": -1}, headers=h)
    assert bad.status_code == 400 and bad.json()["errorCode"] == "INVALID_PARAMETER_VALUE"
    junk = httpx.get(f"{dep.url}/delta-sharing/shares", params={"pageToken": "zzz"}, headers=h)
    assert junk.status_code == 400


def test_caps_refuse_without_retry_storms(deployment: Deployment) -> None:
    dep = deployment
    prof = dep.profile(dep.capped.id, dep.bank.token, "default", dep.tmp / "bank.share")
    url = table_url(prof, dep.capped.id, dep.product_id)
    delta_sharing.load_as_pandas(url, limit=1)
    delta_sharing.load_as_pandas(url, limit=1)
    with pytest.raises(HTTPError) as info:
        delta_sharing.load_as_pandas(url, limit=1)
    assert info.value.response.status_code == 403
    assert len(dep.bank.client.uses(dep.capped.id)) == 2


def test_changes_and_time_travel(deployment: Deployment, analyst: Path, full: pd.DataFrame) -> None:
    dep = deployment
    url = table_url(analyst, dep.contract.id, dep.product_id)
    with dep.data.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    header = list(rows[0])
    kept = [r["trip_id"] for r in policy_rows(dep.data)]
    gone = set(kept[:5])
    changed = kept[5]
    new_rows = [r for r in rows if r["trip_id"] not in gone]
    for r in new_rows:
        if r["trip_id"] == changed:
            r["fare_cny"] = str(int(r["fare_cny"]) + 500)
    extra = dict(new_rows[-1])
    extra.update(trip_id="T9999999", dest_province="贵州", month="2026-03")
    new_rows.append(extra)
    v2 = dep.tmp / "trips-v2.csv"
    with v2.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, header)
        w.writeheader()
        w.writerows(new_rows)
    analysis = analyse_source(str(v2))
    dep.logistics.client.resource_action(
        dep.resource_id, "change", {"analysis": registration_payload(analysis)}
    )
    NodeRegistry(dep.home).record(dep.resource_id, location_of(analysis.source, analysis.fingerprint))

    changes = delta_sharing.load_table_changes_as_pandas(url, starting_version=2, ending_version=2)
    inserted = changes[changes["_change_type"] == "insert"]
    deleted = changes[changes["_change_type"] == "delete"]
    assert set(deleted["trip_id"]) == gone | {changed}
    assert set(inserted["trip_id"]) == {changed, "T9999999"}
    assert set(changes["_commit_version"]) == {2}
    before = int(deleted.loc[deleted["trip_id"] == changed, "fare_cny"].iloc[0])
    after = int(inserted.loc[inserted["trip_id"] == changed, "fare_cny"].iloc[0])
    assert abs(after - before - 500) <= 2
    assert "driver_name" not in changes.columns
    everything = delta_sharing.load_table_changes_as_pandas(url, starting_version=1)
    assert set(everything["_commit_version"]) == {1, 2}
    assert (everything["_commit_version"] == 1).sum() == len(full)

    old = delta_sharing.load_as_pandas(url, version=1)
    pd.testing.assert_frame_equal(
        old.sort_values("trip_id").reset_index(drop=True), full.sort_values("trip_id").reset_index(drop=True)
    )
    now = delta_sharing.load_as_pandas(url)
    assert set(now["trip_id"]) == (set(full["trip_id"]) - gone) | {"T9999999"}
    client = delta_sharing.SharingClient(str(analyst))
    table = client.list_all_tables()[0]
    assert (
        DataSharingRestClient(DeltaSharingProfile.read_from_file(str(analyst)))
        .query_table_version(table)
        .delta_table_version
        == 2
    )


def test_revocation_stops_reads(deployment: Deployment) -> None:
    dep = deployment
    prof = dep.profile(dep.contract.id, dep.insurer.token, "temp", dep.tmp / "temp.share")
    url = table_url(prof, dep.contract.id, dep.product_id)
    assert len(delta_sharing.load_as_pandas(url, limit=3)) == 3
    token = profile_json(prof)["bearerToken"]
    share, schema = dep.contract.id.lower(), dep.product_id.lower()
    resp = httpx.post(
        f"{dep.url}/delta-sharing/shares/{share}/schemas/{schema}/tables/freight_trips/query",
        json={"limitHint": 1},
        headers={"Authorization": f"Bearer {token}"},
    )
    handed_out = json.loads(resp.text.splitlines()[2])["file"]["url"]
    assert httpx.head(handed_out).status_code == 200
    assert cli(dep, dep.insurer.token, "delivery", "revoke", dep.contract.id, "--recipient", "temp") == 0
    time.sleep(1.1)  # the node remembers a token's good standing for one second
    assert httpx.get(handed_out).status_code == 403  # URLs already handed out stop too
    with pytest.raises(HTTPError) as info:
        delta_sharing.load_as_pandas(url, limit=3)
    assert info.value.response.status_code == 401
    # rotation: the old profile stops, the new one works
    first = dep.profile(dep.contract.id, dep.insurer.token, "rotating", dep.tmp / "r1.share")
    second = dep.tmp / "r2.share"
    args = (
        "delivery",
        "profile",
        dep.contract.id,
        "--out",
        str(second),
        "--recipient",
        "rotating",
        "--rotate",
    )
    assert cli(dep, dep.insurer.token, *args) == 0
    with pytest.raises(HTTPError):
        delta_sharing.load_as_pandas(table_url(first, dep.contract.id, dep.product_id), limit=1)
    assert len(delta_sharing.load_as_pandas(table_url(second, dep.contract.id, dep.product_id), limit=1)) == 1
    # a terminated contract stops every recipient's reads at once
    bank = profile_json(dep.tmp / "bank.share")["bearerToken"]
    share, schema = dep.capped.id.lower(), dep.product_id.lower()
    meta = f"{dep.url}/delta-sharing/shares/{share}/schemas/{schema}/tables/freight_trips/metadata"
    assert httpx.get(meta, headers={"Authorization": f"Bearer {bank}"}).status_code == 200
    dep.logistics.client.contract_action(dep.capped.id, "terminate", {"reason": "breach"})
    refused = httpx.get(meta, headers={"Authorization": f"Bearer {bank}"})
    assert refused.status_code == 403 and refused.json()["errorCode"] == "PERMISSION_DENIED"


def test_leaks_are_traced_to_the_recipient(deployment: Deployment, analyst: Path, full: pd.DataFrame) -> None:
    """A 10 % extract of one recipient's copy, columns dropped, re-sorted and round-tripped through CSV, is
    attributed to that contract and recipient; the unmarked source and another recipient's copy are not."""
    dep = deployment
    auditor = dep.profile(dep.contract.id, dep.insurer.token, "auditor", dep.tmp / "auditor.share")
    theirs = delta_sharing.load_as_pandas(table_url(auditor, dep.contract.id, dep.product_id), version=1)
    # a recipient of a contract that never received anything is a candidate too
    dep.bank.client.post(f"/v1/delivery/contracts/{dep.idle.id}/tokens", {"recipient": "never"})
    recipients = {
        r["name"]: r["id"]
        for r in dep.insurer.client.get(f"/v1/delivery/contracts/{dep.contract.id}/recipients")["items"]
    }

    def leak(df: pd.DataFrame, name: str, columns: list[str], seed: int) -> Path:
        part = df[columns].sample(frac=0.1, random_state=seed).sort_values(columns[-1])
        out = dep.tmp / name
        part.to_csv(out, index=False)
        return out

    def trace(path: Path) -> dict[str, Any]:
        from typer.testing import CliRunner

        from datavalley.cli.main import app

        env = {"DATAVALLEY_SERVER": dep.url, "DATAVALLEY_TOKEN": dep.logistics.token}
        result = CliRunner().invoke(app, ["--json", "watermark", "trace", str(path)], env=env)
        report = json.loads(result.output)
        assert result.exit_code == (0 if report["attributed"] else 1)
        return dict(report)

    first = trace(leak(full, "leak-a.csv", ["trip_id", "dest_city", "distance_km", "fare_cny"], 1))
    named = first["attributed"]
    assert named is not None
    assert (named["contract_id"], named["recipient_id"]) == (dep.contract.id, recipients["analyst"])
    assert named["false_attribution"] <= 1e-6 and named["matches"] == named["pairs"] >= 100
    assert first["candidates"] >= 5
    assert sum(s["attributed"] for s in first["scores"]) == 1

    only_fare = trace(leak(full, "leak-b.csv", ["dest_province", "fare_cny"], 2))
    assert only_fare["attributed"]["recipient_id"] == recipients["analyst"]

    other = trace(leak(theirs, "leak-c.csv", ["trip_id", "fare_cny", "distance_km"], 3))
    assert other["attributed"]["recipient_id"] == recipients["auditor"]

    # the provider's own (never delivered, unmarked) rows are attributed to nobody
    source = pd.read_csv(dep.data)
    clean = trace(leak(source, "leak-d.csv", ["trip_id", "fare_cny", "distance_km"], 4))
    assert clean["attributed"] is None
    assert all(s["false_attribution"] > 1e-6 for s in clean["scores"])
    never = next(s for s in clean["scores"] if s["contract_id"] == dep.idle.id)
    assert never["delivered"] is False and never["pairs"] > 100
