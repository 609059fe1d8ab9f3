"""The regulator's register (API, CLI, CSV), the filed documents (JSON, PDF), and the property that no
personal information reaches the register, the documents, the events or the ledger."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from cli.test_cli import run
from conftest import World
from crossborder.conftest import contract_for, deliver
from datavalley.crossborder import sketch
from datavalley.crossborder.node import resource_sketch
from datavalley.events import EventRow
from datavalley.market.model import Product
from market.conftest import Party, onboard


def test_register_documents_and_cli(
    world: World,
    retailer: Party,
    german: Party,
    delivery_product: Product,
    members: str,
    members_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    regulator = onboard(world, "Circulation Regulator", ["regulator"])
    cid = contract_for(retailer, german, delivery_product.id)
    home = str(world.home)
    as_german = ["--home", home, "--token", german.token]
    as_retailer = ["--home", home, "--token", retailer.token]
    as_regulator = ["--home", home, "--token", regulator.token]
    # on the retailer's node: sketch the member list's identifiers and submit the sketch
    code, out, _ = run(
        capsys, *as_retailer, "--json", "crossborder", "sketch", members, "--as", retailer.participant_id
    )
    assert code == 0 and 300 <= json.loads(out)["upper_bound"] <= 310
    res = retailer.client.get_resource(members)
    again = resource_sketch(world.home, retailer.participant_id, members, res.pii)
    assert sketch.bounds(again)[1] == json.loads(out)["upper_bound"]  # same salt, same sketch

    code, out, _ = run(
        capsys, *as_german, "--json", "crossborder", "request", cid, "--operation", "dv:deliver"
    )
    assert code == 0 and json.loads(out)["decision"]["exemption"] == "small_volume"
    deliver(retailer, cid)
    code, _, err = run(capsys, *as_german, "crossborder", "facts", german.participant_id, "--ciio")
    assert code == 4 and "operator" in err  # Forbidden, no traceback
    code, _, err = run(capsys, *as_retailer, "crossborder", "file", "standard_contract", "--evidence", "x")
    assert code == 2 and "number" in err and "Traceback" not in err
    code, out, _ = run(
        capsys, *as_retailer, "--json", "crossborder", "file", "standard_contract", "--evidence", "signed",
        "--contract", cid, "--number", "GZ-SC-7",
        "--valid-until", (world.clock.now + timedelta(days=60)).isoformat(),
    )  # fmt: skip
    assert code == 0 and json.loads(out)["number"] == "GZ-SC-7"
    code, out, _ = run(
        capsys, *as_regulator, "--json", "crossborder", "decide",
        '{"origin": "CN", "recipient": "DE", "personal": true, "individuals_ub": 100000}',
    )  # fmt: skip
    assert code == 0 and json.loads(out)["pathway"] == "standard_contract"

    code, out, _ = run(capsys, *as_regulator, "--json", "crossborder", "register")
    rows = json.loads(out)
    assert code == 0 and [r["stage"] for r in rows] == ["accept", "request", "use"]
    csv_path = tmp_path / "register.csv"
    code, _, _ = run(capsys, *as_regulator, "crossborder", "register", "--csv", str(csv_path))
    table = list(csv.DictReader(io.StringIO(csv_path.read_text("utf-8"))))
    assert code == 0 and [r["id"] for r in table] == [r["id"] for r in rows]
    assert table[-1]["pathway"] == "exempt" and table[-1]["articles"] == "CAC 2024 art. 5(4)"
    code, out, _ = run(capsys, *as_regulator, "--json", "crossborder", "counters")
    assert code == 0 and json.loads(out)[0]["exporter_id"] == retailer.participant_id
    code, out, _ = run(capsys, *as_regulator, "crossborder", "expiring", "--within-days", "90")
    assert code == 0 and json.loads(out)[0]["record"]["number"] == "GZ-SC-7"

    pdf = tmp_path / "pack.pdf"
    code, _, _ = run(capsys, *as_retailer, "crossborder", "filing-pack", cid, "--pdf", str(pdf))
    assert code == 0 and pdf.read_bytes().startswith(b"%PDF")
    pack = retailer.client.get(f"/v1/crossborder/contracts/{cid}/filing-pack")
    assert pack["exporter"]["jurisdiction"] == "CN" and pack["recipient_jurisdictions"] == ["DE"]
    assert (
        pack["categories"] == ["cn_mobile"] and pack["contract"]["standard_contract"]["number"] == "GZ-SC-7"
    )
    assert pack["volume"]["counters"]["pi"]["upper_bound"] >= 300
    pipia = regulator.client.get(f"/v1/crossborder/contracts/{cid}/pipia")
    assert pipia["format"] == "datavalley-pipia/v1" and pipia["digest"].startswith("sha256:")
    assert pipia["retain_until"] >= (world.clock.now + timedelta(days=3 * 365)).date().isoformat()
    assert set(pipia["assessment"]) == {"lawfulness_necessity", "impact_and_risk", "measures"}
    pdf_bytes = regulator.client.request(
        "GET", f"/v1/crossborder/contracts/{cid}/pipia", params={"format": "pdf"}
    ).content
    assert pdf_bytes.startswith(b"%PDF")

    # no personal information anywhere the exchange keeps or publishes about these transfers
    with members_file.open(encoding="utf-8") as fh:
        phones = {r["mobile"] for r in csv.DictReader(fh)}
    with Session(world.exchange.engine) as s:
        evs = [e for e in s.scalars(select(EventRow)) if e.type.startswith("crossborder.")]
    published = [
        json.dumps(pack, ensure_ascii=False),
        json.dumps(pipia, ensure_ascii=False),
        csv_path.read_text("utf-8"),
        pdf.read_bytes().decode("latin-1"),
        *(json.dumps(e.payload, ensure_ascii=False) + e.entry for e in evs),
    ]
    assert len(evs) >= 6
    assert not [p for p in phones if any(p in text for text in published)]
