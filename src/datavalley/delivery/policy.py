"""Delivery policy: what a recipient of a delivery contract may receive, compiled to one DuckDB query.

Sources of the policy (docs/DELIVERY.md):

- the contract's ODRL agreement (:mod:`datavalley.market.policy`): ``dv:column`` (columns offered),
  ``dv:piTreatment`` (``exclude`` | ``pseudonymise`` personal columns that are not licensed; default
  ``exclude``), ``dv:licensedPI`` (personal columns licensed in clear), ``dv:rowFilter`` (row conditions,
  AND-ed), ``dv:maxBytes``; reads and rows are capped by ``count`` and ``dv:maxQuantity``;
- the registered resource: its schema and the columns its PI scan found personal;
- the product's declared watermark tolerances (``terms.delivery.watermark.columns``: column → decimals).

The compiled :class:`TablePlan` is pure data; :func:`select_sql` turns it into SQL whose identifiers are
quoted and whose literals come from validated terms only (hex keys, numbers, escaped strings).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from datavalley.errors import InvalidInput, PolicyViolation
from datavalley.market.policy import PI_TREATMENTS, Terms

FILTER_OPS = ("isAnyOf", "eq", "gt", "gteq", "lt", "lteq")
NUMERIC_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE", "DECIMAL", "REAL")
INTEGER_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER")
MAX_DECIMALS = 6


def _scalar(value: Any, where: str) -> str | int | float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidInput(f"{where}: values must be strings or numbers, got {value!r}", field="row_filter")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput(f"{where}: values must be finite", field="row_filter")
    return value


def parse_row_filter(value: Any, where: str = "row_filter") -> tuple[dict[str, Any], ...]:
    """Validate row conditions: ``[{"column": c, "isAnyOf": [...]} | {"column": c, "gteq": v, "lt": v}]``."""
    if not isinstance(value, list):
        raise InvalidInput(f"{where} must be a list of conditions", field="row_filter")
    out: list[dict[str, Any]] = []
    for cond in value:
        if not isinstance(cond, dict):
            raise InvalidInput(f"{where}: a condition must be an object", field="row_filter")
        column = cond.get("column")
        if not isinstance(column, str) or not column or len(column) > 128:
            raise InvalidInput(f"{where}: a condition needs a column name", field="row_filter")
        ops = sorted(set(cond) - {"column"})
        if not ops or any(op not in FILTER_OPS for op in ops):
            raise InvalidInput(
                f"{where}: condition on {column!r} needs operators from {list(FILTER_OPS)}, got {ops}",
                field="row_filter",
            )
        clean: dict[str, Any] = {"column": column}
        for op in ops:
            if op == "isAnyOf":
                values = cond[op]
                if not isinstance(values, list) or not values or len(values) > 1000:
                    raise InvalidInput(f"{where}: isAnyOf needs 1 to 1000 values", field="row_filter")
                clean[op] = [_scalar(v, where) for v in values]
            else:
                clean[op] = _scalar(cond[op], where)
        out.append(clean)
    return tuple(out)


def parse_delivery_terms(value: Any) -> dict[str, Any]:
    """Validate a file-delivery product's ``terms.delivery``."""
    if not isinstance(value, dict):
        raise InvalidInput("terms.delivery must be an object", field="terms.delivery")
    known = {"columns", "pi", "licensed_pi", "row_filter", "max_bytes", "watermark"}
    unknown = sorted(set(value) - known)
    if unknown:
        raise InvalidInput(
            f"unknown delivery terms {unknown} (known: {sorted(known)})", field="terms.delivery"
        )
    out: dict[str, Any] = {}
    for key in ("columns", "licensed_pi"):
        if value.get(key) is not None:
            cols = value[key]
            if not isinstance(cols, list) or not all(isinstance(c, str) and c for c in cols):
                raise InvalidInput(f"terms.delivery.{key} must be a list of column names", field=key)
            out[key] = list(dict.fromkeys(cols))
    pi = value.get("pi", "exclude")
    if pi not in PI_TREATMENTS:
        raise InvalidInput(
            f"terms.delivery.pi must be one of {list(PI_TREATMENTS)}", field="terms.delivery.pi"
        )
    out["pi"] = pi
    if value.get("row_filter") is not None:
        out["row_filter"] = list(parse_row_filter(value["row_filter"], "terms.delivery.row_filter"))
    if value.get("max_bytes") is not None:
        mb = value["max_bytes"]
        if isinstance(mb, bool) or not isinstance(mb, int) or mb < 1:
            raise InvalidInput("terms.delivery.max_bytes must be a positive integer", field="max_bytes")
        out["max_bytes"] = mb
    if value.get("watermark") is not None:
        wm = value["watermark"]
        cols = wm.get("columns") if isinstance(wm, dict) else None
        if not isinstance(cols, dict) or not cols or set(wm) - {"columns"}:
            raise InvalidInput(
                "terms.delivery.watermark must be {columns: {column: decimals}}",
                field="terms.delivery.watermark",
            )
        for name, dec in cols.items():
            if not isinstance(name, str) or isinstance(dec, bool) or not isinstance(dec, int):
                raise InvalidInput(
                    "watermark columns map names to decimals", field="terms.delivery.watermark"
                )
            if not 0 <= dec <= MAX_DECIMALS:
                raise InvalidInput(
                    f"watermark decimals must be 0..{MAX_DECIMALS}", field="terms.delivery.watermark"
                )
        out["watermark"] = {"columns": dict(sorted(cols.items()))}
    return out


