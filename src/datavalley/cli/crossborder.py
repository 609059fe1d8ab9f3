"""``datavalley crossborder``: rules, decisions, facts, sketches, records, the regulator's register and the
documents people file (thin shells over the SDK's generic requests; docs/CROSS_BORDER.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from datavalley.cli.state import CliState, console, kv_table, list_table, state
from datavalley.errors import InvalidInput

crossborder_app = typer.Typer(
    help="Cross-border data flow: CAC 2024 / PIPL / GDPR Chapter V pathways, records and the register.",
    no_args_is_help=True,
)


def _home(st: CliState) -> Path:
    from datavalley.config import load_settings

    return st.home or load_settings().home


def _show(st: CliState, data: Any, title: str = "") -> None:
    if st.as_json or not isinstance(data, dict):
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    rows = [
        (k, json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else v) for k, v in data.items()
    ]
    console.print(kv_table(title, rows))


def _body(answer: Any) -> Any:
    """The ``data`` of a state change's answer (``Client.post`` returns data, receipts, replayed)."""
    if isinstance(answer, tuple):
        return answer[0]
    return answer.get("data", answer) if isinstance(answer, dict) else answer


def _json_opt(value: str | None, name: str) -> Any:
    if value is None:
        return None
    text = Path(value[1:]).read_text(encoding="utf-8") if value.startswith("@") else value
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"--{name} is not valid JSON: {exc}", field=name) from None


@crossborder_app.command("rules")
def rules_cmd(ctx: typer.Context) -> None:
    """Print the rule set in force (versioned data with its sources)."""
    st = state(ctx)
    typer.echo(json.dumps(st.client().get("/v1/crossborder/rules"), ensure_ascii=False, indent=2))


@crossborder_app.command("decide")
def decide_cmd(
    ctx: typer.Context,
    proposal: str = typer.Argument(..., help="The proposed transfer as JSON (or @FILE)."),
) -> None:
    """Run the decision engine on a hypothetical transfer (nothing is recorded)."""
    st = state(ctx)
    answer = (
        st.client().request("POST", "/v1/crossborder/decide", json=_json_opt(proposal, "proposal")).json()
    )
    _show(st, answer, "decision")


@crossborder_app.command("facts")
def facts_cmd(
    ctx: typer.Context,
    participant_id: str,
    ciio: bool | None = typer.Option(None, "--ciio/--no-ciio", help="Attest CIIO status (operator)."),
    ftz: str | None = typer.Option(None, help="Free trade zone the participant is registered in."),
    gdpr_role: str = typer.Option("controller", help="controller or processor (GDPR)."),
) -> None:
    """Show a participant's cross-border facts, or attest them (operator) with --ciio/--no-ciio."""
    st = state(ctx)
    c = st.client()
    if ciio is None:
        _show(st, c.get(f"/v1/crossborder/participants/{participant_id}"), f"facts of {participant_id}")
        return
    body = {"ciio": ciio, "ftz_zone": ftz, "gdpr_role": gdpr_role}
    _show(
        st, _body(c.request("PUT", f"/v1/crossborder/participants/{participant_id}/facts", json=body).json())
    )


@crossborder_app.command("node")
def node_cmd(
    ctx: typer.Context,
    participant_id: str,
    jurisdiction: str = typer.Option(..., help="ISO 3166-1 alpha-2 code of where the node runs."),
    site: str = typer.Option(..., help="Data centre / site name."),
    evidence: str = typer.Option(..., help="Inspection reference (stored as a digest)."),
) -> None:
    """Attest where a participant's node runs (operator)."""
    st = state(ctx)
    body = {"jurisdiction": jurisdiction, "site": site, "evidence": evidence}
    _show(st, _body(st.client().post(f"/v1/crossborder/participants/{participant_id}/nodes", body)), "node")


@crossborder_app.command("sketch")
def sketch_cmd(
    ctx: typer.Context,
    resource_id: str,
    participant_id: str = typer.Option(..., "--as", help="The exporter (holder) this node runs for."),
) -> None:
    """On the provider's node: sketch a resource's identifiers (salted, HLL) and submit the sketch."""
    from datavalley.crossborder import sketch
    from datavalley.crossborder.node import resource_sketch

    st = state(ctx)
    c = st.client()
    res = c.get_resource(resource_id)
    data = resource_sketch(_home(st), participant_id, resource_id, res.pii)
    answer = _body(c.post(f"/v1/crossborder/resources/{resource_id}/sketch", {"sketch": sketch.encode(data)}))
    _show(st, answer, f"sketch of {resource_id}")


