"""Private SQL: the node-side engine that answers aggregate SQL with k suppression and differential privacy.

A consumer's SQL goes through four steps (docs/PRIVATE_SQL.md)::

    q = compile_query(sql, schema, rules, epsilon=1.0)   # allowlist, rewrite, noise plan, digest
    exact = engine.run(q)                                 # DuckDBEngine or SparkEngine, next to the data
    answer = release(q, exact)                            # noise, suppression, HAVING/ORDER/LIMIT

``q.cost`` is what the query spends and ``q.digest`` identifies it for caching: equivalent spellings of
the same query under the same rules and budget have the same digest. The exact result never leaves the
node; only :class:`Released` does.

Errors are the datavalley tree: :class:`~datavalley.errors.InvalidInput` for syntax errors, unknown names
and engine failures; :class:`~datavalley.errors.PolicyViolation` for constructs outside the grammar,
rules a contract would loosen, and exceeded time, memory or row limits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from datavalley.privacy.compiler import CompiledQuery, PrivacyCost, compile_query
from datavalley.privacy.engine import DuckDBEngine, ExactResult
from datavalley.privacy.release import CellNoise, Released, release
from datavalley.privacy.rules import PrivacyRules, ProductSchema, TableSpec

if TYPE_CHECKING:
    from datavalley.privacy.spark import SparkEngine

__all__ = [
    "CellNoise",
    "CompiledQuery",
    "DuckDBEngine",
    "ExactResult",
    "PrivacyCost",
    "PrivacyRules",
    "ProductSchema",
    "Released",
    "SparkEngine",
    "TableSpec",
    "compile_query",
    "release",
]


def __getattr__(name: str) -> Any:
    # pyspark takes about a second to import; only code that uses Spark pays for it.
    if name == "SparkEngine":
        from datavalley.privacy.spark import SparkEngine

        return SparkEngine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
