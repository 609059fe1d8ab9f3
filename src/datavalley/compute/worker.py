"""A compute pool's worker: one process per pool, its own core limit and work directory.

The worker speaks a small HTTP/JSON protocol (docs/COMPUTE.md, "Worker protocol"), so the same node code
drives a worker on this machine or, with ``DATAVALLEY_POOLS``, one in another data centre:

- ``GET /v1/health`` → ``{"pool", "cores", "engines", "busy_cores"}``
- ``POST /v1/jobs`` with ``Authorization: Bearer <pool token>`` and
  ``{"job_id", "engine": "duckdb"|"spark", "cores", "sql", "epsilon", "rules", "tables": [{"name",
  "columns": {col: type}, "format", "data_b64"}]}`` → ``{"digest", "engine", "columns", "rows",
  "elapsed_s", "wall_s", "cores", "core_seconds"}``.

The worker stages the shipped tables in ``WORKDIR/<job>/`` (0700, files 0600), compiles the query with the
same compiler as the node (the node checks the digest), runs the exact step in the locked-down DuckDB
engine with ``threads = cores`` (or Spark ``local[cores]``), returns the exact aggregates to the node —
which alone adds noise and releases — and deletes the staged data. The process is pinned to ``cores``
CPUs (``sched_setaffinity``) and admits jobs while their cores fit. It never schedules or splits work:
placement is the exchange's scheduler's job, and a job runs whole on one pool.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime as dt
import decimal
import hmac
import json
import math
import os
import re
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from datavalley.errors import DatavalleyError, InvalidInput, Unauthenticated, Unavailable

MAX_BODY = 256 * 1024 * 1024
NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
JOB_ID = re.compile(r"[A-Za-z0-9_\-]{1,64}")
FORMATS = {"csv": ".csv", "parquet": ".parquet", "jsonl": ".jsonl"}


def rules_to_json(rules: Any) -> dict[str, Any]:
    """A :class:`PrivacyRules` as plain JSON (lists for tuples and sets)."""
    return {
        "privacy_unit": rules.privacy_unit,
        "min_group_size": rules.min_group_size,
        "max_rows_per_unit": rules.max_rows_per_unit,
        "max_groups_per_unit": rules.max_groups_per_unit,
        "clamps": {k: list(v) for k, v in rules.clamps.items()},
        "public_keys": {k: list(v) for k, v in rules.public_keys.items()},
        "mechanism": rules.mechanism,
        "delta": rules.delta,
        "join_keys": [list(p) for p in rules.join_keys],
        "public_tables": sorted(rules.public_tables),
        "require_dp": rules.require_dp,
    }


def rules_from_json(d: Any) -> Any:
    from datavalley.privacy import PrivacyRules

    if not isinstance(d, dict):
        raise InvalidInput("rules must be an object", field="rules")
    try:
        return PrivacyRules(
            privacy_unit=d.get("privacy_unit"),
            min_group_size=d.get("min_group_size", 10),
            max_rows_per_unit=d.get("max_rows_per_unit", 1),
            max_groups_per_unit=d.get("max_groups_per_unit", 1),
            clamps={k: tuple(v) for k, v in (d.get("clamps") or {}).items()},
            public_keys={k: tuple(v) for k, v in (d.get("public_keys") or {}).items()},
            mechanism=d.get("mechanism", "laplace"),
            delta=d.get("delta", 1e-6),
            join_keys=tuple(tuple(p) for p in d.get("join_keys") or ()),
            public_tables=frozenset(d.get("public_tables") or ()),
            require_dp=bool(d.get("require_dp", True)),
        )
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"unusable rules ({type(exc).__name__})", field="rules") from None


def jsonable(v: Any) -> Any:
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, dt.datetime | dt.date):
        return v.isoformat()
    return v


class Worker:
    def __init__(self, pool_id: str, cores: int, workdir: Path, token: str, *, pin: bool = True) -> None:
        if cores < 1:
            raise InvalidInput("cores must be at least 1", field="cores")
        self.pool_id = pool_id
        self.cores = cores
        self.workdir = workdir
        self.token = token
        self.busy = 0
        self.served = 0  # jobs answered (health and tests)
        self._cv = threading.Condition()
        self._spark: Any = None
        workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if pin and hasattr(os, "sched_setaffinity"):
            cpus = sorted(os.sched_getaffinity(0))
            os.sched_setaffinity(0, set(cpus[: min(cores, len(cpus))]))

    def health(self) -> dict[str, Any]:
        return {
            "pool": self.pool_id,
            "cores": self.cores,
            "engines": ["duckdb", "spark"],
            "busy_cores": self.busy,
            "served": self.served,
        }

    def close(self) -> None:
        if self._spark is not None:
            self._spark.stop()
            self._spark = None

    def _acquire(self, cores: int, wait_s: float = 60.0) -> None:
        deadline = time.monotonic() + wait_s
        with self._cv:
            while self.busy + cores > self.cores:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Unavailable(f"pool {self.pool_id} has no {cores} free cores")
                self._cv.wait(left)
            self.busy += cores

    def _release(self, cores: int) -> None:
        with self._cv:
            self.busy -= cores
            self._cv.notify_all()

    def run(self, body: dict[str, Any]) -> dict[str, Any]:
        from datavalley.privacy import DuckDBEngine, ProductSchema, TableSpec, compile_query

        job_id = body.get("job_id")
        if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
            raise InvalidInput("job_id must be 1–64 letters, digits, _ or -", field="job_id")
        cores = body.get("cores")
        if isinstance(cores, bool) or not isinstance(cores, int) or not 1 <= cores <= self.cores:
            raise InvalidInput(f"cores must be between 1 and this pool's {self.cores}", field="cores")
        engine = body.get("engine", "duckdb")
        if engine not in ("duckdb", "spark"):
            raise InvalidInput("engine must be duckdb or spark", field="engine")
        sql = body.get("sql")
        if not isinstance(sql, str) or not sql:
            raise InvalidInput("sql is required", field="sql")
        eps = body.get("epsilon")
        if isinstance(eps, bool) or not isinstance(eps, int | float):
            raise InvalidInput("epsilon must be a number", field="epsilon")
        rules = rules_from_json(body.get("rules"))
        tables = body.get("tables")
        if not isinstance(tables, list) or not tables:
            raise InvalidInput("tables must list the job's tables", field="tables")
        self._acquire(cores)
        start = time.perf_counter()
        stage = self.workdir / job_id
        try:
            shutil.rmtree(stage, ignore_errors=True)
            stage.mkdir(mode=0o700)
            specs, sources = [], {}
            for t in tables:
                if not isinstance(t, dict):
                    raise InvalidInput("each table is an object", field="tables")
                name, fmt, cols = t.get("name"), t.get("format"), t.get("columns")
                if not isinstance(name, str) or not NAME.fullmatch(name) or fmt not in FORMATS:
                    raise InvalidInput(
                        "each table needs a lower-case name and a known format", field="tables"
                    )
                if not isinstance(cols, dict) or not all(isinstance(v, str) for v in cols.values()):
                    raise InvalidInput("table columns map names to types", field="tables")
                try:
                    data = base64.b64decode(str(t.get("data_b64", "")), validate=True)
                except (binascii.Error, ValueError):
                    raise InvalidInput(f"table {name}: data_b64 is not base64", field="tables") from None
                path = stage / f"{name}{FORMATS[fmt]}"
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                specs.append(TableSpec(name, cols))
                sources[name] = str(path)
            q = compile_query(sql, ProductSchema.of(*specs), rules, epsilon=float(eps))
            if engine == "duckdb":
                with DuckDBEngine(sources, threads=cores) as e:
                    exact = e.run(q)
            else:
                exact = self._spark_run(sources, q, cores)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
            self._release(cores)
        wall = time.perf_counter() - start
        with self._cv:
            self.served += 1
        return {
            "pool": self.pool_id,
            "digest": exact.digest,
            "engine": exact.engine,
            "columns": list(exact.columns),
            "rows": [[jsonable(v) for v in r] for r in exact.rows],
            "elapsed_s": exact.elapsed_s,
            "wall_s": wall,
            "cores": cores,
            "core_seconds": max(1, math.ceil(wall * cores)),
        }

    def _spark_run(self, sources: dict[str, str], q: Any, cores: int) -> Any:
        from pyspark.sql import SparkSession

        from datavalley.privacy.spark import SparkEngine

        with self._cv:
            if self._spark is None:
                self._spark = (
                    SparkSession.builder.master(f"local[{self.cores}]")
                    .appName(f"datavalley-pool-{self.pool_id}")
                    .config("spark.ui.enabled", "false")
                    .config("spark.ui.showConsoleProgress", "false")
                    .config("spark.sql.shuffle.partitions", str(self.cores))
                    .config("spark.driver.host", "127.0.0.1")
                    .config("spark.driver.bindAddress", "127.0.0.1")
                    .config("spark.local.dir", str(self.workdir / "spark"))
                    .getOrCreate()
                )
                self._spark.sparkContext.setLogLevel("ERROR")
        engine = SparkEngine(sources, spark=self._spark, timeout_s=120.0)
        try:
            return engine.run(q)
        finally:
            engine.close()


def make_handler(worker: Worker) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "datavalley-pool"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:  # no request logs (no data in logs)
            return

        def _send(self, status: int, body: dict[str, Any]) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _error(self, exc: DatavalleyError) -> None:
            self._send(exc.http_status, {"error": type(exc).__name__, "message": str(exc)})

        def do_GET(self) -> None:
            if self.path == "/v1/health":
                self._send(200, worker.health())
            else:
                self._send(404, {"error": "NotFound", "message": "no such endpoint"})

        def do_POST(self) -> None:
            try:
                if self.path != "/v1/jobs":
                    self._send(404, {"error": "NotFound", "message": "no such endpoint"})
                    return
                auth = self.headers.get("Authorization", "")
                if not hmac.compare_digest(auth.encode(), f"Bearer {worker.token}".encode()):
                    raise Unauthenticated("a valid pool token is required")
                try:
                    length = int(self.headers.get("Content-Length", "0"))
                except ValueError:
                    raise InvalidInput("bad Content-Length") from None
                if not 0 < length <= MAX_BODY:
                    raise InvalidInput(f"the body must be 1 byte to {MAX_BODY} bytes")
                try:
                    body = json.loads(self.rfile.read(length))
                except (ValueError, UnicodeDecodeError):
                    raise InvalidInput("the body is not JSON") from None
                if not isinstance(body, dict):
                    raise InvalidInput("the body must be a JSON object")
                self._send(200, worker.run(body))
            except DatavalleyError as exc:
                self._error(exc)
            except Exception as exc:  # the engine's message may quote data: only the class is reported
                self._send(500, {"error": "WorkerError", "message": f"job failed ({type(exc).__name__})"})

    return Handler


def serve(worker: Worker, host: str, port: int, port_file: Path | None = None) -> None:
    httpd = ThreadingHTTPServer((host, port), make_handler(worker))
    if port_file is not None:
        tmp = port_file.with_suffix(".tmp")
        tmp.write_text(str(httpd.server_address[1]))
        tmp.replace(port_file)
    try:
        httpd.serve_forever()
    finally:
        httpd.server_close()
        worker.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="datavalley-pool-worker", description=__doc__.splitlines()[0])
    ap.add_argument("--pool", required=True)
    ap.add_argument("--cores", type=int, required=True)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", type=Path)
    a = ap.parse_args(argv)
    token = os.environ.get("DATAVALLEY_POOL_TOKEN", "")
    if len(token) < 16:
        raise SystemExit("DATAVALLEY_POOL_TOKEN (at least 16 characters) must be set")
    serve(Worker(a.pool, a.cores, a.workdir, token), a.host, a.port, a.port_file)


if __name__ == "__main__":
    main()
