"""``datavalley demo``: the end-to-end scenario on a throw-away exchange, narrated.

Every step goes through the public API (the in-process client), exactly as a remote user's would. Later
capabilities extend this same story: registration, market, private analytics, PSI.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.syntax import Syntax
from rich.table import Table
from stdnum.cn import uscc

from datavalley import demo_data
from datavalley.api.app import create_app
from datavalley.client import Client
from datavalley.errors import InvalidInput
from datavalley.home import init_home, open_exchange
from datavalley.keys import write_private_key
from datavalley.ledger.note import CosignatureSigner
from datavalley.ledger.verify import verify_bundle, verify_receipt
from datavalley.ledger.witness import witness_round

# Fictional organisations. Their unified social credit codes are the 17 characters below plus the check
# character computed per GB 32100-2015 (python-stdnum), so they validate exactly like real ones.
CAST = [
    (
        "logistics",
        "贵州黔通智运物流有限公司 (Qiantong Logistics)",
        "enterprise",
        "91520100MA6DKXXXX",
        ["provider"],
    ),
    (
        "bank",
        "贵阳农商数字银行 (Guiyang Digital Bank)",
        "enterprise",
        "91520100MA6DL0001",
        ["consumer", "provider"],
    ),
    (
        "authority",
        "贵州省大数据发展管理局 (Big Data Authority)",
        "public_body",
        "11520000MB1D0001X",
        ["provider"],
    ),
    (
        "regulator",
        "贵州省数据流通监管中心 (Circulation Regulator)",
        "public_body",
        "12520000429200046",
        ["regulator"],
    ),
    (
        "insurer",
        "贵州黔安财产保险股份有限公司 (Qian'an Property Insurance)",
        "enterprise",
        "91520100MA6DN0003",
        ["consumer"],
    ),
    (
        "data_operator",
        "贵州数据运营集团 (Guizhou Data Operations Group)",
        "enterprise",
        "91520100MA6DM0002",
        ["provider", "consumer"],
    ),
]


@dataclass
class Party:
    """One organisation in the story: its participant, its admin member and its own API client."""

    participant_id: str
    member_id: str
    client: Client
    key: Ed25519PrivateKey


def run_demo(home: Path | None = None, *, console: Console | None = None) -> dict[str, object]:
    """Run the scenario; return a summary (used by tests).

    Without ``home`` the story runs in a new folder under the system's temporary directory, which is kept:
    its pictures, invoice and exports are what the demo shows (their paths are printed at the end).
    """
    console = console or Console()
    if home is None:
        home = Path(tempfile.mkdtemp(prefix="datavalley-demo-")) / "home"
    started = time.perf_counter()
    return _scenario(home, console, started)


@dataclass
class Story:
    """What the acts share: the exchange, the operator's and each party's clients, and what happened."""

    home: Path
    console: Console
    ex: Any
    app: Any
    op: Client
    operator_token: str
    people: dict[str, Party] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)  # pictures and documents, printed at the end
    step: int = 0

    def n(self) -> int:
        """The next step number: steps are numbered in the order they are told."""
        self.step += 1
        return self.step


_story: ContextVar[Story] = ContextVar("datavalley_demo_story")


def n() -> int:
    """The next step number of the story being told."""
    return _story.get().n()


def _scenario(home: Path, console: Console, started: float) -> dict[str, object]:
    console.rule("[bold]datavalley demo[/bold] — a data exchange, end to end")
    done = init_home(home, origin="demo.datavalley.local/ledger")
    ex = open_exchange(home)
    app = create_app(ex)
    op = Client.in_process(app, done.token.secret)
    story = Story(home, console, ex, app, op, done.token.secret)
    reset = _story.set(story)
    console.print(
        f"{n()}. The operator initialises the exchange in [cyan]{home}[/cyan]: database, "
        "Ed25519 signing key (0600), operator account and its one-time token."
    )
    try:
        with Progress(
            TextColumn("[bold]demo[/bold] {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task("", total=len(ACTS))
            for act in ACTS:
                bar.update(task, description=act.__name__.removeprefix("act_").replace("_", " "))
                act(story)
                bar.advance(task)
        elapsed = time.perf_counter() - started
        for f in story.files:
            console.print(f"   wrote [cyan]{f}[/cyan]")
        console.rule(f"done in {elapsed:.1f}s")
        return {"participants": len(story.people) + 1, "files": [str(f) for f in story.files], **story.facts}
    finally:
        _story.reset(reset)
        op.close()
        for party in story.people.values():
            party.client.close()
        ex.close()


def act_onboarding(s: Story) -> None:
    """Six organisations apply, are checked and verified, and register their keys."""
    console, op, app, home, people = s.console, s.op, s.app, s.home, s.people
    console.print(
        f"{n()}. Six organisations apply; the operator checks their unified social credit codes "
        "(check character validated) and verifies them."
    )
    keydir = home / "participant-keys"
    for role_in_story, name, kind, base, roles in CAST:
        code = base + uscc.calc_check_digit(base)
        reg = op.register_participant(
            name=name,
            kind=kind,
            registry_id=code,
            roles=roles,
            admin_name=f"admin of {name.split(' (')[0]}",
        )
        participant, admin = reg.value
        op.change_participant_status(participant.id, "verify", reason="registry documents checked")
        token = op.issue_token(admin.id, description="onboarding").value.secret
        client = Client.in_process(app, token)
        key = Ed25519PrivateKey.generate()
        write_private_key(keydir / f"{participant.id}.pem", key)
        client.register_key(participant.id, key)
        people[role_in_story] = Party(participant.id, admin.id, client, key)
    try:
        op.register_participant(
            name="Typo Co",
            kind="enterprise",
            registry_id="91520100MA6DKXXXX0",
            roles=["provider"],
            admin_name="x",
        )
    except InvalidInput as exc:
        console.print(f"   a mistyped USCC is refused: [yellow]{exc}[/yellow]")
    table = Table(title="participants (as the operator sees them)")
    for col in ("id", "name", "kind", "registry id", "roles", "status"):
        table.add_column(col, no_wrap=col in ("id", "registry id"), overflow="fold")
    for p in op.iter_participants():
        table.add_row(
            p.id, p.name, p.kind.value, p.registry_id, ", ".join(r.value for r in p.roles), p.status.value
        )
    console.print(table)
    console.print(
        "   each organisation registered an Ed25519 public key, proving possession by signature; "
        "private keys stay on their machines (mode 0600)."
    )


def act_registration(s: Story) -> None:
    s.facts.update(_registration_act(s.home, s.console, s.op, s.people))


def act_market(s: Story) -> None:
    s.facts.update(_market_act(s.console, s.op, s.people, s.facts))


def act_analytics(s: Story) -> None:
    s.facts.update(_analytics_act(s.console, s.op, s.people, s.facts["contract_id"]))


def act_settlement(s: Story) -> None:
    s.facts.update(_settlement_act(s.console, s.op, s.people, s.facts["contract_id"]))
    inv = s.people["logistics"].client.invoice(
        s.facts["contract_id"],
        datetime.now(UTC) - timedelta(days=1),
        datetime.now(UTC) + timedelta(seconds=1),
        fmt="pdf",
    )
    path = s.home / "invoice.pdf"
    path.write_bytes(inv)
    s.files.append(path)
    s.console.print(f"   the provider's invoice names both parties and their USCC codes: [cyan]{path}[/cyan]")


def act_psi(s: Story) -> None:
    s.facts.update(_psi_act(s.home, s.console, s.op, s.people, s.facts))


def act_pictures(s: Story) -> None:
    """Two pictures people would rather look at than read: the ε budget draining, the money's flows."""
    from datavalley.demo_pictures import budget_picture, settlement_picture

    made = [
        budget_picture(s.facts.get("budget_trace", []), s.home / "budget.png"),
        settlement_picture(s.facts.get("statement", {}), s.home / "settlement.png"),
    ]
    s.files.extend(p for p in made if p is not None)
    if not all(made):
        s.console.print("   (pictures need matplotlib: pip install 'datavalley[demo]')")


