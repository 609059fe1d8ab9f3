"""release: turn an exact result into what the consumer may see (docs/PRIVATE_SQL.md, "What is released").

Steps, in order: choose the candidate groups (the declared public key combinations, filled with zeros;
or the single global group; or the groups found in the data), add OpenDP integer noise to every measure
of every candidate group, suppress groups whose unit count is below k (noisy with DP, exact without) or
below the DP threshold τ, compute the released values and their 95% intervals, then apply HAVING,
ORDER BY, OFFSET and LIMIT to the released rows. Everything after the noise is post-processing.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlglot import exp

from datavalley.errors import InvalidInput
from datavalley.privacy import noise
from datavalley.privacy.compiler import CompiledQuery, PrivacyCost
from datavalley.privacy.engine import ExactResult
from datavalley.privacy.resolve import parse_temporal
from datavalley.privacy.rewrite import Measure

__all__ = ["CellNoise", "Released", "release"]

#: Two-sided level of the reported intervals.
CI_ALPHA = 0.05

#: What a released interval covers (said in every JSON release).
INTERVALS_NOTE = (
    "ci95 covers the added noise only: the bias of clamping and of contribution bounding "
    "(rows a unit contributes beyond the bounds are dropped) is not included"
)


@dataclass(frozen=True)
class CellNoise:
    """Noise of one released cell, in the cell's own units.

    ``scale`` is the mechanism's parameter (discrete Laplace scale, or discrete Gaussian σ); for AVG it is
    the sum's scale divided by the noisy count (the count's noise is in the interval, not in the scale).
    ``ci95`` contains the exact (contribution-bounded) value with probability at least 95%.
    """

    scale: float
    ci95: tuple[float, float]

    def to_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "ci95": list(self.ci95)}


@dataclass(frozen=True)
class Released:
    """The answer a consumer receives: rows, per-cell noise, suppression count and cost.

    ``noise[r][c]`` describes ``rows[r][c]`` (None for group keys and for exact-mode answers).
    ``suppressed_groups`` is None when groups were released by DP thresholding: how many candidate groups
    failed the threshold depends on the data and is not differentially private, so it is withheld.
    """

    digest: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    noise: tuple[tuple[CellNoise | None, ...], ...]
    suppressed_groups: int | None
    cost: PrivacyCost
    threshold: float | None
    withheld_rows: int = 0
    #: (noisy count, its noise) of the rows contribution bounding dropped, each unit's clipped at m·g;
    #: None when nothing can be dropped (row-level units) or without DP.
    dropped_rows: tuple[int, CellNoise] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form (dates as ISO text, decimals as text, non-finite floats as None)."""
        return {
            "digest": self.digest,
            "columns": list(self.columns),
            "rows": [[_json_value(v) for v in row] for row in self.rows],
            "noise": [
                [None if n is None else {"scale": n.scale, "ci95": list(n.ci95)} for n in row]
                for row in self.noise
            ],
            "suppressed_groups": self.suppressed_groups,
            "cost": self.cost.to_json(),
            "threshold": self.threshold,
            "withheldRows": self.withheld_rows,
            "droppedRows": None
            if self.dropped_rows is None
            else {
                "value": self.dropped_rows[0],
                **self.dropped_rows[1].to_dict(),
                "note": "rows beyond the contribution bounds, noisy; each unit's counted up to m·g rows",
            },
            "intervals": INTERVALS_NOTE,
        }


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _sort_key(values: Sequence[Any]) -> tuple[Any, ...]:
    return tuple((v is None, 0 if v is None else v) for v in values)


