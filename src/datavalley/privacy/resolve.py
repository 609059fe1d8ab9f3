"""Resolve names and check expressions of a private query against the product schema and the allowlist.

Used by ``plan.py``: a :class:`Resolver` holds the tables a query reads (with positional aliases ``t0``,
``t1``...) and turns consumer SQL fragments into checked, rebuilt sqlglot trees: column references in the
schema's own spelling, aggregates of the grammar (docs/PRIVATE_SQL.md, "Allowed grammar"), and WHERE and
HAVING expressions with their value types. Anything outside the grammar is refused with a
:class:`PolicyViolation` naming the construct; unknown names and type mismatches are :class:`InvalidInput`.
"""

from __future__ import annotations

import functools
import math
import string
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any, Literal

from sqlglot import exp

from datavalley.errors import InvalidInput, PolicyViolation
from datavalley.privacy.rules import NUMERIC_TYPES, PrivacyRules, ProductSchema, lookup

__all__ = [
    "AGGREGATE_LIKE",
    "MAX_IN_ITEMS",
    "TEMPORAL_TYPES",
    "Agg",
    "AggKind",
    "Col",
    "Output",
    "OutputRefs",
    "Resolver",
    "fold",
    "fold_number",
    "number_literal",
    "parse_temporal",
    "refuse",
    "snippet",
    "sql_type",
    "temporal_literal",
]

AggKind = Literal["count", "count_col", "count_distinct", "sum", "avg"]
_ASCII_FOLD = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)

# Nodes handed to Resolver.aggregate (which accepts three kinds and explains the refusal of the rest).
AGGREGATE_LIKE = (exp.AggFunc, exp.Window, exp.Filter, exp.WithinGroup)
_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)
_WHERE_FUNCTIONS = "ABS, COALESCE, LOWER, UPPER"

#: Most values one IN list may hold.
MAX_IN_ITEMS = 1000
#: Most tables (FROM and JOINs) one query may read.
MAX_TABLES = 16
#: Logical types compared as dates and times (text literals are parsed into them at compile time).
TEMPORAL_TYPES = frozenset({"date", "timestamp", "timestamptz", "time"})


def sql_type(name: str) -> exp.DataType:
    """A type node: a fresh copy of one built once (DataType.build parses its argument every call)."""
    return _type(name).copy()


@functools.cache
def _type(name: str) -> exp.DataType:
    return exp.DataType.build(name)


def fold(name: str) -> str:
    # ASCII-only case folding: str.lower() would map the Kelvin sign to "k" and let look-alike
    # identifiers match real columns.
    return name.translate(_ASCII_FOLD)


def snippet(node: exp.Expr) -> str:
    text = node.sql(dialect="duckdb", comments=False)
    return text if len(text) <= 80 else text[:77] + "..."


def _value_type(logical: str) -> str:
    if logical in NUMERIC_TYPES:
        return "num"
    if logical == "text":
        return "text"
    if logical == "boolean":
        return "bool"
    if logical in TEMPORAL_TYPES:
        return logical
    return "other"


@dataclass(frozen=True)
class Col:
    """A resolved column: positional table alias, table and column as the schema spells them."""

    alias: str
    table: str
    column: str
    type: str

    @property
    def ref(self) -> str:
        return f"{self.alias}.{self.column}"


@dataclass(frozen=True)
class Agg:
    """One aggregate of the grammar; ``column`` is None for COUNT(*)."""

    kind: AggKind
    column: Col | None


@dataclass(frozen=True)
class Output:
    """One released column: a group key (``key`` indexes ``QueryPlan.keys``) or an aggregate."""

    name: str
    key: int | None
    agg: Agg | None


def refuse(message: str, node: exp.Expr | None = None) -> PolicyViolation:
    details: dict[str, Any] = {"field": "sql"}
    if node is not None:
        details["construct"] = snippet(node)
    return PolicyViolation(message, **details)