def act_ledger(s: Story) -> None:
    """The regulator witnesses the log, then verifies all of it offline; the bank checks its receipt."""
    console, op, ex, home, people = s.console, s.op, s.ex, s.home, s.people
    console.rule("the verifiable ledger")
    reg_client = people["regulator"].client
    witness_key = Ed25519PrivateKey.generate()
    witness = CosignatureSigner("regulator.demo/witness", witness_key)
    op.register_witness(witness.verifier().verifier_key_string())
    state = home / "witness-state.json"
    first = witness_round(reg_client, witness, state)
    bank = people["bank"]
    action = bank.client.issue_token(bank.member_id, scopes=["consumer"], description="analytics robot")
    second = witness_round(reg_client, witness, state)
    console.print(
        f"{n()}. The regulator's witness checked the log is append-only and cosigned checkpoints "
        f"{first.size} and {second.size}."
    )
    cp = op.checkpoint()
    console.print(
        Panel(
            cp["note"].rstrip("\n"),
            title="latest checkpoint (C2SP signed note + cosignature)",
            expand=False,
        )
    )
    bundle = reg_client.export_ledger()
    report = verify_bundle(bundle, verifier_key=ex.ledger.verifier.verifier_key_string())
    console.print(
        f"{n()}. Offline verification by the regulator: {report.entries} entries, "
        f"{report.checkpoints} signed checkpoints, {report.cosignatures} witness cosignatures: "
        + ("[green]all verified[/green]" if report.ok else f"[red]{report.findings}[/red]")
    )
    receipt = action.receipts[0]
    cpt, entry, index = verify_receipt(receipt, ex.ledger.verifier)
    console.print(
        f"{n()}. The bank keeps the receipt of its action: entry {index} "
        f"([cyan]{json.loads(entry)['type']}[/cyan]) is proven in checkpoint {cpt.size} "
        f"with {len(receipt['inclusion_proof'])} hashes — [green]verified[/green] without the "
        "exchange."
    )
    s.facts.update(
        {
            "entries": report.entries,
            "checkpoint_size": cp["size"],
            "verified": report.ok,
            "cosignatures": report.cosignatures,
            "receipt_index": index,
        }
    )


