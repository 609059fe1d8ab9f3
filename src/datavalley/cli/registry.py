"""CLI groups: resources, rights, objections, cert, catalog, rules."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.tree import Tree

from datavalley.cli.state import CliState, console, kv_table, list_table, output, state
from datavalley.errors import Conflict, Forbidden, IntegrityError, InvalidInput
from datavalley.rights.model import Resource, Right

resources = typer.Typer(
    help="Data resources: register, change, renew, cancel, publish.", no_args_is_help=True
)
rights_app = typer.Typer(help="The three rights: grant, authorise, transfer, revoke.", no_args_is_help=True)
objections = typer.Typer(help="Objections to registrations.", no_args_is_help=True)
cert = typer.Typer(help="Registration certificates.", no_args_is_help=True)
catalog = typer.Typer(help="Search and export the catalog.", no_args_is_help=True)
rules = typer.Typer(help="The classification rule set (GB/T 43697-2024).", no_args_is_help=True)


_OPTION_HELP = "Reader option KEY=VALUE, repeatable: encoding, delimiter, quote (CSV), sheet (xlsx)."


def _options(pairs: list[str]) -> dict[str, str] | None:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"--option must be KEY=VALUE, got {pair!r}", field="option")
        out[key.strip()] = value
    return out or None


def _analyse(
    st: CliState,
    location: str,
    table: str | None,
    fmt: str | None,
    sector: str | None,
    options: list[str] | None = None,
) -> Any:
    """Analyse on this node with a progress display (stages of the single scan)."""
    from datavalley.node.analysis import analyse_source

    opts = _options(options or [])
    if st.as_json:
        return analyse_source(location, table=table, format=fmt, sector=sector, options=opts)
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]analysing[/bold] {task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(location, total=None)
        return analyse_source(
            location,
            table=table,
            format=fmt,
            sector=sector,
            progress=lambda stage: bar.update(task, description=f"{location}: {stage}"),
            options=opts,
        )


def resource_table(r: Resource) -> Any:
    c = r.classification
    return kv_table(
        f"resource {r.id} (v{r.version})",
        [
            ("name", r.name),
            ("holder", r.provider_id),
            ("status", r.status.value),
            ("published", "yes" if r.published else "no"),
            ("rows", f"{r.row_count:,}"),
            ("columns", ", ".join(f"{n}:{t}" for n, t in r.schema)),
            ("fingerprint", r.fingerprint),
            ("sector", c.sector),
            (
                "grade",
                f"{c.effective.value} (suggested {c.suggested.value}, declared {c.declared.value}, "
                f"confirmed {c.confirmed.value if c.confirmed else '—'})",
            ),
            ("grade reasons", "\n".join(c.reasons)),
            ("personal information", _pii_summary(r.pii)),
            ("est. individuals", f"{r.estimated_individuals:,}"),
            ("valid until", r.valid_until.isoformat()),
        ],
    )


def _pii_summary(pii: dict[str, Any]) -> str:
    cols = pii.get("columns") or []
    if not cols:
        return "none detected"
    parts = []
    for c in cols:
        kinds = "/".join(c.get("kinds") or [c.get("kind", "?")])
        flag = " [sensitive]" if c.get("sensitive") else ""
        parts.append(f"{c.get('column')}: {kinds} ({c.get('valid', 0):,} valid){flag}")
    return "\n".join(parts)


@resources.command("analyze")
def analyze_cmd(
    ctx: typer.Context,
    location: str,
    table: str | None = None,
    format: str | None = None,
    sector: str | None = None,
    option: list[str] = typer.Option([], "--option", help=_OPTION_HELP),
) -> None:
    """Analyse data locally (schema, fingerprint, profile, PI, suggested grade); nothing is sent."""
    from datavalley.node.analysis import registration_payload

    st = state(ctx)
    a = _analyse(st, location, table, format, sector, option)
    payload = registration_payload(a)
    if st.as_json:
        output(
            st,
            {
                **payload,
                "suggestion": {"grade": a.suggestion.grade.value, "reasons": list(a.suggestion.reasons)},
            },
        )
        return
    console.print(
        kv_table(
            f"analysis of {a.source.location}",
            [
                ("rows", f"{a.row_count:,}"),
                ("fingerprint", a.fingerprint),
                ("columns", ", ".join(f"{n}:{t}" for n, t in payload["schema"])),
                ("personal information", _pii_summary(payload["pii"])),
                ("suggested grade", a.suggestion.grade.value),
                ("reasons", "\n".join(a.suggestion.reasons)),
            ],
        )
    )


@resources.command("register")
def register(
    ctx: typer.Context,
    location: str = typer.Argument(..., help="File (csv/json/jsonl/parquet/xlsx) or database URL."),
    name: str = typer.Option(...),
    sector: str = typer.Option(..., help="e.g. transport, finance, public_administration"),
    lawful_source: str = typer.Option(..., help="How the data was lawfully obtained."),
    description: str = "",
    tag: list[str] = typer.Option([], "--tag"),
    declare_grade: str = typer.Option("general", help="general, important or core"),
    table: str | None = None,
    format: str | None = None,
    public_data: bool = typer.Option(False, help="Public data held by a public body."),
    publish: bool = typer.Option(False, help="Show it in the public catalog."),
    option: list[str] = typer.Option([], "--option", help=_OPTION_HELP),
) -> None:
    """Analyse data on this node and register it: only metadata, digests and aggregates are sent.

    The node remembers where the data lives (NODE_HOME/node/resources.json): through --server, pass
    --home (or DATAVALLEY_HOME) for this node, or nothing is registered."""
    from datavalley.node.analysis import location_of, registration_payload
    from datavalley.node.registry import NodeRegistry

    st = state(ctx)
    if st.server and st.home is None:
        raise InvalidInput(
            "registering through --server needs this node's home (--home NODE_HOME or DATAVALLEY_HOME): "
            "the node keeps the file's location there for later queries; nothing was registered",
            field="home",
        )
    a = _analyse(st, location, table, format, sector, option)
    res = st.client().register_resource(
        name=name,
        sector=sector,
        lawful_source=lawful_source,
        analysis=registration_payload(a),
        description=description,
        tags=tag,
        declared_grade=declare_grade,
        public_data=public_data,
        published=publish,
    )
    from datavalley.config import load_settings

    NodeRegistry(st.home or load_settings().home).record(res.value.id, location_of(a.source, a.fingerprint))
    output(st, res.value, resource_table(res.value), receipts=res.receipts)


@resources.command("attach")
def attach(
    ctx: typer.Context,
    resource_id: str = typer.Argument(..., help="The registered resource (r_…)."),
    location: str = typer.Argument(..., help="Where its data is now: a file path or database URL."),
    table: str | None = typer.Option(None, help="Table name, for a database URL."),
    format: str | None = typer.Option(None, help="csv, parquet or jsonl (default: from the file name)."),
) -> None:
    """Re-attach a moved file to this node: its fingerprint must equal the registered one."""
    from datavalley.catalog.errors import SourceError
    from datavalley.catalog.fingerprint import fingerprint
    from datavalley.catalog.sources import connect, open_source
    from datavalley.config import load_settings
    from datavalley.node.analysis import location_of
    from datavalley.node.registry import NodeRegistry

    st = state(ctx)
    registered = st.client().get_resource(resource_id)
    if st.client().whoami().get("participant_id") != registered.provider_id:
        raise Forbidden(
            f"only the holder of {resource_id} attaches its data to a node", resource_id=resource_id
        )
    try:
        src = open_source(location, format=format, table=table)
        with connect(src) as conn:
            found = fingerprint(conn).value
    except SourceError as exc:
        raise InvalidInput(str(exc), source=exc.location) from None
    if found != registered.fingerprint:
        raise Conflict(
            f"{location} is not the registered data of {resource_id}: fingerprint {found} "
            f"!= registered {registered.fingerprint} (changed data is re-registered with `resources change`)",
            resource_id=resource_id,
        )
    home = st.home or load_settings().home
    NodeRegistry(home).record(resource_id, location_of(src, found))
    data = {
        "resource_id": resource_id,
        "location": src.location,
        "fingerprint": found,
        "node_home": str(home),
    }
    output(st, data, kv_table(f"attached {resource_id}", list(data.items())))


@resources.command("change")
def change(
    ctx: typer.Context,
    resource_id: str,
    location: str,
    table: str | None = None,
    format: str | None = None,
    option: list[str] = typer.Option([], "--option", help=_OPTION_HELP),
) -> None:
    """Re-register changed content of a resource (same schema)."""
    from datavalley.node.analysis import location_of, registration_payload
    from datavalley.node.registry import NodeRegistry

    st = state(ctx)
    a = _analyse(st, location, table, format, None, option)
    res = st.client().resource_action(resource_id, "change", {"analysis": registration_payload(a)})
    if st.home or not st.server:  # the node reads the changed source with its (re)pinned options
        from datavalley.config import load_settings

        NodeRegistry(st.home or load_settings().home).record(
            resource_id, location_of(a.source, a.fingerprint)
        )
    output(st, res.value, resource_table(res.value), receipts=res.receipts)


@resources.command("show")
def show(ctx: typer.Context, resource_id: str) -> None:
    """Show a resource."""
    st = state(ctx)
    r = st.client().get_resource(resource_id)
    output(st, r, resource_table(r))


def _simple(action: str, help_: str, *, reason: bool = False) -> None:
    def command(
        ctx: typer.Context,
        resource_id: str,
        why: str = typer.Option("", "--reason", help="Why (kept as a digest on the ledger)."),
    ) -> None:
        st = state(ctx)
        body = {"reason": why} if reason else {}
        res = st.client().resource_action(resource_id, action, body)
        output(st, res.value, resource_table(res.value), receipts=res.receipts)

    command.__doc__ = help_
    resources.command(action)(command)


@resources.command("cancel")
def cancel(
    ctx: typer.Context,
    resource_id: str,
    why: str = typer.Option("", "--reason", help="Why (kept as a digest on the ledger)."),
    terminate_contracts: bool = typer.Option(
        False, "--terminate-contracts", help="Also end live contracts on it (refunded)."
    ),
) -> None:
    """Holder cancels the registration (all rights end); refused under live contracts unless terminated."""
    st = state(ctx)
    body = {"reason": why, "terminate_contracts": terminate_contracts}
    res = st.client().resource_action(resource_id, "cancel", body)
    output(st, res.value, resource_table(res.value), receipts=res.receipts)


_simple("revoke", "Operator revokes the registration (reason required).", reason=True)
_simple("publish", "Show the resource in the public catalog.")
_simple("unpublish", "Hide the resource from the public catalog.")


@resources.command("renew")
def renew(ctx: typer.Context, resource_id: str, days: int = 3 * 365) -> None:
    """Extend the registration's validity."""
    st = state(ctx)
    res = st.client().resource_action(resource_id, "renew", {"valid_days": days})
    output(st, res.value, resource_table(res.value), receipts=res.receipts)