class Resolver:
    """Names, aggregates and expressions of one query: the tables it reads so far, with their aliases."""

    def __init__(self, schema: ProductSchema, rules: PrivacyRules, *, dp: bool) -> None:
        self.schema = schema
        self.rules = rules
        self.dp = dp
        self.tables: list[tuple[str, str]] = []  # (positional alias, table)
        self.user_alias: dict[str, str] = {}  # folded user alias -> positional alias

    # --- FROM and JOIN -------------------------------------------------------------------------

    def add_table(self, node: exp.Expr) -> str:
        if isinstance(node, exp.Subquery | exp.Select):
            raise refuse("subqueries are not allowed in FROM: name a table of the product", node)
        if not isinstance(node, exp.Table) or not isinstance(node.this, exp.Identifier):
            raise refuse(
                "FROM must name a table of the product; table functions such as read_csv(), "
                "read_parquet(), glob() or duckdb_settings() are not allowed (they reach files, "
                "settings or catalogs outside the product)",
                node,
            )
        extra = [k for k, v in node.args.items() if v and k not in ("this", "alias")]
        if node.args.get("db") or node.args.get("catalog"):
            raise refuse(
                "schema- or catalog-qualified names are not allowed: "
                "the product's tables are the only relations",
                node,
            )
        if extra:
            raise refuse(f"table modifiers ({', '.join(sorted(extra))}) are not allowed", node)
        alias_node = node.args.get("alias")
        if alias_node is not None and alias_node.args.get("columns"):
            raise refuse("column aliases on a table are not allowed", node)
        if len(self.tables) >= MAX_TABLES:
            raise InvalidInput(f"a query may read at most {MAX_TABLES} tables (joins included)", field="sql")
        table = self._table_name(node.this.name)
        alias = f"t{len(self.tables)}"
        user = fold(alias_node.name if alias_node is not None else node.this.name)
        if user in self.user_alias:
            raise InvalidInput(
                f"table alias {user!r} is used twice; give each table its own alias", field="sql"
            )
        self.user_alias[user] = alias
        self.tables.append((alias, table))
        return alias

    def _table_name(self, name: str) -> str:
        if name in self.schema.tables:
            return name
        matches = [t for t in self.schema.tables if fold(t) == fold(name)]
        if len(matches) == 1:
            return matches[0]
        raise InvalidInput(
            f"unknown table {name!r}; the product has: {', '.join(sorted(self.schema.tables))}",
            field="sql",
            table=name,
        )

    def add_join(self, join: exp.Join) -> tuple[tuple[Col, Col], ...]:
        side = (join.args.get("side") or "").upper()
        kind = (join.args.get("kind") or "").upper()
        if side or kind not in ("", "INNER"):
            raise refuse(
                f"only INNER JOIN is allowed, got {' '.join(p for p in (side, kind) if p)} JOIN", join
            )
        if join.args.get("using"):
            raise refuse("JOIN ... USING is not allowed; write JOIN ... ON a.x = b.y", join)
        extra = [k for k, v in join.args.items() if v and k not in ("this", "on", "kind", "side")]
        if extra:
            raise refuse(f"join modifiers ({', '.join(sorted(extra))}) are not allowed", join)
        new_alias = self.add_table(join.this)
        on = join.args.get("on")
        if on is None:
            raise refuse("a JOIN needs ON with equalities on declared join keys (no cross joins)", join)
        pairs: list[tuple[Col, Col]] = []
        other: set[str] = set()
        for cond in _conjuncts(on):
            if not (isinstance(cond, exp.EQ) and isinstance(cond.this, exp.Column)):
                raise refuse("JOIN ON may only hold column = column equalities joined by AND", cond)
            if not isinstance(cond.expression, exp.Column):
                raise refuse("JOIN ON may only hold column = column equalities joined by AND", cond)
            a, b = self.column(cond.this), self.column(cond.expression)
            if b.alias != new_alias:
                a, b = b, a
            if b.alias != new_alias or a.alias == new_alias:
                raise refuse("each JOIN ON equality must link the joined table to an earlier table", cond)
            if not self.rules.allows_join(f"{a.table}.{a.column}", f"{b.table}.{b.column}"):
                allowed = ", ".join(f"{x} = {y}" for x, y in self.rules.join_keys) or "none"
                raise refuse(
                    f"join on {a.table}.{a.column} = {b.table}.{b.column} is not a declared join key "
                    f"(allowed: {allowed})",
                    cond,
                )
            pairs.append((a, b))
            other.add(a.alias)
        if len(other) != 1:
            raise refuse("a JOIN ON must link the joined table to exactly one earlier table", on)
        return tuple(pairs)

    # --- names -----------------------------------------------------------------------------------

    def column(self, node: exp.Column) -> Col:
        extra = [k for k, v in node.args.items() if v and k not in ("this", "table")]
        if extra or not isinstance(node.this, exp.Identifier):
            raise refuse(
                f"column reference {snippet(node)} is not allowed (only column or table.column)", node
            )
        name = node.this.name
        qualifier = node.args.get("table")
        if qualifier is not None:
            alias = self.user_alias.get(fold(qualifier.name))
            if alias is None:
                raise InvalidInput(
                    f"unknown table or alias {qualifier.name!r} in {snippet(node)}", field="sql"
                )
            candidates = [(a, t) for a, t in self.tables if a == alias]
        else:
            candidates = list(self.tables)
        found: list[Col] = []
        for alias, table in candidates:
            col = self._column_of(table, name)
            if col is not None:
                found.append(Col(alias, table, col, self.schema.tables[table].columns[col]))
        if not found:
            raise InvalidInput(f"unknown column {name!r}", field="sql", column=name)
        if len(found) > 1:
            raise InvalidInput(f"column {name!r} is ambiguous; qualify it with a table name", field="sql")
        return found[0]

    def _column_of(self, table: str, name: str) -> str | None:
        columns = self.schema.tables[table].columns
        if name in columns:
            return name
        matches = [c for c in columns if fold(c) == fold(name)]
        if len(matches) > 1:
            raise InvalidInput(
                f"column {name!r} of {table!r} is ambiguous by case; quote it exactly", field="sql"
            )
        return matches[0] if matches else None

    def is_unit(self, col: Col) -> bool:
        return (
            self.rules.privacy_unit is not None
            and col.column == self.rules.privacy_unit
            and (col.table not in self.rules.public_tables)
        )

    def plain_column(self, node: exp.Column, where: str) -> Col:
        col = self.column(node)
        if self.is_unit(col):
            raise refuse(
                f"the privacy unit column {col.column!r} may not appear in {where}: it may only be counted "
                "with COUNT(DISTINCT ...) or used in join conditions",
                node,
            )
        return col

    # --- aggregates ------------------------------------------------------------------------------

    def aggregate(self, node: exp.Expr) -> Agg:
        inner = node.this if isinstance(node, exp.WithinGroup) else node
        name = type(inner).__name__.upper()
        if any(word in name for word in ("PERCENTILE", "QUANTILE", "MEDIAN")):
            raise refuse(
                f"{name} is not supported: quantiles need a dedicated DP mechanism (not exact values plus "
                "noise), which this engine does not implement",
                node,
            )
        if isinstance(node, exp.Window):
            raise refuse("window functions (OVER) are not allowed", node)
        if isinstance(node, exp.Filter):
            raise refuse("aggregate FILTER clauses are not allowed; use WHERE", node)
        if not isinstance(node, exp.Count | exp.Sum | exp.Avg):
            raise refuse(
                f"{snippet(node)} is not allowed: the aggregates are COUNT(*), COUNT(column), "
                "COUNT(DISTINCT unit), SUM(column) and AVG(column) (MIN, MAX and others have no bounded "
                "sensitivity)",
                node,
            )
        extra = [k for k, v in node.args.items() if v and k not in ("this", "big_int")]
        arg = node.this
        if extra:
            raise refuse(f"{snippet(node)}: only one argument is allowed", node)
        if isinstance(node, exp.Count):
            if isinstance(arg, exp.Star) or (isinstance(arg, exp.Literal) and not arg.is_string):
                return Agg("count", None)
            if isinstance(arg, exp.Distinct):
                inner = arg.expressions
                if len(inner) != 1 or not isinstance(inner[0], exp.Column) or arg.args.get("on"):
                    raise refuse("COUNT(DISTINCT ...) takes one column: the privacy unit", node)
                col = self.column(inner[0])
                if not self.is_unit(col):
                    raise refuse(
                        "COUNT(DISTINCT ...) is only allowed on the privacy unit column"
                        + (f" {self.rules.privacy_unit!r}" if self.rules.privacy_unit else " (none is set)")
                        + ": other distinct counts have unbounded sensitivity",
                        node,
                    )
                return Agg("count_distinct", col)
            if isinstance(arg, exp.Column):
                return Agg("count_col", self.plain_column(arg, "COUNT(column)"))
            raise refuse("COUNT takes *, a column, or DISTINCT unit", node)
        label = "SUM" if isinstance(node, exp.Sum) else "AVG"
        if isinstance(arg, exp.Distinct):
            raise refuse(f"{label}(DISTINCT ...) is not allowed", node)
        if not isinstance(arg, exp.Column):
            raise refuse(
                f"{label} takes one column (no expressions: a clamp range is declared per column)", node
            )
        col = self.plain_column(arg, label)
        if col.type not in NUMERIC_TYPES:
            raise InvalidInput(
                f"{label}({col.column}) needs a numeric column; {col.column!r} is {col.type}", field="sql"
            )
        if self.dp and lookup(self.rules.clamps, col.table, col.column) is None:
            raise refuse(
                f"{label}({col.column}) is not allowed: the product declares no clamping range for "
                f"{col.table}.{col.column}, so its sensitivity would be unbounded",
                node,
            )
        return Agg("sum" if label == "SUM" else "avg", col)

    # --- WHERE and HAVING expressions --------------------------------------------------------------

    def where(self, node: exp.Expr) -> exp.Expr:
        out, typ = self.expr(node, None)
        if typ not in ("bool", "null"):
            raise InvalidInput(f"WHERE must be a condition, got {snippet(node)}", field="sql")
        return out

    def expr(self, node: exp.Expr, outputs: OutputRefs | None) -> tuple[exp.Expr, str]:
        """Check one expression and return (rewritten copy, value type). ``outputs`` set means HAVING.

        Every value the engine computes is typed here so that no expression can fail at run time
        (docs/PRIVATE_SQL.md, "Side channels"): numeric literals are validated and become DOUBLE
        constants, literal-only arithmetic is folded here (overflow, division by zero and non-finite
        results are refused), numeric columns are compared and computed as DOUBLE (whose arithmetic never
        raises), and text literals compared with a date or time are parsed here into typed constants.
        """
        clause = "WHERE" if outputs is None else "HAVING"
        if isinstance(node, exp.Paren):
            # The consumer's parentheses are dropped and every compound operand is parenthesised below:
            # one canonical form (and digest) however the query was bracketed.
            return self.expr(node.this, outputs)
        folded = fold_number(node)
        if folded is not None:
            return number_literal(folded, outputs is None), "num"
        if isinstance(node, exp.Column):
            if outputs is not None:
                index = outputs.resolve_column(node, self)
                return _out_ref(index), outputs.type_of(index)
            col = self.plain_column(node, "WHERE")
            ref: exp.Expr = exp.column(col.column, table=col.alias, quoted=True)
            typ = _value_type(col.type)
            if typ == "num":
                # Compared and computed as DOUBLE: a cast to DOUBLE never fails, DOUBLE arithmetic and
                # comparisons never raise, and no literal can force a narrowing cast of the column.
                ref = exp.Cast(this=ref, to=sql_type("DOUBLE"))
            return ref, typ
        if isinstance(node, exp.Literal):
            if node.is_string:
                return exp.Literal.string(node.this), "text"
            raise InvalidInput(f"not a number: {node.this!r}", field="sql")  # fold_number took the rest
        if isinstance(node, exp.Boolean):
            return exp.Boolean(this=bool(node.this)), "bool"
        if isinstance(node, exp.Null):
            return exp.Null(), "null"
        if outputs is not None and isinstance(node, AGGREGATE_LIKE):
            return _out_ref(outputs.resolve_agg(node, self)), "num"
        if isinstance(node, exp.And | exp.Or):
            a, ta = self.expr(node.this, outputs)
            b, tb = self.expr(node.expression, outputs)
            _expect(node, "bool", ta, tb)
            return type(node)(this=_p(a), expression=_p(b)), "bool"
        if isinstance(node, exp.Not):
            a, ta = self.expr(node.this, outputs)
            _expect(node, "bool", ta)
            return exp.Not(this=_p(a)), "bool"
        if isinstance(node, _COMPARISONS):
            a, ta = self.expr(node.this, outputs)
            b, tb = self.expr(node.expression, outputs)
            (a, ta), (b, tb) = _coerce(node, (a, ta, node.this), (b, tb, node.expression), outputs)
            return type(node)(this=_p(a), expression=_p(b)), "bool"
        if isinstance(node, exp.Is):
            a, ta = self.expr(node.this, outputs)
            if not isinstance(node.expression, exp.Null | exp.Boolean):
                raise refuse("IS may only test NULL, TRUE or FALSE", node)
            if isinstance(node.expression, exp.Boolean):
                # x IS TRUE casts x to BOOLEAN, which fails on text such as 'abc'.
                _expect(node, "bool", ta)
            b, _ = self.expr(node.expression, outputs)
            return exp.Is(this=_p(a), expression=b), "bool"
        if isinstance(node, exp.Between):
            extra = [k for k, v in node.args.items() if v and k not in ("this", "low", "high")]
            if extra:
                raise refuse(f"BETWEEN modifiers ({', '.join(sorted(extra))}) are not allowed", node)
            srcs = [node.args[k] for k in ("this", "low", "high")]
            (x, tx), (lo, tlo), (hi, thi) = (self.expr(src, outputs) for src in srcs)
            _, (lo, tlo) = _coerce(node, (x, tx, srcs[0]), (lo, tlo, srcs[1]), outputs)
            _, (hi, thi) = _coerce(node, (x, tx, srcs[0]), (hi, thi, srcs[2]), outputs)
            return exp.Between(this=_p(x), low=_p(lo), high=_p(hi)), "bool"
        if isinstance(node, exp.In):
            if node.args.get("query") or node.args.get("unnest") or node.args.get("field"):
                raise refuse("IN takes a list of literals; subqueries are not allowed", node)
            if len(node.expressions) > MAX_IN_ITEMS:
                raise InvalidInput(
                    f"IN lists at most {MAX_IN_ITEMS} values, got {len(node.expressions)}", field="sql"
                )
            a, ta = self.expr(node.this, outputs)
            items = []
            for item in node.expressions:
                if not _is_literal(item):
                    raise refuse("IN takes a list of literals", item)
                b, tb = self.expr(item, outputs)
                _, (b, tb) = _coerce(node, (a, ta, node.this), (b, tb, item), outputs)
                items.append(b)
            return exp.In(this=_p(a), expressions=items), "bool"
        if isinstance(node, exp.Like | exp.ILike):
            extra = [k for k, v in node.args.items() if v and k not in ("this", "expression")]
            if extra:
                raise refuse(f"LIKE modifiers ({', '.join(sorted(extra))}) are not allowed", node)
            a, ta = self.expr(node.this, outputs)
            if not (isinstance(node.expression, exp.Literal) and node.expression.is_string):
                raise refuse("LIKE takes a string literal pattern", node)
            _expect(node, "text", ta)
            b, _ = self.expr(node.expression, outputs)
            return type(node)(this=_p(a), expression=b), "bool"
        if isinstance(node, exp.Add | exp.Sub | exp.Mul | exp.Div):
            if isinstance(node, exp.Div) and outputs is None:
                raise refuse(
                    "division is not allowed in WHERE: a zero divisor fails in one engine and not the other, "
                    "and the failure would reveal that such a row exists",
                    node,
                )
            a, ta = self.expr(node.this, outputs)
            b, tb = self.expr(node.expression, outputs)
            _expect(node, "num", ta, tb)
            return type(node)(this=_p(a), expression=_p(b)), "num"
        if isinstance(node, exp.Neg):
            a, ta = self.expr(node.this, outputs)
            _expect(node, "num", ta)
            return exp.Neg(this=_p(a)), "num"
        if outputs is None and isinstance(node, exp.Abs):
            a, ta = self.expr(node.this, outputs)
            _expect(node, "num", ta)
            return exp.Abs(this=a), "num"
        if outputs is None and isinstance(node, exp.Lower | exp.Upper):
            a, ta = self.expr(node.this, outputs)
            _expect(node, "text", ta)
            return type(node)(this=a), "text"
        if outputs is None and isinstance(node, exp.Coalesce):
            args = [node.this, *node.expressions]
            done = [self.expr(x, outputs) for x in args]
            types = {t for _, t in done if t != "null"}
            if len(types) > 1:
                raise InvalidInput(f"COALESCE mixes types {sorted(types)} in {snippet(node)}", field="sql")
            if types & {"other"}:
                raise InvalidInput(f"COALESCE of {snippet(node)}: unsupported column type", field="sql")
            return exp.Coalesce(this=done[0][0], expressions=[e for e, _ in done[1:]]), (
                types.pop() if types else "null"
            )
        raise self._not_allowed(node, clause)

    def _not_allowed(self, node: exp.Expr, clause: str) -> PolicyViolation:
        if isinstance(node, exp.Subquery | exp.Select | exp.Exists):
            return refuse(f"subqueries are not allowed in {clause}", node)
        if isinstance(node, exp.Cast | exp.TryCast):
            return refuse(
                f"CAST is not allowed in {clause}: a failing cast would reveal a value in its error", node
            )
        if isinstance(node, exp.Mod | exp.IntDiv):
            return refuse(f"{node.key.upper()} is not allowed in {clause} (a zero divisor would fail)", node)
        if isinstance(node, exp.Placeholder | exp.Parameter):
            return refuse("parameters and placeholders are not allowed; write literal values", node)
        if isinstance(node, exp.Func):
            fname = node.name if isinstance(node, exp.Anonymous) else node.sql_name()
            allowed = _WHERE_FUNCTIONS if clause == "WHERE" else "aggregates of the SELECT list"
            return refuse(f"function {fname.upper()}() is not allowed in {clause}; allowed: {allowed}", node)
        return refuse(f"{node.key.upper()} is not allowed in {clause}", node)


