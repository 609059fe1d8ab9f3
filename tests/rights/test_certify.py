"""Certificates through the API: one per version, verifiable offline, tampering caught; DCAT export."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import rdflib
from pyshacl import validate

from conftest import World
from datavalley.errors import NotFound
from datavalley.rights.certificates import render_html, verify_certificate
from rights.conftest import Provider, analysis_of, write_trips

SHAPES = Path(__file__).resolve().parents[1] / "data" / "standards" / "dcat-ap-3.0.0-SHACL.ttl"


def _register(p: Provider, path: Path, **kw: object) -> str:
    args = {
        "name": "Trips",
        "sector": "transport",
        "lawful_source": "driver contracts",
        "analysis": analysis_of(path),
        "published": True,
        "tags": ["logistics"],
    }
    args.update(kw)
    return p.client.register_resource(**args).value.id  # type: ignore[arg-type]


def test_certificate_verifies_offline_with_pinned_key(world: World, provider: Provider, trips: Path) -> None:
    """The certificate names fingerprint, holder, rights, grade; it verifies with the exchange key alone."""
    rid = _register(provider, trips)
    cert = provider.client.certificate(rid)
    vkey = world.exchange.ledger.verifier.verifier_key_string()
    check = verify_certificate(cert, verifier_key=vkey)
    assert check.ok, check.findings
    res = provider.client.get_resource(rid)
    assert check.fingerprint == res.fingerprint and check.holder == provider.participant_id
    assert {r["kind"] for r in cert["rights"]} == {"holding", "processing_use", "product_operation"}
    assert provider.client.certificate(rid) == cert  # issued once, served unchanged


def test_tampered_certificate_is_caught(world: World, provider: Provider, trips: Path) -> None:
    """Changing the fingerprint or holder breaks the signature and the ledger binding."""
    rid = _register(provider, trips)
    cert = provider.client.certificate(rid)
    vkey = world.exchange.ledger.verifier.verifier_key_string()
    forged = copy.deepcopy(cert)
    forged["resource"]["fingerprint"] = "dvfp1:" + "0" * 64
    check = verify_certificate(forged, verifier_key=vkey)
    assert not check.ok and any("signature" in f for f in check.findings)
    other = copy.deepcopy(cert)
    other["holder"]["participant_id"] = "p_someone_else"
    assert not verify_certificate(other, verifier_key=vkey).ok


def test_change_issues_a_new_certificate_version(provider: Provider, trips: Path, tmp_path: Path) -> None:
    """Each registered version has its own certificate with its own fingerprint and ledger entry."""
    rid = _register(provider, trips)
    v1 = provider.client.certificate(rid)
    provider.client.resource_action(
        rid, "change", {"analysis": analysis_of(write_trips(tmp_path / "b.csv", extra=3))}
    )
    v2 = provider.client.certificate(rid)
    assert v2["resource"]["version"] == 2 and v2["registration_event"]["type"] == "resource.changed"
    assert v2["resource"]["fingerprint"] != v1["resource"]["fingerprint"]
    assert v2["receipt"]["index"] > v1["receipt"]["index"]
    assert provider.client.certificate(rid, version=1) == v1
    with pytest.raises(NotFound, match="no version 9"):
        provider.client.certificate(rid, version=9)


def test_certificate_html_escapes(provider: Provider, trips: Path) -> None:
    """The HTML rendering shows the fingerprint and escapes names."""
    rid = _register(provider, trips, name="<script>alert(1)</script> trips")
    html = provider.client.certificate_html(rid)
    assert "<script>alert" not in html and "&lt;script&gt;" in html
    assert provider.client.get_resource(rid).fingerprint in html
    assert render_html(provider.client.certificate(rid)) == html


def test_cli_cert_verify(
    world: World, provider: Provider, trips: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`datavalley cert verify` exits 0 on a genuine certificate and 9 on a tampered one."""
    import sys

    from datavalley.cli.main import main

    rid = _register(provider, trips)
    f = tmp_path / "cert.json"
    f.write_text(json.dumps(provider.client.certificate(rid)))
    vkey = world.exchange.ledger.verifier.verifier_key_string()

    def run(*args: str) -> int:
        sys.argv = ["datavalley", *args]
        try:
            main()
            return 0
        except SystemExit as exc:
            return int(exc.code or 0)

    assert run("cert", "verify", str(f), "--verifier-key", vkey) == 0
    doc = json.loads(f.read_text())
    doc["classification"]["grade"] = "general" if doc["classification"]["grade"] != "general" else "important"
    f.write_text(json.dumps(doc))
    assert run("cert", "verify", str(f), "--verifier-key", vkey) == 9
    capsys.readouterr()


@pytest.mark.filterwarnings("ignore:ConjunctiveGraph is deprecated:DeprecationWarning")
def test_dcat_export_through_api_conforms(
    world: World, provider: Provider, trips: Path, tmp_path: Path
) -> None:
    """The API's DCAT-AP 3 export lists published resources only and passes the official SHACL shapes."""
    public = _register(provider, trips)
    hidden = _register(provider, write_trips(tmp_path / "h.csv", seed=3), name="Hidden", published=False)
    doc = world.operator.dcat()
    text = json.dumps(doc)
    assert public in text and hidden not in text
    data = rdflib.Graph().parse(data=text, format="json-ld")
    shapes = rdflib.Graph().parse(SHAPES, format="turtle")
    conforms, _, report = validate(data, shacl_graph=shapes, inference="none")
    assert conforms, report
