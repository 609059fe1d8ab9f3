"""Rewrite a QueryPlan into the exact SQL an engine runs: one sqlglot AST, generated per dialect.

The exact query computes, per group, integers that are later noised (DP) or the plain SQL aggregates
(exact mode, k suppression only). Contribution bounding happens inside the query
(docs/PRIVATE_SQL.md, "Rewrite"):

- unit = row: a single grouped aggregate over clamped, fixed-point values. No window, no extra pass:
  each row is in one group and adds at most one bounded value to each aggregate.
- unit column: (1) per row, clamp and quantise; (2) aggregate per (unit, group); (3) cap each pair at
  ``m`` rows (counts are capped, sums are rescaled by ``m / rows`` so the pair's mean is kept); (4) keep at
  most ``g`` groups per unit, its heaviest ones (``ROW_NUMBER`` over the unit's pairs; skipped when the
  key domain already has at most ``g`` values); (5) sum per group.

All identifiers are quoted and all literals are built as AST nodes: no SQL text is concatenated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from sqlglot import exp

from datavalley.privacy.plan import QueryPlan
from datavalley.privacy.resolve import Col, sql_type

__all__ = ["CLAMP_META", "Measure", "MeasureKind", "build_exact", "literal"]

MeasureKind = Literal["rows", "units", "nn", "sum", "csum", "avg", "dropped"]

_ROWS, _PAIRS, _BOUNDED = "dv__rows", "dv__pairs", "dv__bounded"
_DROPS, _DROPSUM = "dv__drops", "dv__dropsum"


@dataclass(frozen=True)
class Measure:
    """One per-group quantity of the exact query, and how it is noised.

    Kinds: ``rows`` (bounded row count), ``units`` (distinct units), ``nn`` (non-null values of a
    column), ``sum`` (fixed-point clamped sum), ``csum`` (fixed-point clamped sum of ``value - center``,
    the numerator of AVG), ``avg`` (exact mode only: plain AVG).

    ``fixed_point`` is the number of integer units per output unit; ``per_group`` the most one unit can
    change this measure in one group (integer units); ``l1``/``l2`` the sensitivities over all groups;
    ``scale`` the noise scale in integer units and ``cost`` its ε or ρ from OpenDP's privacy map.
    """

    name: str
    kind: MeasureKind
    column: Col | None = None
    clamp: tuple[float, float] | None = None
    center: float = 0.0
    fixed_point: float = 1.0
    per_group: int = 0
    hidden: bool = False
    l1: int = 0
    l2: float = 0.0
    scale: float = 0.0
    cost: float = 0.0

    @property
    def column_clamp(self) -> tuple[str, str, float, float]:
        """``(table, column, low, high)``: the tag of this measure's clamp in the exact query."""
        assert self.column is not None and self.clamp is not None
        return (self.column.table, self.column.column, *self.clamp)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "clamp": None if self.clamp is None else [repr(v) for v in self.clamp],
            "center": repr(self.center),
            "fixedPoint": repr(self.fixed_point),
            "perGroup": self.per_group,
            "hidden": self.hidden,
            "scale": repr(self.scale),
        }


def _id(name: str) -> exp.Identifier:
    return exp.to_identifier(name, quoted=True)


def _ref(name: str, table: str | None = None) -> exp.Column:
    return exp.column(name, table=table, quoted=True)


def _double(value: float) -> exp.Expr:
    return exp.Cast(this=exp.Literal.number(repr(float(value))), to=sql_type("DOUBLE"))


def _int(value: int) -> exp.Expr:
    return exp.Literal.number(int(value))


def literal(value: Any) -> exp.Expr:
    """A SQL literal node for a declared key value (never rendered from text)."""
    if value is None:
        return exp.Null()
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, int):
        return _int(value)
    if isinstance(value, float):
        return _double(value)
    if isinstance(value, Decimal):
        return exp.Literal.number(str(value))
    if isinstance(value, datetime):
        return exp.Cast(this=exp.Literal.string(value.isoformat(sep=" ")), to=sql_type("TIMESTAMP"))
    if isinstance(value, date):
        return exp.Cast(this=exp.Literal.string(value.isoformat()), to=sql_type("DATE"))
    if isinstance(value, str):
        return exp.Literal.string(value)
    raise TypeError(f"no SQL literal for {type(value).__name__}")


