"""The demo's cross-border act: a German consumer and a Guizhou retailer's member data.

1. The operator attests where the parties' nodes run (Guiyang, Frankfurt); the consumer's jurisdiction is
   its verified registration (DE) — the region a party declares in a request plays no part.
2. The German consumer buys an aggregate product: private SQL answers leave as anonymised aggregates,
   recorded as non-personal information with the PIPL art. 73(4) reasoning.
3. It also contracts for row-level delivery of the member list (PI of more than 100,000 people): the
   delivery read is refused — standard contract needed (CAC 2024 art. 8) — until the retailer files one;
   then it is allowed and the people are counted (sketch union, conservative upper bound).
4. The regulator reads the register, exports it as CSV, and the retailer's filing pack and PIPIA report
   are generated as PDF and JSON.
"""

from __future__ import annotations

import csv
import hashlib
import random
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.console import Console
from rich.table import Table
from stdnum.cn import uscc

from datavalley.client import Client
from datavalley.errors import PolicyViolation

MEMBERS = 110_000


def _step() -> int:
    """The next step number of the demo's story (numbered in the order told)."""
    from datavalley.demo import n

    return n()


def write_members(path: Path, rows: int, seed: int = 11) -> Path:
    """A retailer's member list: member number, mobile phone (PI, not sensitive), city, tier, spend."""
    rng = random.Random(seed)
    cities = ["贵阳", "遵义", "六盘水", "安顺", "毕节", "铜仁"]
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["member_id", "mobile", "city", "tier", "spend_cny"])
        for i in range(rows):
            # distinct, valid-looking mainland mobile numbers (13x/15x/18x + 8 digits)
            mobile = f"1{rng.choice('358')}{rng.randint(0, 9)}{(i * 7919 + 1234) % 100_000_000:08d}"
            w.writerow(
                [
                    i + 1,
                    mobile,
                    rng.choice(cities),
                    rng.choice(["gold", "silver", "basic"]),
                    rng.randint(1, 9000),
                ]
            )
    return path


def _onboard(
    op: Client, app: Any, name: str, registry_id: str, roles: list[str], country: str
) -> tuple[str, Client, Ed25519PrivateKey]:
    reg = op.register_participant(
        name=name, kind="enterprise", registry_id=registry_id, roles=roles, admin_name=f"admin of {name}",
        country=country,
    ).value  # fmt: skip
    participant, admin = reg
    op.change_participant_status(participant.id, "verify", reason="registry documents checked")
    token = op.issue_token(admin.id, description="onboarding").value.secret
    client = Client.in_process(app, token)
    key = Ed25519PrivateKey.generate()
    client.register_key(participant.id, key)
    return participant.id, client, key