class OutputRefs:
    """The SELECT list while HAVING and ORDER BY are resolved against it."""

    def __init__(self, outputs: list[Output], keys: list[Col]) -> None:
        self.outputs = outputs
        self.keys = keys

    def type_of(self, index: int) -> str:
        out = self.outputs[index]
        return "num" if out.agg is not None else _value_type(self.keys[out.key or 0].type)

    def resolve_column(self, node: exp.Column, planner: Resolver) -> int:
        if node.args.get("table") is None and isinstance(node.this, exp.Identifier):
            for i, out in enumerate(self.outputs):
                if fold(out.name) == fold(node.this.name):
                    return i
        col = planner.column(node)
        for i, out in enumerate(self.outputs):
            if out.key is not None and self.keys[out.key] == col:
                return i
        raise InvalidInput(f"{snippet(node)} is not a column of the result", field="sql")

    def resolve_agg(self, node: exp.Expr, planner: Resolver) -> int:
        agg = planner.aggregate(node)
        for i, out in enumerate(self.outputs):
            if out.agg == agg:
                return i
        raise refuse(
            f"{snippet(node)} is not in the SELECT list; add it there (HAVING and ORDER BY only see "
            "released values, each paid for once)",
            node,
        )


# Operands that never need brackets. (AND and OR are Func subclasses in sqlglot: list functions by name.)
_ATOMIC = (
    exp.Column,
    exp.Literal,
    exp.Boolean,
    exp.Null,
    exp.Cast,
    exp.Abs,
    exp.Lower,
    exp.Upper,
    exp.Coalesce,
    exp.Paren,
)