def _col(col: Col) -> exp.Column:
    return _ref(col.column, col.alias)


def _cap(expr: exp.Expr, m: int) -> exp.Expr:
    # CASE rather than LEAST: the engines disagree on LEAST with NULLs.
    return exp.Case(
        ifs=[exp.If(this=exp.GT(this=expr, expression=_int(m)), true=_int(m))], default=expr.copy()
    )


#: ``meta`` key on a clamp's CASE node: ``(table, column, low, high)``. An engine that knows the column
#: already lies in [low, high] may replace the CASE by its ELSE branch (the value is the same).
CLAMP_META = "dv_clamp"


def _quantised(measure: Measure) -> exp.Expr:
    """ROUND((clamp(CAST(x AS DOUBLE)) - center) * 2^k): an integer held in a DOUBLE.

    Both engines compute it alike (IEEE doubles; scaling by a power of two is exact; ROUND is half away
    from zero in both). It stays a DOUBLE rather than a BIGINT because the checked cast costs more than
    the whole aggregation, and a sum of integer-valued doubles is exact in any order while partial sums
    stay below 2^53: with values below 2^(FIXED_POINT_BITS+1), for up to 2^32 rows per group.
    """
    assert measure.column is not None and measure.clamp is not None
    lo, hi = measure.clamp
    x = exp.Cast(this=_col(measure.column), to=sql_type("DOUBLE"))
    clamped = exp.Case(
        ifs=[
            exp.If(this=exp.LT(this=x, expression=_double(lo)), true=_double(lo)),
            # NaN compares greater than every number in both engines, so NaN becomes `hi`.
            exp.If(this=exp.GT(this=x.copy(), expression=_double(hi)), true=_double(hi)),
        ],
        default=x.copy(),
    )
    clamped.meta[CLAMP_META] = measure.column_clamp
    shifted: exp.Expr = clamped
    if measure.center != 0.0:
        shifted = exp.Paren(this=exp.Sub(this=clamped, expression=_double(measure.center)))
    return exp.Round(this=exp.Mul(this=shifted, expression=_double(measure.fixed_point)))


def _relation(plan: QueryPlan, key_filter: Sequence[tuple[Col, tuple[Any, ...]]]) -> dict[str, Any]:
    """FROM, JOIN and WHERE of the base relation (the plan's WHERE plus the public-key filter)."""
    alias0, table0 = plan.tables[0]
    args: dict[str, Any] = {
        "from_": exp.From(this=exp.Table(this=_id(table0), alias=exp.TableAlias(this=_id(alias0))))
    }
    joins = []
    for (alias, table), step in zip(plan.tables[1:], plan.joins, strict=True):
        conds = [exp.EQ(this=_col(a), expression=_col(b)) for a, b in step]
        on: exp.Expr = conds[0]
        for eq in conds[1:]:
            on = exp.And(this=on, expression=eq)
        joins.append(exp.Join(this=exp.Table(this=_id(table), alias=exp.TableAlias(this=_id(alias))), on=on))
    if joins:
        args["joins"] = joins
    conditions: list[exp.Expr] = []
    if plan.where is not None:
        conditions.append(exp.Paren(this=plan.where.copy()))
    for col, values in key_filter:
        listed = [v for v in values if v is not None]
        cond: exp.Expr = exp.In(this=_col(col), expressions=[literal(v) for v in listed])
        if len(listed) != len(values):
            cond = exp.Paren(this=exp.Or(this=cond, expression=exp.Is(this=_col(col), expression=exp.Null())))
        conditions.append(cond)
    if conditions:
        where = conditions[0]
        for extra in conditions[1:]:
            where = exp.And(this=where, expression=extra)
        args["where"] = exp.Where(this=where)
    return args


def _kept_pair(ranked: bool, group_limit: int | None) -> exp.Expr:
    if not ranked:
        return exp.Boolean(this=True)
    return exp.LTE(this=_ref("rn"), expression=_int(group_limit or 0))


def _select(items: list[exp.Expr], group: list[exp.Expr], **args: Any) -> exp.Select:
    select = exp.Select(expressions=items, **args)
    if group:
        select.set("group", exp.Group(expressions=group))
    return select


def _alias(expr: exp.Expr, name: str) -> exp.Alias:
    return exp.Alias(this=expr, alias=_id(name))


def _keys(plan: QueryPlan) -> list[str]:
    return [f"g{i}" for i in range(len(plan.keys))]


