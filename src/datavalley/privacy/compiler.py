"""compile_query: validate a private query, plan its noise and rewrite it for the engines.

Everything that does not depend on the data is decided here, once: the grammar check, the exact SQL,
each noisy measure's sensitivity, scale and cost (by OpenDP's privacy maps), the key-release threshold
and the digest. An engine then computes the exact integers and :func:`~datavalley.privacy.release.release`
adds the noise. The analysis is written out in docs/PRIVATE_SQL.md ("Sensitivity and cost").
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from sqlglot import exp

from datavalley.canonical import digest as canonical_digest
from datavalley.errors import InvalidInput, PolicyViolation
from datavalley.privacy import noise
from datavalley.privacy.plan import QueryPlan, plan_query, public_domain
from datavalley.privacy.resolve import Col
from datavalley.privacy.rewrite import CLAMP_META, Measure, build_exact
from datavalley.privacy.rules import NUMERIC_TYPES, PrivacyRules, ProductSchema, lookup

__all__ = [
    "ENGINE_VERSION",
    "FIXED_POINT_BITS",
    "MAX_PUBLIC_GROUPS",
    "CompiledQuery",
    "Dialect",
    "Mode",
    "PrivacyCost",
    "compile_query",
    "measure_share",
]

#: Goes into every digest: bump it when the rewrite or the noise plan changes meaning.
ENGINE_VERSION = "datavalley-private-sql/2"

#: Fixed-point resolution: a clamped value's largest magnitude maps to about 2^20 integer units, so the
#: rounding of each value is a millionth of the sensitivity.
FIXED_POINT_BITS = 20

#: Most key combinations a public-key query may release (the cross product of the declared sets).
MAX_PUBLIC_GROUPS = 100_000

Mode = Literal["laplace", "gaussian", "none"]
Dialect = Literal["duckdb", "spark"]


@dataclass(frozen=True)
class PrivacyCost:
    """What one query spends: pure ε (Laplace) or ρ (zCDP, Gaussian), plus δ when group keys are released
    by thresholding. Mode ``none`` (exact answers with k suppression) spends no DP budget."""

    mechanism: Mode
    epsilon: float | None
    rho: float | None
    delta: float

    def to_json(self) -> dict[str, Any]:
        """JSON form with floats as ``repr`` strings (canonical JSON refuses floats)."""
        return {
            "mechanism": self.mechanism,
            "epsilon": None if self.epsilon is None else repr(self.epsilon),
            "rho": None if self.rho is None else repr(self.rho),
            "delta": repr(self.delta),
        }


@dataclass(frozen=True)
class CompiledQuery:
    """A validated, rewritten private query with its noise plan. Immutable and data-independent.

    ``digest`` identifies the (normalised query, rules, mechanism, budget): equal digests mean the same
    released distribution on the same data, so the answer can be cached by (contract, digest, data
    version). ``output_measures[i]`` lists the measures output ``i`` is computed from (empty for keys);
    ``units_measure`` is the measure that suppression and thresholding compare with k and ``threshold``.
    """

    plan: QueryPlan
    rules: PrivacyRules
    mode: Mode
    measures: tuple[Measure, ...]
    output_measures: tuple[tuple[int, ...], ...]
    units_measure: int | None
    key_domain: tuple[tuple[Any, ...], ...] | None
    threshold: float | None
    rows_per_unit: int
    groups_per_unit: int
    cost: PrivacyCost
    digest: str
    exact: exp.Select = field(repr=False, compare=False)

    @property
    def columns(self) -> tuple[str, ...]:
        """Names of the released columns, in SELECT order."""
        return tuple(o.name for o in self.plan.outputs)

    @property
    def tables(self) -> frozenset[str]:
        """The product tables the query reads."""
        return frozenset(t for _, t in self.plan.tables)

    @property
    def exact_columns(self) -> tuple[str, ...]:
        """Columns of the exact result: ``g0..`` keys, then ``m0..`` measures."""
        return tuple(f"g{i}" for i in range(len(self.plan.keys))) + tuple(
            f"m{i}" for i in range(len(self.measures))
        )

    @property
    def clamps(self) -> frozenset[tuple[str, str, float, float]]:
        """``(table, column, low, high)`` of every clamp in the exact query."""
        return frozenset(
            m.column_clamp for m in self.measures if m.column is not None and m.clamp is not None
        )

    def exact_sql(
        self,
        dialect: Dialect = "duckdb",
        tables: Mapping[str, str] | None = None,
        *,
        unclamped: Collection[tuple[str, str, float, float]] = (),
    ) -> str:
        """The exact (pre-noise) SQL for ``dialect``.

        ``tables`` maps product tables to the engine's relations. ``unclamped`` lists clamps (as in
        :attr:`clamps`) that the engine knows to be no-ops on its data (every value already inside the
        range): their CASE is left out, which gives the same values faster.
        """
        tree = self.exact.copy()
        if tables:
            for node in tree.find_all(exp.Table):
                name = node.name
                if name in tables and name in self.tables:
                    node.set("this", exp.to_identifier(tables[name], quoted=True))
        if unclamped:
            skip = set(unclamped)
            for case in list(tree.find_all(exp.Case)):
                if case.meta.get(CLAMP_META) in skip:
                    case.replace(case.args["default"])
        return tree.sql(dialect=dialect, comments=False)

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary (digest, cost, measures, threshold) for logs and the query ledger."""
        return {
            "digest": self.digest,
            "cost": self.cost.to_json(),
            "columns": list(self.columns),
            "measures": [m.to_json() for m in self.measures],
            "threshold": None if self.threshold is None else repr(self.threshold),
            "rowsPerUnit": self.rows_per_unit,
            "groupsPerUnit": self.groups_per_unit,
        }