@resources.command("classify")
def classify(ctx: typer.Context, resource_id: str, grade: str = typer.Option(...), reason: str = "") -> None:
    """Operator confirms or corrects the grade."""
    st = state(ctx)
    res = st.client().resource_action(resource_id, "classification", {"grade": grade, "reason": reason})
    output(st, res.value, resource_table(res.value), receipts=res.receipts)


def title_tree(resource_id: str, links: list[tuple[int, Right]]) -> Tree:
    tree = Tree(f"chain of title of [bold]{resource_id}[/bold]")
    stack: list[Tree] = [tree]
    for depth, r in links:
        del stack[depth + 1 :]
        s = r.scope
        label = (
            f"[cyan]{r.kind.value}[/cyan] {r.id} → [bold]{r.holder_id}[/bold] ({r.status.value})"
            f" purposes={','.join(s.purposes)} territories={','.join(s.territories)}"
            f" until={s.valid_until.date() if s.valid_until else 'open'}"
            + (" [magenta]public-data authorisation[/magenta]" if r.public_data_authorisation else "")
        )
        stack.append(stack[-1].add(label))
    return tree


@resources.command("title")
def title(ctx: typer.Context, resource_id: str) -> None:
    """The chain of title: every right on the resource, as a tree."""
    st = state(ctx)
    links = st.client().chain_of_title(resource_id)
    if st.as_json:
        output(st, [{"depth": d, "right": r} for d, r in links])
    else:
        console.print(title_tree(resource_id, links))


