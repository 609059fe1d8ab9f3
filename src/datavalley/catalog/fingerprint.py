"""Content fingerprint of a tabular data source: the ``dvfp1`` wire format.

Certificates carry this value, so the algorithm below is normative. It is computed inside DuckDB in one
scan; :func:`reference_fingerprint` is a slow pure-Python implementation of the same definition, used by
the tests and usable by any verifier without DuckDB.

Algorithm ``dvfp1``
-------------------
1. **Columns** are taken in ascending order of their names' UTF-8 bytes. Column *order* in the file is
   therefore irrelevant (a table is a set of named columns); renaming a column, or swapping the values of
   two columns, changes the fingerprint.
2. **Cells** are replaced by their canonical text (:func:`datavalley.catalog.schema.canonical_text_sql`):
   integers in base 10; decimals and floats in shortest base-10 form without trailing zeros (``12.50``,
   ``12.5`` and the DOUBLE ``12.5`` agree, as do ``100``, ``100.0`` and ``100.00``); dates ``YYYY-MM-DD``;
   timestamps ``YYYY-MM-DD HH:MM:SS[.ffffff]`` in microseconds (timestamptz in UTC with ``+00``);
   booleans ``true``/``false``; binary as lower-case hex; text unchanged. NULL stays NULL.
   Canonical *types* are deliberately not hashed: CSV and JSON lines do not carry types and type
   inference differs between readers (an 18-digit ID column is VARCHAR in Parquet but BIGINT when read
   back from CSV), while the value texts agree. The schema is reported next to the fingerprint instead.
3. **Cell hash** ``H(text)`` (64-bit, all arithmetic modulo 2**64), with ``b`` the UTF-8 bytes, ``n``
   their length::

       h = 0xe17a1465 XOR (n * 0xc6a4a7935bd1e995)
       for each 8-byte block of b (the last one zero-padded), read little-endian as x:
           h = (h XOR x) * 0xd6e8feb86659fd93
       H = M(h), where M(x) = x ^= x >> 32; x *= 0xd6e8feb86659fd93; x ^= x >> 32;
                            x *= 0xd6e8feb86659fd93; x ^= x >> 32

   and ``H(NULL) = 0xbf58476d1ce4e5b9``. (This equals DuckDB's ``hash(VARCHAR)``.)
4. **Row hash** ``R = C(...C(C(M(H(t1)), M(H(t2))), M(H(t3)))..., M(H(tk)))`` with
   ``C(a, b) = ((a XOR (a >> 32)) * 0xd6e8feb86659fd93) XOR b``. (DuckDB's multi-argument ``hash``
   over the UBIGINT cell hashes; the cell hashes are computed once and also feed the per-column
   distinct-count estimates of the profile, which is why they are hashed again rather than combined
   directly.)
5. **Multiset sum** ``S`` = the exact integer sum of ``R`` over all rows. A sum (not XOR) so that
   duplicated rows count; no ordering, so the row order of the file is irrelevant.
6. The fingerprint is ``"dvfp1:" + hex(SHA-256(D))`` where ``D`` is the UTF-8 encoding of::

       "dvfp1\\n" + for each column (step 1 order): str(len(name_utf8)) + ":" + name + "\\n"
                 + "rows:" + str(row_count) + "\\n" + "sum:" + str(S) + "\\n"

Properties: any changed, added or removed row changes it (up to 64-bit collisions of row hashes); the
same rows re-encoded as CSV, Parquet or JSON lines give the same value. It detects accidental and
ordinary changes; the row hash is not cryptographic, so it is no defence against someone who crafts
rows to collide — a certificate that must resist that should also carry a SHA-256 of the file bytes.

Because steps 3-4 rely on DuckDB's ``hash``, :func:`check_duckdb_hash` verifies the installed DuckDB
against the reference on first use and refuses to produce a fingerprint if a DuckDB upgrade changed it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import duckdb

from datavalley.catalog._sql import ScanPlan, quote_literal
from datavalley.catalog.schema import Schema, canonical_text_sql
from datavalley.catalog.sources import SourceConnection

__all__ = [
    "DVFP_VERSION",
    "NULL_HASH",
    "Fingerprint",
    "FingerprintPlan",
    "cell_hash",
    "check_duckdb_hash",
    "combine_hash",
    "fingerprint",
    "fingerprint_digest",
    "reference_fingerprint",
    "reference_row_hash",
    "row_hash_sql",
    "sorted_names",
]

DVFP_VERSION = "dvfp1"
NULL_HASH = 0xBF58476D1CE4E5B9
_MASK = (1 << 64) - 1
_M1 = 0xD6E8FEB86659FD93
_SEED = 0xE17A1465
_LEN_MUL = 0xC6A4A7935BD1E995


def _mix(x: int) -> int:
    x ^= x >> 32
    x = (x * _M1) & _MASK
    x ^= x >> 32
    x = (x * _M1) & _MASK
    x ^= x >> 32
    return x


def cell_hash(text: str | None) -> int:
    """Step 3 of ``dvfp1``: the 64-bit hash of one canonical cell text (``None`` for NULL)."""
    if text is None:
        return NULL_HASH
    data = text.encode("utf-8")
    h = _SEED ^ ((len(data) * _LEN_MUL) & _MASK)
    for i in range(0, len(data), 8):
        block = int.from_bytes(data[i : i + 8].ljust(8, b"\0"), "little")
        h = ((h ^ block) * _M1) & _MASK
    return _mix(h)


def combine_hash(a: int, b: int) -> int:
    """Step 4 of ``dvfp1``: fold the next cell hash ``b`` into the running row hash ``a``."""
    a ^= a >> 32
    return ((a * _M1) & _MASK) ^ b


def sorted_names(names: Iterable[str]) -> list[str]:
    """Column names in ``dvfp1`` order (ascending UTF-8 bytes)."""
    return sorted(names, key=lambda n: n.encode("utf-8"))


def fingerprint_digest(names: Iterable[str], row_count: int, hash_sum: int) -> str:
    """Step 6 of ``dvfp1``: the final ``dvfp1:...`` string from the column names, row count and sum."""
    parts = [f"{DVFP_VERSION}\n"]
    for name in sorted_names(names):
        parts.append(f"{len(name.encode('utf-8'))}:{name}\n")
    parts.append(f"rows:{row_count}\nsum:{hash_sum}\n")
    return f"{DVFP_VERSION}:" + hashlib.sha256("".join(parts).encode("utf-8")).hexdigest()


def reference_fingerprint(names: Sequence[str], rows: Iterable[Sequence[str | None]]) -> str:
    """Pure-Python ``dvfp1`` over rows of canonical cell texts given in the order of ``names``.

    Slow (one Python call per cell): meant for verification and tests, not for data of real size.
    """
    order = [names.index(n) for n in sorted_names(names)]
    total = 0
    count = 0
    for row in rows:
        total += reference_row_hash([row[i] for i in order])
        count += 1
    return fingerprint_digest(names, count, total)


def reference_row_hash(texts: Sequence[str | None]) -> int:
    """Step 4 of ``dvfp1`` for the canonical texts of one row, already in column-name order."""
    h = _mix(cell_hash(texts[0]))
    for text in texts[1:]:
        h = combine_hash(h, _mix(cell_hash(text)))
    return h


_CHECKED: set[str] = set()
_CHECK_ROWS: tuple[tuple[str | None, ...], ...] = (
    ("", None, "a"),
    ("12345678", "123456789012", "1234567890123"),
    ("中文姓名", "110101199003074514", None),
    (None, None, "x" * 41),
)


def check_duckdb_hash(con: duckdb.DuckDBPyConnection) -> None:
    """Verify that this DuckDB's ``hash()`` matches the ``dvfp1`` reference (checked once per version).

    Raises:
        RuntimeError: the installed DuckDB hashes differently; its fingerprints would not be ``dvfp1``.
    """
    version = duckdb.__version__
    if version in _CHECKED:
        return
    for row in _CHECK_ROWS:
        cells = ", ".join(
            "hash(NULL::VARCHAR)" if v is None else f"hash({quote_literal(v)}::VARCHAR)" for v in row
        )
        got = con.execute(f"SELECT hash({cells})").fetchall()[0][0]
        expected = reference_row_hash(row)
        if int(got) != expected:
            raise RuntimeError(
                f"DuckDB {version} hash() differs from the {DVFP_VERSION} reference "
                f"(row {row!r}: {got} != {expected}); fingerprints would not be comparable"
            )
    _CHECKED.add(version)


def row_hash_sql(schema: Schema) -> str:
    """SQL expression for the ``dvfp1`` row hash (steps 1-4) over a relation with ``schema``."""
    by_name = {c.name: c for c in schema.columns}
    cells = [f"hash({canonical_text_sql(by_name[n])})" for n in sorted_names(by_name)]
    return f"hash({', '.join(cells)})"


@dataclass(frozen=True)
class Fingerprint:
    """A ``dvfp1`` fingerprint with the schema and row count it covers."""

    value: str
    schema: Schema
    row_count: int


class FingerprintPlan:
    """Registers the fingerprint's helper columns and aggregates in a shared :class:`ScanPlan`.

    ``cell_hashes[name]`` is the level-1 helper column holding ``H(canonical text)`` of each column and
    ``row_hash`` the level-2 row hash; other analysers reuse both.
    """

    def __init__(self, schema: Schema, plan: ScanPlan) -> None:
        self.schema = schema
        self.cell_hashes = {c.name: plan.project(1, f"hash({canonical_text_sql(c)})") for c in schema.columns}
        ordered = [self.cell_hashes[n] for n in sorted_names(self.cell_hashes)]
        self.row_hash = plan.project(2, f"hash({', '.join(ordered)})")
        self._count = plan.add("count(*)")
        self._sum = plan.add(f"sum({self.row_hash})")

    def finish(self, plan: ScanPlan) -> Fingerprint:
        """Build the fingerprint from the executed plan."""
        rows = int(plan[self._count])
        total = int(plan[self._sum] or 0)
        return Fingerprint(fingerprint_digest(self.schema.names, rows, total), self.schema, rows)


def fingerprint(conn: SourceConnection) -> Fingerprint:
    """Compute the ``dvfp1`` fingerprint, schema and row count of an opened source in one scan.

    Raises:
        SourceError: the source cannot be read.
        RuntimeError: the installed DuckDB's hash differs from ``dvfp1``.
    """
    check_duckdb_hash(conn.connection)
    plan = ScanPlan()
    fp = FingerprintPlan(conn.schema, plan)
    conn.run_plan(plan)
    return fp.finish(plan)