#: The story, act by act, in order. Add an act with ONE line just before ``act_ledger`` (the final
#: verification): a function taking the :class:`Story`, numbering its steps with ``n()``.
def act_sources(s: Story) -> None:
    from datavalley.node.sources_demo import sources_act

    s.facts.update(sources_act(s.home, s.console, s.op, s.people))


def act_delivery(s: Story) -> None:
    from datavalley.delivery.demo import delivery_act

    s.facts.update(delivery_act(s.home, s.console, s.app, s.op, s.people, s.facts))


def act_crossborder(s: Story) -> None:
    from datavalley.crossborder.demo import crossborder_act

    s.facts.update(crossborder_act(s.home, s.console, s.op, s.people, s.app))


def act_compute(s: Story) -> None:
    from datavalley.compute.demo import compute_act

    s.facts.update(compute_act(s.console, s.op, s.people, s.facts["product_id"]))


def act_governance(s: Story) -> None:
    from datavalley.market.governance_demo import governance_act

    s.facts.update(governance_act(s.console, s.op, s.people, s.facts, s.facts["contract_id"]))


ACTS: tuple[Callable[[Story], None], ...] = (
    act_onboarding,
    act_registration,
    act_market,
    act_analytics,
    act_settlement,
    act_psi,
    act_sources,
    act_delivery,
    act_crossborder,
    act_compute,
    act_governance,
    act_pictures,
    act_ledger,
)


