"""Parse a consumer's SQL with sqlglot, check it against the allowlist and resolve it into a QueryPlan.

This is the first line of the sandbox: only the grammar of docs/PRIVATE_SQL.md ("Allowed grammar") gets
through, and every refusal names the construct and the reason. The plan keeps no text of the original
query: names are resolved against the product schema and replaced by the schema's own spelling, tables
get positional aliases (``t0``, ``t1``...) and comments are dropped, so that equivalent spellings give the
same plan (and the same digest) and nothing the consumer typed reaches an engine except through the AST.

Errors: :class:`InvalidInput` for syntax errors, unknown or ambiguous names and type mismatches;
:class:`PolicyViolation` for constructs the grammar does not allow.
"""

from __future__ import annotations

import functools
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from datavalley.errors import InvalidInput, PolicyViolation
from datavalley.privacy.rules import NUMERIC_TYPES, PrivacyRules, ProductSchema, lookup

__all__ = ["Agg", "AggKind", "Col", "Output", "QueryPlan", "plan_query", "public_domain", "sql_type"]

#: Longest SQL text accepted; private queries are short, and the parser should not be a DoS target.
MAX_SQL_CHARS = 20_000

AggKind = Literal["count", "count_col", "count_distinct", "sum", "avg"]

_ASCII_FOLD = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)

_SELECT_ARG_NAMES = {
    "with_": "WITH (common table expressions)",
    "distinct": "SELECT DISTINCT (use GROUP BY)",
    "into": "SELECT INTO",
    "laterals": "LATERAL",
    "pivots": "PIVOT/UNPIVOT",
    "qualify": "QUALIFY",
    "windows": "WINDOW clauses",
    "sample": "SAMPLE/TABLESAMPLE",
    "settings": "SETTINGS",
    "locks": "FOR UPDATE/SHARE",
    "prewhere": "PREWHERE",
    "connect": "CONNECT BY",
    "match": "MATCH_RECOGNIZE",
    "hint": "optimizer hints",
    "distribute": "DISTRIBUTE BY",
    "sort": "SORT BY",
    "cluster": "CLUSTER BY",
    "exclude": "EXCLUDE",
    "operation_modifiers": "operation modifiers",
    "format": "FORMAT",
    "options": "OPTIONS",
    "for_": "FOR",
    "kind": "SELECT AS STRUCT/VALUE",
}
_SELECT_ALLOWED = {"expressions", "from_", "joins", "where", "group", "having", "order", "limit", "offset"}

# Nodes handed to _Planner.aggregate (which accepts three kinds and explains the refusal of the rest).
_AGGREGATE_LIKE = (exp.AggFunc, exp.Window, exp.Filter, exp.WithinGroup)
_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)
_WHERE_FUNCTIONS = "ABS, COALESCE, LOWER, UPPER"


def sql_type(name: str) -> exp.DataType:
    """A type node: a fresh copy of one built once (DataType.build parses its argument every call)."""
    return _type(name).copy()


@functools.cache
def _type(name: str) -> exp.DataType:
    return exp.DataType.build(name)


def _fold(name: str) -> str:
    # ASCII-only case folding: str.lower() would map the Kelvin sign to "k" and let look-alike
    # identifiers match real columns.
    return name.translate(_ASCII_FOLD)


def _snippet(node: exp.Expr) -> str:
    text = node.sql(dialect="duckdb", comments=False)
    return text if len(text) <= 80 else text[:77] + "..."


def _value_type(logical: str) -> str:
    if logical in NUMERIC_TYPES:
        return "num"
    if logical == "text":
        return "text"
    if logical == "boolean":
        return "bool"
    if logical in ("date", "timestamp", "timestamptz", "time"):
        return "temporal"
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