@resources.command("versions")
def versions(ctx: typer.Context, resource_id: str) -> None:
    """Every registered version (fingerprint, rows, ledger event)."""
    st = state(ctx)
    items = st.client().versions(resource_id)
    output(
        st,
        items,
        list_table(
            "versions",
            ["version", "fingerprint", "rows", "event", "at"],
            [[v["version"], v["fingerprint"], v["row_count"], v["event_id"], v["created_at"]] for v in items],
        ),
    )


def _until(value: str) -> datetime:
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"--until must be an ISO date or time, got {value!r}", field="until") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _right_rows(items: list[Right]) -> Any:
    return list_table(
        "rights",
        ["id", "kind", "resource", "holder", "grantor", "purposes", "until", "status"],
        [
            [
                r.id,
                r.kind.value,
                r.resource_id,
                r.holder_id,
                r.grantor_id or "",
                ",".join(r.scope.purposes),
                r.scope.valid_until.date() if r.scope.valid_until else "",
                r.status.value,
            ]
            for r in items
        ],
    )


@rights_app.command("grant")
def grant(
    ctx: typer.Context,
    resource_id: str,
    kind: str = typer.Option(..., help="processing_use or product_operation"),
    to: str = typer.Option(..., help="Grantee participant ID."),
    purpose: list[str] = typer.Option(..., "--purpose"),
    territory: list[str] = typer.Option(["CN"], "--territory"),
    until: str = typer.Option(..., help="End of term (ISO date)."),
    sublicensable: bool = False,
    parent: str | None = None,
) -> None:
    """Grant a right (licence) within your own right's scope."""
    st = state(ctx)
    res = st.client().grant_right(
        resource_id,
        kind=kind,
        grantee_id=to,
        purposes=purpose,
        territories=territory,
        valid_until=_until(until),
        sublicensable=sublicensable,
        parent_id=parent,
    )
    output(st, res.value, _right_rows([res.value]), receipts=res.receipts)