def _registration_act(
    home: Path, console: Console, op: Client, people: dict[str, Party]
) -> dict[str, object]:
    """Registration and rights: three providers register data on their nodes; rights are granted."""
    from datetime import UTC, datetime, timedelta

    from datavalley.cli.registry import resource_table, title_tree
    from datavalley.node.analysis import analyse_source, location_of, registration_payload
    from datavalley.node.registry import NodeRegistry
    from datavalley.rights.certificates import verify_certificate

    console.rule("registration and rights")
    data = home / "node-data"
    data.mkdir(parents=True, exist_ok=True)
    node = NodeRegistry(home)
    datasets = [
        (
            "logistics",
            demo_data.write_trips(data / "trips.csv", 40_000),
            "货运行程 Freight trips 2026",
            "transport",
            "general",
            ["logistics", "trips"],
            False,
        ),
        (
            "bank",
            demo_data.write_loan_applicants(data / "loan_applicants.parquet", 3_000),
            "贷款申请人 Loan applicants",
            "finance",
            "important",
            ["credit", "loans"],
            False,
        ),
        (
            "authority",
            demo_data.write_enterprise_registry(data / "enterprises.jsonl", 2_000),
            "企业登记信息 Enterprise registry",
            "public_administration",
            "general",
            ["registry", "enterprises"],
            True,
        ),
    ]
    ids: dict[str, str] = {}
    for who, path, name, sector, grade, tags, public in datasets:
        analysis = analyse_source(str(path), sector=sector)
        party = people[who]
        res = party.client.register_resource(
            name=name,
            sector=sector,
            lawful_source="collected under contract with the data subjects"
            if not public
            else "statutory enterprise registration",
            analysis=registration_payload(analysis),
            tags=tags,
            declared_grade=grade,
            public_data=public,
            published=True,
        ).value
        node.record(res.id, location_of(analysis.source, analysis.fingerprint))
        ids[who] = res.id
    console.print(
        f"{n()}. Each provider's node analysed its data where it lives (one DuckDB scan: fingerprint, "
        "profile, personal-information detection) and sent only metadata and aggregates:"
    )
    pi = Table(title="detected personal information (counts only; no values leave the node)")
    for col in ("resource", "column", "kind", "valid values", "sensitive (PIPL)"):
        pi.add_column(col)
    for who, rid in ids.items():
        r = people[who].client.get_resource(rid)
        for c in r.pii.get("columns", []):
            pi.add_row(r.name, c["column"], c["kind"], f"{c['valid']:,}", "yes" if c.get("sensitive") else "")
    console.print(pi)
    op.resource_action(
        ids["bank"], "classification", {"grade": "important", "reason": "credit data at scale"}
    )
    grades = Table(title="classification (GB/T 43697-2024): suggested by rules, declared, confirmed")
    for col in ("resource", "sector", "suggested", "declared", "confirmed", "effective"):
        grades.add_column(col)
    for rid in ids.values():
        c = op.get_resource(rid).classification
        grades.add_row(
            rid,
            c.sector,
            c.suggested.value,
            c.declared.value,
            c.confirmed.value if c.confirmed else "—",
            c.effective.value,
        )
    console.print(grades)

    until = datetime.now(UTC) + timedelta(days=365)
    logistics, bank, authority = people["logistics"], people["bank"], people["authority"]
    grant = logistics.client.grant_right(
        ids["logistics"],
        kind="processing_use",
        grantee_id=bank.participant_id,
        purposes=["credit-risk"],
        territories=["CN-52"],
        valid_until=until,
        sublicensable=False,
    ).value
    auth = authority.client.authorise_public_data(
        ids["authority"],
        operator_id=people["data_operator"].participant_id,
        purposes=["enterprise-credit-reports"],
        territories=["CN"],
        valid_until=until,
    ).value
    console.print(
        f"{n()}. The logistics company licenses processing & use of its trips to the bank "
        f"(purpose credit-risk, Guizhou only, one year): right {grant.id}."
    )
    console.print(
        f"{n()}. The Big Data Authority authorises the data operations group to run products on the "
        f"public enterprise registry (public-data authorised operation): right {auth.id}."
    )
    console.print(title_tree(ids["logistics"], logistics.client.chain_of_title(ids["logistics"])))
    console.print(title_tree(ids["authority"], authority.client.chain_of_title(ids["authority"])))
    cert = bank.client.certificate(ids["bank"])
    cert_file = home / "certificate-loan-applicants.json"
    cert_file.write_text(json.dumps(cert, ensure_ascii=False, indent=2), "utf-8")
    pinned = op.verifier_key()["verifier_key"]
    check = verify_certificate(json.loads(cert_file.read_text("utf-8")), verifier_key=pinned)
    console.print(
        f"{n()}. The bank's registration certificate {cert['certificate_id']} (fingerprint "
        f"{cert['resource']['fingerprint'][:22]}…, ledger entry {cert['receipt']['index']}) verified "
        "offline against the pinned exchange key: "
        + ("[green]valid[/green]" if check.ok else f"[red]{check.findings}[/red]")
    )
    found = bank.client.search("enterprise", pii_present=False)
    console.print(
        f"{n()}. Catalog search 'enterprise' without personal information finds {found['total']} "
        f"resource(s); facets by sector: {found['facets']['sector']}."
    )
    del resource_table
    return {
        "resources": len(ids),
        "certificate_ok": check.ok,
        "grant": grant.id,
        "authorisation": auth.id,
        "resource_ids": ids,
    }


