"""CLI group ``psi``: serve this node's PSI responder, or run a session under a contract (docs/PSI.md).

Thin shells over :mod:`datavalley.node.psi`: ``serve`` is the provider's node (contracts, keys and data
checked with the exchange), ``run`` is the consumer's side of one session.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import typer

from datavalley.cli.state import CliState, err_console, kv_table, output, state
from datavalley.client import Client
from datavalley.errors import InvalidInput
from datavalley.keys import load_private_key
from datavalley.node.psi import (
    PREFIX,
    ExchangeAuthoriser,
    contract_responder,
    release_scales,
    responder_app,
    run_contract_psi,
)
from datavalley.node.registry import NodeRegistry
from datavalley.privacy import noise
from datavalley.psi.model import Mode, PsiOutcome
from datavalley.psi.normalise import IdKind
from datavalley.psi.workers import Workers

__all__ = ["psi_app"]

psi_app = typer.Typer(
    help="Private set intersection under contracts: serve this node, run a session.", no_args_is_help=True
)

ALPHA = 0.05  # the accuracy shown next to released figures: |noise| <= a with probability 95 %

_SERVER = typer.Option(None, "--server", help="The exchange API (default: the global --server).")
_TOKEN = typer.Option(None, "--token", help="This participant's API token (default: the global --token).")


def _connect(ctx: typer.Context, server: str | None, token: str | None) -> tuple[CliState, Client]:
    st = state(ctx)
    st.server = server or st.server
    st.token = token or st.token
    return st, st.client()


def _home(st: CliState) -> Path:
    from datavalley.config import load_settings

    return st.home or load_settings().home


def _me(client: Client) -> str:
    me = client.whoami().get("participant_id")
    if not me:
        raise InvalidInput("the token belongs to no participant; a node acts for one", field="token")
    return str(me)


@psi_app.command()
def serve(
    ctx: typer.Context,
    key: Path = typer.Option(..., "--key", help="This participant's registered Ed25519 key (PEM)."),
    port: int = typer.Option(8100, help="Port of the PSI endpoint."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    workdir: Path | None = typer.Option(None, help="Session files (default HOME/node/psi)."),
    workers: int | None = typer.Option(None, help="Curve worker processes (default: one per core)."),
    usage_log: Path | None = typer.Option(None, help="Usage log (default HOME/node/psi-usage.jsonl)."),
    server: str | None = _SERVER,
    token: str | None = _TOKEN,
) -> None:
    """Serve this node's PSI responder: sessions checked and metered against the exchange's contracts."""
    import uvicorn

    st, client = _connect(ctx, server, token)
    home = _home(st)
    me = _me(client)
    responder = contract_responder(
        participant=me,
        signing_key=load_private_key(key),
        client=client,
        registry=NodeRegistry(home),
        workdir=workdir or home / "node" / "psi",
        workers=Workers(workers),
        usage_log=usage_log or home / "node" / "psi-usage.jsonl",
    )
    from datavalley.node.psi_engine import engine_router

    app = responder_app(responder)
    _, sf_router = engine_router(
        responder,
        client=client,
        signing_key=load_private_key(key),
        workdir=(workdir or home / "node" / "psi") / "secretflow",
        host=host,
    )
    app.include_router(sf_router, prefix=PREFIX)  # products whose terms name the SecretFlow engine
    err_console.print(f"PSI node of {me} at http://{host}:{port}{PREFIX} (exchange: {client.base_url})")
    uvicorn.run(app, host=host, port=port, log_level="info")


@psi_app.command("interop")
def interop(
    ctx: typer.Context,
    contract: str = typer.Option(..., "--contract", help="The contract the session runs under."),
    session: str = typer.Option(..., "--session", help="Session ID agreed with the peer (32 hex digits)."),
    own_link: str = typer.Option(..., "--self", help="host:port this node's engine listens on."),
    peer_link: str = typer.Option(..., "--peer", help="host:port of the peer's SecretFlow engine."),
    tls_cert: Path = typer.Option(..., "--cert", exists=True, dir_okay=False, help="This node's TLS cert."),
    tls_key: Path = typer.Option(..., "--tls-key", exists=True, dir_okay=False, help="Its private key."),
    peer_cert: Path = typer.Option(..., "--peer-cert", exists=True, dir_okay=False, help="The peer's cert."),
    ids: Path | None = typer.Option(None, "--ids", exists=True, dir_okay=False, help="Consumer: its IDs."),
    id_column: str | None = typer.Option(None, "--id-column", help="The ID column when --ids is a CSV file."),
    out: Path | None = typer.Option(None, "--out", help="Consumer: where to write the matches."),
    workdir: Path | None = typer.Option(None, help="Working files (default HOME/node/psi)."),
    server: str | None = _SERVER,
    token: str | None = _TOKEN,
) -> None:
    """Run a session with a party that runs plain SecretFlow (examples/secretflow_party.py)."""
    from datavalley.node.psi_engine import run_interop_party

    st, client = _connect(ctx, server, token)
    home = _home(st)
    result = run_interop_party(
        client,
        _me(client),
        contract,
        session_id=session,
        own_link=own_link,
        peer_link=peer_link,
        tls=(tls_cert.resolve(), tls_key.resolve(), peer_cert.resolve()),
        workdir=workdir or home / "node" / "psi",
        registry=NodeRegistry(home),
        ids=ids,
        id_column=id_column,
        usage_log=home / "node" / "psi-usage.jsonl",
    )
    if isinstance(result, PsiOutcome):
        matches = result.intersection_file
        if matches is not None and out is not None:
            shutil.move(matches, out)
            matches = out
        data = _result(result, {}, matches)
    else:
        data = {
            "session_id": result.session_id,
            "role": "sender",
            "outcome": result.outcome,
            **result.to_dict(),
        }
    output(st, data, kv_table("PSI with a SecretFlow party", [(k, v) for k, v in data.items()]))


@psi_app.command("secretflow-setup")
def secretflow_setup(
    ctx: typer.Context,
    env: Path | None = typer.Option(
        None,
        "--env",
        help="Where to create it (default $DATAVALLEY_SECRETFLOW_ENV or ~/.datavalley/secretflow-env).",
    ),
    python: str | None = typer.Option(None, "--python", help="Base interpreter (CPython 3.9-3.11)."),
) -> None:
    """Install SecretFlow's PSI engine (spu) in its own managed environment, for products that use it."""
    from datavalley.psi.secretflow.runtime import default_env, setup

    target = env or default_env()
    err_console.print(f"installing SecretFlow's PSI engine into {target} (pinned, a few minutes) …")
    interpreter = setup(target, python=python)
    data = {"env": str(target), "python": str(interpreter)}
    output(state(ctx), data, kv_table("SecretFlow PSI engine", list(data.items())))


