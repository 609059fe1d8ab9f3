"""The market through the CLI: negotiation with keys on disk, exit codes from the error tree, tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cli.test_cli import run
from conftest import World
from datavalley.keys import write_private_key
from datavalley.market.model import Product
from market.conftest import Party


def test_contract_negotiation_and_settlement_from_the_cli(
    world: World,
    logistics: Party,
    insurer: Party,
    analytics: Product,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    home = str(world.home)
    as_insurer = ["--home", home, "--token", insurer.token]
    as_logistics = ["--home", home, "--token", logistics.token]
    keys = {}
    for name, party in (("insurer", insurer), ("logistics", logistics)):
        keys[name] = tmp_path / f"{name}.pem"
        write_private_key(keys[name], party.key)

    code, out, _ = run(capsys, *as_insurer, "--json", "products", "search", "freight")
    assert code == 0 and [p["id"] for p in json.loads(out)["items"]] == [analytics.id]
    code, _, err = run(capsys, *as_insurer, "contracts", "request", analytics.id, "--purpose", "marketing")
    assert code == 7 and "not offered" in err  # PolicyViolation
    code, out, _ = run(
        capsys,
        *as_insurer,
        "--json",
        "contracts",
        "request",
        analytics.id,
        "--purpose",
        "insurance-pricing",
        "--max-uses",
        "4",
        "--epsilon",
        "2",
    )
    assert code == 0
    cid = json.loads(out)["data"]["id"]
    assert run(capsys, *as_logistics, "contracts", "offer", cid)[0] == 0
    assert run(capsys, *as_insurer, "contracts", "accept", cid)[0] == 0
    wrong = tmp_path / "wrong.pem"
    write_private_key(wrong, Ed25519PrivateKey.generate())
    code, _, err = run(capsys, *as_logistics, "contracts", "sign", cid, "--key", str(wrong))
    assert code == 4 and "does not verify" in err
    assert run(capsys, *as_logistics, "contracts", "sign", cid, "--key", str(keys["logistics"]))[0] == 0
    code, out, _ = run(capsys, *as_insurer, "contracts", "sign", cid, "--key", str(keys["insurer"]))
    assert code == 0 and "FINALIZED" in out and "20.00" in out  # table shows the escrowed 4 × 5.00
    code, out, _ = run(capsys, *as_insurer, "--json", "contracts", "agreement", cid)
    doc = json.loads(out)
    assert doc["agreement"]["policy"]["@type"] == "Agreement" and doc["provider_signature"]
    code, out, _ = run(capsys, *as_insurer, "money", "balances")
    assert code == 0 and "9,980.00" in out  # 10 000.00 deposited, 20.00 in escrow
    pdf = tmp_path / "invoice.pdf"
    code, _, _ = run(capsys, *as_logistics, "contracts", "invoice", cid, "--out", str(pdf))
    assert code == 0 and pdf.read_bytes().startswith(b"%PDF-")
    code, _, err = run(capsys, *as_insurer, "money", "invariants")
    assert code == 4 and "overseer" not in out  # consumers may not read exchange-wide totals
    code, _, err = run(capsys, *as_insurer, "money", "deposit", "0", "--reference", "x")
    assert code == 2 and "amount" in err
