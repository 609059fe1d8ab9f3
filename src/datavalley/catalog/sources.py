"""Open a provider's data source for analysis with DuckDB, without letting DuckDB touch anything else.

Supported: CSV, Parquet and JSON-lines files (by extension or explicit ``format``), and one table of a SQL
database named by a SQLAlchemy URL (``sqlite:///path``, ``postgresql://user@host/db``).

SQL databases are read through SQLAlchemy in batches into Arrow and copied into the private in-memory
DuckDB database. DuckDB's own ``sqlite`` and ``postgres`` scanners are not used: they are downloadable
extensions, which a node without Internet access cannot install (checked with DuckDB 2.0: ``LOAD sqlite``
tries to download ``sqlite_scanner``).

Every source gets its own DuckDB connection. Once the source's view exists the connection is locked down:
``allowed_paths`` is set to exactly the source file, ``enable_external_access`` is switched off and the
configuration is locked, so no later SQL (including SQL built from column names in the file) can read or
write any other file, load extensions or reach the network.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import duckdb
import sqlalchemy as sa

from datavalley.catalog._sql import ScanPlan, quote_ident, quote_literal
from datavalley.catalog.errors import SourceError
from datavalley.catalog.schema import Schema, read_schema

if TYPE_CHECKING:  # pyarrow is the optional `databases` extra: only database sources need it
    import pyarrow as pa

__all__ = [
    "SOURCE_VIEW",
    "Source",
    "SourceConnection",
    "SourceFormat",
    "SourceKind",
    "connect",
    "open_source",
]

#: Name of the view over the source inside a :class:`SourceConnection`.
SOURCE_VIEW = "source"

#: Rows fetched per round trip when copying a database table.
DB_BATCH_ROWS = 50_000


class SourceKind(StrEnum):
    FILE = "file"
    DATABASE = "database"


class SourceFormat(StrEnum):
    CSV = "csv"
    PARQUET = "parquet"
    JSONL = "jsonl"
    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"


_EXTENSIONS: dict[str, SourceFormat] = {
    ".csv": SourceFormat.CSV,
    ".tsv": SourceFormat.CSV,
    ".txt": SourceFormat.CSV,
    ".parquet": SourceFormat.PARQUET,
    ".pq": SourceFormat.PARQUET,
    ".jsonl": SourceFormat.JSONL,
    ".ndjson": SourceFormat.JSONL,
    ".json": SourceFormat.JSONL,
}
_COMPRESSION_SUFFIXES = (".gz", ".zst")


@dataclass(frozen=True)
class Source:
    """A data source: what it is, where it is and how it is encoded.

    ``location`` is an absolute file path, or for databases the URL with any password masked (it is safe
    to log and to put into registration metadata). The usable URL is kept out of ``repr`` and equality.
    """

    kind: SourceKind
    location: str
    format: SourceFormat
    table: str | None = None
    url: str | None = field(default=None, repr=False, compare=False)


def _format_from_name(path: Path) -> SourceFormat | None:
    name = path.name.lower()
    for suffix in _COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return _EXTENSIONS.get(os.path.splitext(name)[1])


def open_source(
    location: str | os.PathLike[str], *, format: str | None = None, table: str | None = None
) -> Source:
    """Describe and check a data source without reading its rows.

    ``location`` is a file path or a SQLAlchemy URL (``sqlite:///...``, ``postgresql://...``);
    ``format`` overrides the file extension (``csv``, ``parquet``, ``jsonl``); ``table`` is required for
    databases.

    Raises:
        SourceError: unknown format, missing or unreadable file, directory, empty file, missing table.
    """
    text = os.fspath(location)
    if "://" in text:
        return _open_database(text, table)
    if table is not None:
        raise SourceError(text, "a table name only applies to database URLs")
    path = Path(text).expanduser().resolve()
    shown = str(path)
    if format is not None:
        try:
            fmt = SourceFormat(format.lower())
        except ValueError:
            raise SourceError(shown, f"unknown format {format!r}; use csv, parquet or jsonl") from None
        if fmt in (SourceFormat.SQLITE, SourceFormat.POSTGRESQL):
            raise SourceError(shown, f"format {format!r} needs a database URL, not a file path")
    else:
        found = _format_from_name(path)
        if found is None:
            raise SourceError(
                shown, f"cannot tell the format from the extension {path.suffix!r}; pass format="
            )
        fmt = found
    if not path.exists():
        raise SourceError(shown, "file does not exist")
    if path.is_dir():
        raise SourceError(shown, "is a directory, not a file")
    if not os.access(path, os.R_OK):
        raise SourceError(shown, "file is not readable (permission denied)")
    if path.stat().st_size == 0:
        raise SourceError(shown, "file is empty (0 bytes)")
    return Source(SourceKind.FILE, shown, fmt)


def _open_database(url_text: str, table: str | None) -> Source:
    try:
        url = sa.engine.make_url(url_text)
    except sa.exc.ArgumentError as exc:
        raise SourceError(url_text.split("@")[-1], f"not a valid database URL ({exc})") from None
    shown = url.render_as_string(hide_password=True)
    backend = url.get_backend_name()
    if backend == "sqlite":
        fmt = SourceFormat.SQLITE
        if not url.database or url.database == ":memory:":
            raise SourceError(shown, "an SQLite source needs a database file path")
        db_path = Path(url.database)
        if not db_path.is_file():
            raise SourceError(shown, "SQLite database file does not exist")
        # Read-only: analysis must never modify the provider's database.
        url = url.set(database=f"file:{db_path.resolve()}?mode=ro", query={"uri": "true"})
    elif backend in ("postgresql", "postgres"):
        fmt = SourceFormat.POSTGRESQL
        # Only psycopg (v3) is a dependency; SQLAlchemy's default postgresql driver is psycopg2.
        url = url.set(drivername="postgresql+psycopg")
    else:
        raise SourceError(shown, f"unsupported database {backend!r}; use sqlite or postgresql")
    if not table:
        raise SourceError(shown, "a database source needs table=")
    return Source(
        SourceKind.DATABASE,
        shown,
        fmt,
        table=table,
        url=url.render_as_string(hide_password=False),
    )


class SourceConnection:
    """A private DuckDB connection with the source available as the view :data:`SOURCE_VIEW`.

    Use as a context manager; ``close()`` releases the connection and its scratch directory.
    """

    def __init__(self, source: Source, con: duckdb.DuckDBPyConnection, scratch: str) -> None:
        self.source = source
        self.connection = con
        self.view = SOURCE_VIEW
        self._scratch = scratch
        self._schema: Schema | None = None

    @property
    def schema(self) -> Schema:
        """Schema of the source (read once)."""
        if self._schema is None:
            self._schema = read_schema(self.connection, self.view)
        return self._schema

    def relation(self) -> duckdb.DuckDBPyRelation:
        """A DuckDB relation over the whole source."""
        return self.connection.table(self.view)

    def execute(self, sql: str) -> list[tuple[Any, ...]]:
        """Run ``sql`` and fetch all rows; DuckDB errors become :class:`SourceError` naming the source.

        Raises:
            SourceError: the source could not be read (corrupt file, bad CSV line, ...).
        """
        try:
            return self.connection.execute(sql).fetchall()
        except _READ_ERRORS as exc:
            raise SourceError(self.source.location, f"cannot read: {_first_line(exc)}") from exc

    def run_plan(self, plan: ScanPlan, *, view: str | None = None) -> None:
        """Execute a scan plan over the source (or ``view``, e.g. a sample of it) in one scan.

        Raises:
            SourceError: the source could not be read.
        """
        try:
            plan.run(self.connection, view or self.view)
        except _READ_ERRORS as exc:
            raise SourceError(self.source.location, f"cannot read: {_first_line(exc)}") from exc

    def close(self) -> None:
        """Close the connection and delete the scratch directory."""
        try:
            self.connection.close()
        finally:
            shutil.rmtree(self._scratch, ignore_errors=True)

    def __enter__(self) -> SourceConnection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# Errors that mean "the data cannot be read"; anything else (binder errors, overflow in our own SQL) is
# a bug in the catalog and must not be blamed on the provider's file.
_READ_ERRORS = (
    duckdb.IOException,
    duckdb.InvalidInputException,
    duckdb.ConversionException,
    duckdb.PermissionException,
)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def connect(source: Source, *, threads: int | None = None) -> SourceConnection:
    """Open ``source`` in a new private DuckDB connection and check it has rows and columns.

    Raises:
        SourceError: the source cannot be parsed, has no columns or has no rows.
    """
    scratch = tempfile.mkdtemp(prefix="dv-catalog-")
    config: dict[str, Any] = {
        # Extensions are never fetched: the node may be offline and must not run downloaded code.
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
    }
    if threads is not None:
        config["threads"] = threads
    con = duckdb.connect(":memory:", config=config)
    conn = SourceConnection(source, con, scratch)
    try:
        # Canonical timestamptz text is UTC (see schema.canonical_text_sql).
        con.execute("SET TimeZone = 'UTC'")
        # A library must not draw progress bars on the caller's terminal.
        con.execute("SET enable_progress_bar = false")
        # DuckDB's type_pushdown rewrites CAST(csv_column AS VARCHAR) into reading the raw CSV text, so a
        # DOUBLE read from "12.50" would render as "12.50" instead of "12.5" and break canonical text.
        con.execute("SET disabled_optimizers = 'type_pushdown'")
        # Spills for large DISTINCT aggregates go to our own scratch directory, nowhere else.
        con.execute(f"SET temp_directory = {quote_literal(scratch)}")
        if source.kind is SourceKind.FILE:
            _create_file_view(conn)
        else:
            _copy_database_table(conn)
        _lock_down(conn)
        _check_not_empty(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _create_file_view(conn: SourceConnection) -> None:
    source = conn.source
    path = quote_literal(source.location)
    # allow_quoted_nulls = false: a quoted "" is an empty string (as written by DuckDB for ''), not NULL.
    reader = {
        SourceFormat.CSV: f"read_csv({path}, header = true, allow_quoted_nulls = false)",
        SourceFormat.PARQUET: f"read_parquet({path})",
        SourceFormat.JSONL: f"read_json({path}, format = 'newline_delimited')",
    }[source.format]
    try:
        conn.connection.execute(f"CREATE VIEW {SOURCE_VIEW} AS SELECT * FROM {reader}")
    except duckdb.Error as exc:
        raise SourceError(
            source.location, f"cannot read as {source.format.value}: {_first_line(exc)}"
        ) from exc


def _lock_down(conn: SourceConnection) -> None:
    con = conn.connection
    allowed = [conn.source.location] if conn.source.kind is SourceKind.FILE else []
    con.execute(f"SET allowed_paths = [{', '.join(quote_literal(p) for p in allowed)}]")
    con.execute(f"SET allowed_directories = [{quote_literal(conn._scratch)}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def _check_not_empty(conn: SourceConnection) -> None:
    location = conn.source.location
    try:
        schema = conn.schema
    except duckdb.Error as exc:
        raise SourceError(location, f"cannot read: {_first_line(exc)}") from exc
    if not schema.columns:
        raise SourceError(location, "has no columns")
    if not conn.execute(f"SELECT 1 FROM {SOURCE_VIEW} LIMIT 1"):
        raise SourceError(location, "has no rows (only a header or schema)")


# --- SQL databases -------------------------------------------------------------------------------


def _arrow_type(column_type: sa.types.TypeEngine[Any]) -> pa.DataType:
    import pyarrow as pa

    # Declared types decide the Arrow type, so every batch has the same schema even when a batch is
    # all NULL. SQLite is dynamically typed: a value that does not fit is reported, not guessed.
    if isinstance(column_type, sa.Boolean):
        return pa.bool_()
    if isinstance(column_type, sa.Integer):
        return pa.int64()
    if isinstance(column_type, sa.Float):
        return pa.float64()
    if isinstance(column_type, sa.Numeric):
        precision = column_type.precision or 38
        scale = column_type.scale if column_type.scale is not None else 9
        if column_type.precision is None:
            return pa.float64() if column_type.asdecimal is False else pa.decimal128(38, scale)
        return pa.decimal128(min(precision, 38), scale)
    if isinstance(column_type, sa.DateTime):
        return pa.timestamp("us", tz="UTC") if column_type.timezone else pa.timestamp("us")
    if isinstance(column_type, sa.Date):
        return pa.date32()
    if isinstance(column_type, sa.Time):
        return pa.time64("us")
    if isinstance(column_type, sa.LargeBinary):
        return pa.binary()
    return pa.string()


def _to_text(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, (date, datetime, time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def _batches(conn: SourceConnection, table: sa.Table, engine: sa.Engine) -> Iterator[pa.RecordBatch]:
    try:
        import pyarrow as pa
    except ModuleNotFoundError:
        raise SourceError(
            conn.source.location,
            "reading a database table needs pyarrow: pip install 'datavalley[databases]'",
        ) from None
    types = [_arrow_type(c.type) for c in table.columns]
    names = [c.name for c in table.columns]
    schema = pa.schema([pa.field(n, t) for n, t in zip(names, types, strict=True)])
    with engine.connect() as db:
        result = db.execution_options(stream_results=True, yield_per=DB_BATCH_ROWS).execute(sa.select(table))
        for rows in result.partitions(DB_BATCH_ROWS):
            arrays = []
            for i, (name, typ) in enumerate(zip(names, types, strict=True)):
                values = [row[i] for row in rows]
                if pa.types.is_string(typ):
                    values = [_to_text(v) for v in values]
                try:
                    arrays.append(pa.array(values, type=typ))
                except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
                    raise SourceError(
                        conn.source.location,
                        f"table {table.name!r} column {name!r} is declared {table.columns[name].type} "
                        f"but holds a value that does not fit ({_first_line(exc)})",
                    ) from exc
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)


def _copy_database_table(conn: SourceConnection) -> None:
    source = conn.source
    assert source.url is not None and source.table is not None
    schema_name, _, table_name = source.table.rpartition(".")
    engine = sa.create_engine(source.url)
    try:
        try:
            table = sa.Table(table_name, sa.MetaData(), schema=schema_name or None, autoload_with=engine)
        except sa.exc.NoSuchTableError:
            raise SourceError(source.location, f"table {source.table!r} does not exist") from None
        except sa.exc.SQLAlchemyError as exc:
            raise SourceError(source.location, f"cannot connect: {_first_line(exc)}") from exc
        if not table.columns:
            raise SourceError(source.location, f"table {source.table!r} has no columns")
        con = conn.connection
        created = False
        try:
            for batch in _batches(conn, table, engine):
                con.register("dv_batch", batch)
                if not created:
                    con.execute("CREATE TABLE dv_db_copy AS SELECT * FROM dv_batch")
                    created = True
                else:
                    con.execute("INSERT INTO dv_db_copy SELECT * FROM dv_batch")
                con.unregister("dv_batch")
        except sa.exc.SQLAlchemyError as exc:
            raise SourceError(
                source.location, f"cannot read table {source.table!r}: {_first_line(exc)}"
            ) from exc
        if not created:
            # No rows at all: keep the columns so the error says "no rows", not "no columns".
            cols = ", ".join(f"NULL AS {quote_ident(c.name)}" for c in table.columns)
            con.execute(f"CREATE TABLE dv_db_copy AS SELECT {cols} LIMIT 0")
        con.execute(f"CREATE VIEW {SOURCE_VIEW} AS SELECT * FROM dv_db_copy")
    finally:
        engine.dispose()
