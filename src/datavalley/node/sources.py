"""Source resolution: the one place where the node turns a registered resource into data it computes on.

Private SQL (:mod:`datavalley.node.query`), PSI (:mod:`datavalley.node.psi`) and delivery all call
:meth:`SourceResolver.snapshot`, so every family the catalog reads (CSV in any detected encoding and
dialect, JSON arrays and lines with nested values flattened, Parquet, Excel, SQLite and PostgreSQL tables
and views — docs/SOURCES.md) serves every use, and the data-version rule is the same for all of them:

1. The registered source is read through the catalog's reader (:func:`datavalley.catalog.sources.connect`,
   the reader that computed the registered fingerprint) and streamed through Arrow into a **snapshot**:
   a Parquet file in ``NODE_HOME/node/snapshots`` (directory 0700, files 0600).
2. The ``dvfp1`` fingerprint of the snapshot itself is computed and compared with the resource's
   registered fingerprint. Only a snapshot whose fingerprint equals the registered one is used; otherwise
   the use is refused (:class:`~datavalley.errors.Conflict`) until the change is registered. Because the
   check is on the very bytes the engines read, a file or table that changes *after* the check cannot
   reach a computation.
3. Engines read the snapshot with their own Parquet scanners: DuckDB's ``read_parquet`` (built in, no
   extension is downloaded — DuckDB's ``sqlite``/``postgres`` scanners are run-time downloads, so
   database tables go through SQLAlchemy → Arrow instead) or Spark's Parquet reader.

A snapshot is re-made only when the source may have changed: for files when size, mtime or inode
change; for SQLite when the database file or its WAL changes; a PostgreSQL table has no cheap change
signal, so it is re-read (one scan) on every use.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datavalley.errors import Conflict, InvalidInput, NotFound
from datavalley.node.registry import Location, NodeRegistry

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from datavalley.catalog.schema import Schema
    from datavalley.catalog.sources import Source
    from datavalley.psi.normalise import IdKind

__all__ = [
    "ENGINES",
    "PSI_FUNCTIONS",
    "AggregatedDataset",
    "PsiAggregate",
    "Snapshot",
    "SourceResolver",
    "choose_engine",
    "psi_aggregates",
    "source_of",
    "spark_session",
]

SNAPSHOT_BATCH_ROWS = 65_536
ENGINES = ("duckdb", "spark")


@dataclass(frozen=True)
class Snapshot:
    """A verified copy of a registered resource's data: Parquet at ``path`` with ``fingerprint``."""

    resource_id: str
    fingerprint: str
    path: Path
    schema: Schema
    row_count: int


def source_of(loc: Location) -> Source:
    """The catalog :class:`Source` for a node registry entry (the options pinned at registration)."""
    from datavalley.catalog.sources import open_source

    if loc.kind == "database":
        return open_source(loc.location, table=loc.table)
    return open_source(loc.location, format=loc.format, options=dict(loc.options) or None)