def _accuracy(authoriser: ExchangeAuthoriser, outcome: PsiOutcome) -> dict[str, int]:
    """± a (95 %) of each released figure, from the product's public ε and bounds."""
    terms = authoriser.terms(outcome.usage.contract_id)
    if outcome.aggregate is None or terms.epsilon_per_session is None:
        return {}
    bounds = {c: terms.columns[c] for c in outcome.aggregate.sums if c in terms.columns}
    plan = release_scales(terms.epsilon_per_session, bounds)
    accuracy = {name: noise.accuracy("laplace", scale, ALPHA) for name, (_, scale, _) in plan.items()}
    return {"count": 0, **accuracy}  # the count is exact: the consumer computed it


def _result(outcome: PsiOutcome, accuracy: dict[str, int], out: Path | None) -> dict[str, Any]:
    usage = outcome.usage
    data: dict[str, Any] = {
        "session_id": outcome.session_id,
        "contract_id": usage.contract_id,
        "mode": outcome.mode.value,
        "peer": usage.peer,
        "cardinality": outcome.cardinality,
        "peer_set_size": outcome.peer_set_size,
        "input": usage.normalisation.to_dict(),
        "intersection_file": str(out) if out else None,
        "aggregate": None,
        "transcript": usage.transcript,
    }
    if outcome.aggregate is not None:
        agg = outcome.aggregate
        data["aggregate"] = {
            **agg.to_dict(),
            "averages": {c: agg.average(c) for c in sorted(agg.sums)},
            "accuracy_95": accuracy,
        }
    return data