def _p(node: exp.Expr) -> exp.Expr:
    """Parenthesise a compound operand (the canonical, fully bracketed form)."""
    return node if isinstance(node, _ATOMIC) and not isinstance(node, exp.Connector) else exp.Paren(this=node)


def _out_ref(index: int) -> exp.Column:
    return exp.column(f"_o{index}", quoted=True)


def _parse_number(text: str) -> float:
    try:
        value = float(text)
    except (ValueError, OverflowError):
        raise InvalidInput(f"not a number: {text[:40]!r}", field="sql") from None
    if not math.isfinite(value):
        raise InvalidInput(
            f"numeric literal {text[:40]!r} is out of range (numbers are DOUBLE: at most about 1.8e308)",
            field="sql",
        )
    return value


def fold_number(node: exp.Expr) -> float | None:
    """The value of a literal-only numeric expression, folded here; None if it is not one.

    Raises InvalidInput when the literal or the folded arithmetic is not a finite DOUBLE (overflow) or
    divides by zero: such a query is refused before it reaches an engine, whatever the data.
    """
    if isinstance(node, exp.Paren):
        return fold_number(node.this)
    if isinstance(node, exp.Literal):
        return None if node.is_string else _parse_number(str(node.this))
    if isinstance(node, exp.Neg | exp.Abs):
        inner = fold_number(node.this)
        if inner is None:
            return None
        return -inner if isinstance(node, exp.Neg) else abs(inner)
    if isinstance(node, exp.Add | exp.Sub | exp.Mul | exp.Div):
        a = fold_number(node.this)
        if a is None:
            return None
        b = fold_number(node.expression)
        if b is None:
            return None
        if isinstance(node, exp.Div):
            if b == 0.0:
                raise InvalidInput(f"{snippet(node)} divides by zero", field="sql")
            value = a / b
        elif isinstance(node, exp.Add):
            value = a + b
        elif isinstance(node, exp.Sub):
            value = a - b
        else:
            value = a * b
        if not math.isfinite(value):
            raise InvalidInput(f"{snippet(node)} overflows (numbers are DOUBLE)", field="sql")
        return value
    return None


