"""Small SQL helpers shared by the catalog modules (internal)."""

from __future__ import annotations

from typing import Any

import duckdb

__all__ = ["AggregatePlan", "quote_ident", "quote_literal"]


def quote_ident(name: str) -> str:
    """Quote an identifier for DuckDB (column names come from untrusted files)."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """Quote a string literal for DuckDB."""
    return "'" + text.replace("'", "''") + "'"


class AggregatePlan:
    """Collects aggregate expressions from several analysers so they run in ONE scan.

    Each analyser registers the aggregates it needs and gets back an alias; identical expressions are
    shared, so e.g. ``count(col)`` asked for by both the profile and the PI scan is computed once.
    """

    def __init__(self) -> None:
        self._aliases: dict[str, str] = {}
        self._results: dict[str, Any] | None = None

    def add(self, expression: str) -> str:
        """Register an aggregate expression and return the alias its result will have."""
        alias = self._aliases.get(expression)
        if alias is None:
            alias = f"a{len(self._aliases)}"
            self._aliases[expression] = alias
        return alias

    def __len__(self) -> int:
        return len(self._aliases)

    def sql(self, relation: str) -> str:
        """Render the single aggregate query over ``relation``."""
        items = ", ".join(f"{expr} AS {alias}" for expr, alias in self._aliases.items())
        return f"SELECT {items or '1 AS a_empty'} FROM {relation}"

    def run(self, con: duckdb.DuckDBPyConnection, relation: str) -> None:
        """Execute the query and keep the single result row."""
        rows = con.execute(self.sql(relation)).fetchall()
        self._results = {}
        if rows:
            for alias, value in zip(self._aliases.values(), rows[0], strict=True):
                self._results[alias] = value

    def __getitem__(self, alias: str) -> Any:
        if self._results is None:
            raise RuntimeError("AggregatePlan.run() has not been called")
        return self._results[alias]
