"""Column schema with canonical type families, and the canonical text form of every value.

DuckDB reports physical types that depend on the file format (a CSV integer is BIGINT, the same column in
Parquet may be INTEGER or DECIMAL). The catalog reasons in coarse *canonical families* instead, and the
fingerprint hashes a *canonical text* of each value so that re-encoding a table does not change it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

import duckdb

from datavalley.catalog._sql import quote_ident

__all__ = ["CanonicalType", "Column", "Schema", "canonical_text_sql", "canonical_type", "read_schema"]


class CanonicalType(StrEnum):
    """Coarse type families, stable across CSV, Parquet, JSON lines and SQL databases."""

    INTEGER = "integer"
    DECIMAL = "decimal"
    FLOAT = "float"
    BOOLEAN = "boolean"
    TEXT = "text"
    DATE = "date"
    TIMESTAMP = "timestamp"
    TIMESTAMPTZ = "timestamptz"
    TIME = "time"
    BINARY = "binary"
    UUID = "uuid"
    INTERVAL = "interval"
    NESTED = "nested"
    OTHER = "other"

    @property
    def is_numeric(self) -> bool:
        return self in (CanonicalType.INTEGER, CanonicalType.DECIMAL, CanonicalType.FLOAT)

    @property
    def is_temporal(self) -> bool:
        return self in (
            CanonicalType.DATE,
            CanonicalType.TIMESTAMP,
            CanonicalType.TIMESTAMPTZ,
            CanonicalType.TIME,
        )


_INTEGER_TYPES = frozenset(
    {
        "TINYINT",
        "SMALLINT",
        "INTEGER",
        "BIGINT",
        "HUGEINT",
        "UTINYINT",
        "USMALLINT",
        "UINTEGER",
        "UBIGINT",
        "UHUGEINT",
        "VARINT",
        "BIGNUM",
    }
)
_TIMESTAMP_TYPES = frozenset({"TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS", "DATETIME"})
_NESTED = re.compile(r"^(STRUCT|MAP|UNION)\(|\[\d*\]$")


def canonical_type(duckdb_type: str) -> CanonicalType:
    """Map a DuckDB type name (as printed by DESCRIBE) to its canonical family."""
    t = duckdb_type.strip().upper()
    if _NESTED.search(t):
        return CanonicalType.NESTED
    if t in _INTEGER_TYPES:
        return CanonicalType.INTEGER
    if t.startswith("DECIMAL") or t.startswith("NUMERIC"):
        return CanonicalType.DECIMAL
    if t in ("FLOAT", "DOUBLE", "REAL", "FLOAT4", "FLOAT8"):
        return CanonicalType.FLOAT
    if t == "BOOLEAN":
        return CanonicalType.BOOLEAN
    if t in ("VARCHAR", "JSON") or t.startswith("ENUM(") or t.startswith("VARCHAR("):
        return CanonicalType.TEXT
    if t == "DATE":
        return CanonicalType.DATE
    if t in _TIMESTAMP_TYPES:
        return CanonicalType.TIMESTAMP
    if t in ("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ"):
        return CanonicalType.TIMESTAMPTZ
    if t.startswith("TIME"):
        return CanonicalType.TIME
    if t in ("BLOB", "BIT", "BYTEA"):
        return CanonicalType.BINARY
    if t == "UUID":
        return CanonicalType.UUID
    if t == "INTERVAL":
        return CanonicalType.INTERVAL
    return CanonicalType.OTHER


@dataclass(frozen=True)
class Column:
    """One column: its name, canonical family and the DuckDB type it was read as."""

    name: str
    type: CanonicalType
    source_type: str


@dataclass(frozen=True)
class Schema:
    """Columns in source order."""

    columns: tuple[Column, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        """Return the column called ``name``; raises KeyError if there is none."""
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


def read_schema(con: duckdb.DuckDBPyConnection, relation: str) -> Schema:
    """Describe ``relation`` in ``con`` as a :class:`Schema`."""
    rows = con.execute(f"DESCRIBE {relation}").fetchall()
    return Schema(tuple(Column(str(r[0]), canonical_type(str(r[1])), str(r[1])) for r in rows))


def _float_text(x: str) -> str:
    # Integral doubles print as integers so that 100.0 (a CSV-inferred DOUBLE), 100 (INTEGER) and
    # 100.00 (DECIMAL) agree; everything else uses DuckDB's shortest round-trip rendering, which is
    # the same as Python's repr. Numeric tests only: no string post-processing on the hot path.
    return (
        f"CASE WHEN isfinite({x}) AND {x} = trunc({x}) AND abs({x}) < 1e16 "
        f"THEN CAST(CAST({x} AS BIGINT) AS VARCHAR) ELSE CAST({x} AS VARCHAR) END"
    )


#: DECIMALs with at most this many digits are canonicalised through DOUBLE, which represents every
#: such value exactly enough for its shortest repr to be the decimal itself (15 <= DBL_DIG).
DECIMAL_VIA_DOUBLE_DIGITS = 15


def canonical_text_sql(column: Column) -> str:
    """SQL expression giving the canonical text of ``column`` (NULL stays NULL).

    Rules (part of the ``dvfp1`` wire format, see :mod:`datavalley.catalog.fingerprint`):

    * integer: base 10, no leading zeros, ``-`` sign;
    * float, and decimal with precision <= 15: if finite, integral and below 1e16 in magnitude, the
      integer in base 10; otherwise the shortest round-trip rendering in Python ``repr`` style
      (``0.1``, ``12.5``, ``1e+16``, ``2.5e-05``, ``nan``, ``inf``, ``-inf``). A FLOAT (32-bit) uses
      the shortest rendering of the 32-bit value, so 0.1f gives ``0.1``;
    * decimal with precision > 15: exact base-10 text with trailing fractional zeros and point removed;
    * boolean: ``true``/``false``; date: ``YYYY-MM-DD``;
    * timestamp (any precision): microseconds, ``YYYY-MM-DD HH:MM:SS[.ffffff]`` with the fraction's
      trailing zeros removed; timestamptz: the same in UTC followed by ``+00``; time: ``HH:MM:SS[.ffffff]``;
    * binary: lower-case hex; text: the string itself; anything else: DuckDB's text rendering.
    """
    ref = quote_ident(column.name)
    t = column.type
    if t is CanonicalType.TEXT:
        return ref if column.source_type.upper() == "VARCHAR" else f"CAST({ref} AS VARCHAR)"
    if t is CanonicalType.DECIMAL:
        m = re.search(r"\(\s*(\d+)\s*,\s*(\d+)\s*\)", column.source_type)
        precision, scale = (int(m.group(1)), int(m.group(2))) if m else (18, 3)
        if precision <= DECIMAL_VIA_DOUBLE_DIGITS:
            return _float_text(f"CAST({ref} AS DOUBLE)")
        text = f"CAST({ref} AS VARCHAR)"
        if scale == 0:
            return f"CASE WHEN {text} = '-0' THEN '0' ELSE {text} END"
        stripped = f"rtrim(rtrim({text}, '0'), '.')"
        return f"CASE WHEN {stripped} = '-0' THEN '0' ELSE {stripped} END"
    if t is CanonicalType.FLOAT:
        if column.source_type.upper() in ("FLOAT", "REAL", "FLOAT4"):
            # Shortest rendering of the 32-bit value, then parsed as DOUBLE: 0.1f -> 0.1.
            return _float_text(f"CAST(CAST({ref} AS VARCHAR) AS DOUBLE)")
        return _float_text(ref)
    if t is CanonicalType.TIMESTAMP and column.source_type.upper() not in ("TIMESTAMP", "DATETIME"):
        return f"CAST(CAST({ref} AS TIMESTAMP) AS VARCHAR)"
    if t is CanonicalType.BINARY and column.source_type.upper() != "BIT":
        return f"lower(hex({ref}))"
    return f"CAST({ref} AS VARCHAR)"