def number_literal(value: float, where: bool) -> exp.Expr:
    """A folded numeric constant: a DOUBLE literal in WHERE (engine), a plain number in HAVING (Python)."""
    lit = exp.Literal.number(repr(float(value)))
    return exp.Cast(this=lit, to=sql_type("DOUBLE")) if where else lit


_TEMPORAL_SQL = {"date": "DATE", "timestamp": "TIMESTAMP", "timestamptz": "TIMESTAMPTZ", "time": "TIME"}


def parse_temporal(text: str, kind: str) -> date | datetime | time:
    """``text`` as a value of temporal type ``kind`` (ISO 8601); InvalidInput for impossible values."""
    raw = text.strip()
    try:
        if kind == "date":
            if len(raw) != 10:
                raise ValueError(raw)
            return date.fromisoformat(raw)
        if kind == "time":
            return time.fromisoformat(raw)
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidInput(
            f"{text[:40]!r} is not a valid {kind} (ISO 8601, e.g. "
            + {"date": "2024-02-29", "time": "13:45:00"}.get(kind, "2024-02-29 13:45:00")
            + ")",
            field="sql",
        ) from None
    if kind == "timestamp" and value.tzinfo is not None:
        raise InvalidInput(f"{text[:40]!r}: a timestamp without time zone takes no offset", field="sql")
    if kind == "timestamptz" and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def temporal_literal(value: date | datetime | time, kind: str) -> exp.Cast:
    """``CAST('<iso>' AS <kind>)`` of a value checked by :func:`parse_temporal` (the cast cannot fail)."""
    text = value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    return exp.Cast(this=exp.Literal.string(text), to=sql_type(_TEMPORAL_SQL[kind]))