@rights_app.command("authorise")
def authorise(
    ctx: typer.Context,
    resource_id: str,
    operator: str = typer.Option(...),
    purpose: list[str] = typer.Option(..., "--purpose"),
    territory: list[str] = typer.Option(["CN"], "--territory"),
    until: str = typer.Option(...),
) -> None:
    """Public body: authorise an operating entity to run products on public data."""
    st = state(ctx)
    res = st.client().authorise_public_data(
        resource_id, operator_id=operator, purposes=purpose, territories=territory, valid_until=_until(until)
    )
    output(st, res.value, _right_rows([res.value]), receipts=res.receipts)


@rights_app.command("transfer")
def transfer(
    ctx: typer.Context,
    resource_id: str,
    to: str = typer.Option(...),
    holding_only: bool = typer.Option(False, help="Keep the use and operation rights."),
) -> None:
    """Transfer holding of a resource."""
    st = state(ctx)
    res = st.client().transfer_holding(resource_id, to, include_use_rights=not holding_only)
    output(st, res.value, _right_rows(res.value), receipts=res.receipts)


@rights_app.command("revoke")
def revoke_right(ctx: typer.Context, right_id: str, reason: str = "") -> None:
    """Revoke a right and everything derived from it."""
    st = state(ctx)
    res = st.client().revoke_right(right_id, reason)
    output(st, res.value, _right_rows(res.value), receipts=res.receipts)


@rights_app.command("list")
def list_rights(
    ctx: typer.Context, holder: str | None = None, all_: bool = typer.Option(False, "--all")
) -> None:
    """Rights you (or, for overseers, --holder) hold."""
    st = state(ctx)
    items = st.client().rights(holder_id=holder, active_only=not all_)
    output(st, items, _right_rows(items))


@objections.command("file")
def file_objection(ctx: typer.Context, resource_id: str, reason: str = typer.Option(...)) -> None:
    """Object to a registration; it is frozen until resolved."""
    st = state(ctx)
    res = st.client().file_objection(resource_id, reason)
    output(st, res.value, None, receipts=res.receipts)


@objections.command("resolve")
def resolve(
    ctx: typer.Context,
    objection_id: str,
    upheld: bool = typer.Option(..., "--upheld/--dismissed"),
    resolution: str = typer.Option(...),
) -> None:
    """Operator: uphold (revokes the registration) or dismiss (unfreezes) an objection."""
    st = state(ctx)
    res = st.client().resolve_objection(objection_id, upheld=upheld, resolution=resolution)
    output(st, res.value, None, receipts=res.receipts)


@cert.command("get")
def cert_get(
    ctx: typer.Context,
    resource_id: str,
    out: Path = typer.Option(...),
    html: Path | None = None,
    version: int | None = None,
) -> None:
    """Fetch the signed registration certificate (JSON, and optionally its HTML rendering)."""
    st = state(ctx)
    doc = st.client().certificate(resource_id, version)
    out.write_text(json.dumps(doc, ensure_ascii=False, indent=2), "utf-8")
    if html:
        from datavalley.rights.certificates import render_html

        html.write_text(render_html(doc), "utf-8")
    output(
        st,
        {"certificate_id": doc["certificate_id"], "file": str(out), "html": str(html) if html else None},
        kv_table("certificate", [("id", doc["certificate_id"]), ("saved to", out), ("html", html)]),
    )