@dataclass(frozen=True)
class QueryPlan:
    """A validated query, resolved against the schema; the compiler rewrites it per engine.

    ``where`` is a sqlglot tree over positional aliases; ``having`` refers to outputs as columns
    ``_o0``, ``_o1``...; ``order`` holds ``(output index, descending, nulls first)``.
    ``unique_keys`` lists ``(table, columns)`` that must be unique for row-level contribution bounds
    to hold through joins (checked by the engine on the data).
    """

    tables: tuple[tuple[str, str], ...]
    joins: tuple[tuple[tuple[Col, Col], ...], ...]
    where: exp.Expr | None
    keys: tuple[Col, ...]
    outputs: tuple[Output, ...]
    having: exp.Expr | None
    order: tuple[tuple[int, bool, bool], ...]
    limit: int | None
    offset: int
    unit: Col | None
    unique_keys: tuple[tuple[str, tuple[str, ...]], ...]

    def to_json(self) -> dict[str, Any]:
        """The normalised query as JSON: what the digest covers."""

        def agg(a: Agg | None) -> Any:
            return None if a is None else [a.kind, a.column.ref if a.column else None]

        return {
            "tables": [list(t) for t in self.tables],
            "joins": [[[a.ref, b.ref] for a, b in step] for step in self.joins],
            "where": None if self.where is None else self.where.sql(dialect="duckdb", comments=False),
            "keys": [k.ref for k in self.keys],
            "outputs": [[o.name, o.key, agg(o.agg)] for o in self.outputs],
            "having": None if self.having is None else self.having.sql(dialect="duckdb", comments=False),
            "order": [list(o) for o in self.order],
            "limit": self.limit,
            "offset": self.offset,
            "unit": None if self.unit is None else self.unit.ref,
            "uniqueKeys": [[t, list(cs)] for t, cs in self.unique_keys],
        }


def _refuse(message: str, node: exp.Expr | None = None) -> PolicyViolation:
    details: dict[str, Any] = {"field": "sql"}
    if node is not None:
        details["construct"] = _snippet(node)
    return PolicyViolation(message, **details)


