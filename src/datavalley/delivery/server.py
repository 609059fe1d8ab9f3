"""The node's Delta Sharing server: shares are contracts, tables are the product's resources as Parquet.

Read path of one ``POST …/query`` (docs/DELIVERY.md):

1. the bearer token resolves to a :class:`~datavalley.delivery.model.Grant` (one recipient of one live
   delivery contract); other shares, schemas and tables are "not found";
2. the requested version is a registered data version of the resource; the node's copy of the current
   version must be the registered one (fingerprint), and is snapshotted to Parquet once per version;
3. the contract's policy is compiled (:mod:`datavalley.delivery.policy`) and applied by DuckDB once per
   (recipient, version, policy): columns, pseudonyms, row filter, watermark — the result is cached as
   Parquet files with per-file statistics;
4. predicate and limit hints skip files (best effort, the client re-applies them);
5. the read is metered (:func:`datavalley.delivery.service.record_read` → ``record_use``): if refused,
   no URL is issued;
6. each file is offered under a short-lived HMAC-signed URL served by this node (HEAD and Range).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from datavalley.canonical import digest
from datavalley.delivery import service
from datavalley.delivery.model import Grant, Read
from datavalley.delivery.policy import TablePlan, compile_plan, lit, personal_columns, select_sql
from datavalley.delivery.watermark import column_key
from datavalley.errors import Conflict, Forbidden, InvalidInput, NotFound
from datavalley.exchange import Exchange
from datavalley.identity.model import Principal
from datavalley.market.contracts import get_contract
from datavalley.market.model import PriceModel, Product
from datavalley.market.policy import Terms, parse
from datavalley.market.products import get_product
from datavalley.node.registry import FingerprintCache, Location, NodeRegistry
from datavalley.rights.model import Resource
from datavalley.rights.registration import get_resource, version_history

PREFIX = "/delta-sharing"
TABLES_TTL_S = 10.0
TOKEN_CHECK_S = 1.0
URL_TTL = timedelta(minutes=10)
MAX_URL_TTL = timedelta(minutes=15)
ENTRY = re.compile(r"[0-9a-f]{64}")
PART = re.compile(r"(part|cdf)-[0-9]{5}\.parquet")
SYSTEM = Principal.system()

SPARK_TYPES = {
    "VARCHAR": "string",
    "BIGINT": "long",
    "INTEGER": "integer",
    "SMALLINT": "short",
    "TINYINT": "byte",
    "DOUBLE": "double",
    "FLOAT": "float",
    "REAL": "float",
    "BOOLEAN": "boolean",
    "DATE": "date",
    "TIMESTAMP": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamp",
    "BLOB": "binary",
    "UTINYINT": "short",
    "USMALLINT": "integer",
    "UINTEGER": "long",
}


def file_rows() -> int:
    """Rows per delivered Parquet file (``DATAVALLEY_DELIVERY_FILE_ROWS``, default 1,000,000)."""
    raw = os.environ.get("DATAVALLEY_DELIVERY_FILE_ROWS", "1000000")
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput("DATAVALLEY_DELIVERY_FILE_ROWS must be an integer") from None
    return max(1, value)


def spark_type(duck: str) -> str:
    t = duck.upper()
    if t.startswith("DECIMAL"):
        return t.lower()
    return SPARK_TYPES.get(t, "string")


def load_secret(path: Path) -> bytes:
    """The node's delivery secret (32 random bytes, file mode 0600), created on first use."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(os.urandom(32))
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)  # never replace a secret another process created meanwhile
        tmp.unlink(missing_ok=True)
    data = path.read_bytes()
    if len(data) != 32:
        raise Conflict(f"the node's delivery secret {path} is corrupt")
    return data


@dataclass(frozen=True)
class DataFile:
    """One cached Parquet file of a delivered table."""

    entry: str
    name: str
    id: str
    size: int
    rows: int
    stats: dict[str, Any]


@dataclass(frozen=True)
class TableRef:
    name: str
    resource_id: str