def _market_act(
    console: Console, op: Client, people: dict[str, Party], registered: dict[str, Any]
) -> dict[str, Any]:
    """The insurer buys use of the logistics company's trip analytics under a signed ODRL agreement."""

    console.rule("the market")
    logistics, insurer = people["logistics"], people["insurer"]
    trips = registered["resource_ids"]["logistics"]
    op.resource_action(trips, "classification", {"grade": "general", "reason": "aggregates only, reviewed"})
    product = logistics.client.create_product(
        name="货运洞察 Freight insights (private analytics)",
        kind="private_analytics",
        resource_ids=[trips],
        price={"model": "per_query", "amount": 800},
        terms={
            "purposes": ["insurance-pricing", "risk-control"],
            "regions": ["CN"],
            "max_uses": 40,  # ε 2.0 / 40 uses: 0.05 per use, the least the listing accepts
            "valid_days": 180,
            "tables": {"trips": trips},
            "privacy": {
                "min_group_size": 10,
                "epsilon": 2.0,
                "privacy_unit": "driver_id",
                "rules": {
                    "max_rows_per_unit": 10,
                    "max_groups_per_unit": 3,
                    "clamps": {"fare_cny": [0, 4000], "distance_km": [0, 900]},
                    "public_keys": {"dest_province": list(demo_data.PROVINCES)},
                },
            },
        },
        tags=["freight", "logistics", "insurance"],
        description="Aggregates over freight trips; no row ever leaves the logistics company's node.",
    ).value
    submitted = logistics.client.product_action(product.id, "submit").value
    listed = op.product_action(product.id, "review", {"approve": True, "note": "checklist passed"}).value
    checks = Table(title=f"listing review of {product.id}: automatic compliance checklist")
    checks.add_column("check")
    checks.add_column("result")
    checks.add_column("detail", overflow="fold")
    for c in submitted.checklist:
        checks.add_row(c["check"], "[green]pass[/green]" if c["ok"] else "[red]fail[/red]", c["detail"])
    console.print(checks)
    console.print(f"{n()}. The operator lists the product ({listed.status.value}); price 8.00 CNY per query.")
    pay = insurer.client.deposit(200_000, "ICBC transfer 2026-11-22 #0042").value
    op.confirm_payment(pay.id)
    states = [insurer.client.request_contract(product.id, purpose="insurance-pricing", max_uses=20).value]
    cid = states[0].id
    states.append(logistics.client.contract_action(cid, "offer").value)
    states.append(insurer.client.contract_action(cid, "accept").value)
    states.append(logistics.client.sign_agreement(cid, logistics.key).value)
    final = insurer.client.sign_agreement(cid, insurer.key).value
    states.append(final)
    console.print(
        f"{n()}. Negotiation (Dataspace Protocol states): "
        + " → ".join(s.state.value for s in states[:-1])
        + " → VERIFIED → "
        + final.state.value
        + f"; both Ed25519 signatures bind agreement {(final.agreement_digest or '')[:23]}…"
    )
    console.print(
        Panel(
            Syntax(json.dumps(final.policy, ensure_ascii=False, indent=2), "json", word_wrap=True),
            title="the signed ODRL 2.2 agreement policy (JSON-LD)",
            expand=False,
        )
    )
    return {"contract_id": cid, "product_id": product.id, "contract_state": final.state.value}