def _parse(sql: str) -> exp.Select:
    if len(sql) > MAX_SQL_CHARS:
        raise InvalidInput(
            f"query is {len(sql)} characters; at most {MAX_SQL_CHARS} are accepted", field="sql"
        )
    try:
        statements = [s for s in sqlglot.parse(sql, read="duckdb") if s is not None]
    except (ParseError, TokenError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "cannot parse"
        raise InvalidInput(f"SQL syntax error: {first}", field="sql") from None
    except RecursionError:
        raise InvalidInput("query is nested too deeply", field="sql") from None
    if len(statements) != 1:
        raise _refuse(f"exactly one statement is allowed, got {len(statements)} (';' separates statements)")
    stmt = statements[0]
    if isinstance(stmt, exp.SetOperation):
        raise _refuse(
            f"{stmt.key.upper()} is not allowed: a private query is one SELECT over the product's tables",
            stmt,
        )
    if not isinstance(stmt, exp.Select):
        raise _refuse(f"only SELECT queries are allowed, got {stmt.key.upper()}", stmt)
    return stmt


class _Planner:
    def __init__(self, schema: ProductSchema, rules: PrivacyRules, *, dp: bool) -> None:
        self.schema = schema
        self.rules = rules
        self.dp = dp
        self.tables: list[tuple[str, str]] = []  # (positional alias, table)
        self.user_alias: dict[str, str] = {}  # folded user alias -> positional alias

    # --- FROM and JOIN -------------------------------------------------------------------------

    def add_table(self, node: exp.Expr) -> str:
        if isinstance(node, exp.Subquery | exp.Select):
            raise _refuse("subqueries are not allowed in FROM: name a table of the product", node)
        if not isinstance(node, exp.Table) or not isinstance(node.this, exp.Identifier):
            raise _refuse(
                "FROM must name a table of the product; table functions such as read_csv(), "
                "read_parquet(), glob() or duckdb_settings() are not allowed (they reach files, "
                "settings or catalogs outside the product)",
                node,
            )
        extra = [k for k, v in node.args.items() if v and k not in ("this", "alias")]
        if node.args.get("db") or node.args.get("catalog"):
            raise _refuse(
                "schema- or catalog-qualified names are not allowed: "
                "the product's tables are the only relations",
                node,
            )
        if extra:
            raise _refuse(f"table modifiers ({', '.join(sorted(extra))}) are not allowed", node)
        alias_node = node.args.get("alias")
        if alias_node is not None and alias_node.args.get("columns"):
            raise _refuse("column aliases on a table are not allowed", node)
        table = self._table_name(node.this.name)
        alias = f"t{len(self.tables)}"
        user = _fold(alias_node.name if alias_node is not None else node.this.name)
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
        matches = [t for t in self.schema.tables if _fold(t) == _fold(name)]
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
            raise _refuse(
                f"only INNER JOIN is allowed, got {' '.join(p for p in (side, kind) if p)} JOIN", join
            )
        if join.args.get("using"):
            raise _refuse("JOIN ... USING is not allowed; write JOIN ... ON a.x = b.y", join)
        extra = [k for k, v in join.args.items() if v and k not in ("this", "on", "kind", "side")]
        if extra:
            raise _refuse(f"join modifiers ({', '.join(sorted(extra))}) are not allowed", join)
        new_alias = self.add_table(join.this)
        on = join.args.get("on")
        if on is None:
            raise _refuse("a JOIN needs ON with equalities on declared join keys (no cross joins)", join)
        pairs: list[tuple[Col, Col]] = []
        other: set[str] = set()
        for cond in _conjuncts(on):
            if not (isinstance(cond, exp.EQ) and isinstance(cond.this, exp.Column)):
                raise _refuse("JOIN ON may only hold column = column equalities joined by AND", cond)
            if not isinstance(cond.expression, exp.Column):
                raise _refuse("JOIN ON may only hold column = column equalities joined by AND", cond)
            a, b = self.column(cond.this), self.column(cond.expression)
            if b.alias != new_alias:
                a, b = b, a
            if b.alias != new_alias or a.alias == new_alias:
                raise _refuse("each JOIN ON equality must link the joined table to an earlier table", cond)
            if not self.rules.allows_join(f"{a.table}.{a.column}", f"{b.table}.{b.column}"):
                allowed = ", ".join(f"{x} = {y}" for x, y in self.rules.join_keys) or "none"
                raise _refuse(
                    f"join on {a.table}.{a.column} = {b.table}.{b.column} is not a declared join key "
                    f"(allowed: {allowed})",
                    cond,
                )
            pairs.append((a, b))
            other.add(a.alias)
        if len(other) != 1:
            raise _refuse("a JOIN ON must link the joined table to exactly one earlier table", on)
        return tuple(pairs)

    # --- names -----------------------------------------------------------------------------------

    def column(self, node: exp.Column) -> Col:
        extra = [k for k, v in node.args.items() if v and k not in ("this", "table")]
        if extra or not isinstance(node.this, exp.Identifier):
            raise _refuse(
                f"column reference {_snippet(node)} is not allowed (only column or table.column)", node
            )
        name = node.this.name
        qualifier = node.args.get("table")
        if qualifier is not None:
            alias = self.user_alias.get(_fold(qualifier.name))
            if alias is None:
                raise InvalidInput(
                    f"unknown table or alias {qualifier.name!r} in {_snippet(node)}", field="sql"
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
        matches = [c for c in columns if _fold(c) == _fold(name)]
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
            raise _refuse(
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
            raise _refuse(
                f"{name} is not supported: quantiles need a dedicated DP mechanism (not exact values plus "
                "noise), which this engine does not implement",
                node,
            )
        if isinstance(node, exp.Window):
            raise _refuse("window functions (OVER) are not allowed", node)
        if isinstance(node, exp.Filter):
            raise _refuse("aggregate FILTER clauses are not allowed; use WHERE", node)
        if not isinstance(node, exp.Count | exp.Sum | exp.Avg):
            raise _refuse(
                f"{_snippet(node)} is not allowed: the aggregates are COUNT(*), COUNT(column), "
                "COUNT(DISTINCT unit), SUM(column) and AVG(column) (MIN, MAX and others have no bounded "
                "sensitivity)",
                node,
            )
        extra = [k for k, v in node.args.items() if v and k not in ("this", "big_int")]
        arg = node.this
        if extra:
            raise _refuse(f"{_snippet(node)}: only one argument is allowed", node)
        if isinstance(node, exp.Count):
            if isinstance(arg, exp.Star) or (isinstance(arg, exp.Literal) and not arg.is_string):
                return Agg("count", None)
            if isinstance(arg, exp.Distinct):
                inner = arg.expressions
                if len(inner) != 1 or not isinstance(inner[0], exp.Column) or arg.args.get("on"):
                    raise _refuse("COUNT(DISTINCT ...) takes one column: the privacy unit", node)
                col = self.column(inner[0])
                if not self.is_unit(col):
                    raise _refuse(
                        "COUNT(DISTINCT ...) is only allowed on the privacy unit column"
                        + (f" {self.rules.privacy_unit!r}" if self.rules.privacy_unit else " (none is set)")
                        + ": other distinct counts have unbounded sensitivity",
                        node,
                    )
                return Agg("count_distinct", col)
            if isinstance(arg, exp.Column):
                return Agg("count_col", self.plain_column(arg, "COUNT(column)"))
            raise _refuse("COUNT takes *, a column, or DISTINCT unit", node)
        label = "SUM" if isinstance(node, exp.Sum) else "AVG"
        if isinstance(arg, exp.Distinct):
            raise _refuse(f"{label}(DISTINCT ...) is not allowed", node)
        if not isinstance(arg, exp.Column):
            raise _refuse(
                f"{label} takes one column (no expressions: a clamp range is declared per column)", node
            )
        col = self.plain_column(arg, label)
        if col.type not in NUMERIC_TYPES:
            raise InvalidInput(
                f"{label}({col.column}) needs a numeric column; {col.column!r} is {col.type}", field="sql"
            )
        if self.dp and lookup(self.rules.clamps, col.table, col.column) is None:
            raise _refuse(
                f"{label}({col.column}) is not allowed: the product declares no clamping range for "
                f"{col.table}.{col.column}, so its sensitivity would be unbounded",
                node,
            )
        return Agg("sum" if label == "SUM" else "avg", col)

    # --- WHERE and HAVING expressions --------------------------------------------------------------

    def where(self, node: exp.Expr) -> exp.Expr:
        out, typ = self.expr(node, None)
        if typ not in ("bool", "null"):
            raise InvalidInput(f"WHERE must be a condition, got {_snippet(node)}", field="sql")
        return out

    def expr(self, node: exp.Expr, outputs: _Outputs | None) -> tuple[exp.Expr, str]:
        """Check one expression and return (rewritten copy, value type). ``outputs`` set means HAVING."""
        clause = "WHERE" if outputs is None else "HAVING"
        if isinstance(node, exp.Paren):
            # The consumer's parentheses are dropped and every compound operand is parenthesised below:
            # one canonical form (and digest) however the query was bracketed.
            return self.expr(node.this, outputs)
        if isinstance(node, exp.Column):
            if outputs is not None:
                index = outputs.resolve_column(node, self)
                return _out_ref(index), outputs.type_of(index)
            col = self.plain_column(node, "WHERE")
            return exp.column(col.column, table=col.alias, quoted=True), _value_type(col.type)
        if isinstance(node, exp.Literal):
            if node.is_string:
                return exp.Literal.string(node.this), "text"
            _number(node)
            return exp.Literal.number(node.this), "num"
        if isinstance(node, exp.Boolean):
            return exp.Boolean(this=bool(node.this)), "bool"
        if isinstance(node, exp.Null):
            return exp.Null(), "null"
        if outputs is not None and isinstance(node, _AGGREGATE_LIKE):
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
            _comparable(node, (ta, node.this), (tb, node.expression))
            return type(node)(this=_p(a), expression=_p(b)), "bool"
        if isinstance(node, exp.Is):
            a, _ = self.expr(node.this, outputs)
            if not isinstance(node.expression, exp.Null | exp.Boolean):
                raise _refuse("IS may only test NULL, TRUE or FALSE", node)
            b, _ = self.expr(node.expression, outputs)
            return exp.Is(this=_p(a), expression=b), "bool"
        if isinstance(node, exp.Between):
            parts = [self.expr(node.args[k], outputs) for k in ("this", "low", "high")]
            srcs = [node.args[k] for k in ("this", "low", "high")]
            for (_, t), src in zip(parts[1:], srcs[1:], strict=True):
                _comparable(node, (parts[0][1], srcs[0]), (t, src))
            return exp.Between(this=_p(parts[0][0]), low=_p(parts[1][0]), high=_p(parts[2][0])), "bool"
        if isinstance(node, exp.In):
            if node.args.get("query") or node.args.get("unnest") or node.args.get("field"):
                raise _refuse("IN takes a list of literals; subqueries are not allowed", node)
            a, ta = self.expr(node.this, outputs)
            items = []
            for item in node.expressions:
                if not _is_literal(item):
                    raise _refuse("IN takes a list of literals", item)
                b, tb = self.expr(item, outputs)
                _comparable(node, (ta, node.this), (tb, item))
                items.append(b)
            return exp.In(this=_p(a), expressions=items), "bool"
        if isinstance(node, exp.Like | exp.ILike):
            a, ta = self.expr(node.this, outputs)
            if not (isinstance(node.expression, exp.Literal) and node.expression.is_string):
                raise _refuse("LIKE takes a string literal pattern", node)
            _expect(node, "text", ta)
            b, _ = self.expr(node.expression, outputs)
            return type(node)(this=_p(a), expression=b), "bool"
        if isinstance(node, exp.Add | exp.Sub | exp.Mul | exp.Div):
            if isinstance(node, exp.Div) and outputs is None:
                raise _refuse(
                    "division is not allowed in WHERE: a zero divisor fails in one engine and not the other, "
                    "and the failure would reveal that such a row exists",
                    node,
                )
            a, ta = self.expr(node.this, outputs)
            b, tb = self.expr(node.expression, outputs)
            _expect(node, "num", ta, tb)
            return type(node)(this=_p(_as_double(a, outputs)), expression=_p(_as_double(b, outputs))), "num"
        if isinstance(node, exp.Neg):
            a, ta = self.expr(node.this, outputs)
            _expect(node, "num", ta)
            return exp.Neg(this=_p(_as_double(a, outputs))), "num"
        if outputs is None and isinstance(node, exp.Abs):
            a, ta = self.expr(node.this, outputs)
            _expect(node, "num", ta)
            return exp.Abs(this=_as_double(a, outputs)), "num"
        if outputs is None and isinstance(node, exp.Lower | exp.Upper):
            a, ta = self.expr(node.this, outputs)
            _expect(node, "text", ta)
            return type(node)(this=a), "text"
        if outputs is None and isinstance(node, exp.Coalesce):
            args = [node.this, *node.expressions]
            done = [self.expr(x, outputs) for x in args]
            types = {t for _, t in done if t != "null"}
            if len(types) > 1:
                raise InvalidInput(f"COALESCE mixes types {sorted(types)} in {_snippet(node)}", field="sql")
            return exp.Coalesce(this=done[0][0], expressions=[e for e, _ in done[1:]]), (
                types.pop() if types else "null"
            )
        raise self._not_allowed(node, clause)

    def _not_allowed(self, node: exp.Expr, clause: str) -> PolicyViolation:
        if isinstance(node, exp.Subquery | exp.Select | exp.Exists):
            return _refuse(f"subqueries are not allowed in {clause}", node)
        if isinstance(node, exp.Cast | exp.TryCast):
            return _refuse(
                f"CAST is not allowed in {clause}: a failing cast would reveal a value in its error", node
            )
        if isinstance(node, exp.Mod | exp.IntDiv):
            return _refuse(f"{node.key.upper()} is not allowed in {clause} (a zero divisor would fail)", node)
        if isinstance(node, exp.Placeholder | exp.Parameter):
            return _refuse("parameters and placeholders are not allowed; write literal values", node)
        if isinstance(node, exp.Func):
            fname = node.name if isinstance(node, exp.Anonymous) else node.sql_name()
            allowed = _WHERE_FUNCTIONS if clause == "WHERE" else "aggregates of the SELECT list"
            return _refuse(f"function {fname.upper()}() is not allowed in {clause}; allowed: {allowed}", node)
        return _refuse(f"{node.key.upper()} is not allowed in {clause}", node)


class _Outputs:
    """The SELECT list while HAVING and ORDER BY are resolved against it."""

    def __init__(self, outputs: list[Output], keys: list[Col]) -> None:
        self.outputs = outputs
        self.keys = keys

    def type_of(self, index: int) -> str:
        out = self.outputs[index]
        return "num" if out.agg is not None else _value_type(self.keys[out.key or 0].type)

    def resolve_column(self, node: exp.Column, planner: _Planner) -> int:
        if node.args.get("table") is None and isinstance(node.this, exp.Identifier):
            for i, out in enumerate(self.outputs):
                if _fold(out.name) == _fold(node.this.name):
                    return i
        col = planner.column(node)
        for i, out in enumerate(self.outputs):
            if out.key is not None and self.keys[out.key] == col:
                return i
        raise InvalidInput(f"{_snippet(node)} is not a column of the result", field="sql")

    def resolve_agg(self, node: exp.Expr, planner: _Planner) -> int:
        agg = planner.aggregate(node)
        for i, out in enumerate(self.outputs):
            if out.agg == agg:
                return i
        raise _refuse(
            f"{_snippet(node)} is not in the SELECT list; add it there (HAVING and ORDER BY only see "
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


def _as_double(node: exp.Expr, outputs: _Outputs | None) -> exp.Expr:
    # Integer arithmetic can overflow, and an overflow error quotes the row's value: compute in DOUBLE.
    if outputs is None and not isinstance(node, exp.Literal):
        return exp.Cast(this=node, to=sql_type("DOUBLE"))
    return node


def _number(node: exp.Literal) -> float:
    try:
        return float(node.this)
    except ValueError:
        raise InvalidInput(f"not a number: {node.this!r}", field="sql") from None


def _is_literal(node: exp.Expr) -> bool:
    if isinstance(node, exp.Neg):
        return isinstance(node.this, exp.Literal) and not node.this.is_string
    return isinstance(node, exp.Literal | exp.Boolean | exp.Null)


def _expect(node: exp.Expr, wanted: str, *types: str) -> None:
    for t in types:
        if t not in (wanted, "null"):
            raise InvalidInput(f"{_snippet(node)}: expected {wanted} operands, got {t}", field="sql")


def _comparable(node: exp.Expr, a: tuple[str, exp.Expr], b: tuple[str, exp.Expr]) -> None:
    """Refuse comparisons across types: the engine would cast, and a failing cast quotes a value."""
    (ta, a_node), (tb, b_node) = a, b
    if "null" in (ta, tb) or ta == tb:
        return
    # A date or timestamp column compares with a string literal (cast by the engine; a bad literal's
    # error only quotes the consumer's own literal).
    if ta == "temporal" and tb == "text" and isinstance(b_node, exp.Literal):
        return
    if tb == "temporal" and ta == "text" and isinstance(a_node, exp.Literal):
        return
    raise InvalidInput(f"{_snippet(node)} compares {ta} with {tb}", field="sql")


def _conjuncts(node: exp.Expr) -> Iterable[exp.Expr]:
    if isinstance(node, exp.Paren):
        yield from _conjuncts(node.this)
    elif isinstance(node, exp.And):
        yield from _conjuncts(node.this)
        yield from _conjuncts(node.expression)
    else:
        yield node


def _int_literal(node: exp.Expr | None, what: str) -> int:
    if not (isinstance(node, exp.Literal) and not node.is_string and node.this.isdigit()):
        raise _refuse(f"{what} takes a non-negative integer literal", node)
    return int(node.this)


def plan_query(sql: str, schema: ProductSchema, rules: PrivacyRules, *, dp: bool) -> QueryPlan:
    """Parse, allowlist-check and resolve ``sql``; see docs/PRIVATE_SQL.md for the grammar.

    ``dp`` says whether the query will be answered with differential privacy (SUM/AVG then need
    declared clamps).

    Raises:
        InvalidInput: syntax errors, unknown or ambiguous names, type mismatches.
        PolicyViolation: any construct outside the grammar, with the reason.
    """
    stmt = _parse(sql)
    for key, value in stmt.args.items():
        if value and key not in _SELECT_ALLOWED:
            raise _refuse(
                f"{_SELECT_ARG_NAMES.get(key, key.upper())} is not allowed in a private query", stmt
            )
    planner = _Planner(schema, rules, dp=dp)
    from_ = stmt.args.get("from_")
    if from_ is None:
        raise _refuse("a private query must read FROM a table of the product")
    planner.add_table(from_.this)
    joins = tuple(planner.add_join(j) for j in stmt.args.get("joins") or [])

    keys = _group_keys(stmt, planner)
    outputs = _select_list(stmt, planner, keys)
    resolver = _Outputs(outputs, keys)

    where_node = stmt.args.get("where")
    where = planner.where(where_node.this) if where_node is not None else None
    having_node = stmt.args.get("having")
    having = None
    if having_node is not None:
        having, htype = planner.expr(having_node.this, resolver)
        if htype not in ("bool", "null"):
            raise InvalidInput("HAVING must be a condition", field="sql")
    order = _order(stmt, planner, resolver)
    limit, offset = _limit(stmt)
    unit, unique = _unit_structure(planner, joins)
    return QueryPlan(
        tables=tuple(planner.tables),
        joins=joins,
        where=where,
        keys=tuple(keys),
        outputs=tuple(outputs),
        having=having,
        order=order,
        limit=limit,
        offset=offset,
        unit=unit,
        unique_keys=unique,
    )


def _group_keys(stmt: exp.Select, planner: _Planner) -> list[Col]:
    group = stmt.args.get("group")
    if group is None:
        return []
    extra = [k for k, v in group.args.items() if v and k != "expressions"]
    if extra:
        raise _refuse("GROUP BY ROLLUP/CUBE/GROUPING SETS/ALL are not allowed; list the key columns", group)
    aliases = {}
    for item in stmt.expressions:
        if isinstance(item, exp.Alias) and isinstance(item.this, exp.Column):
            aliases[_fold(item.alias)] = item.this
    keys: list[Col] = []
    for node in group.expressions:
        if isinstance(node, exp.Literal) and not node.is_string:
            index = _int_literal(node, "GROUP BY position") - 1
            if not 0 <= index < len(stmt.expressions):
                raise InvalidInput(f"GROUP BY {node.this} is out of range", field="sql")
            target = stmt.expressions[index]
            target = target.this if isinstance(target, exp.Alias) else target
            if not isinstance(target, exp.Column):
                raise InvalidInput(f"GROUP BY {node.this} does not name a column", field="sql")
            node = target
        if not isinstance(node, exp.Column):
            raise _refuse("GROUP BY takes columns only (no expressions, ROLLUP, CUBE or GROUPING SETS)", node)
        try:
            col = planner.column(node)
        except InvalidInput:
            target = aliases.get(_fold(node.name)) if node.args.get("table") is None else None
            if target is None:
                raise
            col = planner.column(target)
        if planner.is_unit(col):
            raise _refuse(
                f"GROUP BY the privacy unit column {col.column!r} is not allowed: "
                "it would release per-unit values",
                node,
            )
        if col in keys:
            raise InvalidInput(f"GROUP BY lists {col.column!r} twice", field="sql")
        keys.append(col)
    return keys


def _select_list(stmt: exp.Select, planner: _Planner, keys: list[Col]) -> list[Output]:
    outputs: list[Output] = []
    for item in stmt.expressions:
        name = item.alias if isinstance(item, exp.Alias) else None
        node = item.this if isinstance(item, exp.Alias) else item
        while isinstance(node, exp.Paren):
            node = node.this
        if isinstance(node, exp.Star):
            raise _refuse(
                "SELECT * is not allowed: a private query releases group keys and aggregates only", node
            )
        if isinstance(node, exp.Column):
            col = planner.column(node)
            if col not in keys:
                if planner.is_unit(col):
                    raise _refuse(f"the privacy unit column {col.column!r} cannot be selected", node)
                raise InvalidInput(f"column {col.column!r} must appear in GROUP BY", field="sql")
            outputs.append(Output(name or col.column, keys.index(col), None))
            continue
        if isinstance(node, _AGGREGATE_LIKE):
            agg = planner.aggregate(node)
            default = agg.kind.replace("count_col", "count") + (f"_{agg.column.column}" if agg.column else "")
            outputs.append(Output(name or default, None, agg))
            continue
        raise _refuse(
            f"SELECT item {_snippet(node)} is not allowed: select group key columns and the aggregates "
            "COUNT(*), COUNT(column), COUNT(DISTINCT unit), SUM(column), AVG(column)",
            node,
        )
    selected = {o.key for o in outputs if o.key is not None}
    for i, key in enumerate(keys):
        if i not in selected:
            raise InvalidInput(
                f"GROUP BY key {key.column!r} must also be selected "
                "(released rows are identified by their keys)",
                field="sql",
            )
    if not any(o.agg for o in outputs) and not keys:
        raise _refuse("a private query must aggregate")
    seen: set[str] = set()
    for out in outputs:
        if _fold(out.name) in seen:
            raise InvalidInput(f"output column name {out.name!r} is used twice; add aliases", field="sql")
        seen.add(_fold(out.name))
    return outputs


def _order(stmt: exp.Select, planner: _Planner, resolver: _Outputs) -> tuple[tuple[int, bool, bool], ...]:
    order = stmt.args.get("order")
    if order is None:
        return ()
    items = []
    for ordered in order.expressions:
        extra = [k for k, v in ordered.args.items() if v and k not in ("this", "desc", "nulls_first")]
        if not isinstance(ordered, exp.Ordered) or extra:
            raise _refuse("ORDER BY takes result columns with ASC/DESC and NULLS FIRST/LAST", ordered)
        node = ordered.this
        if isinstance(node, exp.Literal) and not node.is_string:
            index = _int_literal(node, "ORDER BY position") - 1
            if not 0 <= index < len(resolver.outputs):
                raise InvalidInput(f"ORDER BY {node.this} is out of range", field="sql")
        elif isinstance(node, exp.Column):
            index = resolver.resolve_column(node, planner)
        elif isinstance(node, _AGGREGATE_LIKE):
            index = resolver.resolve_agg(node, planner)
        else:
            raise _refuse("ORDER BY takes result columns, aggregates of the SELECT list or positions", node)
        items.append((index, bool(ordered.args.get("desc")), bool(ordered.args.get("nulls_first"))))
    return tuple(items)


def _limit(stmt: exp.Select) -> tuple[int | None, int]:
    limit_node = stmt.args.get("limit")
    offset_node = stmt.args.get("offset")
    limit = offset = None
    if limit_node is not None:
        if not isinstance(limit_node, exp.Limit) or any(
            v for k, v in limit_node.args.items() if k not in ("expression", "offset")
        ):
            raise _refuse("LIMIT takes a non-negative integer literal", limit_node)
        limit = _int_literal(limit_node.expression, "LIMIT")
        if limit_node.args.get("offset") is not None:
            offset = _int_literal(limit_node.args["offset"], "OFFSET")
    if offset_node is not None:
        extra = [k for k, v in offset_node.args.items() if v and k != "expression"]
        if extra:
            raise _refuse("OFFSET takes a non-negative integer literal", offset_node)
        offset = _int_literal(offset_node.expression, "OFFSET")
    return limit, offset or 0


def _unit_structure(
    planner: _Planner, joins: tuple[tuple[tuple[Col, Col], ...], ...]
) -> tuple[Col | None, tuple[tuple[str, tuple[str, ...]], ...]]:
    """Check that the joins keep one output row attributable to one unit; return the unit column and
    the keys that must be unique on the data (row-level units only)."""
    rules = planner.rules
    private = [(a, t) for a, t in planner.tables if t not in rules.public_tables]
    unit_name = rules.privacy_unit
    if unit_name is not None and private:
        for _, table in private:
            if unit_name not in planner.schema.tables[table].columns:
                raise _refuse(
                    f"private table {table!r} has no privacy unit column {unit_name!r}; the product must "
                    "declare it public or add the column"
                )
        parent = {a: a for a, _ in private}

        def find(x: str) -> str:
            while parent[x] != x:
                x = parent[x]
            return x

        for step in joins:
            for a, b in step:
                if a.alias in parent and b.alias in parent and a.column == unit_name == b.column:
                    parent[find(a.alias)] = find(b.alias)
        if len({find(a) for a, _ in private}) > 1:
            raise _refuse(
                f"private tables must be joined on the privacy unit column {unit_name!r}: otherwise one "
                "result row would mix data of several units"
            )
        alias, table = private[0]
        return Col(alias, table, unit_name, planner.schema.tables[table].columns[unit_name]), ()
    # Row-level units: one private table at most, and every other table must join through unique keys,
    # so that one private row reaches at most one result row.
    if len(private) > 1:
        raise _refuse(
            "with row-level privacy a query may read only one private table: a join of two private "
            "tables can count one row many times"
        )
    if not joins:
        return None, ()
    root = private[0][0] if private else planner.tables[0][0]
    edges: dict[str, list[tuple[str, tuple[Col, ...], tuple[Col, ...]]]] = {}
    for step in joins:
        left = tuple(a for a, _ in step)
        right = tuple(b for _, b in step)
        edges.setdefault(left[0].alias, []).append((right[0].alias, left, right))
        edges.setdefault(right[0].alias, []).append((left[0].alias, right, left))
    unique: list[tuple[str, tuple[str, ...]]] = []
    seen = {root}
    frontier = [root]
    while frontier:
        node = frontier.pop()
        for child, _, child_cols in edges.get(node, []):
            if child in seen:
                continue
            seen.add(child)
            frontier.append(child)
            unique.append((child_cols[0].table, tuple(sorted({c.column for c in child_cols}))))
    return None, tuple(sorted(set(unique)))


def public_domain(
    plan: QueryPlan, public_keys: Mapping[str, tuple[Any, ...]]
) -> list[tuple[Any, ...]] | None:
    """The declared values of each group key when every key is public, else None."""
    if not plan.keys:
        return None
    domains = [lookup(public_keys, k.table, k.column) for k in plan.keys]
    if any(d is None for d in domains):
        return None
    return [tuple(d) for d in domains if d is not None]