def _mode(rules: PrivacyRules, epsilon: float | None, rho: float | None) -> tuple[Mode, float | None]:
    if epsilon is not None and rho is not None:
        raise InvalidInput("give epsilon (Laplace) or rho (Gaussian), not both", field="epsilon")
    budget = epsilon if epsilon is not None else rho
    if budget is None:
        if rules.require_dp:
            raise PolicyViolation(
                "the rules require differential privacy: pass "
                + ("epsilon" if rules.mechanism == "laplace" else "rho"),
                rule="require_dp",
            )
        return "none", None
    if (
        isinstance(budget, bool)
        or not isinstance(budget, int | float)
        or not math.isfinite(budget)
        or budget <= 0
    ):
        raise InvalidInput(f"privacy budget must be a positive number, got {budget!r}", field="epsilon")
    wanted = "epsilon" if rules.mechanism == "laplace" else "rho"
    given = "epsilon" if epsilon is not None else "rho"
    if wanted != given:
        raise InvalidInput(
            f"the rules use the {rules.mechanism} mechanism, which is accounted in {wanted}; got {given}",
            field=given,
        )
    return rules.mechanism, float(budget)


def _fixed_point(bound: float) -> tuple[float, int]:
    """(integer units per output unit, largest |integer| of one quantised value)."""
    exponent = FIXED_POINT_BITS - (math.ceil(math.log2(bound)) if bound > 0 else 0)
    scale = 2.0**exponent
    # +1 covers a rounding of (value - center) that lands one unit past the bound.
    return scale, math.ceil(bound * scale) + 1


def _check_key_values(col: Col, values: tuple[Any, ...]) -> None:
    def fits(v: Any) -> bool:
        if v is None:
            return True
        if col.type in NUMERIC_TYPES:
            return isinstance(v, int | float | Decimal) and not isinstance(v, bool)
        if col.type == "text":
            return isinstance(v, str)
        if col.type == "boolean":
            return isinstance(v, bool)
        if col.type == "date":
            return isinstance(v, date) and not isinstance(v, datetime)
        if col.type in ("timestamp", "timestamptz"):
            return isinstance(v, datetime)
        return False

    bad = [v for v in values if not fits(v)]
    if bad:
        raise InvalidInput(
            f"public key values {bad[:3]!r} do not fit column {col.table}.{col.column} of type {col.type}",
            field="public_keys",
        )