@crossborder_app.command("file")
def file_cmd(
    ctx: typer.Context,
    kind: str = typer.Argument(
        ..., help="security_assessment, standard_contract, certification, consent, basis, scc or tia."
    ),
    evidence: str = typer.Option(..., help="Reference to the evidence (stored as a digest)."),
    contract: str | None = typer.Option(None, help="Contract the record is for."),
    recipient: str | None = typer.Option(None, help="Recipient participant."),
    resource: str | None = typer.Option(None, help="Resource (consent evidence)."),
    number: str | None = typer.Option(None, help="Approval, filing or certificate number."),
    scope: str | None = typer.Option(None, help="Scope as JSON (or @FILE)."),
    valid_until: str | None = typer.Option(None, help="ISO date-time the record expires."),
    exporter: str | None = typer.Option(
        None, help="The exporter (security_assessment: the regulator records it)."
    ),
) -> None:
    """File a record a transfer needs (the exporter; a security assessment approval: the regulator)."""
    st = state(ctx)
    body = {
        "kind": kind,
        "evidence": evidence,
        "contract_id": contract,
        "recipient_id": recipient,
        "resource_id": resource,
        "number": number,
        "scope": _json_opt(scope, "scope"),
        "valid_until": valid_until,
        "exporter_id": exporter,
    }
    _show(st, _body(st.client().post("/v1/crossborder/records", body)), "record")


@crossborder_app.command("revoke")
def revoke_cmd(ctx: typer.Context, record_id: str, reason: str = typer.Option(...)) -> None:
    """Revoke a record (the exporter, the regulator or the operator)."""
    st = state(ctx)
    _show(st, _body(st.client().post(f"/v1/crossborder/records/{record_id}/revoke", {"reason": reason})))


@crossborder_app.command("request")
def request_cmd(
    ctx: typer.Context,
    contract_id: str,
    operation: str | None = typer.Option(None, help="dv:deliver, dv:aggregateQuery or dv:intersect."),
    mode: str | None = typer.Option(None, help="PSI mode."),
) -> None:
    """Ask whether a transfer under a contract may happen now (recorded on the register and ledger)."""
    st = state(ctx)
    body = {"operation": operation, "mode": mode}
    answer = _body(st.client().post(f"/v1/crossborder/contracts/{contract_id}/transfers", body))
    _show(st, answer, "transfer request")
    if isinstance(answer, dict) and answer.get("allowed") is False:
        raise typer.Exit(7)


@crossborder_app.command("register")
def register_cmd(
    ctx: typer.Context,
    exporter: str | None = typer.Option(None, help="Only this exporter's transfers."),
    pathway: str | None = typer.Option(None, help="Only this pathway."),
    csv_out: Path | None = typer.Option(None, "--csv", help="Write every visible row as CSV to this file."),
) -> None:
    """The regulator's register of cross-border transfers."""
    st = state(ctx)
    c = st.client()
    if csv_out is not None:
        resp = c.request("GET", "/v1/crossborder/register.csv", params={"exporter_id": exporter})
        csv_out.write_text(resp.text, encoding="utf-8")
        console.print(f"wrote {resp.text.count(chr(10)) - 1} rows to {csv_out}")
        return
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = c.get(
            "/v1/crossborder/register", exporter_id=exporter, pathway=pathway, cursor=cursor, limit=200
        )
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    if st.as_json:
        typer.echo(json.dumps(items, ensure_ascii=False, indent=2))
        return
    cols = ["id", "stage", "contract_id", "exporter_id", "origin", "destination", "pathway", "allowed"]
    console.print(list_table("cross-border register", cols, [[t[k] for k in cols] for t in items]))


@crossborder_app.command("counters")
def counters_cmd(ctx: typer.Context, year: int | None = typer.Option(None)) -> None:
    """Distinct individuals exported per exporter and year (estimate and upper bound)."""
    st = state(ctx)
    items = st.client().get("/v1/crossborder/counters", year=year)
    if st.as_json:
        typer.echo(json.dumps(items, ensure_ascii=False, indent=2))
        return
    cols = ["exporter_id", "year", "kind", "estimate", "upper_bound"]
    console.print(list_table("cross-border counters", cols, [[i[k] for k in cols] for i in items]))


@crossborder_app.command("expiring")
def expiring_cmd(ctx: typer.Context, within_days: int = typer.Option(120)) -> None:
    """Approvals, certifications and filings expiring soon, with renewal windows."""
    st = state(ctx)
    typer.echo(
        json.dumps(
            st.client().get("/v1/crossborder/expiring", within_days=within_days), ensure_ascii=False, indent=2
        )
    )


def _doc(ctx: typer.Context, contract_id: str, name: str, pdf: Path | None) -> None:
    st = state(ctx)
    c = st.client()
    if pdf is not None:
        resp = c.request("GET", f"/v1/crossborder/contracts/{contract_id}/{name}", params={"format": "pdf"})
        pdf.write_bytes(resp.content)
        console.print(f"wrote {len(resp.content)} bytes to {pdf}")
        return
    typer.echo(
        json.dumps(c.get(f"/v1/crossborder/contracts/{contract_id}/{name}"), ensure_ascii=False, indent=2)
    )


@crossborder_app.command("pipia")
def pipia_cmd(ctx: typer.Context, contract_id: str, pdf: Path | None = typer.Option(None)) -> None:
    """The PI protection impact assessment report for a contract's exports (JSON, or --pdf FILE)."""
    _doc(ctx, contract_id, "pipia", pdf)


@crossborder_app.command("filing-pack")
def filing_pack_cmd(ctx: typer.Context, contract_id: str, pdf: Path | None = typer.Option(None)) -> None:
    """The standard-contract filing pack for a contract (JSON, or --pdf FILE)."""
    _doc(ctx, contract_id, "filing-pack", pdf)
