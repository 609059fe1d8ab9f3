"""The node side of compute jobs: find the placed pool's worker, ship the job, meter the run.

``DATAVALLEY_POOLS`` maps pools to remote workers (``pool_id=http://host:port,...``; the shared pool
token in ``DATAVALLEY_POOL_TOKEN``). A pool without an entry gets a local worker process, started on
first use with its own core limit and work directory under ``HOME/compute/pools/<pool>/`` and stopped
with the runner. Either way the same HTTP/JSON protocol is spoken (``worker.py``).
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
import time
import weakref
from pathlib import Path
from typing import Any

import httpx

from datavalley.canonical import digest
from datavalley.compute import jobs
from datavalley.compute.pools import get_pool
from datavalley.compute.worker import rules_to_json
from datavalley.errors import Conflict, DatavalleyError, IntegrityError, InvalidInput, Unavailable
from datavalley.exchange import Exchange
from datavalley.identity.model import Principal
from datavalley.node.query import QueryService
from datavalley.privacy.compiler import CompiledQuery
from datavalley.privacy.engine import ExactResult, source_format

START_TIMEOUT_S = 30.0


def parse_pools(value: str) -> dict[str, str]:
    """``pool_a=http://h:1,pool_b=http://h:2`` → {pool: base URL}."""
    out: dict[str, str] = {}
    for item in filter(None, (x.strip() for x in value.split(","))):
        pool, sep, url = item.partition("=")
        if not sep or not pool or not url.startswith(("http://", "https://")):
            raise InvalidInput(f"DATAVALLEY_POOLS entry {item!r} is not pool_id=http(s)://host:port")
        out[pool.strip()] = url.strip().rstrip("/")
    return out


class PoolDirectory:
    """Where each pool's worker listens; starts local workers for pools without a remote entry."""

    def __init__(self, home: Path, remote: dict[str, str] | None = None, token: str | None = None) -> None:
        self.home = home
        self.remote = remote if remote is not None else parse_pools(os.environ.get("DATAVALLEY_POOLS", ""))
        self.token = token or os.environ.get("DATAVALLEY_POOL_TOKEN") or secrets.token_urlsafe(24)
        self._local: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
        # local workers stop with the directory (or at interpreter exit), never outlive the node
        self._finalizer = weakref.finalize(self, _stop, self._local)

    def endpoint(self, pool_id: str, cores: int) -> str:
        if pool_id in self.remote:
            return self.remote[pool_id]
        if pool_id in self._local and self._local[pool_id][0].poll() is None:
            return self._local[pool_id][1]
        base = self.home / "compute" / "pools" / pool_id
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        port_file = base / "port"
        port_file.unlink(missing_ok=True)
        env = dict(os.environ, DATAVALLEY_POOL_TOKEN=self.token)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "datavalley.compute.worker",
                "--pool",
                pool_id,
                "--cores",
                str(cores),
                "--workdir",
                str(base / "work"),
                "--port-file",
                str(port_file),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not port_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise Unavailable(f"the worker of pool {pool_id} did not start")
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port_file.read_text().strip()}"
        self._local[pool_id] = (proc, url)
        return url

    def pids(self) -> dict[str, int]:
        return {p: proc.pid for p, (proc, _) in self._local.items()}

    def close(self) -> None:
        _stop(self._local)


def _stop(local: dict[str, tuple[subprocess.Popen[bytes], str]]) -> None:
    for proc, _ in local.values():
        proc.terminate()
    for proc, _ in local.values():
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    local.clear()


class JobRunner:
    """Runs placed jobs of this node's participant on their pools and reports the metering."""

    def __init__(self, exchange: Exchange, query: QueryService, pools: PoolDirectory) -> None:
        self.exchange = exchange
        self.query = query
        self.pools = pools

    def run(self, principal: Principal, job_id: str, *, engine: str = "duckdb") -> dict[str, Any]:
        ex = self.exchange
        started = ex.run(principal, jobs.start_job, job_id, render=_job)
        job = started.body["job"]
        assert job.pool_id is not None
        pool = ex.read(Principal.system(), get_pool, job.pool_id)
        url = self.pools.endpoint(pool.id, pool.cores)
        spec = ex.read(principal, _spec_of, job_id)
        metered: dict[str, Any] = {"core_seconds": 0}

        def remote(q: CompiledQuery, work: dict[str, Any]) -> ExactResult:
            tables = []
            for t in work["tables"]:
                path = Path(work["sources"][t.name])
                tables.append(
                    {
                        "name": t.name,
                        "columns": dict(t.columns),
                        "format": source_format(path),
                        "data_b64": base64.b64encode(path.read_bytes()).decode(),
                    }
                )
            body = {
                "job_id": job.id,
                "engine": engine,
                "cores": min(job.cores, pool.cores),
                "sql": work["sql"],
                "epsilon": work["epsilon"],
                "rules": rules_to_json(work["rules"]),
                "tables": tables,
            }
            try:
                r = httpx.post(
                    f"{url}/v1/jobs",
                    json=body,
                    headers={"Authorization": f"Bearer {self.pools.token}"},
                    timeout=max(60.0, job.duration_s * 2.0),
                )
            except httpx.HTTPError as exc:
                raise Unavailable(f"pool {pool.id} is unreachable ({type(exc).__name__})") from None
            try:
                answer = r.json()
            except ValueError:
                raise Unavailable(f"pool {pool.id} answered HTTP {r.status_code} without JSON") from None
            if not isinstance(answer, dict):
                raise Unavailable(f"pool {pool.id} answered an unexpected body")
            if r.status_code != 200:
                raise Conflict(f"pool {pool.id} refused the job: {answer.get('message', r.status_code)}")
            if answer.get("digest") != q.digest:
                raise IntegrityError(f"pool {pool.id} ran a different query than the node compiled")
            metered["core_seconds"] = int(answer["core_seconds"])
            metered["engine"] = answer["engine"]
            metered["wall_s"] = answer["wall_s"]
            return ExactResult(
                q.digest,
                f"{answer['engine']}@{pool.id}",
                tuple(answer["columns"]),
                tuple(tuple(row) for row in answer["rows"]),
                float(answer["elapsed_s"]),
            )

        try:
            result = self.query.run(
                principal, job.contract_id, spec["sql"], epsilon=spec.get("epsilon"), executor=remote
            )
        except DatavalleyError as exc:
            done = ex.run(
                principal,
                jobs.finish_job,
                job_id,
                render=_job,
                core_seconds=metered["core_seconds"],
                error=f"{type(exc).__name__}: {exc}"[:500],
            )
            return {
                "job": done.body["job"].to_json(),
                "error": {"error": type(exc).__name__, "message": str(exc)},
                "receipts": started.receipts + done.receipts,
            }
        out = ex.run(
            principal,
            jobs.finish_job,
            job_id,
            render=_job,
            core_seconds=metered["core_seconds"],
            result_digest=digest({k: v for k, v in result.items() if k not in ("cached", "charged")}),
        )
        return {
            "job": out.body["job"].to_json(),
            "result": result,
            "pool": {"id": pool.id, "cluster": pool.cluster, "engine": metered.get("engine")},
            "receipts": started.receipts + out.receipts,
        }


def _job(j: jobs.Job) -> dict[str, Any]:
    return {"job": j}


def _spec_of(ctx: Any, job_id: str) -> dict[str, Any]:
    row = jobs._get(ctx, job_id)
    return dict(row.spec)