def personal_columns(pii: dict[str, Any]) -> frozenset[str]:
    """Columns the resource's PI scan marked personal (as registered at the exchange)."""
    cols = pii.get("columns") if isinstance(pii, dict) else None
    out = set()
    for c in cols or []:
        if isinstance(c, dict) and c.get("personal") and isinstance(c.get("column"), str):
            out.add(c["column"])
    return frozenset(out)


@dataclass(frozen=True)
class TablePlan:
    """The compiled policy for one table of one contract (the same for all its recipients)."""

    columns: tuple[tuple[str, str], ...]  # delivered (name, type) in source order
    pseudonymised: tuple[str, ...]
    excluded: tuple[str, ...]
    row_filter: tuple[dict[str, Any], ...]
    watermark: tuple[tuple[str, int], ...]  # (column, decimals), numeric clear columns only

    def digest(self) -> str:
        body = json.dumps(
            {
                "columns": self.columns,
                "pseudonymised": self.pseudonymised,
                "row_filter": self.row_filter,
                "watermark": self.watermark,
            },
            sort_keys=True,
        )
        return hashlib.sha256(body.encode()).hexdigest()


def compile_plan(
    terms: Terms,
    schema: list[tuple[str, str]],
    personal: frozenset[str],
    watermark: dict[str, int],
) -> TablePlan:
    """Columns, pseudonyms, filters and watermark for a table with ``schema`` under ``terms``.

    Fails closed: a row condition on a column the table lacks refuses the table (the filter could not be
    enforced), and personal columns are excluded unless licensed or pseudonymised by the agreement.
    """
    names = [n for n, _ in schema]
    for cond in terms.row_filter:
        if cond["column"] not in names:
            raise PolicyViolation(
                f"the contract filters rows on column {cond['column']!r}, which this table lacks: not served"
            )
    offered = set(terms.columns) if terms.columns else set(names)
    treatment = terms.pi_treatment or "exclude"
    licensed = set(terms.licensed_pi)
    columns, pseudo, excluded = [], [], []
    for name, typ in schema:
        if name not in offered:
            excluded.append(name)
        elif name in personal and name not in licensed:
            if treatment == "pseudonymise":
                pseudo.append(name)
                columns.append((name, "VARCHAR"))
            else:
                excluded.append(name)
        else:
            columns.append((name, typ))
    if not columns:
        raise PolicyViolation("the contract's column selection leaves no column to deliver")
    clear = {n: t for n, t in columns if n not in pseudo}
    marks = tuple(
        (c, d)
        for c, d in sorted(watermark.items())
        if c in clear and clear[c].upper().split("(")[0] in NUMERIC_TYPES
    )
    return TablePlan(tuple(columns), tuple(pseudo), tuple(excluded), terms.row_filter, marks)


def qi(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def lit(value: str | int | float) -> str:
    """A SQL literal from a validated scalar."""
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


def _condition(cond: dict[str, Any]) -> str:
    col = qi(cond["column"])
    parts = []
    for op, sym in (("eq", "="), ("gt", ">"), ("gteq", ">="), ("lt", "<"), ("lteq", "<=")):
        if op in cond:
            parts.append(f"{col} {sym} {lit(cond[op])}")
    if "isAnyOf" in cond:
        parts.append(f"{col} IN ({', '.join(lit(v) for v in cond['isAnyOf'])})")
    return " AND ".join(parts)


def watermark_sql(column: str, typ: str, decimals: int, key: str) -> str:
    """The keyed watermark of a numeric column (docs/DELIVERY.md): q = round(v·10^d); in the pair
    p = ⌊q/2⌋ the kept value is 2p + bit(key, p), so |change| ≤ 10^-d. ``key`` is hex."""
    assert all(ch in "0123456789abcdef" for ch in key)
    scale = 10**decimals
    col = qi(column)
    q = f"CAST(round(CAST({col} AS DOUBLE) * {scale}) AS BIGINT)"
    p = f"({q} >> 1)"
    bit = f"(CAST(('0x' || substr(sha256('{key}:' || CAST({p} AS VARCHAR)), 1, 2)) AS INTEGER) & 1)"
    marked = f"(2 * {p} + {bit})"
    base = typ.upper().split("(")[0]
    if base in INTEGER_TYPES and decimals == 0:
        value = f"CAST({marked} AS {typ})"
    else:
        target = typ if base != "DECIMAL" else "DOUBLE"
        value = f"CAST(round({marked} / {float(scale)!r}, {decimals}) AS {target})"
    return f"CASE WHEN {col} IS NULL THEN NULL ELSE {value} END"


def select_sql(plan: TablePlan, source: str, *, pseudonym_salt: str, watermark_keys: dict[str, str]) -> str:
    """``SELECT`` the plan's columns from relation ``source`` (hex salt and keys)."""
    assert all(ch in "0123456789abcdef" for ch in pseudonym_salt)
    marks = dict(plan.watermark)
    exprs = []
    for name, typ in plan.columns:
        col = qi(name)
        if name in plan.pseudonymised:
            exprs.append(
                f"CASE WHEN {col} IS NULL THEN NULL ELSE 'pn_' || "
                f"substr(sha256('{pseudonym_salt}:' || CAST({col} AS VARCHAR)), 1, 24) END AS {col}"
            )
        elif name in marks:
            exprs.append(f"{watermark_sql(name, typ, marks[name], watermark_keys[name])} AS {col}")
        else:
            exprs.append(col)
    where = " AND ".join(f"({_condition(c)})" for c in plan.row_filter) or "TRUE"
    return f"SELECT {', '.join(exprs)} FROM {source} WHERE {where}"