def crossborder_act(
    home: Path, console: Console, op: Client, people: dict[str, Any], app: Any
) -> dict[str, Any]:
    """Run the act; return a summary for the demo's result (used by tests)."""
    from datavalley.crossborder.node import resource_sketch
    from datavalley.crossborder.sketch import encode
    from datavalley.node.analysis import analyse_source, location_of, registration_payload
    from datavalley.node.registry import NodeRegistry

    console.rule("cross-border data flow: CAC 2024 rules, enforced where data moves")
    base = "91520100MA6DR000"
    code = base + "5"
    retailer_id, retailer, rkey = _onboard(
        op,
        app,
        "黔货优选零售有限公司 (Qianhuo Retail)",
        code + uscc.calc_check_digit(code),
        ["provider"],
        "CN",
    )
    german_id, german, gkey = _onboard(op, app, "Rhein Marktforschung GmbH", "HRB 104711", ["consumer"], "DE")
    op.post(
        f"/v1/crossborder/participants/{retailer_id}/nodes",
        {"jurisdiction": "CN", "site": "Guiyang Gui'an data centre", "evidence": "inspection 2026-12-01 #17"},
    )
    op.post(
        f"/v1/crossborder/participants/{german_id}/nodes",
        {"jurisdiction": "DE", "site": "Frankfurt am Main", "evidence": "inspection 2026-12-02 #18"},
    )
    console.print(
        f"{_step()}. "
        "A Guizhou retailer and a German market-research firm (registered in Cologne, HRB 104711) join; "
        "the operator attests their nodes' locations (CN, DE) after inspection."
    )
    data = home / "node-data"
    data.mkdir(parents=True, exist_ok=True)
    path = write_members(data / "members.csv", MEMBERS)
    analysis = analyse_source(str(path), sector="retail")
    res = retailer.register_resource(
        name="会员名单 Member list", sector="retail", lawful_source="membership terms with consent to share",
        analysis=registration_payload(analysis), tags=["retail", "membership"], declared_grade="general",
        published=True,
    ).value  # fmt: skip
    NodeRegistry(home).record(res.id, location_of(analysis.source, analysis.fingerprint))
    op.resource_action(res.id, "classification", {"grade": "general", "reason": "member list, no core data"})
    sk = resource_sketch(home, retailer_id, res.id, res.pii)
    info = retailer.post(f"/v1/crossborder/resources/{res.id}/sketch", {"sketch": encode(sk)})[0]
    console.print(
        f"{_step()}. "
        f"The retailer's node registers {MEMBERS:,} members (mobile numbers: PI, not sensitive) and "
        f"sketches them: HMAC-SHA256 under a node-held salt into an HLL sketch ({len(sk):,} bytes) — "
        f"estimate {info['estimate']:,.0f}, upper bound {info['upper_bound']:,}. "
        "No identifier leaves the node."
    )
    analytics = retailer.create_product(
        name="会员洞察 Member insights (private analytics)",
        kind="private_analytics",
        resource_ids=[res.id],
        price={"model": "per_query", "amount": 300},
        terms={
            "purposes": ["market-research"], "regions": ["CN", "DE"], "max_uses": 20, "valid_days": 90,
            "tables": {"members": res.id},
            "privacy": {"min_group_size": 10, "epsilon": 2.0, "privacy_unit": "member_id",
                        "rules": {"clamps": {"spend_cny": [0, 9000]}}},
        },
    ).value  # fmt: skip
    delivery = retailer.create_product(
        name="会员名单 Member list (file delivery)",
        kind="file_delivery",
        resource_ids=[res.id],
        price={"model": "one_off", "amount": 50_000},
        terms={"purposes": ["market-research"], "regions": ["DE"], "valid_days": 30, "max_uses": 3},
    ).value  # fmt: skip
    for p in (analytics, delivery):
        retailer.product_action(p.id, "submit")
        op.product_action(p.id, "review", {"approve": True, "note": "checklist passed"})
    pay = german.deposit(500_000, "SEPA 2026-12-03 DE89…3000").value
    op.confirm_payment(pay.id)

    def contract(product_id: str) -> str:
        c = german.request_contract(product_id, purpose="market-research").value
        retailer.contract_action(c.id, "offer")
        german.contract_action(c.id, "accept")  # checked here: contract acceptance with a foreign consumer
        retailer.sign_agreement(c.id, rkey)
        return german.sign_agreement(c.id, gkey).value.id

    agg = contract(analytics.id)
    answer = german.query(
        agg, "SELECT city, COUNT(*) AS members, AVG(spend_cny) AS spend FROM members GROUP BY city"
    )
    rows = answer.get("rows") or []
    reg_client = people["regulator"].client
    first = reg_client.get("/v1/crossborder/register", exporter_id=retailer_id)["items"]
    used = [t for t in first if t["stage"] == "use"][-1]
    console.print(
        f"{_step()}. The German consumer's private SQL query returns {len(rows)} noised groups; the exchange "
        f"records the transfer CN → DE as [green]{used['pathway']}[/green]:\n    "
        f"{used['non_personal_reason']}"
    )
    rows_c = contract(delivery.id)
    request = german.post(f"/v1/crossborder/contracts/{rows_c}/transfers", {"operation": "dv:deliver"})[0]
    digest = "sha256:" + hashlib.sha256(b"delivery members.csv v1").hexdigest()
    refused = ""
    try:
        retailer.record_use(
            rows_c,
            operation="dv:deliver",
            purpose="market-research",
            region="DE",
            request_digest=digest,
            quantity=MEMBERS,
        )
    except PolicyViolation as exc:
        refused = exc.message
    console.print(
        f"{_step()}. Row-level delivery of the member list to Germany: pathway "
        f"[yellow]{request['decision']['pathway']}[/yellow] "
        f"({', '.join(request['decision']['articles'])}); the delivery read is [red]refused[/red]:"
        f"\n    {refused}"
    )
    filing = retailer.post(
        "/v1/crossborder/records",
        {
            "kind": "standard_contract", "contract_id": rows_c, "number": "黔网信标备〔2026〕0042号",
            "evidence": "standard contract signed 2026-12-03, filed with Guizhou CAC",
        },
    )[0]  # fmt: skip
    use = retailer.record_use(
        rows_c,
        operation="dv:deliver",
        purpose="market-research",
        region="DE",
        request_digest=digest,
        quantity=MEMBERS,
    ).value
    counters = reg_client.get("/v1/crossborder/counters")
    mine = [c for c in counters if c["exporter_id"] == retailer_id]
    console.print(
        f"{_step()}. "
        f"The retailer files the standard contract (filing number {filing['number']}); the delivery is "
        f"[green]allowed[/green] (use {use.id}) and counted: {mine[0]['estimate']:,.0f} people this year, "
        f"upper bound {mine[0]['upper_bound']:,} (HLL, 3σ)."
    )
    register = reg_client.get("/v1/crossborder/register", exporter_id=retailer_id)["items"]
    table = Table(title="the regulator's cross-border register (retailer)")
    for col in ("stage", "contract", "route", "pathway", "allowed", "articles"):
        table.add_column(col, overflow="fold")
    for t in register:
        table.add_row(
            t["stage"], t["contract_id"], f"{t['origin']}→{t['destination']}", t["pathway"],
            "yes" if t["allowed"] else "[red]no[/red]", "; ".join(t["articles"]),
        )  # fmt: skip
    console.print(table)
    out = home / "crossborder"
    out.mkdir(exist_ok=True)
    csv_text = reg_client.request("GET", "/v1/crossborder/register.csv").text
    (out / "register.csv").write_text(csv_text, encoding="utf-8")
    pack = retailer.request(
        "GET", f"/v1/crossborder/contracts/{rows_c}/filing-pack", params={"format": "pdf"}
    ).content
    (out / "filing-pack.pdf").write_bytes(pack)
    pipia = retailer.request(
        "GET", f"/v1/crossborder/contracts/{rows_c}/pipia", params={"format": "pdf"}
    ).content
    (out / "pipia.pdf").write_bytes(pipia)
    console.print(
        f"{_step()}. "
        f"Exported: register.csv ({csv_text.count(chr(10)) - 1} rows), the standard-contract filing pack "
        f"({len(pack):,} bytes PDF) and the PIPIA report ({len(pipia):,} bytes PDF) in {out}."
    )
    for c in (retailer, german):
        c.close()
    return {
        "crossborder_aggregate_pathway": used["pathway"],
        "crossborder_refused": bool(refused),
        "crossborder_delivery_pathway": request["decision"]["pathway"],
        "crossborder_counted_upper_bound": mine[0]["upper_bound"],
        "crossborder_register_rows": len(register),
    }
