"""CLI groups: products, contracts, money, disputes (thin shells over the SDK)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from datavalley.cli.state import (
    CURSOR,
    LIMIT,
    CliState,
    console,
    kv_table,
    list_table,
    output,
    page_output,
    state,
)
from datavalley.errors import InvalidInput
from datavalley.market.model import Contract, Product
from datavalley.market.settlement import yuan

products = typer.Typer(help="Data products: create, submit, review, delist, search.", no_args_is_help=True)
contracts_app = typer.Typer(
    help="Contracts: request, offer, accept, sign, use, terminate.", no_args_is_help=True
)
money = typer.Typer(
    help="Money: deposits, withdrawals, balances, statements, settlement.", no_args_is_help=True
)
disputes = typer.Typer(help="Disputes on contracts, with ledger receipts as evidence.", no_args_is_help=True)


def _json_arg(value: str, name: str) -> Any:
    """A JSON argument given inline or as @FILE (whole-line ``//`` comments allowed)."""
    from datavalley.market.terms import strip_comments

    if value.startswith("@"):
        try:
            text = Path(value[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidInput(f"--{name} {value}: {exc.strerror or exc}", field=name) from None
    else:
        text = value
    try:
        return json.loads(strip_comments(text))
    except ValueError as exc:
        raise InvalidInput(f"--{name} is not valid JSON: {exc}", field=name) from None


def product_table(p: Product) -> Table:
    return kv_table(
        f"product {p.id}",
        [
            ("name", p.name),
            ("kind", p.kind.value),
            ("market", p.market.value),
            ("provider", p.provider_id),
            ("resources", ", ".join(p.resource_ids)),
            ("price", f"{p.price.model.value} {yuan(p.price.amount)} {p.price.currency}"),
            ("status", p.status.value),
            (
                "checklist",
                "\n".join(f"{'✔' if c['ok'] else '✘'} {c['check']}: {c['detail']}" for c in p.checklist),
            ),
            ("review note", p.review_note),
        ],
    )


def contract_table(c: Contract) -> Table:
    return kv_table(
        f"contract {c.id}",
        [
            ("state", c.state.value + (" (suspended)" if c.suspended else "")),
            ("product", c.product_id),
            ("provider → consumer", f"{c.provider_id} → {c.consumer_id}"),
            ("price", f"{c.price.model.value} {yuan(c.price.amount)} {c.price.currency}"),
            (
                "escrow",
                f"{yuan(c.escrow)} (funded {yuan(c.funded)}, released {yuan(c.released)}, "
                f"refunded {yuan(c.refunded)})",
            ),
            ("uses", c.uses),
            ("privacy budget spent", f"ε = {c.budget_spent:g}"),
            ("valid", f"{c.valid_from} – {c.valid_until}" if c.valid_from else "—"),
            ("agreement", c.agreement_digest),
            (
                "signed by",
                ", ".join(
                    s
                    for s, v in (("provider", c.provider_signature), ("consumer", c.consumer_signature))
                    if v
                )
                or "—",
            ),
        ],
    )


# --- products --------------------------------------------------------------------------------------


@products.command("create")
def create(
    ctx: typer.Context,
    name: str = typer.Option(..., help="product name"),
    kind: str = typer.Option(..., help="private_analytics | set_intersection | file_delivery"),
    resource: list[str] = typer.Option(..., "--resource", help="resource ID (repeatable)"),
    price: str = typer.Option(..., help='JSON, e.g. {"model":"per_query","amount":500} (fen), or @FILE'),
    terms: str = typer.Option(
        ..., help="JSON policy template, or @FILE (see `datavalley products terms-template --kind …`)"
    ),
    description: str = typer.Option("", help="What the product offers."),
    tag: list[str] = typer.Option([], "--tag", help="A search tag (repeatable)."),
) -> None:
    """Create a draft product on resources you hold or operate."""
    st = state(ctx)
    res = st.client().create_product(
        name=name,
        kind=kind,
        resource_ids=resource,
        price=_json_arg(price, "price"),
        terms=_json_arg(terms, "terms"),
        description=description,
        tags=tag,
    )
    output(st, res.value, product_table(res.value), receipts=res.receipts)


def _product_action(action: str, help_: str, build: Any = None) -> None:
    def command(
        ctx: typer.Context, product_id: str, note: str = typer.Option("", help="note or reason")
    ) -> None:
        st = state(ctx)
        res = st.client().product_action(product_id, action, build(note) if build else {})
        output(st, res.value, product_table(res.value), receipts=res.receipts)

    command.__doc__ = help_
    products.command(action)(command)


_product_action("submit", "Submit for listing review (runs the compliance checklist).")
_product_action("delist", "Stop new orders (running contracts continue).", lambda n: {"reason": n})
_product_action(
    "regulator-approval", "Regulator: approve a product on important data.", lambda n: {"note": n}
)


@products.command("terms-template")
def terms_template(
    ctx: typer.Context,
    kind: str = typer.Option(..., help="private_analytics | set_intersection | file_delivery"),
) -> None:
    """Print a commented, valid example of product terms for KIND (save it and pass --terms @FILE)."""
    from datavalley.market.terms import commented_template, template

    st = state(ctx)
    if st.as_json:
        output(st, template(kind))
        return
    typer.echo(commented_template(kind), nl=False)


@products.command("review")
def review(
    ctx: typer.Context,
    product_id: str,
    approve: bool = typer.Option(..., "--approve/--reject"),
    note: str = "",
) -> None:
    """Operator: list (only if every check passes) or reject with a reason."""
    st = state(ctx)
    res = st.client().product_action(product_id, "review", {"approve": approve, "note": note})
    output(st, res.value, product_table(res.value), receipts=res.receipts)


@products.command("show")
def show_product(ctx: typer.Context, product_id: str) -> None:
    """Show a product: kind, price, status and the listing checklist."""
    st = state(ctx)
    p = st.client().get_product(product_id)
    output(st, p, product_table(p))


@products.command("search")
def search(
    ctx: typer.Context,
    q: str = typer.Argument(""),
    kind: str | None = None,
    limit: int = LIMIT,
    cursor: str | None = CURSOR,
) -> None:
    """Listed products (and your own drafts)."""
    st = state(ctx)
    page = st.client().search_products(q, kind=kind, limit=limit, cursor=cursor)
    page_output(
        st,
        "products",
        ["id", "name", "kind", "status", "price (CNY)"],
        page,
        lambda p: [
            p.id,
            p.name,
            p.kind.value,
            p.status.value,
            f"{p.price.model.value} {yuan(p.price.amount)}",
        ],
    )


# --- contracts -------------------------------------------------------------------------------------


@contracts_app.command("request")
def request(
    ctx: typer.Context,
    product_id: str,
    purpose: str = typer.Option(...),
    max_uses: int | None = None,
    valid_days: int | None = None,
    region: list[str] = typer.Option([], "--region"),
    epsilon: float | None = typer.Option(None, help="privacy budget (may only be lowered)"),
    min_group_size: int | None = typer.Option(None, help="may only be raised"),
) -> None:
    """Consumer: request a contract on a listed product."""
    st = state(ctx)
    privacy = {k: v for k, v in (("epsilon", epsilon), ("min_group_size", min_group_size)) if v is not None}
    terms: dict[str, Any] = {
        "max_uses": max_uses,
        "valid_days": valid_days,
        "regions": region or None,
        "privacy": privacy or None,
    }
    res = st.client().request_contract(product_id, purpose=purpose, **{k: v for k, v in terms.items() if v})
    output(st, res.value, contract_table(res.value), receipts=res.receipts)


@contracts_app.command("offer")
def offer(
    ctx: typer.Context, contract_id: str, price: str | None = typer.Option(None, help="negotiated price JSON")
) -> None:
    """Provider: offer the terms (optionally a negotiated price)."""
    st = state(ctx)
    body = {"price": _json_arg(price, "price")} if price else {}
    res = st.client().contract_action(contract_id, "offer", body)
    output(st, res.value, contract_table(res.value), receipts=res.receipts)


@contracts_app.command("accept")
def accept(ctx: typer.Context, contract_id: str) -> None:
    """Consumer: accept the offer; the agreement is fixed."""
    st = state(ctx)
    res = st.client().contract_action(contract_id, "accept")
    output(st, res.value, contract_table(res.value), receipts=res.receipts)


@contracts_app.command("sign")
def sign(
    ctx: typer.Context, contract_id: str, key: Path = typer.Option(..., help="your Ed25519 private key (PEM)")
) -> None:
    """Sign the agreement with your participant key (provider first, then consumer)."""
    from datavalley.keys import load_private_key

    st = state(ctx)
    res = st.client().sign_agreement(contract_id, load_private_key(key))
    output(st, res.value, contract_table(res.value), receipts=res.receipts)


@contracts_app.command("agreement")
def agreement(ctx: typer.Context, contract_id: str) -> None:
    """Print the agreement document (with its ODRL policy) and its digest."""
    st = state(ctx)
    doc = st.client().agreement(contract_id)
    if st.as_json:
        output(st, doc)
        return
    typer.echo(json.dumps(doc, ensure_ascii=False, indent=2))


@contracts_app.command("terminate")
def terminate(ctx: typer.Context, contract_id: str, reason: str = typer.Option(...)) -> None:
    """Terminate a contract (escrow is settled and rights revoked)."""
    st = state(ctx)
    res = st.client().contract_action(contract_id, "terminate", {"reason": reason})
    output(st, res.value, contract_table(res.value), receipts=res.receipts)


@contracts_app.command("suspend")
def suspend(ctx: typer.Context, contract_id: str, resume: bool = False, reason: str = "") -> None:
    """Operator or provider: suspend (or --resume) use."""
    st = state(ctx)
    res = st.client().contract_action(contract_id, "suspend", {"suspended": not resume, "reason": reason})
    output(st, res.value, contract_table(res.value), receipts=res.receipts)


@contracts_app.command("show")
def show_contract(ctx: typer.Context, contract_id: str) -> None:
    """Show a contract: state, parties, price, uses and escrow."""
    st = state(ctx)
    c = st.client().get_contract(contract_id)
    output(st, c, contract_table(c))


@contracts_app.command("list")
def list_contracts(
    ctx: typer.Context,
    contract_state: str | None = typer.Option(None, "--state"),
    limit: int = LIMIT,
    cursor: str | None = CURSOR,
) -> None:
    """Contracts you are a party to (operators: all)."""
    st = state(ctx)
    page = st.client().page(Contract, "/v1/contracts", state=contract_state, limit=limit, cursor=cursor)
    page_output(
        st,
        "contracts",
        ["id", "product", "state", "consumer", "escrow", "uses"],
        page,
        lambda c: [c.id, c.product_id, c.state.value, c.consumer_id, yuan(c.escrow), c.uses],
    )


@contracts_app.command("uses")
def uses(ctx: typer.Context, contract_id: str) -> None:
    """Metered uses: operation, quantity, privacy cost, amount (no results, only digests)."""
    st = state(ctx)
    items = st.client().uses(contract_id)
    rows = [
        [
            u.created_at.isoformat()[:19],
            u.operation,
            u.quantity,
            f"{u.privacy_cost:g}",
            yuan(u.amount),
            u.request_digest[:23] + "…",
        ]
        for u in items
    ]
    output(
        st,
        items,
        list_table(f"uses of {contract_id}", ["time", "operation", "qty", "ε", "amount", "request"], rows),
    )


@contracts_app.command("statement")
def contract_statement(ctx: typer.Context, contract_id: str) -> None:
    """A contract's statement: prepaid, released, fees, refunds, escrow left."""
    st = state(ctx)
    s = st.client().contract_statement(contract_id)
    if st.as_json:
        output(st, s)
        return
    console.print(
        kv_table(
            f"settlement of {contract_id}",
            [
                ("funded", yuan(s["funded"])),
                ("released", yuan(s["released"])),
                ("exchange fees", yuan(s["fees"])),
                ("provider net", yuan(s["provider_net"])),
                ("refunded", yuan(s["refunded"])),
                ("escrow", yuan(s["escrow"])),
                ("uses", s["uses"]),
                ("privacy budget spent", f"ε = {s['budget_spent']:g}"),
            ],
        )
    )


@contracts_app.command("invoice")
def invoice(
    ctx: typer.Context,
    contract_id: str,
    out: Path = typer.Option(..., help="file to write (.html, .pdf or .json)"),
    days: int = typer.Option(30, help="period: the last N days"),
) -> None:
    """Write the provider's invoice for the contract as HTML, PDF or JSON."""
    st = state(ctx)
    end = datetime.now(UTC) + timedelta(seconds=1)
    fmt = out.suffix.lstrip(".") or "json"
    if fmt not in ("html", "pdf", "json"):
        raise InvalidInput("--out must end in .html, .pdf or .json", field="out")
    data = st.client().invoice(contract_id, end - timedelta(days=days), end, fmt=fmt)
    if fmt == "pdf":
        out.write_bytes(data)
    else:
        out.write_text(
            data if fmt == "html" else json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8"
        )
    output(st, {"file": str(out), "format": fmt}, kv_table("invoice", [("file", out), ("format", fmt)]))


# --- money -----------------------------------------------------------------------------------------


def payment_table(p: Any) -> Table:
    return kv_table(
        f"payment {p.id}",
        [
            ("direction", p.direction),
            ("amount", f"{yuan(p.amount)} CNY"),
            ("reference", p.reference),
            ("status", p.status),
            ("participant", p.participant_id),
        ],
    )


@money.command("deposit")
def deposit(
    ctx: typer.Context,
    amount: int = typer.Argument(..., help="fen"),
    reference: str = typer.Option(...),
    idempotency_key: str | None = None,
) -> None:
    """Announce a bank transfer to the exchange (the operator confirms it)."""
    st = state(ctx)
    res = st.client().deposit(amount, reference, idempotency_key=idempotency_key)
    output(st, res.value, payment_table(res.value), receipts=res.receipts)


@money.command("withdraw")
def withdraw(
    ctx: typer.Context,
    amount: int = typer.Argument(..., help="fen"),
    reference: str = typer.Option(...),
    idempotency_key: str | None = None,
) -> None:
    """Request a withdrawal to your bank account; the operator confirms it."""
    st = state(ctx)
    res = st.client().withdraw(amount, reference, idempotency_key=idempotency_key)
    output(st, res.value, receipts=res.receipts)


@money.command("confirm")
def confirm(ctx: typer.Context, payment_id: str, reject: bool = False) -> None:
    """Operator: confirm (or --reject) a bank transfer."""
    st = state(ctx)
    res = st.client().confirm_payment(payment_id, confirmed=not reject)
    output(st, res.value, payment_table(res.value), receipts=res.receipts)


@money.command("balances")
def balances(ctx: typer.Context, participant: str | None = None) -> None:
    """Account balances (yours; operators may name a participant)."""
    st = state(ctx)
    items = st.client().balances(participant)
    output(
        st,
        items,
        list_table(
            "balances (CNY)",
            ["account", "kind", "balance"],
            [[b.owner, b.kind, yuan(b.balance)] for b in items],
        ),
    )


@money.command("invariants")
def invariants(ctx: typer.Context) -> None:
    """Overseers: check the double-entry invariants (exit 9 if any fails)."""
    from datavalley.errors import IntegrityError

    st = state(ctx)
    report = st.client().invariants()
    output(st, report)
    if not report["ok"]:
        raise IntegrityError("money invariants violated: " + "; ".join(report["problems"]))


@money.command("settle")
def settle(ctx: typer.Context) -> None:
    """Operator: renew subscriptions and end expired contracts."""
    st = state(ctx)
    output(st, st.client().run_settlement())


# --- disputes --------------------------------------------------------------------------------------


@disputes.command("open")
def open_(
    ctx: typer.Context,
    contract_id: str,
    claim: str = typer.Option(...),
    evidence: list[Path] = typer.Option(..., "--receipt", help="ledger receipt JSON file (repeatable)"),
) -> None:
    """Open a dispute on a contract, with ledger receipts as evidence."""
    st = state(ctx)
    receipts = [json.loads(p.read_text(encoding="utf-8")) for p in evidence]
    res = st.client().open_dispute(contract_id, claim=claim, evidence=receipts)
    output(st, res.value, receipts=res.receipts)


@disputes.command("rule")
def rule(
    ctx: typer.Context,
    dispute_id: str,
    reason: str = typer.Option(...),
    refund: int = 0,
    penalty: int = 0,
    terminate_contract: bool = typer.Option(False, "--terminate"),
) -> None:
    """Operator: rule — refund (fen), penalty (fen), terminate."""
    st = state(ctx)
    res = st.client().rule_dispute(
        dispute_id, reason=reason, refund=refund, penalty=penalty, terminate=terminate_contract
    )
    output(st, res.value, receipts=res.receipts)


@disputes.command("list")
def list_disputes(
    ctx: typer.Context, status: str | None = None, limit: int = LIMIT, cursor: str | None = CURSOR
) -> None:
    """Disputes you are a party to (operators: all)."""
    from datavalley.market.model import Dispute

    st = state(ctx)
    page = st.client().page(Dispute, "/v1/disputes", status=status, limit=limit, cursor=cursor)
    page_output(
        st,
        "disputes",
        ["id", "contract", "claimant", "status"],
        page,
        lambda d: [d.id, d.contract_id, d.claimant_id, d.status],
    )


query_app = typer.Typer(
    help="Private SQL under a contract (aggregates only, noised, metered).", no_args_is_help=True
)


def answer_table(answer: dict[str, Any]) -> Table:
    """Released rows with each noisy cell's 95 % interval."""
    t = Table(
        title=f"released under {answer['contract_id']}" + (" (cached: no charge)" if answer["cached"] else "")
    )
    for col in answer["columns"]:
        t.add_column(col)
    for row, noise in zip(answer["rows"], answer["noise"], strict=True):
        cells = []
        for value, n in zip(row, noise, strict=True):
            if value is None:
                cells.append("—")  # e.g. an AVG whose noisy count was not positive
            elif n is None:
                cells.append(str(value))
            else:
                shown = f"{value:,.2f}" if isinstance(value, float) else f"{value:,}"
                cells.append(f"{shown}  [dim]±95% [{n['ci95'][0]:,.1f}, {n['ci95'][1]:,.1f}][/dim]")
        t.add_row(*cells)
    suppressed = answer.get("suppressed_groups")
    t.caption = f"ε charged {answer['charged']:g}, budget left {answer['budget_left']:g}; " + (
        "groups released by DP thresholding" if suppressed is None else f"{suppressed} group(s) suppressed"
    )
    return t


@query_app.command("run")
def run_query(
    ctx: typer.Context,
    sql: str = typer.Argument(..., help="SELECT keys, COUNT/SUM/AVG … FROM the product's tables"),
    contract: str = typer.Option(..., "--contract", help="the contract to query under"),
    epsilon: float | None = typer.Option(None, help="privacy cost of this query (default 0.5)"),
    purpose: str | None = None,
) -> None:
    """Run private SQL on the provider's node: only noised, suppressed aggregates come back."""
    st = state(ctx)
    answer = st.client().query(contract, sql, epsilon=epsilon, purpose=purpose)
    if st.as_json:
        output(st, answer)
        return
    console.print(answer_table(answer))


__all__ = ["CliState", "contracts_app", "disputes", "money", "products", "query_app"]