def _change_key(loc: Location) -> tuple[object, ...] | None:
    """What must stay equal for a snapshot to stay valid; None when nothing cheap can tell."""
    paths: list[str] = []
    if loc.kind == "file":
        paths = [loc.location]
    elif loc.format == "sqlite":
        from datavalley.catalog.sources import sqlite_path

        db = sqlite_path(loc.location)
        paths = [db, db + "-wal"]
    else:
        return None
    key: list[object] = []
    for p in paths:
        try:
            st = os.stat(p)
        except FileNotFoundError:
            key.append((p, None))
            continue
        except OSError:
            return None
        key.append((p, st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(key)


class SourceResolver:
    """Resolves resource IDs held by this node to verified snapshots (thread-safe)."""

    def __init__(self, home: Path, registry: NodeRegistry | None = None) -> None:
        self.registry = registry or NodeRegistry(home)
        self.directory = home / "node" / "snapshots"
        self._known: dict[str, tuple[tuple[object, ...], Snapshot]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def location(self, resource_id: str) -> Location:
        """Where ``resource_id`` lives (raises :class:`Conflict` if this node does not hold it)."""
        try:
            return self.registry.get(resource_id)
        except NotFound:
            raise Conflict(
                f"resource {resource_id} is not held by this node; its data cannot be used here",
                resource_id=resource_id,
            ) from None

    def snapshot(self, resource_id: str, registered_fingerprint: str) -> Snapshot:
        """The verified snapshot of ``resource_id``.

        Raises:
            Conflict: the node does not hold the resource, cannot read it, or its data is not the
                registered version (the message says to register the change first).
        """
        loc = self.location(resource_id)
        with self._lock:
            lock = self._locks.setdefault(resource_id, threading.Lock())
        with lock:
            key = _change_key(loc)
            known = self._known.get(resource_id)
            if key is not None and known is not None and known[0] == key and known[1].path.is_file():
                snap = known[1]
            else:
                snap = self._materialise(resource_id, loc)
                if key is not None:
                    self._known[resource_id] = (key, snap)
        if snap.fingerprint != registered_fingerprint:
            raise Conflict(
                f"the node's copy of resource {resource_id} is not the registered version "
                f"({snap.fingerprint[:20]}… ≠ {registered_fingerprint[:20]}…): register the change first",
                resource_id=resource_id,
            )
        return snap

    def _materialise(self, resource_id: str, loc: Location) -> Snapshot:
        import pyarrow.parquet as pq

        from datavalley.catalog.fingerprint import fingerprint
        from datavalley.catalog.sources import connect, open_source

        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)
        tmp = self.directory / f".{resource_id}-{os.urandom(6).hex()}.parquet"
        try:
            with connect(source_of(loc)) as conn:
                reader = conn.connection.sql(f"SELECT * FROM {conn.view}").to_arrow_reader(
                    SNAPSHOT_BATCH_ROWS
                )
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as fh, pq.ParquetWriter(fh, reader.schema) as writer:
                    for batch in reader:
                        writer.write_batch(batch)
            with connect(open_source(tmp, format="parquet")) as conn:
                fp = fingerprint(conn)
        except Exception as exc:  # any reader failure: the node cannot vouch for this data
            tmp.unlink(missing_ok=True)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise Conflict(
                f"the node cannot read its copy of resource {resource_id}: {first}", resource_id=resource_id
            ) from None
        digest = hashlib.sha256(fp.value.encode()).hexdigest()[:24]
        final = self.directory / f"{resource_id}-{digest}.parquet"
        if final.is_file():
            tmp.unlink()
        else:
            os.replace(tmp, final)
        for old in self.directory.glob(f"{resource_id}-*.parquet"):
            if old != final:
                old.unlink(missing_ok=True)
        return Snapshot(resource_id, fp.value, final, fp.schema, fp.row_count)


# --- engine choice ----------------------------------------------------------------------------------


def choose_engine(node_default: str, product_terms: Mapping[str, Any]) -> str:
    """The engine for a product: its ``terms.engine`` override, else the node's ``node_engine`` setting."""
    chosen = str(product_terms.get("engine") or node_default).lower()
    if chosen not in ENGINES:
        raise InvalidInput(f"unknown engine {chosen!r}; use one of {ENGINES}", field="engine")
    return chosen


_SPARK: list[SparkSession] = []
_SPARK_LOCK = threading.Lock()


def spark_session() -> SparkSession:
    """The node's one local Spark session (started on first use, shared by every Spark engine)."""
    with _SPARK_LOCK:
        if _SPARK:
            return _SPARK[0]
        from pyspark.sql import SparkSession

        session = (
            SparkSession.builder.master("local[2]")
            .appName("datavalley-node")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", "2")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .getOrCreate()
        )
        session.sparkContext.setLogLevel("ERROR")
        _SPARK.append(session)
        return session


# --- PSI: per-ID pre-aggregation --------------------------------------------------------------------

PSI_FUNCTIONS = ("sum", "count", "min", "max")


@dataclass(frozen=True)
class PsiAggregate:
    """One released PSI value: ``function`` over ``column`` for every row of a matched ID.

    ``count`` counts rows (``column`` is None). The per-ID value is clamped to ``[lower, upper]`` before
    encryption (the contribution bound of one ID); the release sums the clamped per-ID values over the
    intersection.
    """

    name: str
    function: str
    column: str | None
    lower: int
    upper: int

    def describe(self) -> str:
        """What the released value is, in words (part of every released PSI aggregate)."""
        what = "COUNT(*)" if self.function == "count" else f"{self.function.upper()}({self.column})"
        return (
            f"sum over the matched IDs of {what} over all of the provider's rows of each ID, "
            f"each ID's value clamped to [{self.lower}, {self.upper}]"
        )


def psi_aggregates(psi_terms: Mapping[str, Any]) -> dict[str, PsiAggregate]:
    """The aggregates a product's ``terms.psi`` allows: ``aggregates`` (name → function, column,
    bounds) and the older ``columns`` (name → bounds, meaning SUM of that column per ID)."""
    columns = psi_terms.get("columns") or {}
    defined = psi_terms.get("aggregates") or {}
    out: dict[str, PsiAggregate] = {}
    for name, (lo, hi) in columns.items():
        spec = defined.get(name) or {"function": "sum", "column": name}
        fn = str(spec["function"])
        out[str(name)] = PsiAggregate(
            str(name), fn, None if fn == "count" else str(spec["column"]), int(lo), int(hi)
        )
    return out


class AggregatedDataset:
    """A :class:`~datavalley.psi.model.PsiDataset` over a snapshot, one record per *normalised* ID.

    Rows are grouped by the ID's normal form (so ``138 0013 8000`` and ``+8613800138000`` are one ID) and
    each requested aggregate is computed over all rows of the ID; IDs that cannot be normalised are
    passed through one per row so the session's normalisation report counts them as invalid.
    """

    def __init__(
        self, snapshot: Snapshot, id_column: str, id_kind: IdKind, aggregates: Mapping[str, PsiAggregate]
    ) -> None:
        from datavalley.catalog.schema import CanonicalType

        self.snapshot = snapshot
        self.id_column = id_column
        self._kind = id_kind
        self.aggregates = dict(aggregates)
        names = snapshot.schema.names
        if id_column not in names:
            raise Conflict(
                f"resource {snapshot.resource_id} has no ID column {id_column!r} (has: {list(names)})",
                resource_id=snapshot.resource_id,
            )
        for agg in self.aggregates.values():
            if agg.column is None:
                continue
            if agg.column not in names:
                raise Conflict(
                    f"resource {snapshot.resource_id} has no column {agg.column!r} for PSI aggregate "
                    f"{agg.name!r}",
                    resource_id=snapshot.resource_id,
                )
            if snapshot.schema.column(agg.column).type is not CanonicalType.INTEGER:
                raise Conflict(
                    f"PSI aggregate {agg.name!r}: column {agg.column!r} is "
                    f"{snapshot.schema.column(agg.column).type.value}; PSI sums integers (use minor units)",
                    resource_id=snapshot.resource_id,
                )

    @property
    def id_kind(self) -> IdKind:
        return self._kind

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.aggregates)

    def records(self, columns: tuple[str, ...]) -> Iterator[tuple[object, tuple[int | None, ...]]]:
        """One record per normalised ID with the requested aggregates, then invalid IDs (one per row).

        Two levels, so each distinct raw ID is normalised once: DuckDB aggregates per raw ID, Python
        normalises the distinct raw IDs, DuckDB combines the partial aggregates per normalised ID
        (counts and sums add up, minima and maxima combine).
        """
        import shutil
        import tempfile

        import duckdb
        import pyarrow as pa

        from datavalley.catalog._sql import quote_ident, quote_literal
        from datavalley.psi.normalise import InvalidId, normalise

        absent = [c for c in columns if c not in self.aggregates]
        if absent:
            raise InvalidInput(
                f"PSI aggregate(s) {absent} are not offered (offered: {sorted(self.aggregates)})",
                field="columns",
            )
        aggs = [self.aggregates[c] for c in columns]
        partial = ["count(*) AS n"]
        combine = []
        for i, a in enumerate(aggs):
            if a.function == "count":
                partial.append(f"count(*) AS p{i}")
                combine.append(f"CAST(sum(p{i}) AS HUGEINT)")
            else:
                partial.append(f"CAST({a.function}({quote_ident(a.column or '')}) AS HUGEINT) AS p{i}")
                outer = "sum" if a.function == "sum" else a.function
                combine.append(f"CAST({outer}(p{i}) AS HUGEINT)")
        scratch = tempfile.mkdtemp(prefix="dv-psi-agg-")
        con = duckdb.connect(
            ":memory:",
            config={"autoinstall_known_extensions": False, "autoload_known_extensions": False, "threads": 2},
        )
        try:
            con.execute(f"SET temp_directory = {quote_literal(scratch)}")
            path = quote_literal(str(self.snapshot.path))
            raw = f"CAST({quote_ident(self.id_column)} AS VARCHAR)"
            con.execute(
                f"CREATE TABLE per_raw AS SELECT {raw} AS raw, {', '.join(partial)} "
                f"FROM read_parquet({path}) GROUP BY 1"
            )
            reader = con.sql("SELECT raw FROM per_raw").to_arrow_reader(SNAPSHOT_BATCH_ROWS)
            ids: list[pa.RecordBatch] = []
            for batch in reader:
                nids: list[str | None] = []
                for value in batch.column(0).to_pylist():
                    try:
                        nids.append(normalise(self._kind, value))
                    except InvalidId:
                        nids.append(None)
                ids.append(
                    pa.RecordBatch.from_arrays([batch.column(0), pa.array(nids, pa.string())], ["raw", "nid"])
                )
            if not ids:
                return
            con.register("dv_ids", pa.Table.from_batches(ids))
            con.execute("CREATE TABLE ids AS SELECT * FROM dv_ids")
            con.unregister("dv_ids")
            select = ", ".join(["ids.nid", *combine])
            grouped = con.execute(
                f"SELECT {select} FROM per_raw JOIN ids ON per_raw.raw IS NOT DISTINCT FROM ids.raw "
                "WHERE ids.nid IS NOT NULL GROUP BY ids.nid ORDER BY ids.nid"
            )
            while chunk := grouped.fetchmany(SNAPSHOT_BATCH_ROWS):
                for row in chunk:
                    yield row[0], tuple(None if v is None else int(v) for v in row[1:])
            invalid = con.execute(
                "SELECT per_raw.raw, per_raw.n FROM per_raw JOIN ids ON per_raw.raw IS NOT DISTINCT FROM "
                "ids.raw WHERE ids.nid IS NULL"
            )
            while chunk := invalid.fetchmany(SNAPSHOT_BATCH_ROWS):
                for value, n in chunk:
                    for _ in range(int(n)):
                        yield value, tuple(None for _ in aggs)
        finally:
            con.close()
            shutil.rmtree(scratch, ignore_errors=True)