def release(q: CompiledQuery, exact: ExactResult, *, max_rows: int | None = None) -> Released:
    """Noise, suppress and post-process ``exact`` (computed by an engine for ``q``) into a release.

    Every call draws fresh noise (OpenDP's samplers, seeded by the OS): cache the result to answer a
    repeated query the same way without spending budget again.

    ``max_rows`` caps the released rows (after noise, suppression, HAVING and LIMIT); the rows beyond it
    are withheld and counted in ``withheld_rows``.

    Raises:
        InvalidInput: ``exact`` was computed for a different query.
    """
    if exact.digest != q.digest:
        raise InvalidInput("the exact result was computed for another query", field="exact")
    nkeys = len(q.plan.keys)
    found = {tuple(row[:nkeys]): list(row[nkeys:]) for row in exact.rows}
    dp_on = q.mode != "none"
    if q.key_domain is not None:
        groups = list(itertools.product(*q.key_domain))
    elif nkeys == 0:
        groups = [()]
    else:
        groups = sorted(found, key=_sort_key)
    zero: list[Any] = [0] * len(q.measures)
    values = [found.get(key) or zero for key in groups]

    noisy: list[list[Any]] = [[] for _ in groups]
    dropped: tuple[int, CellNoise] | None = None
    if dp_on:
        assert q.mode != "none"
        columns = []
        for j, m in enumerate(q.measures):
            if m.kind == "dropped":
                # one global value, repeated in every exact row: noised once
                total = max((int(row[nkeys + j] or 0) for row in exact.rows), default=0)
                value = noise.sample(q.mode, m.scale, [total])[0]
                half = noise.accuracy(q.mode, m.scale, CI_ALPHA)
                dropped = (
                    max(0, value),
                    CellNoise(m.scale, (float(max(0, value - half)), float(value + half))),
                )
                columns.append([value] * len(groups))
                continue
            columns.append(noise.sample(q.mode, m.scale, [int(v[j] or 0) for v in values]))
        noisy = [[col[i] for col in columns] for i in range(len(groups))]
    else:
        noisy = [list(v) for v in values]

    k = q.rules.min_group_size
    keep: list[int] = []
    for i in range(len(groups)):
        if q.units_measure is None:
            keep.append(i)
            continue
        units = noisy[i][q.units_measure] or 0
        bar = max(float(k), q.threshold or 0.0) if dp_on else float(k)
        if units >= bar:
            keep.append(i)
    suppressed: int | None = len(groups) - len(keep)
    if q.threshold is not None:
        suppressed = None

    cells = _Cells(q)
    rows = []
    for i in keep:
        out_row, noise_row = cells.row(groups[i], noisy[i])
        rows.append((out_row, noise_row))
    rows = _post_process(q, rows)
    withheld = 0
    if max_rows is not None and len(rows) > max_rows:
        # The size limit applies to the released (post-noise) rows, so hitting it reveals nothing more
        # than the release itself.
        withheld = len(rows) - max_rows
        rows = rows[:max_rows]
    return Released(
        digest=q.digest,
        columns=q.columns,
        rows=tuple(tuple(r) for r, _ in rows),
        noise=tuple(tuple(n) for _, n in rows),
        suppressed_groups=suppressed,
        cost=q.cost,
        threshold=q.threshold,
        withheld_rows=withheld,
        dropped_rows=dropped,
    )


class _Cells:
    """Computes released values and intervals from one group's noisy measures."""

    def __init__(self, q: CompiledQuery) -> None:
        self.q = q
        mode = q.mode
        self.half: dict[tuple[int, float], int] = {}
        if mode != "none":
            for j, m in enumerate(q.measures):
                for alpha in (CI_ALPHA, CI_ALPHA / 2):
                    self.half[(j, alpha)] = noise.accuracy(mode, m.scale, alpha)

    def row(self, key: tuple[Any, ...], measured: list[Any]) -> tuple[list[Any], list[CellNoise | None]]:
        values: list[Any] = []
        cells: list[CellNoise | None] = []
        for out, used in zip(self.q.plan.outputs, self.q.output_measures, strict=True):
            if out.key is not None:
                values.append(key[out.key])
                cells.append(None)
            elif self.q.mode == "none":
                values.append(_exact_value(self.q.measures[used[0]], measured[used[0]]))
                cells.append(None)
            elif len(used) == 1:
                value, cell = self._single(used[0], measured[used[0]])
                values.append(value)
                cells.append(cell)
            else:
                value, cell = self._avg(used[0], used[1], measured[used[0]], measured[used[1]])
                values.append(value)
                cells.append(cell)
        return values, cells

    def _single(self, j: int, raw: int) -> tuple[Any, CellNoise]:
        m = self.q.measures[j]
        half = self.half[(j, CI_ALPHA)]
        if m.kind == "sum":
            fp = m.fixed_point
            return raw / fp, CellNoise(m.scale / fp, ((raw - half) / fp, (raw + half) / fp))
        # Counts: a true count is never negative, so clamping at zero is post-processing that only helps.
        return max(0, raw), CellNoise(m.scale, (float(max(0, raw - half)), float(max(0, raw + half))))

    def _avg(self, js: int, jn: int, raw_sum: int, raw_n: int) -> tuple[float | None, CellNoise]:
        msum = self.q.measures[js]
        assert msum.clamp is not None
        lo, hi = msum.clamp
        fp = msum.fixed_point
        # Union bound: each of the sum and the count is inside its 97.5% interval, so the exact mean is
        # inside the range of the ratios at the corners with probability >= 95%.
        hs, hn = self.half[(js, CI_ALPHA / 2)], self.half[(jn, CI_ALPHA / 2)]
        value = None
        if raw_n >= 1:
            value = min(hi, max(lo, msum.center + raw_sum / fp / raw_n))
        if raw_n - hn >= 1:
            corners = [
                msum.center + (raw_sum + ds) / fp / (raw_n + dn) for ds in (-hs, hs) for dn in (-hn, hn)
            ]
            ci = (max(lo, min(corners)), min(hi, max(corners)))
        else:
            ci = (lo, hi)
        return value, CellNoise(msum.scale / fp / max(raw_n, 1), ci)


def _exact_value(m: Measure, value: Any) -> Any:
    if value is None:
        return 0 if m.kind in ("rows", "units", "nn") else None
    if isinstance(value, Decimal) and m.kind == "avg":
        return float(value)
    return value


# --- post-processing: HAVING, ORDER BY, OFFSET, LIMIT over released rows ------------------------------

Row = tuple[list[Any], list[CellNoise | None]]