def build_exact(
    plan: QueryPlan,
    measures: Sequence[Measure],
    *,
    dp: bool,
    rows_per_unit: int,
    group_limit: int | None,
    key_filter: Sequence[tuple[Col, tuple[Any, ...]]],
) -> exp.Select:
    """The exact query: columns ``g0..`` (group keys) then ``m0..`` (one per measure, in order).

    ``group_limit`` set means a unit may reach more than that many groups and the rank filter is needed.
    """
    relation = _relation(plan, key_filter)
    if not dp:
        return _exact_mode(plan, measures, relation)
    if plan.unit is None:
        return _row_mode(plan, measures, relation)
    return _unit_mode(plan, measures, relation, rows_per_unit, group_limit)


def _exact_mode(plan: QueryPlan, measures: Sequence[Measure], relation: dict[str, Any]) -> exp.Select:
    items: list[exp.Expr] = [_alias(_col(k), g) for k, g in zip(plan.keys, _keys(plan), strict=True)]
    for i, m in enumerate(measures):
        agg: exp.Expr
        if m.kind == "rows" or (m.kind == "units" and plan.unit is None):
            agg = exp.Count(this=exp.Star())
        elif m.kind == "units":
            assert plan.unit is not None
            agg = exp.Count(this=exp.Distinct(expressions=[_col(plan.unit)]))
        elif m.kind == "nn":
            assert m.column is not None
            agg = exp.Count(this=_col(m.column))
        elif m.kind == "sum":
            assert m.column is not None
            agg = exp.Sum(this=_col(m.column))
        else:
            assert m.column is not None
            agg = exp.Avg(this=_col(m.column))
        items.append(_alias(agg, f"m{i}"))
    return _select(items, [_col(k) for k in plan.keys], **relation)


def _row_mode(plan: QueryPlan, measures: Sequence[Measure], relation: dict[str, Any]) -> exp.Select:
    items: list[exp.Expr] = [_alias(_col(k), g) for k, g in zip(plan.keys, _keys(plan), strict=True)]
    for i, m in enumerate(measures):
        agg: exp.Expr
        if m.kind in ("rows", "units"):
            agg = exp.Count(this=exp.Star())
        elif m.kind == "nn":
            assert m.column is not None
            agg = exp.Count(this=_col(m.column))
        else:
            agg = exp.Sum(this=_quantised(m))
        items.append(_alias(agg, f"m{i}"))
    return _select(items, [_col(k) for k in plan.keys], **relation)