@dataclass(frozen=True)
class Served:
    """The answer to a query or changes request: header version, NDJSON lines, the metered read."""

    version: int
    lines: list[dict[str, Any]]
    read: Read | None
    receipt_index: int | None


def read_source(loc: Location) -> Any:
    """Open the node's copy of a resource as a catalog source connection (the one place data is read:
    file formats via DuckDB today; database tables are copied by the catalog reader)."""
    from datavalley.catalog.sources import connect, open_source

    if loc.kind == "file":
        return connect(open_source(loc.location, format=loc.format))
    return connect(open_source(loc.location, table=loc.table))


def _stats(table: Any) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.compute as pc

    mins: dict[str, Any] = {}
    maxs: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    for name in table.column_names:
        col = table.column(name)
        nulls[name] = int(col.null_count)
        typ = col.type
        if not (
            pa.types.is_integer(typ)
            or pa.types.is_floating(typ)
            or pa.types.is_string(typ)
            or pa.types.is_date(typ)
        ):
            continue
        if col.null_count == len(col):
            continue
        mm = pc.min_max(col).as_py()
        lo, hi = mm["min"], mm["max"]
        if pa.types.is_date(typ):
            lo, hi = lo.isoformat(), hi.isoformat()
        if isinstance(lo, float) and (lo != lo or hi != hi):
            continue
        mins[name], maxs[name] = lo, hi
    return {"numRecords": table.num_rows, "minValues": mins, "maxValues": maxs, "nullCount": nulls}


