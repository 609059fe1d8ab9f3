"""`datavalley` with the `psi` group registered as cli/main.py will (run as `python -m node.psi_cli`)."""

from __future__ import annotations

import typer

from datavalley.cli.main import main_options
from datavalley.cli.psi import psi_app

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)
app.callback()(main_options)
app.add_typer(psi_app, name="psi")

if __name__ == "__main__":
    app()
