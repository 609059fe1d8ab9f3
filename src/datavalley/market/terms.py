"""Product terms: their JSON Schema (published in the OpenAPI), a commented example per product kind, and
the checks of terms against the registered schemas of the product's resources.

``products.parse_terms`` checks the terms on their own; :func:`check_against_resources` checks them
against the data they will run on, at creation, so a product that cannot work is never listed: the privacy
unit and PSI ID columns must exist, PSI aggregate columns must be integer columns, and an aggregate-only
PSI product must not sell more sessions than its ε budget pays for.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from datavalley.errors import InvalidInput
from datavalley.market.model import ProductKind

_STRINGS = {"type": "array", "items": {"type": "string", "minLength": 1}}

#: JSON Schema (2020-12) of ``terms`` in ``POST /v1/products``. The kind-specific rules (which blocks are
#: required for which kind) are in the descriptions and enforced by the server.
TERMS_SCHEMA: dict[str, Any] = {
    "title": "ProductTerms",
    "description": "The policy template of a product (docs/PROTOCOL.md, 'Product terms'). "
    "`datavalley products terms-template --kind KIND` prints a commented example.",
    "type": "object",
    "additionalProperties": False,
    "required": ["purposes"],
    "properties": {
        "purposes": {**_STRINGS, "minItems": 1, "description": "Purposes a contract may name."},
        "regions": {**_STRINGS, "description": 'Where results may be used (default ["CN"]).'},
        "max_uses": {"type": "integer", "minimum": 1, "description": "Most uses a contract may buy."},
        "valid_days": {"type": "integer", "minimum": 1, "description": "Longest contract term (days)."},
        "tables": {
            "type": "object",
            "description": "SQL table name -> resource ID (private analytics; required with >1 resource).",
            "additionalProperties": {"type": "string"},
        },
        "privacy": {
            "type": "object",
            "description": "private_analytics: {epsilon, min_group_size, privacy_unit?, rules?}; "
            "set_intersection with aggregate mode: {epsilon, epsilon_per_session?}.",
            "properties": {
                "epsilon": {"type": "number", "exclusiveMinimum": 0, "maximum": 100},
                "epsilon_per_session": {"type": "number", "exclusiveMinimum": 0},
                "min_group_size": {"type": "integer", "minimum": 2},
                "privacy_unit": {"type": "string", "description": "A column of the resource."},
                "rules": {"type": "object", "description": "Contribution bounds (docs/PRIVATE_SQL.md)."},
            },
            "additionalProperties": False,
        },
        "psi_modes": {
            "type": "array",
            "items": {"enum": ["cardinality", "intersection", "aggregate"]},
            "description": 'set_intersection: what a session may reveal (default ["cardinality"]).',
        },
        "psi": {
            "type": "object",
            "description": "set_intersection: the ID column, how IDs are normalised, and (aggregate) the "
            "integer columns that may be summed with their [low, high] clamp.",
            "required": ["id_column", "id_kind"],
            "properties": {
                "id_column": {"type": "string"},
                "id_kind": {"enum": ["phone", "cn_ric", "text"]},
                "engine": {
                    "enum": ["datavalley", "secretflow"],
                    "description": "Who compares the sets (docs/PSI.md §9); secretflow: intersection only.",
                },
                "protocol": {"enum": ["RR22", "KKRT", "ECDH"], "description": "engine secretflow only."},
                "aggregates": {
                    "type": "object",
                    "description": "name -> {function: sum|count|min|max, column}: per-ID pre-aggregation "
                    "(bounds in columns.<name>).",
                },
                "columns": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "array",
                        "items": {"type": "integer"},
                        "minItems": 2,
                        "maxItems": 2,
                    },
                },
            },
            "additionalProperties": False,
        },
        "max_quantity": {
            "type": "integer",
            "minimum": 1,
            "description": "file_delivery: most rows; compute_pool: most core-seconds.",
        },
        "engine": {"enum": ["duckdb", "spark"], "description": "private_analytics: the node's engine."},
        "delivery": {
            "type": "object",
            "description": "file_delivery: columns, PI treatment, row filters, caps (docs/DELIVERY.md).",
        },
        "pool_id": {"type": "string", "description": "compute_pool: the registered pool it sells."},
    },
}

_TEMPLATES: dict[ProductKind, tuple[str, dict[str, Any]]] = {
    ProductKind.PRIVATE_ANALYTICS: (
        "Private analytics: consumers run aggregate SQL on your node; answers are noised (ε) and small\n"
        "groups suppressed. Column names must exist in the registered resource.",
        {
            "purposes": ["insurance-pricing"],
            "regions": ["CN"],
            "max_uses": 6,
            "valid_days": 180,
            "tables": {"trips": "r_REPLACE_WITH_YOUR_RESOURCE_ID"},
            "privacy": {
                "epsilon": 3.0,
                "min_group_size": 10,
                "privacy_unit": "driver_id",
                "rules": {
                    "max_rows_per_unit": 10,
                    "max_groups_per_unit": 3,
                    "clamps": {"fare_cny": [0, 4000]},
                },
            },
        },
    ),
    ProductKind.SET_INTERSECTION: (
        "Private set intersection: the consumer matches its IDs against your ID column; aggregate mode\n"
        "sums integer columns over the matches, noised, each session spending epsilon_per_session.",
        {
            "purposes": ["credit-risk"],
            "max_uses": 2,
            "psi_modes": ["cardinality", "aggregate"],
            "psi": {"id_column": "driver_phone", "id_kind": "phone", "columns": {"fare_cny": [0, 4000]}},
            "privacy": {"epsilon": 2.0, "epsilon_per_session": 1.0},
        },
    ),
    ProductKind.FILE_DELIVERY: (
        "File delivery: a licensed extract, metered by rows.",
        {"purposes": ["research"], "max_uses": 1, "valid_days": 30, "max_quantity": 100000},
    ),
    ProductKind.COMPUTE_POOL: (
        "Compute pool: core-hours on a registered pool (`datavalley pools register` creates this product).",
        {"purposes": ["compute"], "regions": ["CN"], "max_quantity": 36000, "pool_id": "pool_…"},
    ),
}

_NOTES = {
    "purposes": "purposes a contract may name (it must pick one)",
    "regions": "where results may be used",
    "max_uses": "most uses (queries, sessions, deliveries) one contract may buy",
    "valid_days": "longest contract term in days",
    "tables": "SQL table name -> resource ID the consumer's queries use",
    "privacy": "ε budget, smallest released group, the privacy unit column; rules bound each unit's "
    "contribution (rows, groups) and clamp summed columns [low, high] (docs/PRIVATE_SQL.md)",
    "psi_modes": "what a PSI session may reveal: cardinality, intersection, aggregate",
    "psi": "the ID column, how IDs are normalised (phone, cn_ric, text), summable integer columns",
    "max_quantity": "most rows delivered (file delivery) or core-seconds used (compute pool) per contract",
    "pool_id": "the compute pool this product sells (from `datavalley pools register`)",
}


def template(kind: str) -> dict[str, Any]:
    """A valid example of ``terms`` for ``kind`` (resource IDs are placeholders)."""
    return dict(_TEMPLATES[_kind(kind)][1])


def commented_template(kind: str) -> str:
    """:func:`template` as JSON with ``//`` comment lines (``--terms @file`` accepts them)."""
    about, example = _TEMPLATES[_kind(kind)]
    lines = [
        f"// Terms of a {_kind(kind).value} product. {line}" if i == 0 else f"// {line}"
        for i, line in enumerate(about.splitlines())
    ]
    lines.append("{")
    items = list(example.items())
    for i, (key, value) in enumerate(items):
        lines.append(f"  // {_NOTES[key]}")
        comma = "," if i < len(items) - 1 else ""
        lines.append(f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def strip_comments(text: str) -> str:
    """Drop whole-line ``//`` comments (what :func:`commented_template` writes)."""
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//"))


def _kind(kind: str) -> ProductKind:
    try:
        return ProductKind(kind)
    except ValueError:
        raise InvalidInput(
            f"kind must be one of {', '.join(k.value for k in ProductKind)}", field="kind"
        ) from None


def _columns(schema: Sequence[Sequence[str]]) -> dict[str, str]:
    return {str(name): str(typ) for name, typ in schema}


def check_against_resources(kind: ProductKind, terms: dict[str, Any], resources: Sequence[Any]) -> None:
    """Check parsed ``terms`` against the registered schemas of ``resources`` (rows with ``id`` and
    ``schema``); raise :class:`InvalidInput` naming the field and the fix."""
    from datavalley.catalog.schema import CanonicalType, canonical_type

    schemas = {r.id: _columns(r.schema) for r in resources}
    everywhere = {name for cols in schemas.values() for name in cols}
    privacy = terms.get("privacy") or {}
    unit = privacy.get("privacy_unit")
    if kind == ProductKind.PRIVATE_ANALYTICS and unit and unit not in everywhere:
        raise InvalidInput(
            f"terms.privacy.privacy_unit {unit!r} is not a column of the product's data "
            f"(columns: {', '.join(sorted(everywhere))})",
            field="terms.privacy.privacy_unit",
        )
    if kind != ProductKind.SET_INTERSECTION:
        return
    psi = terms["psi"]
    for rid, cols in schemas.items():
        if psi["id_column"] not in cols:
            raise InvalidInput(
                f"terms.psi.id_column {psi['id_column']!r} is not a column of resource {rid} "
                f"(columns: {', '.join(sorted(cols))})",
                field="terms.psi.id_column",
            )
        for name in psi.get("columns", {}):
            if name not in cols:
                raise InvalidInput(
                    f"terms.psi.columns: {name!r} is not a column of resource {rid}",
                    field="terms.psi.columns",
                )
            typ = cols[name].lower()
            family = CanonicalType(typ) if typ in set(CanonicalType) else canonical_type(cols[name])
            if family != CanonicalType.INTEGER:
                raise InvalidInput(
                    f"terms.psi.columns: {name!r} is {cols[name]}; aggregate PSI sums integer columns only "
                    "(register an integer column, e.g. amounts in fen)",
                    field="terms.psi.columns",
                )
    modes = terms.get("psi_modes", [])
    max_uses = terms.get("max_uses")
    if modes == ["aggregate"] and max_uses is not None:
        per, budget = privacy["epsilon_per_session"], privacy["epsilon"]
        affordable = int(budget / per + 1e-9)
        if max_uses > affordable:
            raise InvalidInput(
                f"terms sell up to {max_uses} aggregate sessions but ε {budget} pays for {affordable} at "
                f"{per} each: lower max_uses to {affordable} or raise privacy.epsilon",
                field="terms.max_uses",
            )
