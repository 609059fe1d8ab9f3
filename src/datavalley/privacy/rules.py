"""What a product exposes to private SQL and the privacy rules that govern it (docs/PRIVATE_SQL.md).

A provider declares a :class:`ProductSchema` (the tables and their columns) and :class:`PrivacyRules`
for the product; a contract may only narrow those rules (:meth:`PrivacyRules.narrow`). Both are plain
frozen values: the compiler reads them, the digest of a compiled query covers them, nothing here touches
data.

Column references inside the rules (clamps, public keys, join keys) are written ``"table.column"``, or a
bare ``"column"`` that then applies to that column in every table that has it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from typing import Any, Literal

from datavalley.errors import InvalidInput, PolicyViolation

__all__ = [
    "NUMERIC_TYPES",
    "Mechanism",
    "PrivacyRules",
    "ProductSchema",
    "TableSpec",
    "lookup",
]

Mechanism = Literal["laplace", "gaussian"]

#: Logical column types (the catalog's canonical families) that SUM and AVG accept.
NUMERIC_TYPES = frozenset({"integer", "decimal", "float"})

#: Values a public key set may hold (JSON-able, comparable with what both engines return).
KeyValue = str | int | float | bool | date | Decimal | None


def lookup(mapping: Mapping[str, Any], table: str, column: str) -> Any:
    """The rule for ``table.column``: the qualified entry wins over a bare ``column`` entry."""
    qualified = f"{table}.{column}"
    if qualified in mapping:
        return mapping[qualified]
    return mapping.get(column)


@dataclass(frozen=True)
class TableSpec:
    """One table of a product: its name and ``column -> logical type`` (catalog canonical families:
    ``integer``, ``decimal``, ``float``, ``text``, ``boolean``, ``date``, ``timestamp``, ...)."""

    name: str
    columns: Mapping[str, str]

    def __post_init__(self) -> None:
        if not self.name or not self.columns:
            raise InvalidInput(
                f"table spec {self.name!r} needs a name and at least one column", field="tables"
            )
        if self.name.lower().startswith("dv_"):
            # The rewrite names its own relations dv__rows, dv__pairs...; engines name views dv_t0...
            raise InvalidInput(f"table name {self.name!r} is reserved (prefix 'dv_')", field="tables")


@dataclass(frozen=True)
class ProductSchema:
    """The tables of one data product, by name: the only relations a private query may read."""

    tables: Mapping[str, TableSpec]

    @classmethod
    def of(cls, *tables: TableSpec) -> ProductSchema:
        """Build a schema from table specs (keyed by their names)."""
        return cls({t.name: t for t in tables})

    def column_type(self, ref: str) -> list[tuple[str, str, str]]:
        """Every ``(table, column, type)`` a rule reference (``table.column`` or ``column``) names."""
        table, _, column = ref.rpartition(".")
        found = []
        for spec in self.tables.values():
            if table and spec.name != table:
                continue
            if column in spec.columns:
                found.append((spec.name, column, spec.columns[column]))
        return found


def _interval(value: Any, name: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise InvalidInput(
            f"clamp for {name!r} must be a pair (low, high), got {value!r}", field="clamps"
        ) from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise InvalidInput(
            f"clamp for {name!r} must be finite with low <= high, got ({lo}, {hi})", field="clamps"
        )
    return lo, hi


@dataclass(frozen=True)
class PrivacyRules:
    """The privacy rules of a product, or of one contract after :meth:`narrow`.

    - ``privacy_unit``: column naming the person or entity protected (``None``: each row of a private
      table is its own unit). Every private table a query reads must have this column.
    - ``min_group_size`` (k): groups with fewer than k units are suppressed. With DP the noisy unit count
      is compared, otherwise the exact one (docs/PRIVATE_SQL.md, "Suppression").
    - ``max_rows_per_unit`` (m) and ``max_groups_per_unit`` (g): the contribution bound; a unit adds at most
      m rows to each of at most g groups. Irrelevant (1 and 1) when the unit is the row.
    - ``clamps``: ``column -> (low, high)``; SUM and AVG are only allowed on clamped columns.
    - ``public_keys``: ``column -> values``; a GROUP BY on public columns only releases exactly the
      declared key combinations (missing ones filled with zero before noise), without thresholding.
    - ``mechanism``: ``laplace`` (pure ε) or ``gaussian`` (ρ-zCDP); ``delta``: the δ spent on releasing
      non-public group keys by thresholding (0 forbids such queries).
    - ``join_keys``: pairs ``("a.x", "b.y")`` that queries may join on.
    - ``public_tables``: tables whose rows are not personal data (lookup tables); all others are private.
    - ``require_dp``: False allows exact answers protected by k suppression only.
    """

    privacy_unit: str | None = None
    min_group_size: int = 10
    max_rows_per_unit: int = 1
    max_groups_per_unit: int = 1
    clamps: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    public_keys: Mapping[str, tuple[KeyValue, ...]] = field(default_factory=dict)
    mechanism: Mechanism = "laplace"
    delta: float = 1e-6
    join_keys: tuple[tuple[str, str], ...] = ()
    public_tables: frozenset[str] = frozenset()
    require_dp: bool = True

    def __post_init__(self) -> None:
        for name in ("min_group_size", "max_rows_per_unit", "max_groups_per_unit"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInput(f"privacy rule {name} must be an integer >= 1, got {value!r}", field=name)
        if self.mechanism not in ("laplace", "gaussian"):
            raise InvalidInput(
                f"privacy rule mechanism must be 'laplace' or 'gaussian', got {self.mechanism!r}",
                field="mechanism",
            )
        if not (isinstance(self.delta, float | int) and 0.0 <= self.delta < 1.0):
            raise InvalidInput(f"privacy rule delta must be in [0, 1), got {self.delta!r}", field="delta")
        # Normalise containers so equal rules compare (and digest) equal however they were spelled.
        object.__setattr__(self, "clamps", {k: _interval(v, k) for k, v in sorted(self.clamps.items())})
        object.__setattr__(self, "public_keys", {k: tuple(v) for k, v in sorted(self.public_keys.items())})
        for name, values in self.public_keys.items():
            if not values:
                raise InvalidInput(f"public key set for {name!r} is empty", field="public_keys")
            if len(set(values)) != len(values):
                raise InvalidInput(f"public key set for {name!r} has duplicates", field="public_keys")
        pairs = []
        for pair in self.join_keys:
            a, b = pair
            if "." not in a or "." not in b:
                raise InvalidInput(f"join key {pair!r} must be two 'table.column' names", field="join_keys")
            pairs.append((a, b) if a <= b else (b, a))
        object.__setattr__(self, "join_keys", tuple(sorted(set(pairs))))
        object.__setattr__(self, "public_tables", frozenset(self.public_tables))
        object.__setattr__(self, "delta", float(self.delta))

    def allows_join(self, left: str, right: str) -> bool:
        """Whether ``left = right`` (each ``table.column``) is a declared join key, in either order."""
        pair = (left, right) if left <= right else (right, left)
        return pair in self.join_keys

    def to_json(self) -> dict[str, Any]:
        """A JSON form for digests: floats as ``repr`` strings (canonical JSON refuses floats)."""
        return {
            "privacyUnit": self.privacy_unit,
            "minGroupSize": self.min_group_size,
            "maxRowsPerUnit": self.max_rows_per_unit,
            "maxGroupsPerUnit": self.max_groups_per_unit,
            "clamps": {k: [repr(lo), repr(hi)] for k, (lo, hi) in self.clamps.items()},
            "publicKeys": {k: [_key_json(v) for v in vs] for k, vs in self.public_keys.items()},
            "mechanism": self.mechanism,
            "delta": repr(self.delta),
            "joinKeys": [list(p) for p in self.join_keys],
            "publicTables": sorted(self.public_tables),
            "requireDp": self.require_dp,
        }

    def narrow(
        self,
        *,
        min_group_size: int | None = None,
        max_rows_per_unit: int | None = None,
        max_groups_per_unit: int | None = None,
        clamps: Mapping[str, tuple[float, float]] | None = None,
        public_keys: Mapping[str, tuple[KeyValue, ...]] | None = None,
        delta: float | None = None,
        join_keys: tuple[tuple[str, str], ...] | None = None,
        public_tables: frozenset[str] | None = None,
        require_dp: bool | None = None,
    ) -> PrivacyRules:
        """These rules made stricter by a contract; ``None`` keeps a rule as the product declares it.

        A contract may raise k, lower m, g and δ, shrink clamp ranges to sub-ranges, drop public key
        values and join keys, make public tables private and require DP. It can never change the unit
        or the mechanism.

        Raises:
            PolicyViolation: a change would loosen a rule (the message names the rule and both values).
        """
        changes: dict[str, Any] = {}

        def loosen(name: str, product: Any, contract: Any, why: str) -> PolicyViolation:
            return PolicyViolation(
                f"contract cannot set {name} to {contract!r}: the product declares {product!r} and {why}",
                rule=name,
                product=repr(product),
                contract=repr(contract),
            )

        if min_group_size is not None:
            if min_group_size < self.min_group_size:
                raise loosen("min_group_size", self.min_group_size, min_group_size, "k may only grow")
            changes["min_group_size"] = min_group_size
        for name, value in (
            ("max_rows_per_unit", max_rows_per_unit),
            ("max_groups_per_unit", max_groups_per_unit),
        ):
            if value is not None:
                if value > getattr(self, name):
                    raise loosen(name, getattr(self, name), value, "a contribution bound may only shrink")
                changes[name] = value
        if delta is not None:
            if delta > self.delta:
                raise loosen("delta", self.delta, delta, "delta may only shrink")
            changes["delta"] = delta
        if clamps is not None:
            merged = dict(self.clamps)
            for col, pair in clamps.items():
                lo, hi = _interval(pair, col)
                if col not in self.clamps:
                    raise loosen(f"clamps[{col}]", None, (lo, hi), "only declared clamps can be narrowed")
                plo, phi = self.clamps[col]
                if lo < plo or hi > phi:
                    raise loosen(f"clamps[{col}]", (plo, phi), (lo, hi), "a clamp may only shrink")
                merged[col] = (lo, hi)
            changes["clamps"] = merged
        if public_keys is not None:
            merged_keys = dict(self.public_keys)
            for col, values in public_keys.items():
                declared = self.public_keys.get(col)
                if declared is None or not set(values) <= set(declared):
                    raise loosen(f"public_keys[{col}]", declared, tuple(values), "key sets may only shrink")
                merged_keys[col] = tuple(values)
            changes["public_keys"] = merged_keys
        if join_keys is not None:
            narrowed = PrivacyRules(join_keys=join_keys).join_keys
            extra = set(narrowed) - set(self.join_keys)
            if extra:
                raise loosen("join_keys", self.join_keys, sorted(extra), "only declared joins may be kept")
            changes["join_keys"] = narrowed
        if public_tables is not None:
            if not public_tables <= self.public_tables:
                extra_tables = sorted(public_tables - self.public_tables)
                raise loosen(
                    "public_tables",
                    sorted(self.public_tables),
                    extra_tables,
                    "tables may only become private",
                )
            changes["public_tables"] = public_tables
        if require_dp is not None:
            if self.require_dp and not require_dp:
                raise loosen("require_dp", True, False, "differential privacy cannot be switched off")
            changes["require_dp"] = require_dp
        return replace(self, **changes)


def _key_json(value: KeyValue) -> Any:
    if isinstance(value, float):
        return {"float": repr(value)}
    if isinstance(value, date):
        return {"date": value.isoformat()}
    if isinstance(value, Decimal):
        return {"decimal": str(value)}
    return value