#: Share of a query's budget spent on the count of rows contribution bounding dropped (unit mode); the
#: rest is split evenly over the released measures.
DROPPED_SHARE = 0.1


def measure_share(budget: float, measures: Sequence[Measure], m: Measure) -> float:
    """The ε (or ρ) measure ``m`` gets: DROPPED_SHARE for the dropped-rows count, the rest evenly."""
    dropped = any(x.kind == "dropped" for x in measures)
    if not dropped:
        return budget / len(measures)
    if m.kind == "dropped":
        return budget * DROPPED_SHARE
    return budget * (1.0 - DROPPED_SHARE) / (len(measures) - 1)


def compile_query(
    sql: str,
    schema: ProductSchema,
    rules: PrivacyRules,
    *,
    epsilon: float | None = None,
    rho: float | None = None,
) -> CompiledQuery:
    """Validate ``sql`` against the grammar and ``rules``, and plan its exact query and noise.

    Give ``epsilon`` when the rules' mechanism is Laplace, ``rho`` when it is Gaussian, neither for exact
    answers with k suppression only (allowed when ``rules.require_dp`` is False). The whole budget is
    spent on this one query, split evenly over its noisy measures.

    Raises:
        InvalidInput: syntax errors, unknown names, type mismatches, a bad budget.
        PolicyViolation: a construct outside the grammar, or one the rules forbid.
    """
    mode, budget = _mode(rules, epsilon, rho)
    dp_on = mode != "none"
    plan = plan_query(sql, schema, rules, dp=dp_on)
    domain = public_domain(plan, rules.public_keys)
    domain_size = 0
    if domain is not None:
        for col, values in zip(plan.keys, domain, strict=True):
            _check_key_values(col, values)
        domain_size = math.prod(len(d) for d in domain)
        if domain_size > MAX_PUBLIC_GROUPS:
            raise PolicyViolation(
                f"the declared public keys give {domain_size} groups; "
                f"at most {MAX_PUBLIC_GROUPS} may be released",
                rule="public_keys",
            )
    unit_mode = plan.unit is not None
    m_rows = rules.max_rows_per_unit if unit_mode else 1
    g = rules.max_groups_per_unit if unit_mode else 1
    if not plan.keys:
        g_eff = 1
    elif domain is not None:
        g_eff = min(g, domain_size)
    else:
        g_eff = g
    group_limit = g if unit_mode and plan.keys and (domain is None or domain_size > g) else None
    thresholding = dp_on and bool(plan.keys) and domain is None
    if thresholding and rules.delta <= 0.0:
        raise PolicyViolation(
            "grouping by columns without declared public keys releases keys by DP thresholding, which needs "
            "delta > 0, and the rules set delta = 0; group only by "
            + (", ".join(sorted(rules.public_keys)) or "declared public key columns (none are declared)"),
            rule="delta",
        )

    measures: dict[str, Measure] = {}

    def need(name: str, kind: Any, col: Col | None = None, **extra: Any) -> int:
        if name not in measures:
            measures[name] = Measure(name=name, kind=kind, column=col, **extra)
        return list(measures).index(name)

    def clamped(kind: str, col: Col) -> int:
        if not dp_on:
            return need(f"{kind}:{col.ref}", kind, col)
        lo, hi = lookup(rules.clamps, col.table, col.column)
        center = (lo + hi) / 2.0 if kind == "csum" else 0.0
        bound = (hi - lo) / 2.0 if kind == "csum" else max(abs(lo), abs(hi))
        fixed, per_value = _fixed_point(bound)
        return need(
            f"{kind}:{col.ref}",
            kind,
            col,
            clamp=(lo, hi),
            center=center,
            fixed_point=fixed,
            per_group=m_rows * per_value,
        )

    units_name = "units" if unit_mode else "rows"
    output_measures: list[tuple[int, ...]] = []
    for out in plan.outputs:
        agg = out.agg
        if agg is None:
            output_measures.append(())
        elif agg.kind == "count":
            output_measures.append((need("rows", "rows", per_group=m_rows),))
        elif agg.kind == "count_distinct":
            output_measures.append((need("units", "units", per_group=1),))
        elif agg.kind == "count_col":
            assert agg.column is not None
            output_measures.append((need(f"nn:{agg.column.ref}", "nn", agg.column, per_group=m_rows),))
        elif agg.kind == "sum":
            assert agg.column is not None
            output_measures.append((clamped("sum", agg.column),))
        else:
            assert agg.column is not None
            if dp_on:
                output_measures.append(
                    (
                        clamped("csum", agg.column),
                        need(f"nn:{agg.column.ref}", "nn", agg.column, per_group=m_rows),
                    )
                )
            else:
                output_measures.append((clamped("avg", agg.column),))
    if dp_on and unit_mode:
        # Rows the contribution bounds dropped (a single global count, each unit's clipped at m·g):
        # released with the answer so the consumer knows how much data the bounds left out.
        need("dropped", "dropped", per_group=m_rows * g, hidden=True)
    units_index: int | None = None
    if thresholding or rules.min_group_size > 1:
        if units_name not in measures:
            need(units_name, units_name, per_group=1 if unit_mode else m_rows, hidden=True)
        units_index = list(measures).index(units_name)

    planned = list(measures.values())
    threshold = None
    if dp_on:
        assert budget is not None and mode != "none"
        noisy = []
        for m in planned:
            share = measure_share(budget, planned, m)
            # the dropped-rows count is one number, not a vector over groups
            reach = 1 if m.kind == "dropped" else g_eff
            l1 = reach * m.per_group
            l2 = math.sqrt(reach) * m.per_group
            scale, spent_j = noise.calibrate(mode, l1 if mode == "laplace" else l2, share)
            noisy.append(replace(m, l1=l1, l2=l2, scale=scale, cost=spent_j))
        planned = noisy
        if thresholding:
            assert units_index is not None
            units = planned[units_index]
            threshold = noise.threshold(
                mode, units.scale, per_group=units.per_group, groups=g_eff, delta=rules.delta
            )
        cost = PrivacyCost(
            mechanism=mode,
            epsilon=(budget if planned else 0.0) if mode == "laplace" else None,
            rho=(budget if planned else 0.0) if mode == "gaussian" else None,
            delta=rules.delta if thresholding else 0.0,
        )
        spent = math.fsum(m.cost for m in planned)
        assert spent <= budget * (1.0 + 1e-9), (spent, budget)
    else:
        cost = PrivacyCost(mechanism="none", epsilon=None, rho=None, delta=0.0)

    # With a unit column the filter keeps each unit's groups inside the declared domain, which is what
    # lets g_eff = min(g, |domain|) hold. With row-level units a row outside the domain only feeds a
    # group that release() drops, so the filter (a per-row IN test) is skipped for speed.
    key_filter = (
        [(col, values) for col, values in zip(plan.keys, domain or (), strict=False)] if unit_mode else []
    )
    exact = build_exact(
        plan, planned, dp=dp_on, rows_per_unit=m_rows, group_limit=group_limit, key_filter=key_filter
    )
    digest = canonical_digest(
        {
            "version": ENGINE_VERSION,
            "plan": plan.to_json(),
            "rules": rules.to_json(),
            "mechanism": mode,
            "budget": None if budget is None else repr(budget),
        }
    )
    return CompiledQuery(
        plan=plan,
        rules=rules,
        mode=mode,
        measures=tuple(planned),
        output_measures=tuple(output_measures),
        units_measure=units_index,
        key_domain=None if domain is None else tuple(domain),
        threshold=threshold,
        rows_per_unit=m_rows,
        groups_per_unit=g_eff,
        cost=cost,
        digest=digest,
        exact=exact,
    )