def _pm(value: int, accuracy: int | None) -> str:
    return f"{value}" if accuracy is None else f"{value} (± {accuracy} at 95 %)"


@psi_app.command("run")
def run_session(
    ctx: typer.Context,
    contract: str = typer.Option(..., "--contract", help="The contract the session runs under."),
    peer_url: str = typer.Option(..., "--peer-url", help=f"The provider node's PSI URL (…{PREFIX})."),
    ids: Path = typer.Option(..., "--ids", exists=True, dir_okay=False, help="IDs: one per line, or CSV."),
    key: Path = typer.Option(..., "--key", help="This participant's registered Ed25519 key (PEM)."),
    mode: Mode = typer.Option(Mode.CARDINALITY, "--mode", help="What this side learns."),
    peer: str | None = typer.Option(
        None, "--peer", help="The provider's participant ID (default: contract)."
    ),
    id_kind: IdKind | None = typer.Option(None, "--id-kind", help="Kind of IDs (default: the product's)."),
    id_column: str | None = typer.Option(None, "--id-column", help="The ID column when --ids is a CSV file."),
    column: list[str] = typer.Option([], "--column", help="Aggregated column (repeatable; default: all)."),
    out: Path | None = typer.Option(None, "--out", help="Where to write the matches (intersection mode)."),
    workdir: Path | None = typer.Option(None, help="Working files (default HOME/node/psi)."),
    usage_log: Path | None = typer.Option(None, help="Usage log (default HOME/node/psi-usage.jsonl)."),
    workers: int | None = typer.Option(None, help="Curve worker processes (default: one per core)."),
    server: str | None = _SERVER,
    token: str | None = _TOKEN,
) -> None:
    """Run one PSI session against the provider's node; print what was learned (never the peer's IDs)."""
    st, client = _connect(ctx, server, token)
    me = _me(client)
    pool = Workers(workers)
    try:
        outcome = run_contract_psi(
            client,
            me,
            load_private_key(key),
            peer_url,
            contract,
            mode,
            ids,
            workdir or _home(st) / "node" / "psi",
            usage_log=usage_log or _home(st) / "node" / "psi-usage.jsonl",
            responder_participant=peer,
            id_kind=id_kind,
            id_column=id_column,
            columns=tuple(column),
            workers=pool,
        )
    finally:
        pool.close()
    matches = outcome.intersection_file
    if matches is not None and out is not None:
        shutil.move(matches, out)
        matches = out
    data = _result(outcome, _accuracy(ExchangeAuthoriser(client, me), outcome), matches)
    report = outcome.usage.normalisation
    rows: list[tuple[str, Any]] = [
        ("session", outcome.session_id),
        ("contract", data["contract_id"]),
        ("mode", data["mode"]),
        ("peer", data["peer"]),
        ("cardinality |X ∩ Y|", outcome.cardinality),
        ("peer set size |Y|", outcome.peer_set_size),
        ("own records read", report.records),
        ("own invalid IDs", ", ".join(f"{k}: {v}" for k, v in sorted(report.invalid.items())) or 0),
        ("own duplicates", report.duplicates),
        ("own set size |X|", report.set_size),
    ]
    if matches is not None:
        rows.append(("matches written to", matches))
    if data["aggregate"] is not None:
        agg = data["aggregate"]
        rows.append(("released count", _pm(agg["count"], agg["accuracy_95"].get("count"))))
        for c, v in agg["sums"].items():
            rows.append((f"released SUM({c})", _pm(v, agg["accuracy_95"].get(c))))
            avg = agg["averages"][c]
            rows.append((f"AVG({c}) = SUM / count", "—" if avg is None else f"{avg:.2f}"))
        rows.append(("mechanism", agg["mechanism"]))
    rows.append(("transcript", outcome.usage.transcript))
    output(st, data, kv_table(f"PSI session {outcome.session_id}", rows))
