"""The ``datavalley`` command: global options, the command groups, and the one error-to-exit-code mapping.

Command groups load on first use (:data:`GROUPS`): ``datavalley --help`` and ``datavalley whoami`` import
neither the market, the private SQL engine nor PSI. Register a new group with ONE line in :data:`GROUPS`:
``"name": ("datavalley.cli.module:typer_app", "one-line help"),``.

Global options (``--home``, ``--server``, ``--token``, ``--json``) are accepted before or after the
subcommand (:func:`hoist_global_options`). Usage and input errors print one line and exit 2; domain errors
keep their own exit codes (:mod:`datavalley.errors`); nothing prints a traceback.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from difflib import get_close_matches
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from datavalley.cli.state import CliState, kv_table, output, state
from datavalley.cli.vocabulary import fill_help
from datavalley.errors import DatavalleyError, InvalidInput

#: name -> ("module:attribute" of a ``typer.Typer``, one-line help). Add a group with one line here.
GROUPS: dict[str, tuple[str, str]] = {
    "participants": ("datavalley.cli.identity:participants", "Organisations on the exchange."),
    "members": ("datavalley.cli.identity:members", "People and service accounts of a participant."),
    "tokens": ("datavalley.cli.identity:tokens", "API tokens."),
    "keys": ("datavalley.cli.identity:keys", "Ed25519 keys."),
    "ledger": ("datavalley.cli.ledger:ledger", "The verifiable ledger (RFC 9162 Merkle log)."),
    "resources": ("datavalley.cli.registry:resources", "Data resources: register, attach, change, renew."),
    "rights": ("datavalley.cli.registry:rights_app", "The three rights: grant, authorise, transfer, revoke."),
    "objections": ("datavalley.cli.registry:objections", "Objections to registrations."),
    "cert": ("datavalley.cli.registry:cert", "Registration certificates."),
    "catalog": ("datavalley.cli.registry:catalog", "Search and export the catalog."),
    "rules": ("datavalley.cli.registry:rules", "The classification rule set (GB/T 43697-2024)."),
    "products": ("datavalley.cli.market:products", "Data products: create, submit, review, delist, search."),
    "contracts": ("datavalley.cli.market:contracts_app", "Contracts: request, offer, accept, sign, use."),
    "money": ("datavalley.cli.market:money", "Money: deposits, withdrawals, balances, settlement."),
    "disputes": (
        "datavalley.cli.market:disputes",
        "Disputes on contracts (ledger receipts as evidence).",
    ),
    "query": ("datavalley.cli.market:query_app", "Private SQL under a contract (noised, metered)."),
    "psi": ("datavalley.cli.psi:psi_app", "Private set intersection under contracts: serve, run."),
    "delivery": ("datavalley.cli.delivery:delivery_app", "Delta Sharing delivery: profiles, tokens, reads."),
    "watermark": ("datavalley.cli.delivery:watermark_app", "Trace a leaked copy to its contract."),
    "crossborder": ("datavalley.cli.crossborder:crossborder_app", "Cross-border transfers: rules, records."),
    "pools": ("datavalley.cli.compute:pools_app", "Compute pools across the national hubs."),
    "jobs": ("datavalley.cli.compute:jobs_app", "Compute jobs: submit, status, explain."),
}

#: Global options that take a value, and flags; accepted anywhere on the command line.
GLOBAL_VALUE_OPTIONS = ("--home", "--server", "--token", "--get")
GLOBAL_FLAGS = ("--json",)


class LazyGroup(TyperGroup):
    """The root group: command groups from :data:`GROUPS` are imported only when invoked."""

    _listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        return [*self.commands, *(n for n in GROUPS if n not in self.commands)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        known = self.commands.get(cmd_name)
        if known is not None or cmd_name not in GROUPS:
            return known
        target, short = GROUPS[cmd_name]
        if self._listing:  # help listing: the one-line help, without importing the group
            return TyperGroup(name=cmd_name, help=short)
        module, _, attr = target.partition(":")
        sub: typer.Typer = getattr(importlib.import_module(module), attr)
        cmd = typer.main.get_group(sub)
        cmd.name = cmd_name
        cmd.params = [p for p in cmd.params if p.name not in ("install_completion", "show_completion")]
        fill_help(cmd, (cmd_name,))
        if not cmd.help:
            cmd.help = short
        self.commands[cmd_name] = cmd
        return cmd

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        try:
            return super().resolve_command(ctx, args)
        except typer.TyperException as exc:
            if args and "Did you mean" not in str(getattr(exc, "message", "")):
                matches = get_close_matches(args[0], self.list_commands(ctx))
                if matches:
                    msg = str(getattr(exc, "message", exc)).rstrip(".")
                    exc.message = f"{msg}. Did you mean {', '.join(repr(m) for m in matches)}?"
            raise


app = typer.Typer(
    name="datavalley",
    cls=LazyGroup,
    help="datavalley: a data exchange with a verifiable ledger. Docs: README.md, docs/GUIDE.md.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def main_options(
    ctx: typer.Context,
    home: Path | None = typer.Option(
        None, envvar="DATAVALLEY_HOME", help="Exchange or node home (default ~/.datavalley)."
    ),
    server: str | None = typer.Option(None, envvar="DATAVALLEY_SERVER", help="Talk to this API server."),
    token: str | None = typer.Option(None, envvar="DATAVALLEY_TOKEN", help="API token."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    get: str | None = typer.Option(
        None, "--get", help="Print one field of the JSON answer, e.g. --get data.id (for scripts)."
    ),
) -> None:
    ctx.obj = CliState(home=home, server=server, token=token, as_json=as_json or bool(get), get=get)
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
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="TCP port to listen on."),
) -> None:
    """Start the API (with the embedded node) on HOST:PORT; logs are JSON lines on stderr."""
    import uvicorn

    from datavalley.api.app import create_app
    from datavalley.api.logs import configure_logging
    from datavalley.home import open_exchange

    ex = open_exchange(state(ctx).home)
    configure_logging()
    try:
        uvicorn.run(create_app(ex, publisher=True), host=host, port=port, log_config=None, access_log=False)
    finally:
        ex.close()


@app.command()
def health(
    ctx: typer.Context,
    wait: float = typer.Option(0.0, help="Keep trying for up to this many seconds (a server starting)."),
    url: str | None = typer.Option(
        None, help="Another health URL, e.g. a PSI node's http://HOST:PORT/health."
    ),
) -> None:
    """Is the API at --server (or --url) up? (No token needed.)"""
    import time

    import httpx

    from datavalley.errors import Unavailable

    st = state(ctx)
    if not (st.server or url):
        raise InvalidInput("health asks a server: pass --server URL (or --url)", field="server")
    target = url or f"{(st.server or '').rstrip('/')}/v1/health"
    deadline = time.monotonic() + wait
    while True:
        try:
            answer = httpx.get(target, timeout=5).json()
            break
        except (httpx.HTTPError, ValueError) as exc:
            if time.monotonic() >= deadline:
                raise Unavailable(f"nothing healthy at {target}: {exc}") from None
            time.sleep(0.2)
    output(st, answer, kv_table("health", list(answer.items())))


@app.command()
def whoami(ctx: typer.Context) -> None:
    """Who the token belongs to and the roles it carries."""
    st = state(ctx)
    me = st.client().whoami()
    rows = [(k, ", ".join(map(str, v)) if isinstance(v, list) else v) for k, v in me.items()]
    output(st, me, kv_table("whoami", rows))


@app.command("sample-data")
def sample_data(
    ctx: typer.Context,
    kind: str = typer.Argument(..., help="trips (CSV), loans (Parquet) or registry (JSON lines)."),
    out: Path = typer.Argument(..., help="File to write."),
    rows: int = typer.Option(5000, min=1, max=10_000_000, help="Number of rows."),
    seed: int = typer.Option(1, help="Random seed (same seed, same data)."),
) -> None:
    """Write synthetic sample data (the demo's) to try registration, queries and PSI."""
    from datavalley import demo_data

    writers = {
        "trips": demo_data.write_trips,
        "loans": demo_data.write_loan_applicants,
        "registry": demo_data.write_enterprise_registry,
    }
    if kind not in writers:
        raise InvalidInput(f"kind must be one of {', '.join(writers)}", field="kind")
    writers[kind](out, rows, seed)
    st = state(ctx)
    output(st, {"file": str(out), "rows": rows}, kv_table("sample data", [("file", out), ("rows", rows)]))


@app.command()
def demo(ctx: typer.Context) -> None:
    """Run the end-to-end scenario on a throw-away exchange (or --home); pictures land in the home."""
    from datavalley.cli.state import console
    from datavalley.demo import run_demo

    st = state(ctx)
    run_demo(st.home, console=console)


def hoist_global_options(argv: list[str]) -> list[str]:
    """Move global options found after the subcommand to the front, so they work in either position.

    Stops at ``--`` (everything after it is positional). ``--opt value`` and ``--opt=value`` both work.
    """
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        name = arg.split("=", 1)[0]
        if arg in GLOBAL_FLAGS or (name in GLOBAL_VALUE_OPTIONS and "=" in arg):
            front.append(arg)
        elif arg in GLOBAL_VALUE_OPTIONS and i + 1 < len(argv):
            front.extend(argv[i : i + 2])
            i += 1
        else:
            rest.append(arg)
        i += 1
    return front + rest


def _fail(message: str, code: int, as_json: bool, error: str = "usage_error") -> None:
    """One line on stderr (JSON with ``--json``) and exit ``code``."""
    if as_json:
        print(json.dumps({"error": error, "message": message}, ensure_ascii=False), file=sys.stderr)
    else:
        print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app and turn errors into one-line messages and exit codes."""
    args = hoist_global_options(list(sys.argv[1:] if argv is None else argv))
    as_json = "--json" in (args[: args.index("--")] if "--" in args else args)
    try:
        rc = app(args=args, prog_name="datavalley", standalone_mode=False)
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except DatavalleyError as exc:
        if as_json:
            print(json.dumps(exc.to_dict(), ensure_ascii=False), file=sys.stderr)
        else:
            print(f"error ({exc.code}): {exc.message}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        _fail("aborted", 1, as_json, "aborted")
    except typer.TyperException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare group: its help was printed
            sys.exit(2)
        message = " ".join(exc.format_message().split())
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        code = 2 if getattr(exc, "exit_code", 1) in (1, 2) else int(exc.exit_code)
        _fail(message + hint, code, as_json)
    except FileNotFoundError as exc:
        err = InvalidInput(f"{exc.filename or exc}: no such file", path=str(exc.filename))
        _fail(err.message, err.exit_code, as_json, err.code)
    except (IsADirectoryError, PermissionError) as exc:
        _fail(f"{exc.filename}: {exc.strerror}", 2, as_json, "invalid_input")
    except KeyboardInterrupt:
        _fail("interrupted", 130, as_json, "interrupted")
    except BrokenPipeError:
        os._exit(0)


if __name__ == "__main__":
    main()
