"""Certificate status: a holding transfer issues the new holder's certificate and supersedes the old one;
changes, cancellations and revocations change the status too; the exchange signs the current status with
the ledger entry that changed it, and `datavalley cert verify --online` checks it."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import World
from datavalley.errors import NotFound
from datavalley.rights.cert_status import verify_status
from datavalley.rights.certificates import verify_certificate
from rights.conftest import Provider, analysis_of, write_trips


def _register(p: Provider, path: Path) -> str:
    return p.client.register_resource(
        name="Trips", sector="transport", lawful_source="driver contracts", analysis=analysis_of(path)
    ).value.id


def _status(client: Any, cert: dict[str, Any], vkey: str) -> dict[str, Any]:
    status: dict[str, Any] = client.certificate_status(cert["certificate_id"])
    assert verify_status(status, cert, verifier_key=vkey) == []
    return status


def test_transfer_issues_a_new_certificate_and_supersedes_the_old(
    world: World, provider: Provider, consumer: Provider, trips: Path
) -> None:
    vkey = world.exchange.ledger.verifier.verifier_key_string()
    rid = _register(provider, trips)
    old = provider.client.certificate(rid)
    assert _status(provider.client, old, vkey)["status"] == "valid"
    provider.client.transfer_holding(rid, consumer.participant_id)
    new = consumer.client.certificate(rid)
    assert new["certificate_id"] != old["certificate_id"]
    assert new["holder"]["participant_id"] == consumer.participant_id
    assert new["registration_event"]["type"] == "resource.transferred"
    assert {r["holder_id"] for r in new["rights"]} == {consumer.participant_id}
    assert verify_certificate(new, verifier_key=vkey).ok
    assert verify_certificate(old, verifier_key=vkey).ok  # offline: it still proves the registration …
    status = _status(consumer.client, old, vkey)  # … but it is no longer the current word
    assert status["status"] == "superseded" and status["holder_id"] == provider.participant_id
    assert status["changed_by"]["type"] == "resource.transferred"
    assert status["changed_by"]["ledger_index"] == new["receipt"]["index"]
    assert _status(provider.client, new, vkey)["status"] == "valid"


def test_change_cancel_and_revoke_set_the_status_with_the_ledger_entry(
    world: World, provider: Provider, trips: Path, tmp_path: Path
) -> None:
    vkey = world.exchange.ledger.verifier.verifier_key_string()
    rid = _register(provider, trips)
    v1 = provider.client.certificate(rid)
    provider.client.resource_action(
        rid, "change", {"analysis": analysis_of(write_trips(tmp_path / "b.csv", extra=3))}
    )
    v2 = provider.client.certificate(rid)
    s1 = _status(provider.client, v1, vkey)
    assert (s1["status"], s1["changed_by"]["type"]) == ("superseded", "resource.changed")
    assert s1["changed_by"]["ledger_index"] == v2["receipt"]["index"]
    cancel = provider.client.resource_action(rid, "cancel", {"reason": "withdrawn"})
    s2 = _status(provider.client, v2, vkey)
    assert (s2["status"], s2["changed_by"]["type"]) == ("cancelled", "resource.cancelled")
    assert s2["changed_by"]["ledger_index"] in {r["index"] for r in cancel.receipts}
    assert _status(provider.client, v1, vkey)["status"] == "superseded"  # its first change stays
    other = _register(provider, write_trips(tmp_path / "c.csv", seed=9))
    cert = provider.client.certificate(other)
    world.operator.resource_action(other, "revoke", {"reason": "unlawful source"})
    s3 = _status(world.operator, cert, vkey)
    assert (s3["status"], s3["changed_by"]["type"]) == ("revoked", "resource.revoked")
    with pytest.raises(NotFound):
        provider.client.certificate_status("c_doesnotexist")


def test_a_forged_or_misattributed_status_is_caught(world: World, provider: Provider, trips: Path) -> None:
    vkey = world.exchange.ledger.verifier.verifier_key_string()
    cert = provider.client.certificate(_register(provider, trips))
    status = provider.client.certificate_status(cert["certificate_id"])
    forged = {**copy.deepcopy(status), "status": "revoked"}
    assert "the status is not signed by the exchange key" in verify_status(forged, cert, verifier_key=vkey)
    lied = copy.deepcopy(status)
    lied["changed_by"] = {
        "type": "resource.registered",
        "event_id": 1,
        "ledger_index": 0,
        "payload_digest": "x",
    }
    assert "the status is not signed by the exchange key" in verify_status(lied, cert, verifier_key=vkey)
    other = {**copy.deepcopy(cert), "certificate_id": "c_other"}
    assert "the status answers for another certificate" in verify_status(status, other, verifier_key=vkey)


def test_cli_verify_online_reports_status_and_offline_says_what_it_proves(
    world: World,
    provider: Provider,
    consumer: Provider,
    trips: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from datavalley.cli.main import main

    rid = _register(provider, trips)
    f = tmp_path / "cert.json"
    f.write_text(json.dumps(provider.client.certificate(rid)))
    vkey = world.exchange.ledger.verifier.verifier_key_string()
    base = ["--json", "--home", str(world.home), "--token", world.operator_token]

    def run(*args: str) -> tuple[int, str]:
        capsys.readouterr()
        sys.argv = ["datavalley", *base, *args]
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        return code, capsys.readouterr().out

    code, out = run("cert", "verify", str(f), "--verifier-key", vkey)
    assert code == 0 and "NOT current status" in json.loads(out)["proves"]
    code, out = run("cert", "verify", str(f), "--verifier-key", vkey, "--online")
    assert code == 0 and json.loads(out)["status"]["status"] == "valid"
    provider.client.transfer_holding(rid, consumer.participant_id)
    code, _ = run("cert", "verify", str(f), "--verifier-key", vkey, "--online")
    assert code == 6  # superseded: a conflict with the current registration
