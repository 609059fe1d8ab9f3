"""Small SQL helpers shared by the catalog modules (internal)."""

from __future__ import annotations

from typing import Any

import duckdb

__all__ = ["ScanPlan", "quote_ident", "quote_literal"]


def quote_ident(name: str) -> str:
    """Quote an identifier for DuckDB (column names come from untrusted files)."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """Quote a string literal for DuckDB."""
    return "'" + text.replace("'", "''") + "'"


class ScanPlan:
    """Collects per-row helper columns and aggregates from several analysers so they run in ONE scan.

    Helper columns live in numbered projection levels stacked on the source (level 1 sees the source,
    level 2 sees level 1, ...). Computing a value once in a lower level and referencing it above is how
    repeated sub-expressions are shared: DuckDB would otherwise evaluate a repeated expression each
    time it appears. Identical aggregates are registered once and shared between analysers.
    """

    LEVELS = 5

    def __init__(self) -> None:
        self._aggregates: dict[str, str] = {}
        self._projections: list[dict[str, str]] = [{} for _ in range(self.LEVELS)]
        self._results: dict[str, Any] | None = None

    def project(self, level: int, expression: str) -> str:
        """Add a helper column at ``level`` (1-based) and return its name."""
        exprs = self._projections[level - 1]
        name = exprs.get(expression)
        if name is None:
            name = f"__dv_{level}_{len(exprs)}"
            exprs[expression] = name
        return name

    def add(self, expression: str) -> str:
        """Register an aggregate expression and return the alias its result will have."""
        alias = self._aggregates.get(expression)
        if alias is None:
            alias = f"a{len(self._aggregates)}"
            self._aggregates[expression] = alias
        return alias

    def relation(self, view: str) -> str:
        """The source with the helper columns of every level."""
        rel = view
        for exprs in self._projections:
            if exprs:
                cols = ", ".join(f"{expr} AS {name}" for expr, name in exprs.items())
                rel = f"(SELECT *, {cols} FROM {rel})"
        return rel

    def sql(self, view: str) -> str:
        """Render the single aggregate query over ``view``."""
        items = ", ".join(f"{expr} AS {alias}" for expr, alias in self._aggregates.items())
        return f"SELECT {items or '1 AS a_empty'} FROM {self.relation(view)}"

    def run(self, con: duckdb.DuckDBPyConnection, view: str) -> None:
        """Execute the query and keep the single result row."""
        rows = con.execute(self.sql(view)).fetchall()
        self._results = dict(zip(self._aggregates.values(), rows[0], strict=True)) if rows else {}

    def __getitem__(self, alias: str) -> Any:
        if self._results is None:
            raise RuntimeError("ScanPlan.run() has not been called")
        return self._results[alias]
