"""The ``datavalley`` command: global options, the command groups, and the one error-to-exit-code mapping."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import typer
from rich.text import Text

from datavalley.cli.compute import jobs_app, pools_app
from datavalley.cli.identity import keys, members, participants, tokens
from datavalley.cli.ledger import ledger
from datavalley.cli.market import contracts_app, disputes, money, products, query_app
from datavalley.cli.psi import psi_app
from datavalley.cli.registry import catalog, cert, objections, resources, rights_app, rules
from datavalley.cli.state import CliState, console, err_console, kv_table, output, state
from datavalley.errors import DatavalleyError

app = typer.Typer(
    name="datavalley",
    help="datavalley: a data exchange with a verifiable ledger. Docs: README.md, docs/.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(participants, name="participants")
app.add_typer(members, name="members")
app.add_typer(tokens, name="tokens")
app.add_typer(keys, name="keys")
app.add_typer(ledger, name="ledger")
app.add_typer(resources, name="resources")
app.add_typer(rights_app, name="rights")
app.add_typer(objections, name="objections")
app.add_typer(cert, name="cert")
app.add_typer(catalog, name="catalog")
app.add_typer(rules, name="rules")
app.add_typer(products, name="products")
app.add_typer(contracts_app, name="contracts")
app.add_typer(money, name="money")
app.add_typer(disputes, name="disputes")
app.add_typer(query_app, name="query")
app.add_typer(pools_app, name="pools")
app.add_typer(jobs_app, name="jobs")
app.add_typer(psi_app, name="psi")


@app.callback()
def main_options(
    ctx: typer.Context,
    home: Path | None = typer.Option(
        None, envvar="DATAVALLEY_HOME", help="Exchange home (default ~/.datavalley)."
    ),
    server: str | None = typer.Option(None, envvar="DATAVALLEY_SERVER", help="Talk to this API server."),
    token: str | None = typer.Option(None, envvar="DATAVALLEY_TOKEN", help="API token."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    ctx.obj = CliState(home=home, server=server, token=token, as_json=as_json)
    ctx.call_on_close(ctx.obj.close)


@app.command()
def init(
    ctx: typer.Context,
    origin: str | None = typer.Option(None, help="Ledger origin line (default datavalley.local/ledger)."),
    database_url: str | None = typer.Option(None, help="PostgreSQL URL (default: SQLite in the home)."),
    operator_name: str = typer.Option("datavalley exchange operator", help="The operating organisation."),
    operator_country: str = typer.Option("ZZ", help="Its country (ZZ: unspecified)."),
    operator_registry_id: str = typer.Option("LOCAL", help="Its registry ID (USCC when country is CN)."),
) -> None:
    """Create an exchange home: config, database, exchange signing key, the operator and its first token."""
    from datavalley.config import load_settings
    from datavalley.home import init_home

    st = state(ctx)
    home = st.home or load_settings().home
    done = init_home(
        home,
        origin=origin,
        database_url=database_url,
        operator_name=operator_name,
        operator_country=operator_country,
        operator_registry_id=operator_registry_id,
    )
    data = {
        "home": str(done.settings.home),
        "database": done.settings.resolved_database_url,
        "operator_participant": done.operator.id,
        "operator_member": done.admin.id,
        "token": done.token.secret,
    }
    output(
        st,
        data,
        kv_table(
            "exchange initialised",
            [
                ("home", data["home"]),
                ("database", data["database"]),
                ("operator participant", done.operator.id),
                ("operator admin member", done.admin.id),
                ("operator token (shown once)", done.token.secret),
            ],
        ),
    )


@app.command()
def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8000),
) -> None:
    """Start the API (with the embedded node) on HOST:PORT."""
    import uvicorn

    from datavalley.api.app import create_app
    from datavalley.home import open_exchange

    ex = open_exchange(state(ctx).home)
    try:
        uvicorn.run(create_app(ex, publisher=True), host=host, port=port, log_level="info")
    finally:
        ex.close()


@app.command()
def whoami(ctx: typer.Context) -> None:
    """Who the token belongs to and the roles it carries."""
    st = state(ctx)
    me = st.client().whoami()
    output(st, me, kv_table("whoami", list(me.items())))


@app.command()
def demo(ctx: typer.Context) -> None:
    """Run the end-to-end scenario on a throw-away exchange (or --home)."""
    from datavalley.demo import run_demo

    st = state(ctx)
    run_demo(st.home, console=console)


def main() -> None:
    """Console entry point: run the app and turn errors into messages and exit codes."""
    try:
        rc = app(standalone_mode=False)
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except DatavalleyError as exc:
        if "--json" in sys.argv:
            print(json.dumps(exc.to_dict(), ensure_ascii=False), file=sys.stderr)
        else:
            err_console.print(Text.assemble(("error", "bold red"), f" ({exc.code}): {exc.message}"))
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        err_console.print("aborted")
        sys.exit(1)


if __name__ == "__main__":
    main()
