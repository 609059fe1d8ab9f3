"""The ``datavalley`` command line: a Typer shell over the SDK (remote) or the in-process API (local)."""
