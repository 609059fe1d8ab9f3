"""Engines that run a compiled query's exact SQL next to the data; DuckDB here, Spark in ``spark.py``.

Defence in depth (docs/PRIVATE_SQL.md, "Sandbox"): the allowlist (``plan.py``, ``resolve.py``) decides
what SQL exists at all; the engine then runs only SQL generated from the checked AST, in a DuckDB
connection that

- sees only the product's tables, as views created before the lock-down (under internal names);
- has ``allowed_paths`` set to exactly the source files, external access off and its configuration locked
  (no other file, extension, ATTACH, COPY destination or network);
- has memory and thread limits, a temporary directory of its own, a time limit that interrupts the query
  (``interrupt()`` from a timer) and a cap on the rows fetched.

Engine errors are reported without the engine's message: a message such as a failed cast can quote a
data value, and the consumer must only ever see released values.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb
from sqlglot import exp

from datavalley.errors import InvalidInput, PolicyViolation
from datavalley.privacy.compiler import CompiledQuery
from datavalley.privacy.resolve import sql_type

__all__ = [
    "DuckDBEngine",
    "ExactResult",
    "check_sources",
    "clamp_is_noop",
    "duplicate_check",
    "source_format",
    "value_range",
]

_FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


@dataclass(frozen=True)
class ExactResult:
    """Exact per-group values of a compiled query: group keys ``g0..`` then measures ``m0..``.

    This is unprotected data. It must stay on the node and only ever reach a consumer through
    :func:`~datavalley.privacy.release.release`.
    """

    digest: str
    engine: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    elapsed_s: float


def source_format(path: Path) -> str:
    """``parquet``, ``csv`` or ``jsonl`` from the file name (raises InvalidInput otherwise)."""
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InvalidInput(
            f"cannot tell the format of {path.name!r}; use .parquet, .csv or .jsonl", field="sources"
        )
    return fmt


def check_sources(sources: Mapping[str, Path | str]) -> dict[str, Path]:
    checked = {}
    for table, raw in sources.items():
        path = Path(raw).expanduser().resolve()
        if not path.is_file():
            raise InvalidInput(f"source of table {table!r} is not a file: {path}", field="sources")
        source_format(path)
        checked[table] = path
    if not checked:
        raise InvalidInput("an engine needs at least one table", field="sources")
    return checked


def duplicate_check(relation: str, columns: tuple[str, ...]) -> exp.Select:
    """SQL counting non-NULL key values that occur more than once in ``relation``."""
    cols = [exp.column(c, quoted=True) for c in columns]
    not_null: exp.Expr = exp.Not(this=exp.Is(this=cols[0].copy(), expression=exp.Null()))
    for c in cols[1:]:
        not_null = exp.And(
            this=not_null, expression=exp.Not(this=exp.Is(this=c.copy(), expression=exp.Null()))
        )
    inner = exp.Select(
        expressions=[c.copy() for c in cols],
        from_=exp.From(this=exp.Table(this=exp.to_identifier(relation, quoted=True))),
        where=exp.Where(this=not_null),
        group=exp.Group(expressions=[c.copy() for c in cols]),
        having=exp.Having(this=exp.GT(this=exp.Count(this=exp.Star()), expression=exp.Literal.number(1))),
    )
    return exp.Select(
        expressions=[exp.Count(this=exp.Star())],
        from_=exp.From(this=exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier("d")))),
    )


def value_range(relation: str, column: str) -> exp.Select:
    """SQL for the MIN and MAX of ``column`` as DOUBLE (NaN sorts above every number in both engines)."""
    value = exp.Cast(this=exp.column(column, quoted=True), to=sql_type("DOUBLE"))
    return exp.Select(
        expressions=[exp.Min(this=value), exp.Max(this=value.copy())],
        from_=exp.From(this=exp.Table(this=exp.to_identifier(relation, quoted=True))),
    )


def clamp_is_noop(value_range: tuple[Any, Any], low: float, high: float) -> bool:
    """Whether clamping to [low, high] changes no value, given the column's (MIN, MAX)."""
    lo, hi = value_range
    if lo is None or hi is None:
        return True  # no non-NULL value at all
    lo, hi = float(lo), float(hi)
    return not (math.isnan(lo) or math.isnan(hi)) and low <= lo and hi <= high


