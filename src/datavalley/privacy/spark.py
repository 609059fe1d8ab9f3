"""SparkEngine: the same compiled query, generated for Spark SQL, on a caller-provided SparkSession.

The compiled AST is the same one DuckDB runs; sqlglot generates the Spark dialect and the rewrite only
uses constructs with identical semantics in both engines (CASE instead of LEAST, explicit DOUBLE casts,
ROUND on DOUBLEs, integer ranks, explicit NULL ordering), so exact results agree
(tests/privacy/test_spark.py).

Spark has no locked-down mode comparable to DuckDB's: this engine relies on the allowlist (only SQL
generated from a checked AST is submitted, reading only temporary views of the product's files), plus a
time limit (job group cancellation) and a row cap. Run it in a session dedicated to the node.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from datavalley.errors import InvalidInput, PolicyViolation
from datavalley.privacy.compiler import CompiledQuery
from datavalley.privacy.engine import (
    ExactResult,
    check_sources,
    clamp_is_noop,
    duplicate_check,
    source_format,
    value_range,
)

__all__ = ["SparkEngine"]


class SparkEngine:
    """Runs compiled queries with Spark SQL over temporary views of the product's files.

    View names carry a random prefix, so several engines can share one session. Call :meth:`close` to
    drop the views; the session itself belongs to the caller.
    """

    name = "spark"

    def __init__(
        self,
        sources: Mapping[str, Path | str],
        *,
        spark: SparkSession,
        timeout_s: float = 30.0,
        max_rows: int = 10_000,
    ) -> None:
        self.sources = check_sources(sources)
        self.spark = spark
        self.timeout_s = timeout_s
        self.max_rows = max_rows
        prefix = f"dv_{secrets.token_hex(4)}_"
        self.views = {table: f"{prefix}t{i}" for i, table in enumerate(sorted(self.sources))}
        self.empty_views = {table: f"{prefix}e{i}" for i, table in enumerate(sorted(self.sources))}
        self._unique: dict[tuple[str, tuple[str, ...]], bool] = {}
        self._ranges: dict[tuple[str, str], tuple[Any, Any]] = {}
        for table, path in self.sources.items():
            fmt = source_format(path)
            reader = spark.read
            if fmt == "parquet":
                frame = reader.parquet(str(path))
            elif fmt == "csv":
                frame = reader.option("header", "true").option("inferSchema", "true").csv(str(path))
            else:
                frame = reader.json(str(path))
            frame.createOrReplaceTempView(self.views[table])
            frame.limit(0).createOrReplaceTempView(self.empty_views[table])

    @property
    def tables(self) -> frozenset[str]:
        """The product tables this engine serves."""
        return frozenset(self.sources)

    def check(self, q: CompiledQuery) -> None:
        """Run ``q`` once on empty views with the tables' schemas (see :meth:`DuckDBEngine.check`)."""
        missing = sorted(q.tables - self.tables)
        if missing:
            raise InvalidInput(f"this engine does not serve table(s) {', '.join(missing)}", field="sql")
        self._require_unique(q)
        try:
            self._execute(q.exact_sql("spark", self.empty_views), 1)
        except InvalidInput as exc:
            raise InvalidInput(
                "the query cannot run on this product's tables "
                f"({type(exc.__cause__).__name__ if exc.__cause__ else 'engine error'})",
                field="sql",
            ) from exc

    def run(self, q: CompiledQuery) -> ExactResult:
        """Compute the exact per-group values of ``q`` (same contract as :meth:`DuckDBEngine.run`)."""
        missing = sorted(q.tables - self.tables)
        if missing:
            raise InvalidInput(f"this engine does not serve table(s) {', '.join(missing)}", field="sql")
        self._require_unique(q)
        start = time.perf_counter()
        unclamped = []
        for table, column, low, high in q.clamps:
            if (table, column) not in self._ranges:
                row = self._execute(value_range(self.views[table], column).sql("spark"), 1)[0]
                self._ranges[(table, column)] = (row[0], row[1])
            if clamp_is_noop(self._ranges[(table, column)], low, high):
                unclamped.append((table, column, low, high))
        rows = self._execute(q.exact_sql("spark", self.views, unclamped=unclamped), self.max_rows + 1)
        if len(rows) > self.max_rows:
            raise PolicyViolation(
                f"the query has more than {self.max_rows} groups, the most this node returns",
                limit=self.max_rows,
            )
        return ExactResult(q.digest, self.name, q.exact_columns, tuple(rows), time.perf_counter() - start)

    def _require_unique(self, q: CompiledQuery) -> None:
        for table, cols in q.plan.unique_keys:
            key = (table, cols)
            if key not in self._unique:
                rows = self._execute(duplicate_check(self.views[table], cols).sql("spark"), 1)
                self._unique[key] = rows[0][0] == 0
            if not self._unique[key]:
                raise PolicyViolation(
                    f"join key {table}.({', '.join(cols)}) is not unique in the data, so with row-level "
                    "privacy a row could be counted several times; the product must declare a privacy unit",
                    table=table,
                )

    def _execute(self, sql: str, limit: int) -> list[tuple[Any, ...]]:
        context = self.spark.sparkContext
        group = f"datavalley-{secrets.token_hex(8)}"
        done = threading.Event()
        fired = threading.Event()

        def watchdog() -> None:
            if done.wait(self.timeout_s):
                return
            fired.set()
            # cancelJobGroup only cancels jobs already running; a query starts several jobs (footers,
            # broadcasts, the result), so keep cancelling until the call has returned.
            while not done.is_set():
                context.cancelJobGroup(group)
                done.wait(0.05)

        context.setJobGroup(group, "datavalley private query", interruptOnCancel=True)
        guard = threading.Thread(target=watchdog, name="datavalley-spark-timeout", daemon=True)
        guard.start()
        try:
            return [tuple(r) for r in self.spark.sql(sql).limit(limit).collect()]
        except Exception as exc:
            if fired.is_set():
                limit_msg = f"the query exceeded the node's time limit of {self.timeout_s:g} s"
                raise PolicyViolation(limit_msg, limit_s=self.timeout_s) from exc
            message = f"the engine could not run the query ({type(exc).__name__})"
            raise InvalidInput(message, field="sql") from exc
        finally:
            done.set()
            guard.join()
            context.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]

    def close(self) -> None:
        """Drop this engine's temporary views."""
        for view in (*self.views.values(), *self.empty_views.values()):
            self.spark.catalog.dropTempView(view)
