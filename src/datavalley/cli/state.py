"""Shared CLI state and output helpers: one place builds clients and renders JSON or rich tables."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from datavalley.errors import Unauthenticated

if TYPE_CHECKING:
    from datavalley.client import Client

console = Console()
err_console = Console(stderr=True, soft_wrap=True)


@dataclass
class CliState:
    """Global options: where the exchange is and who we are."""

    home: Path | None = None
    server: str | None = None
    token: str | None = None
    as_json: bool = False
    _client: Client | None = field(default=None, repr=False)
    _exchange: Any = field(default=None, repr=False)

    def client(self) -> Client:
        """A client for ``--server`` (HTTP) or the local home (in-process API); needs a token."""
        if self._client is not None:
            return self._client
        token = self.token or os.environ.get("DATAVALLEY_TOKEN")
        if not token:
            raise Unauthenticated(
                "no API token: pass --token or set DATAVALLEY_TOKEN (`datavalley init` printed the first one)"
            )
        from datavalley.client import Client

        if self.server:
            self._client = Client(self.server, token)
        else:
            from datavalley.api.app import create_app
            from datavalley.home import open_exchange

            self._exchange = open_exchange(self.home)
            self._client = Client.in_process(create_app(self._exchange), token)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._exchange is not None:
            self._exchange.close()


def state(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    assert isinstance(obj, CliState)
    return obj


def jsonable(value: Any) -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(type(value)).dump_python(value, mode="json")


def output(
    st: CliState, value: Any, table: Table | None = None, *, receipts: list[Any] | None = None
) -> None:
    """Print ``value`` as JSON (``--json``) or the given rich table, plus a receipt summary."""
    if st.as_json:
        data = jsonable(value)
        if receipts is not None:
            data = {"data": data, "receipts": receipts}
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    if table is not None:
        console.print(table)
    else:
        console.print_json(json.dumps(jsonable(value), ensure_ascii=False))
    for r in receipts or []:
        console.print(
            f"[dim]ledger receipt: entry {r['index']} in checkpoint of size "
            f"{r['checkpoint'].splitlines()[1]}[/dim]"
        )


def kv_table(title: str, rows: list[tuple[str, Any]]) -> Table:
    t = Table(title=title, show_header=False)
    t.add_column("field", style="bold")
    t.add_column("value", overflow="fold")
    for k, v in rows:
        t.add_row(k, "" if v is None else str(v))
    return t


def list_table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    t = Table(title=title)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*("" if v is None else str(v) for v in r))
    return t
