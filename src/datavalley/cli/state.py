"""Shared CLI state and output helpers: one place builds clients and renders JSON or rich tables."""

from __future__ import annotations

import json
import os
import re
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
    get: str | None = None
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
    """Print ``value`` as JSON (``--json``), one field of that JSON (``--get a.b.0``) or the given rich
    table, plus a receipt summary."""
    if st.as_json or st.get:
        data = jsonable(value)
        if receipts is not None:
            data = {"data": data, "receipts": receipts}
        if st.get and "," in st.get:  # several fields: one line, tab-separated (for `read A B`)
            typer.echo("\t".join(str(pick(data, path)) for path in st.get.split(",")))
            return
        if st.get:
            data = pick(data, st.get)
            if isinstance(data, str | int | float) and not isinstance(data, bool):
                typer.echo(str(data))
                return
        typer.echo(json.dumps(data, ensure_ascii=False, indent=None if st.get else 2))
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


def pick(data: Any, path: str) -> Any:
    """The value at dotted ``path`` (``data.participant.id``, ``items.0.id``) of ``--json`` output."""
    from datavalley.errors import InvalidInput

    here = data
    for part in path.split("."):
        if isinstance(here, dict) and part in here:
            here = here[part]
        elif isinstance(here, list) and part.isdigit() and int(part) < len(here):
            here = here[int(part)]
        else:
            keys = ", ".join(map(str, here)) if isinstance(here, dict) else f"a list of {len(here)}"
            raise InvalidInput(f"--get {path}: no {part!r} here (has: {keys})", field="get")
    return here


#: IDs and secrets (``p_01…``, ``dvt_…``, ``sha256:…``): never wrapped or truncated in tables.
_ID = re.compile(r"^[a-z]{1,5}_[0-9A-Za-z_-]{6,}$|^sha256:[0-9a-f]{64}$")


def _id_width(values: list[str]) -> int:
    return max((len(v) for v in values if _ID.match(v)), default=0)


LIMIT = typer.Option(50, "--limit", min=1, max=500, help="Most items on this page (1-500).")
CURSOR = typer.Option(None, "--cursor", help="The next_cursor of the previous page.")


def page_output(st: CliState, title: str, columns: list[str], page: Any, row: Any) -> None:
    """A list: ``{items, next_cursor}`` as JSON, or a table and the command for the next page."""
    output(
        st,
        {"items": list(page.items), "next_cursor": page.next_cursor},
        list_table(title, columns, [row(i) for i in page.items]),
    )
    if page.next_cursor and not st.as_json:
        console.print(f"[dim]more: add --cursor {page.next_cursor}[/dim]")


def kv_table(title: str, rows: list[tuple[str, Any]]) -> Table:
    """Field/value rows; IDs keep their full width (the value column never wraps them)."""
    values = ["" if v is None else str(v) for _, v in rows]
    t = Table(title=title, show_header=False)
    t.add_column("field", style="bold", no_wrap=True)
    t.add_column("value", overflow="fold", min_width=_id_width(values) or None)
    for (k, _), v in zip(rows, values, strict=True):
        t.add_row(k, v)
    return t


def list_table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    """Rows of a list; columns holding IDs never wrap or truncate (other columns fold instead)."""
    cells = [["" if v is None else str(v) for v in r] for r in rows]
    t = Table(title=title)
    for i, c in enumerate(columns):
        width = _id_width([r[i] for r in cells if i < len(r)])
        if width:
            t.add_column(c, no_wrap=True, min_width=width, overflow="ignore")
        else:
            t.add_column(c, overflow="fold")
    for r in cells:
        t.add_row(*r)
    return t