def _unit_mode(
    plan: QueryPlan,
    measures: Sequence[Measure],
    relation: dict[str, Any],
    m_rows: int,
    group_limit: int | None,
) -> exp.Select:
    assert plan.unit is not None
    keys = _keys(plan)
    # (1) one row per input row: unit, keys, and the per-row values the measures need.
    row_items: list[exp.Expr] = [_alias(_col(plan.unit), "u")]
    row_items += [_alias(_col(k), g) for k, g in zip(plan.keys, keys, strict=True)]
    for i, m in enumerate(measures):
        if m.kind == "nn":
            assert m.column is not None
            row_items.append(_alias(_col(m.column), f"v{i}"))
        elif m.kind in ("sum", "csum"):
            row_items.append(_alias(_quantised(m), f"v{i}"))
    rows_cte = _select(row_items, [], **relation)
    # (2) one row per (unit, group).
    pair_items: list[exp.Expr] = [_ref("u"), *(_ref(g) for g in keys)]
    pair_items.append(_alias(exp.Count(this=exp.Star()), "n"))
    for i, m in enumerate(measures):
        if m.kind in ("nn", "sum", "csum"):
            pair_items.append(_alias(exp.Count(this=_ref(f"v{i}")), f"c{i}"))
        if m.kind in ("sum", "csum"):
            pair_items.append(_alias(exp.Sum(this=_ref(f"v{i}")), f"s{i}"))
    pairs_from = exp.From(this=exp.Table(this=_id(_ROWS)))
    pairs_cte = _select(pair_items, [_ref("u"), *(_ref(g) for g in keys)], from_=pairs_from)
    # (3) cap each pair at m rows: counts capped, sums rescaled by m / rows (still integers in DOUBLEs).
    bounded_items: list[exp.Expr] = [*(_ref(g) for g in keys), _alias(_cap(_ref("n"), m_rows), "bn")]
    if any(m.kind == "dropped" for m in measures):
        bounded_items += [_ref("u"), _ref("n")]
    for i, m in enumerate(measures):
        if m.kind == "nn":
            bounded_items.append(_alias(_cap(_ref(f"c{i}"), m_rows), f"c{i}"))
        elif m.kind in ("sum", "csum"):
            rescaled = exp.Round(
                this=exp.Div(
                    this=exp.Mul(this=_ref(f"s{i}"), expression=_double(m_rows)),
                    expression=exp.Cast(this=_ref(f"c{i}"), to=sql_type("DOUBLE")),
                )
            )
            case = exp.Case(
                ifs=[exp.If(this=exp.LTE(this=_ref(f"c{i}"), expression=_int(m_rows)), true=_ref(f"s{i}"))],
                default=rescaled,
            )
            bounded_items.append(_alias(case, f"s{i}"))
    # (4) at most g groups per unit: the unit's heaviest groups (most rows, ties broken by key). The choice
    # depends only on the unit's own rows, so the bound holds; it keeps as many rows as any choice can,
    # and both engines rank alike (plain integers and keys, explicit NULL order).
    if group_limit is not None and keys:
        order = [exp.Ordered(this=_ref("n"), desc=True, nulls_first=False)]
        order += [exp.Ordered(this=_ref(g), nulls_first=False) for g in keys]
        rank = exp.Window(this=exp.RowNumber(), partition_by=[_ref("u")], order=exp.Order(expressions=order))
        bounded_items.append(_alias(rank, "rn"))
    bounded_cte = _select(bounded_items, [], from_=exp.From(this=exp.Table(this=_id(_PAIRS))))
    ranked = group_limit is not None and bool(keys)
    drops = next((m for m in measures if m.kind == "dropped"), None)
    drops_cte = total_cte = None
    if drops is not None:
        # (4b) rows the bounds dropped, per unit (pairs beyond g whole, rows beyond m in kept pairs),
        # clipped per unit at C = m·g, summed over units: one number, joined to every group row.
        kept = exp.Case(ifs=[exp.If(this=_kept_pair(ranked, group_limit), true=_ref("bn"))], default=_int(0))
        lost = exp.Sum(this=exp.Sub(this=_ref("n"), expression=kept))
        drops_cte = _select(
            [_ref("u"), _alias(_cap(lost, drops.per_group), "du")],
            [_ref("u")],
            from_=exp.From(this=exp.Table(this=_id(_BOUNDED))),
        )
        total_cte = _select(
            [_alias(exp.Sum(this=_ref("du")), "dt")], [], from_=exp.From(this=exp.Table(this=_id(_DROPS)))
        )
    # (5) per group.
    items: list[exp.Expr] = [_ref(g) for g in keys]
    for i, m in enumerate(measures):
        agg: exp.Expr
        if m.kind == "dropped":
            # one global value (the same in every group row): the sum over units of their clipped drops
            items.append(_alias(exp.Max(this=_ref("dt")), f"m{i}"))
            continue
        if m.kind == "rows":
            agg = exp.Sum(this=_ref("bn"))
        elif m.kind == "units":
            agg = exp.Count(this=exp.Star())
        elif m.kind == "nn":
            agg = exp.Sum(this=_ref(f"c{i}"))
        else:
            agg = exp.Sum(this=_ref(f"s{i}"))
        items.append(_alias(agg, f"m{i}"))
    final_args: dict[str, Any] = {"from_": exp.From(this=exp.Table(this=_id(_BOUNDED)))}
    if total_cte is not None:
        final_args["joins"] = [exp.Join(this=exp.Table(this=_id(_DROPSUM)), kind="CROSS")]
    if ranked:
        final_args["where"] = exp.Where(this=exp.LTE(this=_ref("rn"), expression=_int(group_limit or 0)))
    final = _select(items, [_ref(g) for g in keys], **final_args)
    bodies = [(_ROWS, rows_cte), (_PAIRS, pairs_cte), (_BOUNDED, bounded_cte)]
    if drops_cte is not None and total_cte is not None:
        bodies += [(_DROPS, drops_cte), (_DROPSUM, total_cte)]
    ctes = [exp.CTE(this=body, alias=exp.TableAlias(this=_id(name))) for name, body in bodies]
    final.set("with_", exp.With(expressions=ctes))
    return final