def _post_process(q: CompiledQuery, rows: list[Row]) -> list[Row]:
    if q.plan.having is not None:
        having = q.plan.having
        rows = [r for r in rows if _eval(having, r[0]) is True]
    for index, desc, nulls_first in reversed(q.plan.order):
        # Python's sort is stable, so sorting by the last key first gives the SQL multi-key order.
        none_rank = (1 if nulls_first else 0) if desc else (0 if nulls_first else 1)

        def key(r: Row, i: int = index, nr: int = none_rank) -> tuple[int, Any]:
            v = r[0][i]
            return (nr, 0) if v is None else (1 - nr, v)

        rows.sort(key=key, reverse=desc)
    rows = rows[q.plan.offset :]
    if q.plan.limit is not None:
        rows = rows[: q.plan.limit]
    return rows


def _num(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def _compare(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool | None]:
    def run(a: Any, b: Any) -> bool | None:
        if a is None or b is None:
            return None
        try:
            return op(a, b)
        except TypeError:
            # The planner only lets equal types meet; unknown is the SQL answer should it ever happen.
            return None

    return run


_COMPARE: dict[type[exp.Expr], Callable[[Any, Any], bool | None]] = {
    exp.EQ: _compare(lambda a, b: a == b),
    exp.NEQ: _compare(lambda a, b: a != b),
    exp.GT: _compare(lambda a, b: a > b),
    exp.GTE: _compare(lambda a, b: a >= b),
    exp.LT: _compare(lambda a, b: a < b),
    exp.LTE: _compare(lambda a, b: a <= b),
}


def _arith(node: exp.Expr, a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    # Decimal keys meet float literals: compute in float (Decimal + float raises TypeError).
    a = float(a) if isinstance(a, Decimal) else a
    b = float(b) if isinstance(b, Decimal) else b
    if not isinstance(a, int | float) or not isinstance(b, int | float):
        return None
    if isinstance(node, exp.Add):
        return a + b
    if isinstance(node, exp.Sub):
        return a - b
    if isinstance(node, exp.Mul):
        return a * b
    return None if b == 0 else a / b


_CAST_KINDS = {
    exp.DataType.Type.DATE: "date",
    exp.DataType.Type.TIMESTAMP: "timestamp",
    exp.DataType.Type.TIMESTAMPTZ: "timestamptz",
    exp.DataType.Type.TIME: "time",
}


def _eval(node: exp.Expr, row: list[Any]) -> Any:
    """SQL three-valued evaluation of a planned HAVING tree (only the node types the planner emits)."""
    if isinstance(node, exp.Paren):
        return _eval(node.this, row)
    if isinstance(node, exp.Column):
        return row[int(node.name[2:])]
    if isinstance(node, exp.Literal):
        return node.this if node.is_string else _num(node.this)
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if isinstance(node, exp.Null):
        return None
    if isinstance(node, exp.Cast):
        # A date or time constant typed by the planner (its text was validated at compile time).
        return parse_temporal(str(node.this.this), _CAST_KINDS[node.to.this])
    if isinstance(node, exp.And):
        a, b = _eval(node.this, row), _eval(node.expression, row)
        if a is False or b is False:
            return False
        return None if a is None or b is None else True
    if isinstance(node, exp.Or):
        a, b = _eval(node.this, row), _eval(node.expression, row)
        if a is True or b is True:
            return True
        return None if a is None or b is None else False
    if isinstance(node, exp.Not):
        a = _eval(node.this, row)
        return None if a is None else not a
    compare = _COMPARE.get(type(node))
    if compare is not None:
        return compare(_eval(node.this, row), _eval(node.expression, row))
    if isinstance(node, exp.Is):
        a = _eval(node.this, row)
        target = node.expression
        return a is None if isinstance(target, exp.Null) else a is bool(target.this)
    if isinstance(node, exp.Between):
        a, lo, hi = (_eval(node.args[k], row) for k in ("this", "low", "high"))
        if a is None or lo is None or hi is None:
            return None
        return bool(lo <= a <= hi)
    if isinstance(node, exp.In):
        a = _eval(node.this, row)
        items = [_eval(x, row) for x in node.expressions]
        if a is None:
            return None
        if a in [x for x in items if x is not None]:
            return True
        return None if None in items else False
    if isinstance(node, exp.Like | exp.ILike):
        return _like(_eval(node.this, row), str(node.expression.this), isinstance(node, exp.ILike))
    if isinstance(node, exp.Neg):
        a = _eval(node.this, row)
        return None if a is None else -a
    if isinstance(node, exp.Abs):
        a = _eval(node.this, row)
        return None if a is None else abs(a)
    if isinstance(node, exp.Add | exp.Sub | exp.Mul | exp.Div):
        return _arith(node, _eval(node.this, row), _eval(node.expression, row))
    raise InvalidInput(f"cannot evaluate {node.key} in HAVING", field="sql")


def _like(value: Any, pattern: str, fold: bool) -> bool | None:
    if value is None:
        return None
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    flags = re.IGNORECASE if fold else 0
    return re.fullmatch(regex, str(value), flags | re.DOTALL) is not None