def _analytics_act(
    console: Console, op: Client, people: dict[str, Party], contract_id: str
) -> dict[str, Any]:
    """The insurer queries the trips through its contract: only noised, suppressed aggregates come back."""
    from datavalley.cli.market import answer_table
    from datavalley.errors import BudgetExhausted

    console.rule("usable but invisible: private SQL on the logistics company's node")
    insurer = people["insurer"]
    queries = [
        (
            "trip counts per destination province",
            "SELECT dest_province, COUNT(*) AS trips FROM trips GROUP BY dest_province ORDER BY trips DESC",
            0.5,
        ),
        (
            "average fare per province and month (first quarter)",
            "SELECT dest_province, month, AVG(fare_cny) AS "
            "avg_fare, COUNT(*) AS trips FROM trips WHERE month <= '2026-03' GROUP BY dest_province, month "
            "HAVING COUNT(*) > 100 ORDER BY dest_province, month LIMIT 12",
            0.75,
        ),
        (
            "trip counts per destination province (asked again)",
            "select dest_province, count(*) as trips from trips group by dest_province order by trips desc",
            0.5,
        ),
        ("average distance", "SELECT AVG(distance_km) AS avg_km FROM trips", 0.5),
        ("total fares", "SELECT SUM(fare_cny) AS fares FROM trips", 0.5),
    ]
    budget = Table(title="privacy budget of the contract (ε), query by query")
    for col in ("query", "ε charged", "ε left", "suppressed groups", "note"):
        budget.add_column(col)
    answered, refused = 0, 0
    trace: list[dict[str, Any]] = []  # the budget after each query: the "budget draining" picture
    for title, sql, eps in queries:
        try:
            answer = insurer.client.query(contract_id, sql, epsilon=eps)
        except BudgetExhausted as exc:
            refused += 1
            budget.add_row(title, "0", "—", "—", f"[red]refused: {exc.message.split(': ', 1)[-1]}[/red]")
            trace.append({"query": title, "charged": 0.0, "left": None, "refused": True, "cached": False})
            continue
        answered += 1
        if answered <= 2:
            console.print(f"   [bold]{title}[/bold]: [dim]{sql}[/dim]")
            console.print(answer_table(answer))
        trace.append(
            {
                "query": title,
                "charged": float(answer["charged"]),
                "left": float(answer["budget_left"]),
                "refused": False,
                "cached": bool(answer["cached"]),
            }
        )
        supp = answer.get("suppressed_groups")
        budget.add_row(
            title,
            f"{answer['charged']:g}",
            f"{answer['budget_left']:g}",
            "DP threshold" if supp is None else str(supp),
            "cached: same answer, no charge" if answer["cached"] else "",
        )
    console.print(budget)
    console.print(
        f"{n()}. Each answer was checked against the contract, metered, noised with OpenDP's discrete "
        "Laplace sampler and charged to the contract's ε budget; groups with fewer than 10 drivers were "
        "suppressed; the repeated query cost nothing; once the budget was spent the next query was refused."
    )
    return {"queries_answered": answered, "queries_refused": refused, "budget_trace": trace}


