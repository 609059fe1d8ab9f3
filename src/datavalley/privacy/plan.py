"""Parse a consumer's SQL with sqlglot, check it against the allowlist and resolve it into a QueryPlan.

This is the first line of the sandbox: only the grammar of docs/PRIVATE_SQL.md ("Allowed grammar") gets
through, and every refusal names the construct and the reason. The plan keeps no text of the original
query: names are resolved against the product schema and replaced by the schema's own spelling, tables
get positional aliases (``t0``, ``t1``...) and comments are dropped, so that equivalent spellings give the
same plan (and the same digest) and nothing the consumer typed reaches an engine except through the AST.

Statement-level checks live here; names, aggregates and WHERE/HAVING expressions are resolved by
``resolve.py``. Errors: :class:`InvalidInput` for syntax errors, unknown or ambiguous names and type
mismatches; :class:`PolicyViolation` for constructs the grammar does not allow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from datavalley.errors import InvalidInput
from datavalley.privacy.resolve import (
    AGGREGATE_LIKE,
    Agg,
    Col,
    Output,
    OutputRefs,
    Resolver,
    fold,
    refuse,
    snippet,
)
from datavalley.privacy.rules import PrivacyRules, ProductSchema, lookup

__all__ = ["MAX_DEPTH", "MAX_NODES", "MAX_SQL_CHARS", "QueryPlan", "plan_query", "public_domain"]

#: Longest SQL text accepted; private queries are short, and the parser should not be a DoS target.
MAX_SQL_CHARS = 20_000
#: Deepest expression nesting accepted (a chain ``a OR b OR ...`` of n terms is n levels deep); every
#: later step (resolution, SQL generation, HAVING evaluation) is recursive, so this keeps each far from
#: Python's recursion limit. Longer disjunctions of equalities fit in one ``IN (...)``.
MAX_DEPTH = 100
#: Most syntax nodes a query may have.
MAX_NODES = 5_000

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


def _parse(sql: str) -> exp.Select:
    if not isinstance(sql, str):
        raise InvalidInput("the query must be text", field="sql")
    if len(sql) > MAX_SQL_CHARS:
        raise InvalidInput(
            f"query is {len(sql)} characters; at most {MAX_SQL_CHARS} are accepted", field="sql"
        )
    try:
        sql.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("the query is not valid Unicode text (lone surrogate)", field="sql") from None
    try:
        statements = [s for s in sqlglot.parse(sql, read="duckdb") if s is not None]
    except (ParseError, TokenError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "cannot parse"
        raise InvalidInput(f"SQL syntax error: {first}", field="sql") from None
    except RecursionError:
        raise InvalidInput("query is nested too deeply", field="sql") from None
    for statement in statements:
        _check_size(statement)
    if len(statements) != 1:
        raise refuse(f"exactly one statement is allowed, got {len(statements)} (';' separates statements)")
    stmt = statements[0]
    if isinstance(stmt, exp.SetOperation):
        raise refuse(
            f"{stmt.key.upper()} is not allowed: a private query is one SELECT over the product's tables",
            stmt,
        )
    if not isinstance(stmt, exp.Select):
        raise refuse(f"only SELECT queries are allowed, got {stmt.key.upper()}", stmt)
    return stmt


def _check_size(root: exp.Expr) -> None:
    """Refuse trees deeper than MAX_DEPTH or larger than MAX_NODES (an iterative walk: no recursion)."""
    stack: list[tuple[exp.Expr, int]] = [(root, 1)]
    count = 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH:
            raise InvalidInput(
                f"query is nested too deeply (more than {MAX_DEPTH} levels; a long OR chain of equalities "
                "fits in one IN (...))",
                field="sql",
            )
        if count > MAX_NODES:
            raise InvalidInput(f"query is too large (more than {MAX_NODES} syntax nodes)", field="sql")
        for value in node.args.values():
            for child in value if isinstance(value, list) else (value,):
                if isinstance(child, exp.Expr):
                    stack.append((child, depth + 1))


def _int_literal(node: exp.Expr | None, what: str) -> int:
    text = str(node.this) if isinstance(node, exp.Literal) and not node.is_string else ""
    if not (text.isascii() and text.isdigit()):
        raise refuse(f"{what} takes a non-negative integer literal", node)
    if len(text) > 9:
        raise InvalidInput(f"{what} {text[:20]} is too large (at most 999999999)", field="sql")
    return int(text)


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
            raise refuse(f"{_SELECT_ARG_NAMES.get(key, key.upper())} is not allowed in a private query", stmt)
    planner = Resolver(schema, rules, dp=dp)
    from_ = stmt.args.get("from_")
    if from_ is None:
        raise refuse("a private query must read FROM a table of the product")
    planner.add_table(from_.this)
    joins = tuple(planner.add_join(j) for j in stmt.args.get("joins") or [])

    keys = _group_keys(stmt, planner)
    outputs = _select_list(stmt, planner, keys)
    resolver = OutputRefs(outputs, keys)

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


def _group_keys(stmt: exp.Select, planner: Resolver) -> list[Col]:
    group = stmt.args.get("group")
    if group is None:
        return []
    extra = [k for k, v in group.args.items() if v and k != "expressions"]
    if extra:
        raise refuse("GROUP BY ROLLUP/CUBE/GROUPING SETS/ALL are not allowed; list the key columns", group)
    aliases = {}
    for item in stmt.expressions:
        if isinstance(item, exp.Alias) and isinstance(item.this, exp.Column):
            aliases[fold(item.alias)] = item.this
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
            raise refuse("GROUP BY takes columns only (no expressions, ROLLUP, CUBE or GROUPING SETS)", node)
        try:
            col = planner.column(node)
        except InvalidInput:
            target = aliases.get(fold(node.name)) if node.args.get("table") is None else None
            if target is None:
                raise
            col = planner.column(target)
        if planner.is_unit(col):
            raise refuse(
                f"GROUP BY the privacy unit column {col.column!r} is not allowed: "
                "it would release per-unit values",
                node,
            )
        if col in keys:
            raise InvalidInput(f"GROUP BY lists {col.column!r} twice", field="sql")
        keys.append(col)
    return keys


def _select_list(stmt: exp.Select, planner: Resolver, keys: list[Col]) -> list[Output]:
    outputs: list[Output] = []
    for item in stmt.expressions:
        name = item.alias if isinstance(item, exp.Alias) else None
        node = item.this if isinstance(item, exp.Alias) else item
        while isinstance(node, exp.Paren):
            node = node.this
        if isinstance(node, exp.Star):
            raise refuse(
                "SELECT * is not allowed: a private query releases group keys and aggregates only", node
            )
        if isinstance(node, exp.Column):
            col = planner.column(node)
            if col not in keys:
                if planner.is_unit(col):
                    raise refuse(f"the privacy unit column {col.column!r} cannot be selected", node)
                raise InvalidInput(f"column {col.column!r} must appear in GROUP BY", field="sql")
            outputs.append(Output(name or col.column, keys.index(col), None))
            continue
        if isinstance(node, AGGREGATE_LIKE):
            agg = planner.aggregate(node)
            default = agg.kind.replace("count_col", "count") + (f"_{agg.column.column}" if agg.column else "")
            outputs.append(Output(name or default, None, agg))
            continue
        raise refuse(
            f"SELECT item {snippet(node)} is not allowed: select group key columns and the aggregates "
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
        raise refuse("a private query must aggregate")
    seen: set[str] = set()
    for out in outputs:
        if fold(out.name) in seen:
            raise InvalidInput(f"output column name {out.name!r} is used twice; add aliases", field="sql")
        seen.add(fold(out.name))
    return outputs


def _order(stmt: exp.Select, planner: Resolver, resolver: OutputRefs) -> tuple[tuple[int, bool, bool], ...]:
    order = stmt.args.get("order")
    if order is None:
        return ()
    items = []
    for ordered in order.expressions:
        extra = [k for k, v in ordered.args.items() if v and k not in ("this", "desc", "nulls_first")]
        if not isinstance(ordered, exp.Ordered) or extra:
            raise refuse("ORDER BY takes result columns with ASC/DESC and NULLS FIRST/LAST", ordered)
        node = ordered.this
        if isinstance(node, exp.Literal) and not node.is_string:
            index = _int_literal(node, "ORDER BY position") - 1
            if not 0 <= index < len(resolver.outputs):
                raise InvalidInput(f"ORDER BY {node.this} is out of range", field="sql")
        elif isinstance(node, exp.Column):
            index = resolver.resolve_column(node, planner)
        elif isinstance(node, AGGREGATE_LIKE):
            index = resolver.resolve_agg(node, planner)
        else:
            raise refuse("ORDER BY takes result columns, aggregates of the SELECT list or positions", node)
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
            raise refuse("LIMIT takes a non-negative integer literal", limit_node)
        limit = _int_literal(limit_node.expression, "LIMIT")
        if limit_node.args.get("offset") is not None:
            offset = _int_literal(limit_node.args["offset"], "OFFSET")
    if offset_node is not None:
        extra = [k for k, v in offset_node.args.items() if v and k != "expression"]
        if extra:
            raise refuse("OFFSET takes a non-negative integer literal", offset_node)
        offset = _int_literal(offset_node.expression, "OFFSET")
    return limit, offset or 0


def _unit_structure(
    planner: Resolver, joins: tuple[tuple[tuple[Col, Col], ...], ...]
) -> tuple[Col | None, tuple[tuple[str, tuple[str, ...]], ...]]:
    """Check that the joins keep one output row attributable to one unit; return the unit column and
    the keys that must be unique on the data (row-level units only)."""
    rules = planner.rules
    private = [(a, t) for a, t in planner.tables if t not in rules.public_tables]
    unit_name = rules.privacy_unit
    if unit_name is not None and private:
        for _, table in private:
            if unit_name not in planner.schema.tables[table].columns:
                raise refuse(
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
            raise refuse(
                f"private tables must be joined on the privacy unit column {unit_name!r}: otherwise one "
                "result row would mix data of several units"
            )
        alias, table = private[0]
        return Col(alias, table, unit_name, planner.schema.tables[table].columns[unit_name]), ()
    # Row-level units: one private table at most, and every other table must join through unique keys,
    # so that one private row reaches at most one result row.
    if len(private) > 1:
        raise refuse(
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
