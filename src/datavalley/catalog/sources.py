"""Open a provider's data source for analysis with DuckDB, without letting DuckDB touch anything else.

Supported (by extension or explicit ``format``): CSV, Parquet, JSON (a top-level array of objects *or*
JSON lines, told apart by the first byte), JSON lines, Excel ``.xlsx`` (python-calamine), and one table or
view of a SQL database named by a SQLAlchemy URL (``sqlite:///path``, ``postgresql://user@host/db``).

Reading rules (docs/SOURCES.md):

* **CSV encoding** is detected, never guessed silently: a UTF-8 or UTF-16 byte-order mark decides; else the
  whole file must decode as UTF-8, else as GB18030 (a superset of GBK and GB2312, common in China); else
  the source is refused and ``encoding=`` must be given. Non-UTF-8 files are transcoded to UTF-8 in the
  connection's scratch directory before DuckDB reads them, so Chinese text is never mangled.
* **CSV dialect** (delimiter and quote character) is detected from the first 64 KiB with Python's
  ``csv.Sniffer`` restricted to ``, \t ; |`` and then passed to DuckDB explicitly, together with
  ``header = true``; ``delimiter=`` / ``quote=`` override it. The detected dialect and encoding are pinned
  in :attr:`Source.options`, so every later read of a registered source uses the same ones.
* **Nested values** (JSON objects, Parquet structs) are flattened: a struct column ``a`` with field ``b``
  becomes the column ``a.b`` (recursively: ``a.b.c``); lists of scalars stay lists; lists of structs or
  lists, maps and unions become their JSON text. A flattened name that collides with another column is
  refused.

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

import codecs
import csv
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

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
    JSON = "json"
    XLSX = "xlsx"
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
    ".json": SourceFormat.JSON,
    ".xlsx": SourceFormat.XLSX,
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
    #: Reader options, sorted: CSV ``encoding``, ``delimiter``, ``quote``; XLSX ``sheet``.
    options: tuple[tuple[str, str], ...] = ()

    def option(self, name: str, default: str | None = None) -> str | None:
        """The reader option ``name`` (or ``default``)."""
        return dict(self.options).get(name, default)


def _format_from_name(path: Path) -> SourceFormat | None:
    name = path.name.lower()
    for suffix in _COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return _EXTENSIONS.get(os.path.splitext(name)[1])


_OPTIONS: dict[SourceFormat, frozenset[str]] = {
    SourceFormat.CSV: frozenset({"encoding", "delimiter", "quote"}),
    SourceFormat.XLSX: frozenset({"sheet"}),
}


def open_source(
    location: str | os.PathLike[str],
    *,
    format: str | None = None,
    table: str | None = None,
    options: Mapping[str, str] | None = None,
) -> Source:
    """Describe and check a data source; for CSV, detect (and pin) its encoding and dialect.

    ``location`` is a file path or a SQLAlchemy URL (``sqlite:///...``, ``postgresql://...``);
    ``format`` overrides the file extension (``csv``, ``parquet``, ``json``, ``jsonl``, ``xlsx``);
    ``table`` (a table or view) is required for databases; ``options`` are reader options (CSV
    ``encoding``, ``delimiter``, ``quote``; XLSX ``sheet``) that override detection.

    Raises:
        SourceError: unknown format or option, missing or unreadable file, directory, empty file,
            undetectable encoding, missing table.
    """
    text = os.fspath(location)
    given = dict(options or {})
    if "://" in text:
        if given:
            raise SourceError(
                text.split("@")[-1], f"reader options {sorted(given)} do not apply to databases"
            )
        return _open_database(text, table)
    if table is not None:
        raise SourceError(text, "a table name only applies to database URLs")
    path = Path(text).expanduser().resolve()
    shown = str(path)
    if format is not None:
        try:
            fmt = SourceFormat(format.lower())
        except ValueError:
            raise SourceError(
                shown, f"unknown format {format!r}; use csv, parquet, json, jsonl or xlsx"
            ) from None
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
    unknown = sorted(set(given) - _OPTIONS.get(fmt, frozenset()))
    if unknown:
        raise SourceError(shown, f"reader options {unknown} do not apply to {fmt.value} files")
    if fmt is SourceFormat.CSV:
        given = _csv_options(path, shown, given)
    return Source(SourceKind.FILE, shown, fmt, options=tuple(sorted(given.items())))


# --- CSV encoding and dialect ----------------------------------------------------------------------

_SNIFF_BYTES = 64 * 1024
_DELIMITERS = ",\t;|"


def _compressed(path: Path) -> bool:
    return path.name.lower().endswith(_COMPRESSION_SUFFIXES)


def detect_encoding(path: Path) -> str | None:
    """``utf-8``, ``utf-8-sig``, ``utf-16`` or ``gb18030`` for the file's text, or None if none fits.

    A byte-order mark decides; otherwise the whole file is decoded (streamed) as UTF-8, then GB18030.
    """
    with path.open("rb") as fh:
        head = fh.read(4)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    for encoding in ("utf-8", "gb18030"):
        if _decodes(path, encoding):
            return encoding
    return None


def _decodes(path: Path, encoding: str) -> bool:
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _csv_options(path: Path, shown: str, given: dict[str, str]) -> dict[str, str]:
    if _compressed(path):  # DuckDB decompresses; compressed files are read as UTF-8 with its own sniffer
        return given
    out = dict(given)
    if "encoding" in out:
        try:
            out["encoding"] = codecs.lookup(out["encoding"]).name
        except LookupError:
            raise SourceError(shown, f"unknown encoding {out['encoding']!r}") from None
        if not _decodes(path, out["encoding"]):
            raise SourceError(shown, f"file is not valid {out['encoding']} text")
    else:
        found = detect_encoding(path)
        if found is None:
            raise SourceError(
                shown,
                "cannot detect the text encoding: the file is neither UTF-8/UTF-16 nor GB18030 (GBK); "
                "pass encoding=",
            )
        out["encoding"] = found
    for name in ("delimiter", "quote"):
        if name in out and len(out[name]) != 1:
            raise SourceError(shown, f"{name} must be one character, got {out[name]!r}")
    if "delimiter" not in out or "quote" not in out:
        with path.open("r", encoding=out["encoding"], errors="strict", newline="") as fh:
            sample = fh.read(_SNIFF_BYTES)
        if len(sample) == _SNIFF_BYTES and "\n" in sample:
            sample = sample[: sample.rindex("\n") + 1]  # whole lines only
        try:
            dialect = csv.Sniffer().sniff(sample, delimiters=_DELIMITERS)
            delimiter, quote = dialect.delimiter, dialect.quotechar or '"'
        except csv.Error:  # one column, or nothing to tell: the RFC 4180 defaults
            delimiter, quote = ",", '"'
        out.setdefault("delimiter", delimiter)
        out.setdefault("quote", quote)
    return out


def sqlite_path(url: sa.engine.URL | str) -> str:
    """The database file of an SQLite URL, also of the read-only ``file:...?mode=ro`` form stored for
    registered sources."""
    if isinstance(url, str):
        url = sa.engine.make_url(url)
    database = unquote(url.database or "")
    if url.query.get("uri") and database.startswith("file:"):
        database = database[len("file:") :].split("?", 1)[0]
    return database


def _open_database(url_text: str, table: str | None) -> Source:
    try:
        url = sa.engine.make_url(url_text)
    except sa.exc.ArgumentError as exc:
        raise SourceError(url_text.split("@")[-1], f"not a valid database URL ({exc})") from None
    shown = url.render_as_string(hide_password=True)
    backend = url.get_backend_name()
    if backend == "sqlite":
        fmt = SourceFormat.SQLITE
        database = sqlite_path(url)
        if not database or database == ":memory:":
            raise SourceError(shown, "an SQLite source needs a database file path")
        db_path = Path(database)
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
        #: The file DuckDB reads: the source itself, or its UTF-8 transcoding in the scratch directory.
        self.read_path = source.location

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
            _transcode(conn)
            _create_file_view(conn)
        else:
            _copy_database_table(conn)
        _lock_down(conn)
        _check_not_empty(conn)
    except BaseException:
        conn.close()
        raise
    return conn


_RAW_VIEW = "dv_raw"


def _create_file_view(conn: SourceConnection) -> None:
    source = conn.source
    if source.format is SourceFormat.XLSX:
        _copy_arrow(conn, _read_xlsx(source))
        return
    path = quote_literal(conn.read_path)
    if source.format is SourceFormat.CSV:
        # allow_quoted_nulls = false: a quoted "" is an empty string (as DuckDB writes ''), not NULL.
        dialect = "".join(
            f", {key} = {quote_literal(value)}"
            for key, value in (("delim", source.option("delimiter")), ("quote", source.option("quote")))
            if value is not None
        )
        if source.option("quote") is not None:
            dialect += f", escape = {quote_literal(source.option('quote') or '')}"
        reader = f"read_csv({path}, header = true, allow_quoted_nulls = false{dialect})"
    elif source.format is SourceFormat.PARQUET:
        reader = f"read_parquet({path})"
    elif source.format is SourceFormat.JSONL:
        reader = f"read_json({path}, format = 'newline_delimited', records = 'true')"
    else:
        layout = "array" if _first_byte(Path(source.location)) == b"[" else "newline_delimited"
        reader = f"read_json({path}, format = '{layout}', records = 'true')"
    try:
        conn.connection.execute(f"CREATE VIEW {_RAW_VIEW} AS SELECT * FROM {reader}")
        _flatten(conn)
    except duckdb.Error as exc:
        reason = _first_line(exc)
        if "expected records" in reason:
            reason = "JSON values must be objects (one object per row), not bare values"
        raise SourceError(source.location, f"cannot read as {source.format.value}: {reason}") from exc


def _first_byte(path: Path) -> bytes:
    if _compressed(path):
        return b""
    with path.open("rb") as fh:
        while chunk := fh.read(4096):
            stripped = chunk.lstrip(b" \t\r\n\xef\xbb\xbf")
            if stripped:
                return stripped[:1]
    return b""


def _flatten(conn: SourceConnection) -> None:
    """``source`` over ``dv_raw`` with nested values flattened by the rule in the module docstring."""
    rel = conn.connection.table(_RAW_VIEW)
    select: list[str] = []
    names: list[str] = []

    def walk(name: str, expr: str, typ: duckdb.sqltypes.DuckDBPyType) -> None:
        if typ.id == "struct":
            for child, child_type in typ.children:
                assert isinstance(child_type, duckdb.sqltypes.DuckDBPyType)
                key = str(child)
                walk(f"{name}.{key}", f"struct_extract({expr}, {quote_literal(key)})", child_type)
            return
        if typ.id in ("map", "union") or (typ.id in ("list", "array") and typ.child.id in _NESTED_IDS):
            expr = f"CAST(to_json({expr}) AS VARCHAR)"
        select.append(f"{expr} AS {quote_ident(name)}")
        names.append(name)

    for column, typ in zip(rel.columns, rel.types, strict=True):
        walk(column, quote_ident(column), typ)
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise SourceError(
                conn.source.location,
                f"flattening nested values gives two columns named {name!r}; rename one in the source",
            )
        seen.add(name)
    conn.connection.execute(f"CREATE VIEW {SOURCE_VIEW} AS SELECT {', '.join(select)} FROM {_RAW_VIEW}")


_NESTED_IDS = frozenset({"struct", "list", "array", "map", "union"})


# --- Excel -----------------------------------------------------------------------------------------


def _read_xlsx(source: Source) -> pa.Table:
    """The first sheet (or ``sheet=``) of an .xlsx workbook: first row = header, one column per cell."""
    import pyarrow as pa  # the optional `databases` extra: imported only when a source needs it

    try:
        from python_calamine import CalamineError, CalamineWorkbook
    except ImportError:  # pragma: no cover - the "sources" extra
        raise SourceError(source.location, "reading .xlsx needs python-calamine (extra 'sources')") from None
    try:
        book = CalamineWorkbook.from_path(source.location)
        sheet_name = source.option("sheet")
        if sheet_name is not None and sheet_name not in book.sheet_names:
            raise SourceError(
                source.location, f"workbook has no sheet {sheet_name!r} (has: {book.sheet_names})"
            )
        sheet = book.get_sheet_by_name(sheet_name) if sheet_name else book.get_sheet_by_index(0)
        rows = sheet.to_python(skip_empty_area=True)
    except CalamineError as exc:
        raise SourceError(source.location, f"cannot read as xlsx: {_first_line(exc)}") from exc
    except (ValueError, OSError, IndexError) as exc:
        raise SourceError(source.location, f"cannot read as xlsx: {_first_line(exc)}") from exc
    if not rows:
        raise SourceError(source.location, "sheet is empty")
    header = [("" if v is None else str(v)).strip() for v in rows[0]]
    while header and not header[-1]:
        header.pop()
    if not header:
        raise SourceError(source.location, "first row (the header) is empty")
    blank = [i + 1 for i, h in enumerate(header) if not h]
    if blank:
        raise SourceError(source.location, f"header cell(s) in column(s) {blank} are empty")
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise SourceError(source.location, f"header names {dupes} occur more than once")
    body = [list(r[: len(header)]) + [None] * (len(header) - len(r)) for r in rows[1:]]
    body = [r for r in body if any(v not in (None, "") for v in r)]
    columns = {}
    for i, name in enumerate(header):
        columns[name] = _xlsx_column([None if v == "" else v for v in (r[i] for r in body)])
    return pa.table(columns)


def _xlsx_column(values: list[Any]) -> pa.Array:
    import pyarrow as pa  # the optional `databases` extra: imported only when a source needs it

    present = [v for v in values if v is not None]
    # Excel stores every number as a double: a column of integral numbers is an integer column.
    if present and all(isinstance(v, float) and v.is_integer() and abs(v) < 2**53 for v in present):
        return pa.array([None if v is None else int(v) for v in values], type=pa.int64())
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        # Mixed cell types: the column is text, each cell in its displayed form.
        return pa.array([None if v is None else _cell_text(v) for v in values], type=pa.string())


def _cell_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))  # Excel's 1 is the double 1.0; it displays as 1
    return str(_to_text(value))


def _copy_arrow(conn: SourceConnection, table: pa.Table) -> None:

    con = conn.connection
    con.register("dv_arrow", table)
    try:
        con.execute("CREATE TABLE dv_copy AS SELECT * FROM dv_arrow")
    finally:
        con.unregister("dv_arrow")
    con.execute(f"CREATE VIEW {SOURCE_VIEW} AS SELECT * FROM dv_copy")


def _transcode(conn: SourceConnection) -> None:
    encoding = conn.source.option("encoding")
    if conn.source.format is not SourceFormat.CSV or encoding in (None, "utf-8"):
        return
    target = os.path.join(conn._scratch, "utf8.csv")
    try:
        with (
            open(conn.source.location, encoding=encoding, errors="strict", newline="") as src,
            open(target, "w", encoding="utf-8", newline="") as out,
        ):
            while chunk := src.read(1 << 20):
                out.write(chunk)
    except UnicodeDecodeError as exc:  # the file changed since its encoding was detected
        raise SourceError(conn.source.location, f"file is no longer valid {encoding} text: {exc}") from None
    conn.read_path = target


def _lock_down(conn: SourceConnection) -> None:
    con = conn.connection
    allowed = [conn.read_path] if conn.source.kind is SourceKind.FILE else []
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