class DeliveryNode:
    """Delta Sharing on this node's registered data, metered against the exchange's contracts."""

    def __init__(self, exchange: Exchange, home: Path | None = None) -> None:
        self.exchange = exchange
        home = home or exchange.settings.home
        self.root = home / "node" / "delivery"
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.secret = load_secret(home / "node" / "delivery.key")
        self._url_key = hmac.new(self.secret, b"signed-url", hashlib.sha256).digest()
        self.registry = NodeRegistry(home)
        self._fingerprints = FingerprintCache()
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        # policy work is done once per (recipient, table, data version); remember where its files are
        self._prepared: dict[tuple[str, ...], tuple[TablePlan, list[DataFile]]] = {}
        self._tables: dict[str, tuple[float, list[TableRef]]] = {}
        self._live: dict[str, float] = {}

    # --- identity and names -----------------------------------------------------------------------

    def grant(self, secret: str | None) -> Grant:
        return self.exchange.read(SYSTEM, service.resolve_token, secret)

    @staticmethod
    def share_name(grant: Grant) -> str:
        return grant.contract_id.lower()

    @staticmethod
    def schema_name(grant: Grant) -> str:
        return grant.product_id.lower()

    def _product(self, grant: Grant) -> Product:
        return self.exchange.read(SYSTEM, get_product, grant.product_id)

    def tables(self, grant: Grant) -> list[TableRef]:
        """The share's tables (names change only with the product; remembered for a few seconds)."""
        hit = self._tables.get(grant.product_id)
        if hit is not None and time.monotonic() - hit[0] < TABLES_TTL_S:
            return hit[1]
        refs = self._table_refs(grant)
        self._tables[grant.product_id] = (time.monotonic(), refs)
        return refs

    def _table_refs(self, grant: Grant) -> list[TableRef]:
        product = self._product(grant)
        named: dict[str, str] = product.terms.get("tables") or {}
        if named:
            return [TableRef(n, rid) for n, rid in sorted(named.items())]
        out, seen = [], set()
        for rid in product.resource_ids:
            res = self.exchange.read(SYSTEM, get_resource, rid)
            base = re.sub(r"[^a-z0-9_]+", "_", res.name.lower()).strip("_") or rid.lower()
            name = base if base not in seen else f"{base}_{rid.lower()}"
            seen.add(name)
            out.append(TableRef(name, rid))
        return out

    def check_share(self, grant: Grant, share: str, schema: str | None = None) -> None:
        if share.lower() != self.share_name(grant):
            raise NotFound(f"share {share!r} does not exist")
        if schema is not None and schema.lower() != self.schema_name(grant):
            raise NotFound(f"schema {schema!r} does not exist in share {share!r}")

    def table(self, grant: Grant, share: str, schema: str, table: str) -> TableRef:
        self.check_share(grant, share, schema)
        for ref in self.tables(grant):
            if ref.name == table.lower():
                return ref
        raise NotFound(f"table {table!r} does not exist in {share}.{schema}")

    # --- versions ---------------------------------------------------------------------------------

    def versions(self, rid: str) -> list[dict[str, Any]]:
        return self.exchange.read(SYSTEM, version_history, rid)

    def current_version(self, rid: str) -> int:
        res: Resource = self.exchange.read(SYSTEM, get_resource, rid)
        return res.version

    @staticmethod
    def _parse_ts(raw: str, field: str) -> datetime:
        text = raw.strip().replace("T", " ").replace("Z", "")
        try:
            out = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidInput(
                f"{field} must be a timestamp 'yyyy-mm-dd hh:mm:ss[.f]', got {raw!r}", field=field
            ) from None
        return out.replace(tzinfo=UTC) if out.tzinfo is None else out.astimezone(UTC)

    def version_at(self, rid: str, ts: str, field: str, *, at_or_after: bool) -> int:
        """The version current at ``ts`` (or the earliest created at/after it with ``at_or_after``)."""
        when = self._parse_ts(ts, field)
        history = self.versions(rid)
        if at_or_after:
            for v in history:
                if datetime.fromisoformat(v["created_at"]) >= when:
                    return int(v["version"])
            raise InvalidInput(f"no version was created at or after {ts}", field=field)
        chosen = None
        for v in history:
            if datetime.fromisoformat(v["created_at"]) <= when:
                chosen = int(v["version"])
        if chosen is None:
            raise InvalidInput(f"the table has no version at {ts}", field=field)
        return chosen

    def _timestamp_ms(self, rid: str, version: int) -> int:
        for v in self.versions(rid):
            if int(v["version"]) == version:
                return int(datetime.fromisoformat(v["created_at"]).timestamp() * 1000)
        raise NotFound(f"version {version} does not exist")

    # --- snapshots and policy-applied files -------------------------------------------------------

    def _lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def snapshot(self, rid: str, version: int) -> Path:
        """The resource at ``version`` as one Parquet file (taken once, when that version is current)."""
        path = self.root / "snapshots" / rid / f"v{version}.parquet"
        if path.exists():
            return path
        with self._lock(f"snap:{rid}:{version}"):
            if path.exists():
                return path
            res: Resource = self.exchange.read(SYSTEM, get_resource, rid)
            if version != res.version:
                raise NotFound(
                    f"version {version} of resource {rid} is not held by this node (current: {res.version})"
                )
            try:
                loc = self.registry.get(rid)
            except NotFound:
                raise Conflict(
                    f"resource {rid} is not held by this node; it cannot be delivered here"
                ) from None
            if loc.kind == "file":
                current = self._fingerprints.current(loc.location, loc.format)
                if current != res.fingerprint:
                    raise Conflict(
                        f"the node's copy of resource {rid} is not the registered version "
                        f"({current[:20]}… ≠ {res.fingerprint[:20]}…): register the change first"
                    )
            import pyarrow.parquet as pq

            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
            with read_source(loc) as conn:
                reader = conn.relation().to_arrow_reader(batch_size=262_144)
                with pq.ParquetWriter(tmp, reader.schema, compression="zstd") as writer:
                    for batch in reader:
                        writer.write_batch(batch)
            os.replace(tmp, path)
            return path

    @staticmethod
    def _schema(con: Any, source: str) -> list[tuple[str, str]]:
        return [(str(r[0]), str(r[1])) for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]

    def _plan(self, grant: Grant, terms: Terms, rid: str, schema: list[tuple[str, str]]) -> TablePlan:
        res: Resource = self.exchange.read(SYSTEM, get_resource, rid)
        product = self._product(grant)
        wm = ((product.terms.get("delivery") or {}).get("watermark") or {}).get("columns") or {}
        return compile_plan(terms, schema, personal_columns(res.pii), dict(wm))

    def _keys(self, grant: Grant, plan: TablePlan) -> tuple[str, dict[str, str]]:
        salt = hmac.new(self.secret, f"pn|{grant.contract_id}".encode(), hashlib.sha256).hexdigest()
        keys = {
            c: column_key(self.secret, grant.contract_id, grant.recipient_id, c) for c, _ in plan.watermark
        }
        return salt, keys

    def _connect(self) -> Any:
        import duckdb

        con = duckdb.connect(":memory:")
        con.execute("SET enable_progress_bar = false")
        return con

    def _write(self, entry_dir: Path, prefix: str, sql: str, con: Any) -> list[DataFile]:
        """Stream the query's result into Parquet files of ``file_rows()`` rows (memory: one file's rows)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        tmp = entry_dir.with_name(entry_dir.name + f".{uuid.uuid4().hex}.tmp")
        tmp.mkdir(parents=True, mode=0o700)
        files: list[DataFile] = []
        step = file_rows()
        pending: list[Any] = []
        held = 0

        def flush() -> None:
            nonlocal pending, held
            part = pa.Table.from_batches(pending)
            name = f"{prefix}-{len(files):05d}.parquet"
            pq.write_table(part, tmp / name, compression="snappy")
            size = (tmp / name).stat().st_size
            fid = hashlib.sha256(f"{entry_dir.name}/{name}".encode()).hexdigest()[:32]
            files.append(DataFile(entry_dir.name, name, fid, size, part.num_rows, _stats(part)))
            pending, held = [], 0

        try:
            reader = con.sql(sql).to_arrow_reader(batch_size=65_536)
            for batch in reader:
                while batch.num_rows:
                    take = min(step - held, batch.num_rows)
                    pending.append(batch.slice(0, take))
                    held += take
                    batch = batch.slice(take)
                    if held == step:
                        flush()
            if held:
                flush()
            manifest = {"files": [f.__dict__ for f in files]}
            (tmp / "manifest.json").write_text(json.dumps(manifest), "utf-8")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        try:
            os.replace(tmp, entry_dir)
        except OSError:  # another process finished first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
        return self._manifest(entry_dir)

    @staticmethod
    def _manifest(entry_dir: Path) -> list[DataFile]:
        raw = json.loads((entry_dir / "manifest.json").read_text("utf-8"))
        return [DataFile(**f) for f in raw["files"]]

    def prepare(self, grant: Grant, ref: TableRef, version: int) -> tuple[TablePlan, list[DataFile]]:
        """The recipient's policy-applied, watermarked files of ``ref`` at ``version`` (cached)."""
        memo = ("q", grant.contract_id, grant.recipient_id, ref.resource_id, str(version), str(file_rows()))
        hit = self._prepared.get(memo)
        if hit is not None and all((self.root / "cache" / f.entry / f.name).is_file() for f in hit[1]):
            return hit
        out = self._prepare(grant, ref, version)
        self._prepared[memo] = out
        return out

    def _prepare(self, grant: Grant, ref: TableRef, version: int) -> tuple[TablePlan, list[DataFile]]:
        terms = parse(self.exchange.read(SYSTEM, get_contract, grant.contract_id).policy)
        snap = self.snapshot(ref.resource_id, version)
        source = f"read_parquet({lit(str(snap))})"
        con = self._connect()
        try:
            plan = self._plan(grant, terms, ref.resource_id, self._schema(con, source))
            key = hashlib.sha256(
                f"q|{grant.contract_id}|{grant.recipient_id}|{ref.resource_id}|{version}|{plan.digest()}|"
                f"{file_rows()}".encode()
            ).hexdigest()
            entry = self.root / "cache" / key
            if (entry / "manifest.json").exists():
                return plan, self._manifest(entry)
            with self._lock(key):
                if (entry / "manifest.json").exists():
                    return plan, self._manifest(entry)
                salt, keys = self._keys(grant, plan)
                entry.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                return plan, self._write(
                    entry, "part", select_sql(plan, source, pseudonym_salt=salt, watermark_keys=keys), con
                )
        finally:
            con.close()

    def prepare_changes(self, grant: Grant, ref: TableRef, version: int) -> tuple[TablePlan, list[DataFile]]:
        """Rows inserted and deleted between ``version - 1`` and ``version`` (``_change_type``), cached."""
        memo = ("c", grant.contract_id, grant.recipient_id, ref.resource_id, str(version), str(file_rows()))
        hit = self._prepared.get(memo)
        if hit is not None and all((self.root / "cache" / f.entry / f.name).is_file() for f in hit[1]):
            return hit
        out = self._prepare_changes(grant, ref, version)
        self._prepared[memo] = out
        return out

    def _prepare_changes(self, grant: Grant, ref: TableRef, version: int) -> tuple[TablePlan, list[DataFile]]:
        terms = parse(self.exchange.read(SYSTEM, get_contract, grant.contract_id).policy)
        new = f"read_parquet({lit(str(self.snapshot(ref.resource_id, version)))})"
        old = f"read_parquet({lit(str(self.snapshot(ref.resource_id, version - 1)))})"
        con = self._connect()
        try:
            plan = self._plan(grant, terms, ref.resource_id, self._schema(con, new))
            before = self._plan(grant, terms, ref.resource_id, self._schema(con, old))
            if before.columns != plan.columns:
                raise Conflict(
                    f"the delivered columns changed between versions {version - 1} and {version}: "
                    "read the table at a version instead of its changes"
                )
            key = hashlib.sha256(
                f"c|{grant.contract_id}|{grant.recipient_id}|{ref.resource_id}|{version}|{plan.digest()}|"
                f"{file_rows()}".encode()
            ).hexdigest()
            entry = self.root / "cache" / key
            if (entry / "manifest.json").exists():
                return plan, self._manifest(entry)
            with self._lock(key):
                if (entry / "manifest.json").exists():
                    return plan, self._manifest(entry)
                salt, keys = self._keys(grant, plan)
                n_sql = select_sql(plan, new, pseudonym_salt=salt, watermark_keys=keys)
                o_sql = select_sql(plan, old, pseudonym_salt=salt, watermark_keys=keys)
                sql = (
                    f"SELECT *, 'insert' AS _change_type FROM (({n_sql}) EXCEPT ALL ({o_sql})) "
                    f"UNION ALL SELECT *, 'delete' AS _change_type FROM (({o_sql}) EXCEPT ALL ({n_sql}))"
                )
                entry.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                return plan, self._write(entry, "cdf", sql, con)
        finally:
            con.close()

    # --- protocol answers -------------------------------------------------------------------------

    def _metadata(self, grant: Grant, ref: TableRef, plan: TablePlan, *, cdf: bool = False) -> dict[str, Any]:
        fields = [
            {"name": n, "type": spark_type(t), "nullable": True, "metadata": {}} for n, t in plan.columns
        ]
        meta: dict[str, Any] = {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"datavalley:{grant.contract_id}:{ref.resource_id}")),
            "name": ref.name,
            "format": {"provider": "parquet"},
            "schemaString": json.dumps({"type": "struct", "fields": fields}, separators=(",", ":")),
            "partitionColumns": [],
            "configuration": {"enableChangeDataFeed": "true"},
        }
        return {"metaData": meta}

    def metadata(self, grant: Grant, share: str, schema: str, table: str) -> tuple[int, list[dict[str, Any]]]:
        ref = self.table(grant, share, schema, table)
        version = self.current_version(ref.resource_id)
        plan, _files = self.prepare(grant, ref, version)
        return version, [{"protocol": {"minReaderVersion": 1}}, self._metadata(grant, ref, plan)]

    def sign(self, grant: Grant, f: DataFile, base: str, now: datetime) -> str:
        exp = int((now + URL_TTL).timestamp())
        msg = f"{f.entry}/{f.name}|{exp}|{grant.token_id}".encode()
        sig = hmac.new(self._url_key, msg, hashlib.sha256).hexdigest()
        return f"{base}{PREFIX}/files/{f.entry}/{f.name}?exp={exp}&tok={grant.token_id}&sig={sig}"

    def verify_url(self, entry: str, name: str, exp: str, tok: str, sig: str) -> Path:
        """The cached file behind a signed URL (raises :class:`Forbidden` for a bad or expired URL)."""
        if not ENTRY.fullmatch(entry) or not PART.fullmatch(name) or not re.fullmatch(r"[0-9]{1,12}", exp):
            raise NotFound("no such file")
        msg = f"{entry}/{name}|{exp}|{tok}".encode()
        want = hmac.new(self._url_key, msg, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, sig):
            raise Forbidden("the file URL's signature does not verify")
        now = time.time()
        if int(exp) <= now:
            raise Forbidden("the file URL has expired: query the table again")
        if int(exp) > now + MAX_URL_TTL.total_seconds() + 5:
            raise Forbidden("the file URL claims a lifetime beyond the server's maximum")
        path = self.root / "cache" / entry / name
        if not path.is_file():
            raise NotFound("no such file")
        if not self._token_live(tok):
            raise Forbidden("the delivery token behind this URL was revoked or its contract ended")
        return path

    def _token_live(self, token_id: str) -> bool:
        """Token status for file requests, remembered for :data:`TOKEN_CHECK_S` (a reader sends many)."""
        now = time.monotonic()
        hit = self._live.get(token_id)
        if hit is not None and now - hit < TOKEN_CHECK_S:
            return True
        ok = self.exchange.read(SYSTEM, service.token_live, token_id)
        if ok:
            self._live[token_id] = now
        else:
            self._live.pop(token_id, None)
        return ok

    def _meter(
        self, grant: Grant, ref: TableRef, version: int, files: list[DataFile], request: dict[str, Any]
    ) -> tuple[Read, int | None]:
        contract = self.exchange.read(SYSTEM, get_contract, grant.contract_id)
        outcome = self.exchange.run(
            SYSTEM,
            service.record_read,
            grant,
            render=lambda r: {"read": r},
            table=ref.name,
            version=version,
            rows=sum(f.rows for f in files),
            size=sum(f.size for f in files),
            files=len(files),
            request_digest=digest({**request, "files": [f.id for f in files], "token": grant.token_id}),
            mb_metered=contract.price.model == PriceModel.PER_MB,
        )
        read: Read = outcome.body["read"]
        return read, outcome.receipts[0]["index"] if outcome.receipts else None

    def query(
        self, grant: Grant, share: str, schema: str, table: str, body: dict[str, Any], base: str
    ) -> Served:
        ref = self.table(grant, share, schema, table)
        for key in ("startingVersion", "endingVersion"):
            if body.get(key) is not None:
                raise InvalidInput(
                    f"{key} on /query is not supported by this server: use /changes", field=key
                )
        version = body.get("version")
        if version is not None:
            if isinstance(version, bool) or not isinstance(version, int) or version < 0:
                raise InvalidInput("version must be a non-negative integer", field="version")
            if body.get("timestamp") is not None:
                raise InvalidInput("give version or timestamp, not both", field="timestamp")
        elif body.get("timestamp") is not None:
            if not isinstance(body["timestamp"], str):
                raise InvalidInput("timestamp must be a string", field="timestamp")
            version = self.version_at(ref.resource_id, body["timestamp"], "timestamp", at_or_after=False)
        travelled = version is not None
        if version is None:
            version = self.current_version(ref.resource_id)
        plan, files = self.prepare(grant, ref, version)
        from datavalley.delivery.hints import select_files

        chosen = select_files(
            files, body.get("predicateHints"), body.get("jsonPredicateHints"), body.get("limitHint")
        )
        read, receipt = self._meter(
            grant, ref, version, chosen, {"op": "query", "table": ref.name, "version": version}
        )
        now = self.exchange.now()
        ts = self._timestamp_ms(ref.resource_id, version) if travelled else None
        lines: list[dict[str, Any]] = [
            {"protocol": {"minReaderVersion": 1}},
            self._metadata(grant, ref, plan),
        ]
        for f in chosen:
            item: dict[str, Any] = {
                "url": self.sign(grant, f, base, now),
                "id": f.id,
                "partitionValues": {},
                "size": f.size,
                "stats": json.dumps(f.stats, separators=(",", ":"), default=str),
            }
            if travelled:
                item["version"] = version
                item["timestamp"] = ts
            lines.append({"file": item})
        return Served(version, lines, read, receipt)

    def changes(
        self, grant: Grant, share: str, schema: str, table: str, params: dict[str, str], base: str
    ) -> Served:
        ref = self.table(grant, share, schema, table)
        current = self.current_version(ref.resource_id)

        def as_version(key: str) -> int | None:
            raw = params.get(key)
            if raw is None:
                return None
            if not re.fullmatch(r"[0-9]{1,18}", raw):
                raise InvalidInput(f"{key} must be a non-negative integer", field=key)
            return int(raw)

        start = as_version("startingVersion")
        end = as_version("endingVersion")
        if start is None and params.get("startingTimestamp"):
            start = self.version_at(
                ref.resource_id, params["startingTimestamp"], "startingTimestamp", at_or_after=True
            )
        if end is None and params.get("endingTimestamp"):
            end = self.version_at(
                ref.resource_id, params["endingTimestamp"], "endingTimestamp", at_or_after=False
            )
        if start is None:
            raise InvalidInput("startingVersion or startingTimestamp is required", field="startingVersion")
        end = current if end is None else end
        first = min(int(v["version"]) for v in self.versions(ref.resource_id))
        if start < first:
            start = first
        if end > current:
            raise InvalidInput(
                f"endingVersion {end} is beyond the current version {current}", field="endingVersion"
            )
        if start > end:
            raise InvalidInput(
                f"startingVersion {start} is after endingVersion {end}", field="startingVersion"
            )
        batches: list[tuple[int, str, list[DataFile]]] = []
        plan = None
        for v in range(start, end + 1):
            if v == first:
                plan, files = self.prepare(grant, ref, v)
                batches.append((v, "add", files))
            else:
                plan, files = self.prepare_changes(grant, ref, v)
                batches.append((v, "cdf", files))
        assert plan is not None
        every = [f for _, _, fs in batches for f in fs]
        read, receipt = self._meter(
            grant, ref, end, every, {"op": "changes", "table": ref.name, "start": start, "end": end}
        )
        now = self.exchange.now()
        lines: list[dict[str, Any]] = [
            {"protocol": {"minReaderVersion": 1}},
            self._metadata(grant, ref, plan, cdf=True),
        ]
        for v, kind, files in batches:
            ts = self._timestamp_ms(ref.resource_id, v)
            for f in files:
                item = {
                    "url": self.sign(grant, f, base, now),
                    "id": f.id,
                    "partitionValues": {},
                    "size": f.size,
                    "timestamp": ts,
                    "version": v,
                }
                if kind == "add":
                    item["stats"] = json.dumps(f.stats, separators=(",", ":"), default=str)
                lines.append({kind: item})
        return Served(start, lines, read, receipt)


def page(items: list[dict[str, Any]], max_results: str | None, token: str | None) -> dict[str, Any]:
    """``maxResults``/``pageToken`` pagination over a small, stable, sorted list."""
    start = 0
    if token:
        try:
            start = int(base64.urlsafe_b64decode(token.encode() + b"==").decode())
        except (ValueError, UnicodeDecodeError):
            raise InvalidInput("pageToken is not one this server issued", field="pageToken") from None
        if not 0 <= start <= len(items):
            raise InvalidInput("pageToken is not one this server issued", field="pageToken")
    limit = 500
    if max_results is not None:
        if not re.fullmatch(r"[0-9]{1,9}", max_results):
            raise InvalidInput("maxResults must be a non-negative integer", field="maxResults")
        limit = min(int(max_results), 1000)
    chunk = items[start : start + limit]
    out: dict[str, Any] = {"items": chunk}
    nxt = start + len(chunk)
    if nxt < len(items):
        out["nextPageToken"] = base64.urlsafe_b64encode(str(nxt).encode()).decode().rstrip("=")
    return out