def _string_literal(node: exp.Expr) -> exp.Literal | None:
    while isinstance(node, exp.Paren):
        node = node.this
    return node if isinstance(node, exp.Literal) and node.is_string else None


_WIDENING = frozenset({"date", "timestamp", "timestamptz"})


def _coerce(
    node: exp.Expr,
    a: tuple[exp.Expr, str, exp.Expr],
    b: tuple[exp.Expr, str, exp.Expr],
    outputs: OutputRefs | None,
) -> tuple[tuple[exp.Expr, str], tuple[exp.Expr, str]]:
    """Make two compared operands the same type, or refuse (an engine's implicit cast can fail per row).

    A text literal compared with a date or time becomes a typed constant, checked here; DATE, TIMESTAMP
    and TIMESTAMPTZ compare with each other in WHERE (widening casts never fail).
    """
    (an, ta, _), (bn, tb, _) = a, b
    if "null" in (ta, tb) or (ta == tb and ta != "other"):
        return (an, ta), (bn, tb)
    for (xn, tx), (_, ty, ysrc), flip in (((an, ta), b, False), ((bn, tb), a, True)):
        literal = _string_literal(ysrc)
        if tx in TEMPORAL_TYPES and ty == "text" and literal is not None:
            typed = temporal_literal(parse_temporal(str(literal.this), tx), tx)
            return ((typed, tx), (xn, tx)) if flip else ((xn, tx), (typed, tx))
    if outputs is None and ta in _WIDENING and tb in _WIDENING:
        return (an, ta), (bn, tb)
    raise InvalidInput(f"{snippet(node)} compares {ta} with {tb}", field="sql")


def _is_literal(node: exp.Expr) -> bool:
    if isinstance(node, exp.Neg):
        return isinstance(node.this, exp.Literal) and not node.this.is_string
    return isinstance(node, exp.Literal | exp.Boolean | exp.Null)


def _expect(node: exp.Expr, wanted: str, *types: str) -> None:
    for t in types:
        if t not in (wanted, "null"):
            raise InvalidInput(f"{snippet(node)}: expected {wanted} operands, got {t}", field="sql")


def _conjuncts(node: exp.Expr) -> Iterable[exp.Expr]:
    if isinstance(node, exp.Paren):
        yield from _conjuncts(node.this)
    elif isinstance(node, exp.And):
        yield from _conjuncts(node.this)
        yield from _conjuncts(node.expression)
    else:
        yield node