def _psi_act(
    home: Path, console: Console, op: Client, people: dict[str, Party], registered: dict[str, Any]
) -> dict[str, Any]:
    """The bank and the logistics company intersect phone numbers node to node, under a contract."""
    import csv
    import random
    import socket
    import threading

    import uvicorn

    from datavalley.node.psi import PREFIX, contract_responder, responder_app, run_contract_psi
    from datavalley.node.registry import NodeRegistry
    from datavalley.psi import Mode
    from datavalley.psi.workers import Workers

    console.rule("usable but invisible: private set intersection between two nodes")
    logistics, bank = people["logistics"], people["bank"]
    trips = registered["resource_ids"]["logistics"]
    product = logistics.client.create_product(
        name="司机交集 Driver intersection (PSI)",
        kind="set_intersection",
        resource_ids=[trips],
        price={"model": "per_query", "amount": 2_000},
        terms={
            "purposes": ["credit-risk"],
            "max_uses": 10,
            "psi_modes": ["cardinality", "aggregate"],
            "psi": {"id_column": "driver_phone", "id_kind": "phone", "columns": {"fare_cny": [0, 4000]}},
            "privacy": {"epsilon": 2.0, "epsilon_per_session": 1.0},
        },
        tags=["psi", "drivers"],
    ).value
    logistics.client.product_action(product.id, "submit")
    op.product_action(product.id, "review", {"approve": True})
    pay = bank.client.deposit(50_000, "CCB transfer 2026-11-22 #0077").value
    op.confirm_payment(pay.id)
    c = bank.client.request_contract(product.id, purpose="credit-risk", max_uses=5).value
    logistics.client.contract_action(c.id, "offer")
    bank.client.contract_action(c.id, "accept")
    logistics.client.sign_agreement(c.id, logistics.key)
    contract = bank.client.sign_agreement(c.id, bank.key).value

    # The bank's own list: loan applicants' phones, some of them drivers, written as people type them.
    data = home / "node-data"
    with (data / "trips.csv").open(encoding="utf-8") as fh:
        driver_phones = sorted({row["driver_phone"] for row in csv.DictReader(fh)})
    rng = random.Random(7)
    drivers_applying = rng.sample(driver_phones, 300)
    applicants = list(drivers_applying) + [demo_data.mobile(rng) for _ in range(1_200)]
    applicants += ["13800000000x", "not a phone", applicants[0]]  # two invalid, one duplicate
    ids = data / "bank-applicant-phones.txt"
    ids.write_text(
        "\n".join(f"+86 {p[:3]} {p[3:7]} {p[7:]}" if i % 3 == 0 else p for i, p in enumerate(applicants))
    )

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    workers = Workers(2, threads=True)
    responder = contract_responder(
        participant=logistics.participant_id,
        signing_key=logistics.key,
        client=logistics.client,
        registry=NodeRegistry(home),
        workdir=home / "node" / "psi-logistics",
        workers=workers,
    )
    server = uvicorn.Server(
        uvicorn.Config(responder_app(responder), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        url = f"http://127.0.0.1:{port}{PREFIX}"
        outcomes = [
            run_contract_psi(
                bank.client,
                bank.participant_id,
                bank.key,
                url,
                contract.id,
                mode,
                ids,
                home / "node" / "psi-bank",
                workers=workers,
            )
            for mode in (Mode.CARDINALITY, Mode.AGGREGATE)
        ]
    finally:
        server.should_exit = True
        thread.join(10)
        workers.close()
    card, agg = outcomes
    norm = card.usage.normalisation
    table = Table(title=f"what the bank learned under contract {contract.id} (over HTTP, node to node)")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("applicant phones read", f"{norm.records:,}")
    table.add_row("invalid (counted, never dropped silently)", f"{norm.invalid_total} {dict(norm.invalid)}")
    table.add_row("duplicates removed", f"{norm.duplicates}")
    table.add_row("logistics drivers (set size)", f"{card.peer_set_size:,}")
    table.add_row("[bold]applicants who are active drivers[/bold]", f"[bold]{card.cardinality:,}[/bold]")
    assert agg.aggregate is not None
    avg = agg.aggregate.average("fare_cny")
    table.add_row("DP count over the intersection (ε 0.5)", f"{agg.aggregate.count:,}")
    table.add_row("DP average fare per matched driver (ε 0.5)", "—" if avg is None else f"{avg:,.0f} CNY")
    console.print(table)
    final = bank.client.get_contract(contract.id)
    console.print(
        f"{n()}. Each side blinded its phone numbers (X25519 through libsodium); only double-blinded points "
        f"crossed the wire ({card.usage.bytes_sent + card.usage.bytes_received:,} bytes). The logistics node "
        f"never learned which drivers matched; the aggregate was summed under encryption and noised before "
        f"release. Both nodes recorded each session (uses {final.uses}, ε spent {final.budget_spent:g})."
    )
    from datavalley.psi.normalise import IdKind, InvalidId, normalise

    def valid(phone: str) -> bool:
        try:
            normalise(IdKind.PHONE, phone)
            return True
        except InvalidId:
            return False

    # the truth, known only to this narrator: applicants who are drivers, with a valid number
    expected = sum(1 for p in drivers_applying if valid(p))
    return {"psi_cardinality": card.cardinality, "psi_expected": expected, "psi_uses": final.uses}


def _settlement_act(
    console: Console, op: Client, people: dict[str, Party], contract_id: str
) -> dict[str, Any]:
    """Escrow releases per use, the exchange fee, and the settlement statement of the contract."""
    from datavalley.market.settlement import yuan

    logistics, insurer = people["logistics"], people["insurer"]
    uses = insurer.client.uses(contract_id)
    metered = Table(title=f"metered uses of {contract_id} (digests and quantities only)")
    for col in ("time", "operation", "ε spent", "price (CNY)", "request digest"):
        metered.add_column(col)
    for u in uses:
        metered.add_row(
            u.created_at.strftime("%H:%M:%S"),
            u.operation,
            f"{u.privacy_cost:g}",
            yuan(u.amount),
            u.request_digest[:30] + "…",
        )
    console.print(metered)
    st = logistics.client.contract_statement(contract_id)
    table = Table(title="settlement statement (escrow → provider, minus the 2 % exchange fee)")
    for col in ("funded", "released", "exchange fee", "provider net", "escrow left", "uses", "ε spent"):
        table.add_column(col, justify="right")
    table.add_row(
        yuan(st["funded"]),
        yuan(st["released"]),
        yuan(st["fees"]),
        yuan(st["provider_net"]),
        yuan(st["escrow"]),
        str(st["uses"]),
        f"{st['budget_spent']:g}",
    )
    console.print(table)
    inv = op.invariants()
    console.print(
        f"   double-entry check over {inv['transactions']} transactions: "
        f"net deposits {yuan(inv['net_deposits'])} CNY, "
        f"escrow {yuan(inv['escrow_total'])} = open obligations {yuan(inv['open_obligations'])}: "
        + ("[green]balanced[/green]" if inv["ok"] else f"[red]{inv['problems']}[/red]")
    )
    return {"uses": len(uses), "released": st["released"], "money_ok": inv["ok"], "statement": st}