def _setting(name: str, value: exp.Expr) -> str:
    return exp.Set(expressions=[exp.SetItem(this=exp.EQ(this=exp.column(name), expression=value))]).sql(
        "duckdb"
    )


class DuckDBEngine:
    """Runs compiled queries on a private, locked-down in-memory DuckDB over the product's files.

    ``sources`` maps each product table to a Parquet, CSV or JSON-lines file. Use as a context manager
    or call :meth:`close`. Thread-safe: each run uses its own cursor.
    """

    name = "duckdb"

    def __init__(
        self,
        sources: Mapping[str, Path | str],
        *,
        memory_limit: str = "1GB",
        threads: int = 2,
        timeout_s: float = 30.0,
        max_rows: int = 10_000,
    ) -> None:
        self.sources = check_sources(sources)
        self.timeout_s = timeout_s
        self.max_rows = max_rows
        self.views = {table: f"dv_t{i}" for i, table in enumerate(sorted(self.sources))}
        # The same relations with no rows: every query is tried on them first (see check()).
        self.empty_views = {table: f"dv_e{i}" for i, table in enumerate(sorted(self.sources))}
        self._unique: dict[tuple[str, tuple[str, ...]], bool] = {}
        self._ranges: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._scratch = tempfile.mkdtemp(prefix="dv-private-sql-")
        self._con = duckdb.connect(
            ":memory:",
            config={
                # Extensions are never fetched or loaded implicitly: the node may be offline and must not
                # run downloaded code.
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
                "threads": threads,
                "memory_limit": memory_limit,
            },
        )
        try:
            self._prepare()
        except BaseException:
            self.close()
            raise

    def _prepare(self) -> None:
        con = self._con
        con.execute("SET enable_progress_bar = false")
        con.execute(_setting("temp_directory", exp.Literal.string(self._scratch)))
        for table, path in self.sources.items():
            fmt = source_format(path)
            args: list[exp.Expr] = [exp.Literal.string(str(path))]
            if fmt == "csv":
                reader = "read_csv"
                args.append(exp.EQ(this=exp.column("header"), expression=exp.true()))
            elif fmt == "jsonl":
                reader = "read_json"
                args.append(
                    exp.EQ(this=exp.column("format"), expression=exp.Literal.string("newline_delimited"))
                )
            else:
                reader = "read_parquet"
            view = exp.Create(
                this=exp.Table(this=exp.to_identifier(self.views[table], quoted=True)),
                kind="VIEW",
                expression=exp.Select(
                    expressions=[exp.Star()],
                    from_=exp.From(this=exp.Table(this=exp.Anonymous(this=reader, expressions=args))),
                ),
            )
            empty = exp.Create(
                this=exp.Table(this=exp.to_identifier(self.empty_views[table], quoted=True)),
                kind="VIEW",
                expression=exp.Select(
                    expressions=[exp.Star()],
                    from_=exp.From(this=exp.Table(this=exp.to_identifier(self.views[table], quoted=True))),
                    limit=exp.Limit(expression=exp.Literal.number(0)),
                ),
            )
            try:
                con.execute(view.sql("duckdb"))
                con.execute(empty.sql("duckdb"))
            except duckdb.Error as exc:
                raise InvalidInput(
                    f"cannot read the source of table {table!r} as {fmt}", field="sources"
                ) from exc
        paths = exp.Array(expressions=[exp.Literal.string(str(p)) for p in self.sources.values()])
        con.execute(_setting("allowed_paths", paths))
        con.execute(
            _setting("allowed_directories", exp.Array(expressions=[exp.Literal.string(self._scratch)]))
        )
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")

    @property
    def tables(self) -> frozenset[str]:
        """The product tables this engine serves."""
        return frozenset(self.sources)

    def check(self, q: CompiledQuery) -> None:
        """Run ``q`` once on empty relations with the tables' schemas (free of data, so free of charge).

        Binding and type errors then surface here, identical on every data set; a query that passes can
        only fail on the real data through a limit (time, memory, rows), which the node meters
        (docs/PRIVATE_SQL.md, "Side channels").

        Raises:
            InvalidInput: the query cannot run on this product's tables.
        """
        missing = sorted(q.tables - self.tables)
        if missing:
            raise InvalidInput(f"this engine does not serve table(s) {', '.join(missing)}", field="sql")
        for table, cols in q.plan.unique_keys:
            self._require_unique(table, cols)  # public lookup tables only: nothing private is revealed
        try:
            self._execute(q.exact_sql("duckdb", self.empty_views), 1)
        except InvalidInput as exc:
            raise InvalidInput(
                "the query cannot run on this product's tables "
                f"({type(exc.__cause__).__name__ if exc.__cause__ else 'engine error'})",
                field="sql",
            ) from exc

    def run(self, q: CompiledQuery) -> ExactResult:
        """Compute the exact per-group values of ``q``.

        Raises:
            InvalidInput: the query reads a table this engine does not serve, or the engine failed.
            PolicyViolation: time, memory or row limit exceeded, or a join key the rules rely on is not
                unique in the data.
        """
        missing = sorted(q.tables - self.tables)
        if missing:
            raise InvalidInput(f"this engine does not serve table(s) {', '.join(missing)}", field="sql")
        for table, cols in q.plan.unique_keys:
            self._require_unique(table, cols)
        start = time.perf_counter()
        unclamped = [c for c in q.clamps if self._clamp_is_noop(*c)]
        rows = self._execute(q.exact_sql("duckdb", self.views, unclamped=unclamped), self.max_rows + 1)
        if len(rows) > self.max_rows:
            raise PolicyViolation(
                f"the query has more than {self.max_rows} groups, the most this node returns",
                limit=self.max_rows,
            )
        return ExactResult(q.digest, self.name, q.exact_columns, tuple(rows), time.perf_counter() - start)

    def _clamp_is_noop(self, table: str, column: str, low: float, high: float) -> bool:
        # One MIN/MAX scan per column for the engine's lifetime: a clamp that changes nothing is dropped
        # from the SQL (same values, fewer instructions per row). Only timing depends on it.
        key = (table, column)
        if key not in self._ranges:
            row = self._execute(value_range(self.views[table], column).sql("duckdb"), 1)[0]
            self._ranges[key] = (row[0], row[1])
        return clamp_is_noop(self._ranges[key], low, high)

    def _require_unique(self, table: str, cols: tuple[str, ...]) -> None:
        key = (table, cols)
        if key not in self._unique:
            sql = duplicate_check(self.views[table], cols).sql("duckdb")
            self._unique[key] = self._execute(sql, 1)[0][0] == 0
        if not self._unique[key]:
            raise PolicyViolation(
                f"join key {table}.({', '.join(cols)}) is not unique in the data, so with row-level "
                "privacy a row could be counted several times; the product must declare a privacy unit",
                table=table,
            )

    def _execute(self, sql: str, limit: int) -> list[tuple[Any, ...]]:
        cur = self._con.cursor()
        timer = threading.Timer(self.timeout_s, cur.interrupt)
        timer.daemon = True
        timer.start()
        try:
            cur.execute(sql)
            return [tuple(r) for r in cur.fetchmany(limit)]
        except duckdb.InterruptException as exc:
            raise PolicyViolation(
                f"the query exceeded the node's time limit of {self.timeout_s:g} s", limit_s=self.timeout_s
            ) from exc
        except duckdb.OutOfMemoryException as exc:
            raise PolicyViolation("the query exceeded the node's memory limit") from exc
        except duckdb.Error as exc:
            # The engine's message may quote data values; only its class is reported.
            raise InvalidInput(
                f"the engine could not run the query ({type(exc).__name__})", field="sql"
            ) from exc
        finally:
            timer.cancel()
            cur.close()

    def close(self) -> None:
        """Close the connection and delete the temporary directory."""
        try:
            self._con.close()
        finally:
            shutil.rmtree(self._scratch, ignore_errors=True)

    def __enter__(self) -> DuckDBEngine:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