@cert.command("verify")
def cert_verify(
    ctx: typer.Context,
    file: Path,
    verifier_key: str | None = typer.Option(None, help="Pinned exchange key (C2SP vkey)."),
    online: bool = typer.Option(
        False, "--online", help="Also ask the exchange for the certificate's signed current status."
    ),
) -> None:
    """Verify a certificate: exchange signature and ledger proof (offline: proves registration, not
    current status), and with --online its signed status (valid/superseded/cancelled/revoked)."""
    from datavalley.rights.cert_status import verify_status
    from datavalley.rights.certificates import verify_certificate

    st = state(ctx)
    try:
        doc = json.loads(file.read_text("utf-8"))
    except FileNotFoundError:
        raise InvalidInput(f"certificate file {file} does not exist", path=str(file)) from None
    except ValueError as exc:
        raise InvalidInput(f"certificate file {file} is not JSON: {exc}", path=str(file)) from exc
    check = verify_certificate(doc, verifier_key=verifier_key)
    status: dict[str, Any] | None = None
    status_findings: list[str] = []
    if online and check.ok:
        status = st.client().certificate_status(doc["certificate_id"])
        status_findings = verify_status(status, doc, verifier_key=verifier_key)
    scope = (
        "registration as of issue; current status checked online"
        if status is not None
        else "registration as of issue only, NOT current status (use --online)"
    )
    current = "—"
    if status is not None:
        changed = status["changed_by"]
        current = status["status"] + (
            f" (ledger entry {changed['ledger_index']}: {changed['type']})" if changed else ""
        )
    output(
        st,
        {**asdict(check), "proves": scope, "status": status},
        kv_table(
            "certificate verification",
            [
                ("proves", scope),
                ("current status", current),
                ("resource", check.resource_id),
                ("fingerprint", check.fingerprint),
                ("holder", check.holder),
                ("ledger checkpoint", check.checkpoint_size),
                ("key", check.trusted_key_source),
                (
                    "result",
                    "[green]verified[/green]" if check.ok else "[red]" + "; ".join(check.findings) + "[/red]",
                ),
            ],
        ),
    )
    if not check.ok:
        raise IntegrityError("certificate does not verify: " + "; ".join(check.findings))
    if status_findings:
        raise IntegrityError("certificate status does not verify: " + "; ".join(status_findings))
    if status is not None and status["status"] != "valid":
        raise Conflict(
            f"certificate {doc['certificate_id']} is {current}: it no longer states the current registration",
            status=status["status"],
        )


@catalog.command("search")
def search(
    ctx: typer.Context,
    q: str = typer.Argument(""),
    sector: str | None = None,
    grade: str | None = None,
    provider: str | None = None,
    pii: bool | None = typer.Option(None, "--pii/--no-pii"),
    tag: list[str] = typer.Option([], "--tag"),
    limit: int = 20,
) -> None:
    """Full-text and faceted search over the resources you may see."""
    st = state(ctx)
    res = st.client().search(
        q, sector=sector, grade=grade, provider=provider, pii_present=pii, tag=tag, limit=limit
    )
    if st.as_json:
        output(st, res)
        return
    console.print(
        list_table(
            f"{res['total']} match(es)",
            ["id", "name", "sector", "grade", "PI", "holder"],
            [
                [
                    r.id,
                    r.name,
                    r.classification.sector,
                    r.classification.effective.value,
                    "yes" if r.pii_present else "",
                    r.provider_id,
                ]
                for r in res["items"]
            ],
        )
    )
    for facet, counts in res["facets"].items():
        console.print(f"[dim]{facet}:[/dim] " + ", ".join(f"{k} ({v})" for k, v in counts.items()))


@catalog.command("dcat")
def dcat(ctx: typer.Context, out: Path = typer.Option(...)) -> None:
    """Export the public catalog as DCAT-AP 3 JSON-LD."""
    st = state(ctx)
    doc = st.client().dcat()
    out.write_text(json.dumps(doc, ensure_ascii=False, indent=2), "utf-8")
    output(st, {"file": str(out)}, kv_table("DCAT-AP 3 export", [("file", out)]))


@rules.command("show")
def rules_show(ctx: typer.Context) -> None:
    """The classification rule set in force."""
    st = state(ctx)
    output(st, st.client().classification_rules())


@rules.command("set")
def rules_set(ctx: typer.Context, file: Path) -> None:
    """Operator: replace the rule set from a JSON file."""
    st = state(ctx)
    try:
        data = json.loads(file.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"rule file {file}: {exc}", path=str(file)) from exc
    res = st.client().set_classification_rules(data)
    output(st, res.value, None, receipts=res.receipts)
